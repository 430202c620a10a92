"""The in-memory request store is bounded: a flood of requests costs a key each beyond the limit, only
what the operator reads of a request is kept, and an oversized ``spec.request`` is never held. Pure:
no API server, no token (the runtime's pool and client are never reached by the code under test, so
they are left out)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, cast

from issuer.clock import utcnow
from issuer.controller.registry import IssuerRegistry
from issuer.controller.requests import processing as requests
from issuer.controller.requests.request_kinds import (
    CERTIFICATE_REQUESTS,
    CSR_DURATION_ANNOTATION,
    CSR_IS_CA_ANNOTATION,
    SIGNING_REQUESTS,
)
from issuer.controller.runtime import Runtime
from issuer.settings import Settings

CSR_TEXT = base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 1500).decode()


def _runtime(max_cached: int, max_bytes: int = 64 * 1024) -> Runtime:
    settings = Settings(max_cached_requests=max_cached, max_request_bytes=max_bytes)
    return Runtime(
        settings=settings,
        profiles=cast(Any, None),
        pool=cast(Any, None),
        client=cast(Any, None),
        clock=utcnow,
        issuers=IssuerRegistry(),
    )


def _event(name: str, *, request: str = CSR_TEXT, kind: str = "MODIFIED", status: Any = None) -> Any:
    return {
        "type": kind,
        "object": {
            "metadata": {"namespace": "flood", "name": name, "resourceVersion": "7"},
            "spec": {
                "request": request,
                "issuerRef": {"group": "trusted-issuer.dev", "kind": "TrustedIssuer", "name": "ca"},
            },
            "status": status
            or {"conditions": [{"type": "Approved", "status": "True", "reason": "cert-manager.io"}]},
        },
    }


def test_a_flood_of_10000_requests_keeps_at_most_the_limit_of_bodies() -> None:
    async def flood() -> Runtime:
        runtime = _runtime(max_cached=100)
        for i in range(10_000):
            requests._observe(CERTIFICATE_REQUESTS, _event(f"r{i:05d}"), runtime)
        return runtime

    runtime = asyncio.run(flood())
    assert len(runtime.requests.bodies) == 100
    assert len(runtime.requests.uncached) == 9_900
    assert len(runtime.requests.queue) == 10_000  # every request is still queued: none is lost
    assert not set(runtime.requests.bodies) & runtime.requests.uncached


def test_a_newer_version_of_a_held_body_replaces_it_even_when_the_store_is_full() -> None:
    async def run() -> Runtime:
        runtime = _runtime(max_cached=1)
        requests._observe(CERTIFICATE_REQUESTS, _event("first"), runtime)
        requests._observe(CERTIFICATE_REQUESTS, _event("second"), runtime)
        newer = _event("first")
        newer["object"]["metadata"]["resourceVersion"] = "8"
        requests._observe(CERTIFICATE_REQUESTS, newer, runtime)
        return runtime

    runtime = asyncio.run(run())
    assert (
        runtime.requests.bodies[("certificaterequests", "flood", "first")]["metadata"]["resourceVersion"]
        == "8"
    )
    assert runtime.requests.uncached == {("certificaterequests", "flood", "second")}


def test_finished_and_deleted_requests_are_forgotten_held_or_not() -> None:
    issued = {"certificate": "eA==", "conditions": [{"type": "Ready", "status": "True", "reason": "Issued"}]}

    async def run() -> Runtime:
        runtime = _runtime(max_cached=1)
        requests._observe(CERTIFICATE_REQUESTS, _event("held"), runtime)
        requests._observe(CERTIFICATE_REQUESTS, _event("spilled"), runtime)
        requests._observe(CERTIFICATE_REQUESTS, _event("held", status=issued), runtime)
        requests._observe(CERTIFICATE_REQUESTS, _event("spilled", kind="DELETED"), runtime)
        return runtime

    runtime = asyncio.run(run())
    assert runtime.requests.bodies == {}
    assert runtime.requests.uncached == set()


def test_an_oversized_request_is_not_held_and_its_size_is_reported() -> None:
    huge = "A" * (2 * 1024 * 1024)

    async def run() -> Runtime:
        runtime = _runtime(max_cached=10, max_bytes=64 * 1024)
        requests._observe(CERTIFICATE_REQUESTS, _event("huge", request=huge), runtime)
        return runtime

    runtime = asyncio.run(run())
    body = runtime.requests.bodies[("certificaterequests", "flood", "huge")]
    assert "request" not in body["spec"]
    message = requests._oversized_message(runtime, body)
    assert message is not None
    assert str(len(huge)) in message and "65536" in message and "MAX_REQUEST_BYTES" in message


def test_a_request_at_the_limit_is_kept_whole() -> None:
    async def run() -> Runtime:
        runtime = _runtime(max_cached=10, max_bytes=len(CSR_TEXT))
        requests._observe(CERTIFICATE_REQUESTS, _event("edge"), runtime)
        return runtime

    runtime = asyncio.run(run())
    body = runtime.requests.bodies[("certificaterequests", "flood", "edge")]
    assert body["spec"]["request"] == CSR_TEXT
    assert requests._oversized_message(runtime, body) is None


def test_what_others_bloat_an_object_with_is_not_kept() -> None:
    bloated = _event("bloated")
    meta = bloated["object"]["metadata"]
    meta["annotations"] = {"example.com/blob": "x" * 1_000_000}
    meta["managedFields"] = [{"manager": "someone", "fieldsV1": {"f:spec": {"x": "y" * 100_000}}}]
    bloated["object"]["status"]["someoneElses"] = "z" * 500_000

    async def run() -> Runtime:
        runtime = _runtime(max_cached=10)
        requests._observe(CERTIFICATE_REQUESTS, bloated, runtime)
        return runtime

    body = asyncio.run(run()).requests.bodies[("certificaterequests", "flood", "bloated")]
    assert len(json.dumps(body)) < len(CSR_TEXT) + 1_000
    assert body["metadata"] == {"name": "bloated", "namespace": "flood", "resourceVersion": "7"}
    assert body["status"] == {"conditions": bloated["object"]["status"]["conditions"]}


def test_the_kept_essence_reads_as_the_whole_object_does() -> None:
    csr_body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {
            "name": "workload",
            "uid": "u-1",
            "resourceVersion": "3",
            "creationTimestamp": "2031-03-04T05:06:07Z",
            "annotations": {
                CSR_DURATION_ANNOTATION: "2h",
                CSR_IS_CA_ANNOTATION: "false",
                "unrelated.example.com/x": "y",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "request": CSR_TEXT,
            "signerName": "trustedissuers.trusted-issuer.dev/mesh.ca",
            "usages": ["digital signature", "client auth"],
            "username": "system:serviceaccount:mesh:istiod",
            "groups": ["system:serviceaccounts"],
        },
        "status": {"conditions": [{"type": "Approved", "status": "True"}]},
    }
    runtime = _runtime(max_cached=10)
    essence = requests._essence(runtime, csr_body)
    for kind, body, kept in (
        (SIGNING_REQUESTS, csr_body, essence),
        (CERTIFICATE_REQUESTS, _event("cr")["object"], requests._essence(runtime, _event("cr")["object"])),
    ):
        assert kind.issuer_of(kept) == kind.issuer_of(body)
        assert kind.requester(kept) == kind.requester(body)
        assert kind.signing_request(kept) == kind.signing_request(body)
        assert kind.is_finished(kept.get("status")) == kind.is_finished(body.get("status"))
    assert essence["metadata"]["creationTimestamp"] == "2031-03-04T05:06:07Z"
    assert (essence["apiVersion"], essence["kind"], essence["metadata"]["uid"]) == (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        "u-1",
    )


def test_a_relisting_forgets_only_the_requests_of_its_own_scope_it_no_longer_holds() -> None:
    async def run() -> Runtime:
        runtime = _runtime(max_cached=2)
        for name in ("listed", "deleted", "spilled-deleted"):
            requests._observe(CERTIFICATE_REQUESTS, _event(name), runtime)
        other = _event("other-namespace")
        other["object"]["metadata"]["namespace"] = "elsewhere"
        requests._observe(CERTIFICATE_REQUESTS, other, runtime)
        csr = ("certificatesigningrequests", "", "a-csr")
        runtime.requests.keep(csr, {})  # another kind, unseen by this listing
        # A relisting of the "flood" namespace's CertificateRequests that holds only "listed":
        requests._listed(CERTIFICATE_REQUESTS, "flood", runtime, {("flood", "listed")})
        return runtime

    runtime = asyncio.run(run())
    held = set(runtime.requests.bodies) | runtime.requests.uncached
    assert held == {
        ("certificaterequests", "flood", "listed"),
        ("certificaterequests", "elsewhere", "other-namespace"),
        ("certificatesigningrequests", "", "a-csr"),
    }
