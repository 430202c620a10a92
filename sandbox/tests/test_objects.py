"""Create, read, replace, delete: the server-owned fields, 404/409 Status objects, scoping, selectors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi
from trusted_issuer_sandbox import Sandbox

pytestmark = pytest.mark.asyncio

CRS = CR_PATH.format(namespace="default")


async def test_create_answers_201_with_the_server_owned_fields(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    body = certificate_request()
    body["metadata"].update(uid="client-made", creationTimestamp="1999-01-01T00:00:00Z", generation=7)
    reply = await api.post(CRS, body)
    meta = reply.body["metadata"]
    assert reply.status == 201
    assert (reply.body["apiVersion"], reply.body["kind"]) == ("cert-manager.io/v1", "CertificateRequest")
    assert meta["uid"] != "client-made" and re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert meta["creationTimestamp"] != "1999-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert meta["resourceVersion"].isdigit()
    assert (await api.get(f"{CRS}/demo")).body == reply.body


async def test_resource_versions_grow_across_all_resources(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    first = await api.post(CRS, certificate_request("a"))
    second = await api.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    third = await api.post(CRS, certificate_request("b"))
    versions = [int(r.body["metadata"]["resourceVersion"]) for r in (first, second, third)]
    listed = await api.get("/apis/cert-manager.io/v1/certificaterequests")
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert int(listed.body["metadata"]["resourceVersion"]) >= versions[-1]
    assert listed.body["kind"] == "CertificateRequestList"


async def test_generate_name(api: HttpApi, certificate_request: CertificateRequestFactory) -> None:
    body = certificate_request()
    body["metadata"] = {"generateName": "req-"}
    names = {(await api.post(CRS, body)).body["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(re.fullmatch(r"req-[a-z0-9]{5}", n) for n in names)


async def test_conflicts_and_absences_are_status_objects(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request())
    exists = await api.post(CRS, certificate_request())
    assert exists.status == 409
    assert exists.body["kind"] == "Status" and exists.body["reason"] == "AlreadyExists"
    assert exists.body["details"] == {
        "name": "demo",
        "group": "cert-manager.io",
        "kind": "certificaterequests",
    }
    for reply in (
        await api.get(f"{CRS}/missing"),
        await api.put(f"{CRS}/missing", certificate_request("missing")),
        await api.patch(f"{CRS}/missing", {"metadata": {"labels": {"a": "b"}}}),
        await api.delete(f"{CRS}/missing"),
    ):
        assert (reply.status, reply.body["reason"]) == (404, "NotFound")
        assert reply.body["message"] == 'certificaterequests.cert-manager.io "missing" not found'


async def test_objects_need_an_existing_namespace_and_a_valid_name(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    missing_ns = await api.post(CR_PATH.format(namespace="nowhere"), certificate_request(namespace="nowhere"))
    bad_name = await api.post(CRS, certificate_request("Not_A_Name"))
    assert (missing_ns.status, missing_ns.body["message"]) == (404, 'namespaces "nowhere" not found')
    assert bad_name.status == 422 and "metadata.name" in bad_name.body["message"]


async def test_replace_with_a_stale_resource_version_is_409(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    created = (await api.post(CRS, certificate_request())).body
    created["metadata"]["labels"] = {"edit": "one"}
    first = await api.put(f"{CRS}/demo", created)
    created["metadata"]["labels"] = {"edit": "two"}
    stale = await api.put(f"{CRS}/demo", created)
    unconditional = await api.put(
        f"{CRS}/demo", {**created, "metadata": {"name": "demo", "labels": {"x": "y"}}}
    )
    assert first.status == 200
    assert int(first.body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert (stale.status, stale.body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in stale.body["message"]
    assert unconditional.status == 200 and unconditional.body["metadata"]["labels"] == {"x": "y"}


async def test_generation_moves_only_with_the_spec(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request())
    labelled = await api.patch(f"{CRS}/demo", {"metadata": {"labels": {"a": "b"}}})
    status = await api.patch(f"{CRS}/demo/status", {"status": {"failureTime": "2024-01-01T00:00:00Z"}})
    spec = await api.patch(f"{CRS}/demo", {"spec": {"isCA": True}})
    versions = [int(r.body["metadata"]["resourceVersion"]) for r in (labelled, status, spec)]
    assert [r.body["metadata"]["generation"] for r in (labelled, status, spec)] == [1, 1, 2]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_a_no_op_write_changes_nothing(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    created = (await api.post(CRS, certificate_request())).body
    same = await api.patch(f"{CRS}/demo", {"spec": {"usages": ["digital signature", "server auth"]}})
    assert same.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_the_status_subresource_owns_status(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    body: dict[str, Any] = {**certificate_request(), "status": {"certificate": "Zm9v"}}
    created = await api.post(CRS, body)
    main_path = await api.patch(f"{CRS}/demo", {"status": {"certificate": "YmFy"}})
    status_path = await api.patch(f"{CRS}/demo/status", {"spec": {"isCA": True}, "status": {"ca": "YmF6"}})
    assert "status" not in created.body  # dropped on create, as kube-apiserver does
    assert "status" not in main_path.body
    assert main_path.body["metadata"]["resourceVersion"] == created.body["metadata"]["resourceVersion"]
    assert status_path.body["status"] == {"ca": "YmF6"}
    assert "isCA" not in status_path.body["spec"]
    no_status = await api.get("/api/v1/namespaces/default/configmaps/none/status")
    assert no_status.status == 404


async def test_lists_span_namespaces_unless_scoped(
    api: HttpApi, sandbox: Sandbox, certificate_request: CertificateRequestFactory
) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "team-a"}})
    await api.post(CRS, certificate_request("one"))
    await api.post(CR_PATH.format(namespace="team-a"), certificate_request("two", namespace="team-a"))
    everywhere = await api.get("/apis/cert-manager.io/v1/certificaterequests")
    scoped = await api.get(CR_PATH.format(namespace="team-a"))
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere.body["items"]] == [
        ("default", "one"),
        ("team-a", "two"),
    ]
    assert [i["metadata"]["name"] for i in scoped.body["items"]] == ["two"]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        pytest.param({"labelSelector": "tier=web"}, ["a", "b"], id="label-equals"),
        pytest.param({"labelSelector": "tier!=web"}, ["c"], id="label-not-equals"),
        pytest.param({"labelSelector": "tier in (db),env"}, [], id="label-set-and-exists"),
        pytest.param({"labelSelector": "!tier"}, ["c"], id="label-absent"),
        pytest.param({"fieldSelector": "metadata.name=b"}, ["b"], id="field-name"),
        pytest.param({"fieldSelector": "metadata.namespace!=default"}, [], id="field-namespace"),
        pytest.param({"fieldSelector": "spec.issuerRef.name=other"}, ["c"], id="crd-selectable-field"),
    ],
)
async def test_selectors(
    api: HttpApi, certificate_request: CertificateRequestFactory, query: dict[str, str], names: list[str]
) -> None:
    for name, labels in (("a", {"tier": "web"}), ("b", {"tier": "web"}), ("c", {})):
        body = certificate_request(name)
        body["metadata"]["labels"] = labels
        if name == "c":
            body["spec"]["issuerRef"] = {"name": "other"}
        await api.post(CRS, body)
    reply = await api.call("GET", CRS + "?" + "&".join(f"{k}={v}" for k, v in query.items()))
    assert [i["metadata"]["name"] for i in reply.body["items"]] == names


async def test_unsupported_field_selector_is_400(api: HttpApi) -> None:
    reply = await api.get(CRS + "?fieldSelector=spec.request=x")
    assert (reply.status, reply.body["message"]) == (400, "field label not supported: spec.request")


async def test_deleting_a_namespace_deletes_its_objects(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post("/api/v1/namespaces", {"metadata": {"name": "gone"}})
    held = certificate_request("held", namespace="gone")
    held["metadata"]["finalizers"] = ["example.dev/hold"]
    await api.post(CR_PATH.format(namespace="gone"), held)
    await api.post("/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "c"}})
    terminating = await api.delete("/api/v1/namespaces/gone")
    refused = await api.post("/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "d"}})
    assert terminating.body["status"]["phase"] == "Terminating"
    assert (await api.get("/api/v1/namespaces/gone/configmaps/c")).status == 404
    assert (refused.status, refused.body["reason"]) == (403, "Forbidden")
    await api.patch(f"{CR_PATH.format(namespace='gone')}/held", {"metadata": {"finalizers": None}})
    assert (await api.get("/api/v1/namespaces/gone")).status == 404
