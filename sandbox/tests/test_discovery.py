"""Discovery, /version and path parsing: what kopf and kubectl read before anything else."""

from __future__ import annotations

import pytest
from sandbox_clients import HttpApi
from trusted_issuer_sandbox.routing import ApiPath, describe_call, parse_api_path


@pytest.mark.asyncio
async def test_core_discovery_lists_namespaces_and_the_builtins(api: HttpApi) -> None:
    versions = await api.get("/api")
    core = await api.get("/api/v1")
    assert versions.body["versions"] == ["v1"]
    resources = {r["name"]: r for r in core.body["resources"]}
    # kopf waits forever at start-up unless v1/namespaces is discoverable.
    assert resources["namespaces"]["namespaced"] is False
    assert resources["namespaces/status"]["verbs"] == ["get", "patch", "update"]
    assert {"events", "configmaps", "secrets"} <= resources.keys()
    assert resources["events"]["namespaced"] is True


@pytest.mark.asyncio
async def test_group_discovery_lists_crds_builtins_and_subresources(api: HttpApi) -> None:
    groups = {g["name"]: g for g in (await api.get("/apis")).body["groups"]}
    assert groups["cert-manager.io"]["preferredVersion"]["version"] == "v1"
    assert {
        "certificates.k8s.io",
        "coordination.k8s.io",
        "authorization.k8s.io",
        "apiextensions.k8s.io",
    } <= groups.keys()
    crs = (await api.get("/apis/cert-manager.io/v1")).body
    by_name = {r["name"]: r for r in crs["resources"]}
    assert by_name["certificaterequests"]["kind"] == "CertificateRequest"
    assert by_name["certificaterequests"]["shortNames"] == ["cr", "crs"]
    assert by_name["certificaterequests/status"]["kind"] == "CertificateRequest"
    csrs = {r["name"] for r in (await api.get("/apis/certificates.k8s.io/v1")).body["resources"]}
    assert {"certificatesigningrequests/status", "certificatesigningrequests/approval"} <= csrs
    group = (await api.get("/apis/cert-manager.io")).body
    assert group["kind"] == "APIGroup"


@pytest.mark.asyncio
async def test_version_health_and_unknown_paths(api: HttpApi) -> None:
    assert (await api.get("/version")).body["major"] == "1"
    assert (await api.get("/healthz")).status == 200
    for path in ("/apis/nope.example.com/v1", "/apis/cert-manager.io/v1/nothings", "/metrics"):
        reply = await api.get(path)
        assert (reply.status, reply.body["kind"], reply.body["reason"]) == (404, "Status", "NotFound")


@pytest.mark.asyncio
async def test_namespace_paths_that_kmock_misparses(api: HttpApi) -> None:
    listed = await api.get("/api/v1/namespaces")
    fetched = await api.get("/api/v1/namespaces/default")
    status = await api.get("/api/v1/namespaces/default/status")
    assert listed.body["kind"] == "NamespaceList"
    assert "default" in {ns["metadata"]["name"] for ns in listed.body["items"]}
    assert fetched.body["metadata"]["name"] == status.body["metadata"]["name"] == "default"
    assert fetched.body["status"]["phase"] == "Active"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/api/v1/namespaces", ApiPath("", "v1", "namespaces"), id="namespace-list"),
        pytest.param("/api/v1/namespaces/a", ApiPath("", "v1", "namespaces", name="a"), id="namespace"),
        pytest.param(
            "/api/v1/namespaces/a/status",
            ApiPath("", "v1", "namespaces", name="a", subresource="status"),
            id="namespace-status",
        ),
        pytest.param("/api/v1/namespaces/a/events", ApiPath("", "v1", "events", "a"), id="namespaced-list"),
        pytest.param(
            "/apis/cert-manager.io/v1/namespaces/a/certificaterequests/x/status",
            ApiPath("cert-manager.io", "v1", "certificaterequests", "a", "x", "status"),
            id="cr-status",
        ),
        pytest.param(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
            ApiPath("certificates.k8s.io", "v1", "certificatesigningrequests", None, "c", "approval"),
            id="cluster-scoped-subresource",
        ),
        pytest.param("/apis/cert-manager.io/v1", ApiPath("cert-manager.io", "v1"), id="group-version"),
        pytest.param("/version", None, id="not-an-api-path"),
    ],
)
def test_parse_api_path(path: str, expected: ApiPath | None) -> None:
    assert parse_api_path(path) == expected


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        pytest.param("GET", "/api/v1/namespaces", {}, "list", id="list"),
        pytest.param("GET", "/api/v1/namespaces", {"watch": "true"}, "watch", id="watch"),
        pytest.param("GET", "/api/v1/namespaces/a", {}, "get", id="get"),
        pytest.param("POST", "/api/v1/namespaces/a/events", {}, "create", id="create"),
        pytest.param("PUT", "/api/v1/namespaces/a/events/e", {}, "update", id="update"),
        pytest.param("PATCH", "/api/v1/namespaces/a/events/e", {}, "patch", id="patch"),
        pytest.param("DELETE", "/api/v1/namespaces/a/events/e", {}, "delete", id="delete"),
        pytest.param("DELETE", "/api/v1/namespaces/a/events", {}, "deletecollection", id="deletecollection"),
        pytest.param("GET", "/version", {}, "get", id="non-resource"),
    ],
)
def test_calls_are_named_as_rbac_names_them(method: str, path: str, query: dict[str, str], verb: str) -> None:
    assert describe_call(method, path, query).verb == verb
