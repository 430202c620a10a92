"""Watches: resume from a resourceVersion, expire with 410, bookmark, honour timeoutSeconds."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi
from trusted_issuer_sandbox import Sandbox
from trusted_issuer_sandbox.watch import INITIAL_EVENTS_END

pytestmark = pytest.mark.asyncio

CRS = CR_PATH.format(namespace="default")
ALL_CRS = "/apis/cert-manager.io/v1/certificaterequests"


def summary(events: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["type"], e["object"]["metadata"].get("name")) for e in events]  # type: ignore[index]


async def test_a_watch_from_a_version_sees_only_later_changes(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request("before"))
    version = (await api.get(CRS)).body["metadata"]["resourceVersion"]
    await api.post(CRS, certificate_request("after"))
    await api.patch(f"{CRS}/after", {"metadata": {"labels": {"a": "b"}}})
    await api.patch(f"{CRS}/after", {"metadata": {"labels": {"a": "b"}}})  # a no-op: no event
    await api.delete(f"{CRS}/after")
    events = await api.watch(CRS, resourceVersion=version, timeoutSeconds="1")
    assert summary(events) == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(version)


async def test_a_watch_without_a_version_starts_with_the_current_objects(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request("a"))
    await api.patch(f"{CRS}/a", {"metadata": {"labels": {"x": "1"}}})
    events = await api.watch(CRS, timeoutSeconds="1")
    assert summary(events) == [("ADDED", "a")]
    assert events[0]["object"]["metadata"]["labels"] == {"x": "1"}


async def test_live_events_arrive_while_watching(
    api: HttpApi, sandbox: Sandbox, certificate_request: CertificateRequestFactory
) -> None:
    watching = asyncio.create_task(api.watch(CRS, resourceVersion="1", timeoutSeconds="1"))
    await asyncio.sleep(0.2)
    sandbox.put_object(certificate_request("direct"))  # kmock's direct writes emitted nothing
    await api.post(CR_PATH.format(namespace="kube-system"), certificate_request("elsewhere", "kube-system"))
    events = await watching
    assert summary(events) == [("ADDED", "direct")]


async def test_too_old_versions_get_410_expired_in_the_stream(
    api: HttpApi, sandbox: Sandbox, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request("a"))
    sandbox.store.compact()
    events = await api.watch(CRS, resourceVersion="1", timeoutSeconds="1")
    assert [e["type"] for e in events] == ["ERROR"]
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert "too old resource version" in status["message"]


async def test_a_short_history_expires_by_itself(certificate_request: CertificateRequestFactory) -> None:
    async with Sandbox(history=2) as sandbox, HttpApi(sandbox) as api:
        for name in ("a", "b", "c", "d"):
            await api.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": name}})
        current = int(
            (await api.get("/api/v1/namespaces/default/configmaps")).body["metadata"]["resourceVersion"]
        )
        expired = await api.watch(
            "/api/v1/namespaces/default/configmaps", resourceVersion="1", timeoutSeconds="1"
        )
        recent = await api.watch(
            "/api/v1/namespaces/default/configmaps", resourceVersion=str(current - 1), timeoutSeconds="1"
        )
        assert expired[0]["object"]["code"] == 410
        assert summary(recent) == [("ADDED", "d")]


async def test_bookmarks_only_when_allowed(api: HttpApi) -> None:
    version = (await api.get(CRS)).body["metadata"]["resourceVersion"]
    with_bookmarks = await api.watch(
        CRS, resourceVersion=version, timeoutSeconds="1", allowWatchBookmarks="true"
    )
    without = await api.watch(CRS, resourceVersion=version, timeoutSeconds="1")
    assert len(with_bookmarks) >= 2 and {e["type"] for e in with_bookmarks} == {"BOOKMARK"}
    bookmark = with_bookmarks[0]["object"]
    assert (bookmark["kind"], bookmark["apiVersion"]) == ("CertificateRequest", "cert-manager.io/v1")
    assert bookmark["metadata"]["resourceVersion"] == version
    assert without == []


async def test_initial_events_end_with_an_annotated_bookmark(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await api.post(CRS, certificate_request("a"))
    events = await api.watch(
        CRS,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
        timeoutSeconds="1",
    )
    assert summary(events[:2]) == [("ADDED", "a"), ("BOOKMARK", None)]
    assert events[1]["object"]["metadata"]["annotations"] == {INITIAL_EVENTS_END: "true"}


async def test_timeout_seconds_ends_the_stream(api: HttpApi) -> None:
    started = time.monotonic()
    await api.watch(ALL_CRS, timeoutSeconds="1")
    assert 0.9 <= time.monotonic() - started < 3
    fractional = await api.call("GET", f"{ALL_CRS}?watch=true&timeoutSeconds=0.5")
    assert fractional.status == 400


async def test_named_and_field_selected_watches(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    for name in ("a", "b"):
        await api.post(CRS, certificate_request(name))
    named, selected = await asyncio.gather(
        api.watch(f"{CRS}/b", timeoutSeconds="1"),
        api.watch(ALL_CRS, fieldSelector="metadata.name=a", timeoutSeconds="1"),
    )
    assert summary(named) == [("ADDED", "b")]
    assert summary(selected) == [("ADDED", "a")]


async def test_a_client_hanging_up_ends_its_watch(api: HttpApi, sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{sandbox.url}{CRS}?watch=true") as response:
        assert response.status == 200
    await asyncio.sleep(0.2)
    assert not sandbox.store._listeners  # the stream's listener is gone with it
