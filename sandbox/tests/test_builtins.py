"""Built-in resources later issues need: Events, Leases, CSRs with /approval, SubjectAccessReviews."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sandbox_clients import HttpApi
from trusted_issuer_sandbox import AccessRequest, Sandbox, allow_rows

pytestmark = pytest.mark.asyncio

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SARS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def csr(name: str = "node-1") -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\n").decode(),
            "signerName": "trusted-issuer.dev/ca",
            "usages": ["client auth"],
        },
        "status": {"conditions": [{"type": "Approved", "status": "True"}]},
    }


def condition(kind: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": "Test", "message": "by the test"}


def sar(user: str, verb: str, resource: str, name: str = "", group: str = "") -> dict[str, Any]:
    attributes = {"verb": verb, "resource": resource, "name": name, "group": group, "namespace": "default"}
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["devs"], "resourceAttributes": attributes},
    }


async def test_events_are_created_and_patched(api: HttpApi) -> None:
    event = {
        "metadata": {"generateName": "demo."},
        "involvedObject": {"kind": "CertificateRequest", "name": "demo", "namespace": "default"},
        "reason": "Issued",
        "message": "signed",
        "type": "Normal",
        "count": 1,
    }
    created = await api.post("/api/v1/namespaces/default/events", event)
    name = created.body["metadata"]["name"]
    patched = await api.patch(f"/api/v1/namespaces/default/events/{name}", {"count": 2})
    assert created.status == 201 and name.startswith("demo.")
    assert patched.body["count"] == 2


async def test_leases_use_optimistic_concurrency(api: HttpApi) -> None:
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    created = (await api.post(leases, {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}})).body
    taken = await api.put(f"{leases}/leader", {**created, "spec": {"holderIdentity": "b"}})
    lost = await api.put(f"{leases}/leader", {**created, "spec": {"holderIdentity": "c"}})
    assert taken.status == 200 and taken.body["spec"]["holderIdentity"] == "b"
    assert lost.status == 409


async def test_csr_approval_and_status_are_separate(api: HttpApi) -> None:
    created = await api.post(CSRS, csr())
    assert created.status == 201 and created.body["status"] == {}  # approval is never created with it
    assert created.body["spec"]["username"] == "sandbox-admin"
    early = await api.patch(f"{CSRS}/node-1/status", {"status": {"certificate": "Zm9v"}})
    assert early.status == 422 and "approved" in early.body["message"]
    approved = await api.put(
        f"{CSRS}/node-1/approval", {**created.body, "status": {"conditions": [condition("Approved")]}}
    )
    assert [c["type"] for c in approved.body["status"]["conditions"]] == ["Approved"]
    # /status may set the certificate and other conditions, but cannot take the approval back.
    issued = await api.put(
        f"{CSRS}/node-1/status",
        {**approved.body, "status": {"certificate": "Zm9v", "conditions": [condition("Failed")]}},
    )
    assert issued.status == 200 and issued.body["status"]["certificate"] == "Zm9v"
    assert [c["type"] for c in issued.body["status"]["conditions"]] == ["Approved", "Failed"]
    respec = await api.patch(CSRS + "/node-1", {"spec": {"signerName": "other/signer"}})
    assert respec.status == 422 and "immutable" in respec.body["message"]
    both = await api.put(
        f"{CSRS}/node-1/approval",
        {**issued.body, "status": {"conditions": [condition("Approved"), condition("Denied")]}},
    )
    assert both.status == 422


async def test_subject_access_reviews_answer_from_the_policy(api: HttpApi, sandbox: Sandbox) -> None:
    question = sar("alice", "create", "certificaterequests", group="cert-manager.io")
    denied = await api.post(SARS, question)
    sandbox.access_policy = allow_rows([("alice", "create", "certificaterequests.cert-manager.io", "*")])
    allowed = await api.post(SARS, question)
    other_user = await api.post(SARS, sar("bob", "create", "certificaterequests", group="cert-manager.io"))
    assert denied.status == 201 and denied.body["status"]["allowed"] is False
    assert allowed.body["status"] == {"allowed": True}
    assert allowed.body["spec"] == question["spec"]
    assert other_user.body["status"]["allowed"] is False
    assert (await api.get(SARS)).status == 405  # reviews are answered, never stored


async def test_a_callable_policy_sees_the_whole_question(api: HttpApi, sandbox: Sandbox) -> None:
    asked: list[AccessRequest] = []
    sandbox.access_policy = lambda request: asked.append(request) or request.name == "ok"
    answers = [
        (await api.post(SARS, sar("carol", "use", "signers", name=name, group="trusted-issuer.dev"))).body
        for name in ("ok", "nope")
    ]
    self_review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "leases", "name": "ok"}},
    }
    mine = await api.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self_review)
    assert [a["status"]["allowed"] for a in answers] == [True, False]
    assert (asked[0].user, asked[0].verb, asked[0].group, asked[0].resource) == (
        "carol",
        "use",
        "trusted-issuer.dev",
        "signers",
    )
    assert asked[0].groups == ("devs",) and asked[0].namespace == "default"
    assert mine.body["status"]["allowed"] is True and asked[-1].user == "sandbox-admin"
