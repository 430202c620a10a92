"""The four PATCH types: pure behaviour, then over HTTP with the status codes clients depend on."""

from __future__ import annotations

from typing import Any

import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi
from trusted_issuer_sandbox.patches import (
    PatchError,
    PatchTestFailed,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

CRS = CR_PATH.format(namespace="default")
DOC = {"metadata": {"resourceVersion": "5", "finalizers": ["a"]}, "spec": {"list": [1, 2]}}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param(
            [{"op": "add", "path": "/metadata/finalizers/-", "value": "b"}],
            {**DOC, "metadata": {"resourceVersion": "5", "finalizers": ["a", "b"]}},
            id="append",
        ),
        pytest.param(
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
                {"op": "remove", "path": "/spec"},
            ],
            {"metadata": DOC["metadata"]},
            id="test-then-remove",
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/list/0", "value": 9}],
            {**DOC, "spec": {"list": [9, 2]}},
            id="replace-index",
        ),
        pytest.param(
            [{"op": "move", "from": "/spec/list", "path": "/spec/moved"}],
            {**DOC, "spec": {"moved": [1, 2]}},
            id="move",
        ),
        pytest.param(
            [{"op": "copy", "from": "/spec/list/1", "path": "/spec/list/0"}],
            {**DOC, "spec": {"list": [2, 1, 2]}},
            id="copy-inserts",
        ),
        pytest.param(
            [{"op": "add", "path": "/a~1b", "value": 1}],
            {**DOC, "a/b": 1},
            id="escaped-pointer",
        ),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert apply_json_patch(DOC, ops) == expected


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        pytest.param(
            [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}], PatchTestFailed, id="test"
        ),
        pytest.param([{"op": "remove", "path": "/nope"}], PatchError, id="remove-missing"),
        pytest.param([{"op": "replace", "path": "/spec/nope", "value": 1}], PatchError, id="replace-missing"),
        pytest.param(
            [{"op": "add", "path": "/spec/list/7", "value": 1}], PatchError, id="index-out-of-range"
        ),
        pytest.param([{"op": "frobnicate", "path": "/"}], PatchError, id="unknown-op"),
        pytest.param({"op": "add"}, PatchError, id="not-a-list"),
    ],
)
def test_json_patch_failures(ops: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        apply_json_patch(DOC, ops)


def test_patches_never_mutate_their_arguments() -> None:
    before = repr(DOC)
    apply_json_patch(DOC, [{"op": "add", "path": "/metadata/finalizers/-", "value": "b"}])
    apply_merge_patch(DOC, {"spec": {"list": None}})
    apply_strategic_merge_patch(DOC, {"spec": {"$patch": "delete"}})
    assert repr(DOC) == before


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param({"spec": {"list": None}}, {"metadata": DOC["metadata"], "spec": {}}, id="null-deletes"),
        pytest.param({"spec": {"list": [3]}}, {**DOC, "spec": {"list": [3]}}, id="lists-replace"),
        pytest.param({"new": {"a": 1}}, {**DOC, "new": {"a": 1}}, id="adds"),
    ],
)
def test_merge_patch(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert apply_merge_patch(DOC, patch) == expected


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param({"spec": {"$patch": "delete"}}, {"metadata": DOC["metadata"]}, id="patch-delete"),
        pytest.param({"spec": {"$patch": "replace", "x": 1}}, {**DOC, "spec": {"x": 1}}, id="patch-replace"),
        pytest.param(
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
            {**DOC, "metadata": {"resourceVersion": "5", "finalizers": []}},
            id="delete-from-primitive-list",
        ),
        pytest.param(
            {"$setElementOrder/spec": [{"x": 1}], "spec": {"y": 2}},
            {**DOC, "spec": {"list": [1, 2], "y": 2}},
            id="order-directive-ignored",
        ),
    ],
)
def test_strategic_merge_patch(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert apply_strategic_merge_patch(DOC, patch) == expected


@pytest.mark.asyncio
async def test_kopf_style_guarded_json_patch(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    created = (await api.post(CRS, certificate_request())).body
    version = created["metadata"]["resourceVersion"]
    guarded = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.dev/f"]},
    ]
    applied = await api.patch(f"{CRS}/demo", guarded, content_type="application/json-patch+json")
    stale = await api.patch(f"{CRS}/demo", guarded, content_type="application/json-patch+json")
    assert applied.status == 200 and applied.body["metadata"]["finalizers"] == ["example.dev/f"]
    assert (stale.status, stale.body["reason"]) == (422, "Invalid")
    assert "testing value /metadata/resourceVersion failed" in stale.body["message"]


@pytest.mark.asyncio
async def test_merge_patch_with_a_stale_version_is_409(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    created = (await api.post(CRS, certificate_request())).body
    await api.patch(f"{CRS}/demo", {"metadata": {"labels": {"a": "1"}}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"a": "2"}}}
    reply = await api.patch(f"{CRS}/demo", stale)
    assert (reply.status, reply.body["reason"]) == (409, "Conflict")


@pytest.mark.asyncio
async def test_strategic_merge_is_for_builtins_only(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request())
    await api.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    smp = "application/strategic-merge-patch+json"
    on_cr = await api.patch(f"{CRS}/demo", {"metadata": {"labels": {"a": "b"}}}, content_type=smp)
    on_cm = await api.patch("/api/v1/namespaces/default/configmaps/c", {"data": {"b": "2"}}, content_type=smp)
    unknown = await api.patch(f"{CRS}/demo", {"x": 1}, content_type="text/plain")
    assert (on_cr.status, on_cr.body["reason"]) == (415, "UnsupportedMediaType")
    assert on_cm.status == 200 and on_cm.body["data"] == {"a": "1", "b": "2"}
    assert unknown.status == 415


@pytest.mark.asyncio
async def test_server_side_apply_creates_then_merges(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    apply = "application/apply-patch+yaml"
    body = certificate_request()
    no_manager = await api.call("PATCH", f"{CRS}/demo", body, content_type=apply)
    created = await api.call("PATCH", f"{CRS}/demo?fieldManager=tests", body, content_type=apply)
    yaml_update = "metadata:\n  name: demo\n  labels: {applied: 'yes'}\n"
    updated = await api.call("PATCH", f"{CRS}/demo?fieldManager=tests", yaml_update, content_type=apply)
    assert no_manager.status == 400 and "fieldManager" in no_manager.body["message"]
    assert created.status == 201
    assert updated.status == 200 and updated.body["metadata"]["labels"] == {"applied": "yes"}
    assert updated.body["spec"] == created.body["spec"]
