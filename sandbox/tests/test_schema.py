"""openAPIV3Schema: the real cert-manager CRD validates, prunes and defaults as kube-apiserver would."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi

pytestmark = pytest.mark.asyncio

CRS = CR_PATH.format(namespace="default")
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.sandbox.test"},
    "spec": {
        "group": "sandbox.test",
        "scope": "Cluster",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 3},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "note": {"type": "string", "nullable": True},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "tags": {"type": "array", "items": {"type": "string"}, "default": []},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        pytest.param({"request": None}, "spec.request", "Required value", id="required"),
        pytest.param({"usages": ["teleport"]}, "spec.usages[0]", 'Unsupported value: "teleport"', id="enum"),
        pytest.param({"request": "not base64!"}, "spec.request", "must be of type byte", id="format-byte"),
        pytest.param({"isCA": "yes"}, "spec.isCA", "must be of type boolean", id="type"),
    ],
)
async def test_invalid_objects_are_422_naming_the_field(
    api: HttpApi,
    certificate_request: CertificateRequestFactory,
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    body = certificate_request()
    body["spec"].update(spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    reply = await api.post(CRS, body)
    assert (reply.status, reply.body["reason"]) == (422, "Invalid")
    assert reply.body["message"].startswith('CertificateRequest.cert-manager.io "demo" is invalid: ')
    assert f"{field}: " in reply.body["message"] and message in reply.body["message"]
    assert any(cause["field"] == field for cause in reply.body["details"]["causes"])


async def test_status_writes_are_validated_too(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request())
    bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    reply = await api.patch(f"{CRS}/demo/status", bad)
    assert reply.status == 422 and "status.conditions[0].status" in reply.body["message"]


async def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    body = certificate_request()
    body["spec"]["colour"] = "blue"
    strict = await api.post(CRS + "?fieldValidation=Strict", body)
    lenient = await api.post(CRS, body)
    assert (
        strict.status == 400
        and 'strict decoding error: unknown field "spec.colour"' in strict.body["message"]
    )
    assert lenient.status == 201 and "colour" not in lenient.body["spec"]
    assert lenient.headers["Warning"] == '299 - "unknown field \\"spec.colour\\""'


async def test_a_crd_created_through_the_api_is_served_defaulted_and_removed(api: HttpApi) -> None:
    created = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    established = {c["type"]: c["status"] for c in created.body["status"]["conditions"]}
    assert established == {"NamesAccepted": "True", "Established": "True"}
    widgets = "/apis/sandbox.test/v1/widgets"
    body = {"apiVersion": "sandbox.test/v1", "kind": "Widget", "metadata": {"name": "w"}}
    body["spec"] = {"port": "http", "note": None, "free": {"any": {"thing": 1}}, "junk": 1}
    widget = await api.post(widgets, body)
    assert widget.status == 201
    assert widget.body["spec"] == {
        "port": "http",
        "note": None,
        "free": {"any": {"thing": 1}},
        "size": 3,
        "tags": [],
    }
    wrong = await api.post(widgets, {**body, "metadata": {"name": "x"}, "spec": {"port": 1.5}})
    assert wrong.status == 422
    await api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.sandbox.test")
    assert (await api.get(f"{widgets}/w")).status == 404
    assert (await api.get("/apis/sandbox.test/v1")).status == 404


async def test_the_bundled_crd_accepts_a_real_request(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    body = certificate_request(duration="24h", isCA=False, username="alice", groups=["devs"])
    body["spec"]["extra"] = {"k": ["v"]}
    body["spec"]["request"] = base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\n").decode()
    reply = await api.post(CRS, body)
    assert reply.status == 201 and reply.body["spec"]["extra"] == {"k": ["v"]}
