"""Deletion: immediate without finalizers, deletionTimestamp and waiting with them."""

from __future__ import annotations

import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi

pytestmark = pytest.mark.asyncio

CRS = CR_PATH.format(namespace="default")


async def test_without_finalizers_the_object_goes_at_once(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request())
    deleted = await api.delete(f"{CRS}/demo")
    assert deleted.status == 200 and deleted.body["metadata"]["name"] == "demo"
    assert (await api.get(f"{CRS}/demo")).status == 404


async def test_finalizers_hold_the_object_until_removed(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    body = certificate_request()
    body["metadata"]["finalizers"] = ["example.dev/a", "example.dev/b"]
    await api.post(CRS, body)
    marked = await api.delete(f"{CRS}/demo")
    again = await api.delete(f"{CRS}/demo")
    meta = marked.body["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 0
    assert meta["generation"] == 2  # kube-apiserver bumps it when a graceful deletion starts
    assert again.body["metadata"]["resourceVersion"] == meta["resourceVersion"]
    added = await api.patch(f"{CRS}/demo", {"metadata": {"finalizers": ["example.dev/a", "example.dev/c"]}})
    assert added.status == 422 and "no new finalizers can be added" in added.body["message"]
    one_left = await api.patch(f"{CRS}/demo", {"metadata": {"finalizers": ["example.dev/b"]}})
    assert one_left.status == 200 and (await api.get(f"{CRS}/demo")).status == 200
    last = await api.patch(
        f"{CRS}/demo",
        [{"op": "remove", "path": "/metadata/finalizers/0"}],
        content_type="application/json-patch+json",
    )
    assert last.status == 200 and "finalizers" not in last.body["metadata"]
    assert (await api.get(f"{CRS}/demo")).status == 404


async def test_delete_preconditions(api: HttpApi, certificate_request: CertificateRequestFactory) -> None:
    created = (await api.post(CRS, certificate_request())).body
    wrong = await api.delete(f"{CRS}/demo", {"preconditions": {"uid": "not-it"}})
    right = await api.delete(f"{CRS}/demo", {"preconditions": {"uid": created["metadata"]["uid"]}})
    assert (wrong.status, right.status) == (409, 200)


async def test_delete_collection_by_label(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        body = certificate_request(name)
        body["metadata"]["labels"] = {"team": team}
        await api.post(CRS, body)
    reply = await api.call("DELETE", f"{CRS}?labelSelector=team=x")
    remaining = await api.get(CRS)
    assert sorted(i["metadata"]["name"] for i in reply.body["items"]) == ["a", "b"]
    assert [i["metadata"]["name"] for i in remaining.body["items"]] == ["c"]
