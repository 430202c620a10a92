"""The request kinds' own list+watch (``reflector.Reflector``) against the sandbox API server: a paginated
first listing, live changes, a relisting after 410 Gone that loses nothing (and drops what was deleted
meanwhile), and a dropped stream resumed from its last version without a relisting."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, Sandbox

from issuer.clock import utcnow
from issuer.controller.kubeapi import Credentials, KubeClient
from issuer.controller.requests.events import EventPoster, event_body
from issuer.controller.requests.reflector import ObjectName, Reflector, WatchEvent
from issuer.controller.requests.request_kinds import CERTIFICATE_REQUESTS

pytestmark = pytest.mark.asyncio

NAMESPACE = "default"
CSR = base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")


def request(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "CertificateRequest",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"request": CSR.decode(), "issuerRef": {"name": "ca", "group": "trusted-issuer.dev"}},
    }


class Mirror:
    """What a reflector's observer holds: the latest body of each object, as the request store keeps
    them (a relisting drops the names it no longer holds)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []

    def observe(self, event: WatchEvent) -> None:
        name = event["object"]["metadata"]["name"]
        self.events.append((event["type"], name))
        if event["type"] == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = event["object"]

    def listed(self, names: set[ObjectName]) -> None:
        for name in [n for n in self.objects if (NAMESPACE, n) not in names]:
            del self.objects[name]


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(crds=[CERTIFICATE_REQUEST_CRD], bookmark_interval=0.2) as sb:
        yield sb


@pytest_asyncio.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[KubeClient]:
    async with KubeClient(Credentials(server=str(sandbox.url))) as kube:
        yield kube


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def reflecting(
    client: KubeClient, mirror: Mirror, **options: Any
) -> tuple[Reflector, asyncio.Task[None]]:
    reflector = Reflector(
        client,
        CERTIFICATE_REQUESTS.collection(NAMESPACE),
        mirror.observe,
        listed=mirror.listed,
        **options,
    )
    task = asyncio.create_task(reflector.run())
    await asyncio.wait_for(reflector.synced.wait(), 10)
    return reflector, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def delete(sandbox: Sandbox, name: str) -> None:
    rtype = sandbox.find_type("cert-manager.io/v1", "CertificateRequest")
    sandbox.store.delete(rtype, NAMESPACE, name)


async def test_the_first_listing_takes_every_page_then_live_changes_arrive(
    sandbox: Sandbox, client: KubeClient
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        sandbox.put_object(request(name))
    mirror = Mirror()
    reflector, task = await reflecting(client, mirror, page_size=2)
    try:
        assert sorted(mirror.objects) == ["a", "b", "c", "d", "e"]
        assert mirror.events == [("ADDED", n) for n in "abcde"]
        sandbox.put_object(request("f"))
        sandbox.put_object(request("a", changed="yes"))
        delete(sandbox, "b")
        await until(lambda: ("DELETED", "b") in mirror.events)
        assert mirror.events[5:] == [("ADDED", "f"), ("MODIFIED", "a"), ("DELETED", "b")]
        assert sorted(mirror.objects) == ["a", "c", "d", "e", "f"]
        assert mirror.objects["a"]["metadata"]["labels"] == {"changed": "yes"}
        assert (reflector.listings, reflector.watches) == (1, 1)
    finally:
        await stop(task)


async def test_a_watch_from_a_version_gone_lists_again_and_loses_nothing(
    sandbox: Sandbox, client: KubeClient
) -> None:
    sandbox.put_object(request("kept"))
    sandbox.put_object(request("deleted-meanwhile"))
    mirror = Mirror()
    # Streams of 1 s: the next watch starts from the version last seen, while the API refuses watches.
    reflector, task = await reflecting(client, mirror, timeout_seconds=1)
    try:
        refused = sandbox.faults.add(status=500, verbs={"watch"}, resources={"certificaterequests"})
        await until(lambda: refused.hits >= 1)
        sandbox.put_object(request("created-meanwhile"))
        sandbox.put_object(request("kept", changed="meanwhile"))
        delete(sandbox, "deleted-meanwhile")
        sandbox.store.compact()  # the versions the reflector saw are gone: its next watch gets 410
        sandbox.faults.remove(refused)
        await until(lambda: reflector.listings == 2)
        assert sorted(mirror.objects) == ["created-meanwhile", "kept"]
        assert mirror.objects["kept"]["metadata"]["labels"] == {"changed": "meanwhile"}
        # and it watches on after the relisting
        sandbox.put_object(request("after"))
        await until(lambda: "after" in mirror.objects)
    finally:
        await stop(task)


async def test_a_dropped_stream_resumes_from_its_last_version_without_listing(
    sandbox: Sandbox, client: KubeClient
) -> None:
    sandbox.put_object(request("a"))
    dropped = sandbox.faults.add(drop_watch_after=0.3, times=1)
    mirror = Mirror()
    reflector, task = await reflecting(client, mirror)
    try:
        await until(lambda: dropped.hits == 1)
        # Refuse the watch that follows the cut once, so the changes below happen while none is open.
        refused = sandbox.faults.add(status=500, verbs={"watch"}, times=1)
        await until(lambda: refused.hits == 1)
        sandbox.put_object(request("b"))
        sandbox.put_object(request("a", changed="while-cut"))
        delete(sandbox, "b")
        sandbox.put_object(request("c"))
        await until(lambda: "c" in mirror.objects)
        assert mirror.events == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
            ("ADDED", "c"),
        ]
        assert mirror.objects["a"]["metadata"]["labels"] == {"changed": "while-cut"}
        assert reflector.listings == 1
        assert reflector.watches == 3  # the cut one, the refused one, the one that resumed
    finally:
        await stop(task)


async def test_a_kind_not_served_yet_is_watched_once_its_crd_arrives() -> None:
    async with (
        Sandbox(bookmark_interval=0.2) as sandbox,
        KubeClient(Credentials(server=str(sandbox.url))) as client,
    ):
        mirror = Mirror()
        reflector = Reflector(client, CERTIFICATE_REQUESTS.collection(NAMESPACE), mirror.observe)
        task = asyncio.create_task(reflector.run())
        try:
            await until(lambda: any(c.resource == "certificaterequests" for c in sandbox.calls))
            await asyncio.sleep(0.3)
            assert not task.done() and not reflector.synced.is_set()
            sandbox.load_crds(CERTIFICATE_REQUEST_CRD)
            sandbox.put_object(request("first"))
            await until(lambda: "first" in mirror.objects)
        finally:
            await stop(task)


async def test_an_observer_that_raises_loses_that_event_only(sandbox: Sandbox, client: KubeClient) -> None:
    mirror = Mirror()

    def fragile(event: WatchEvent) -> None:
        if event["object"]["metadata"]["name"] == "poison":
            raise ValueError("cannot read this one")
        mirror.observe(event)

    reflector = Reflector(client, CERTIFICATE_REQUESTS.collection(NAMESPACE), fragile)
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 10)
        sandbox.put_object(request("poison"))
        sandbox.put_object(request("fine"))
        await until(lambda: "fine" in mirror.objects)
        assert "poison" not in mirror.objects
        assert reflector.watches == 1
    finally:
        await stop(task)


async def test_events_wait_in_a_bounded_queue_and_the_overflow_is_counted_not_blocked(
    sandbox: Sandbox, client: KubeClient
) -> None:
    poster = EventPoster(client, max_queued=2)
    body = sandbox.put_object(request("web"))
    assert poster.post(body, "Normal", "Issued", "first")
    assert poster.post(body, "Normal", "Issued", "second")
    assert not poster.post(body, "Normal", "Issued", "third")  # full: dropped at once
    assert poster.dropped == 1
    task = asyncio.create_task(poster.run())
    try:
        path = f"/api/v1/namespaces/{NAMESPACE}/events"
        async with asyncio.timeout(10):
            while len(events := (await client.get(path))["items"]) < 2:
                await asyncio.sleep(0.02)
        assert sorted(e["message"] for e in events) == ["first", "second"]
        assert {e["involvedObject"]["uid"] for e in events} == {body["metadata"]["uid"]}
        assert {e["involvedObject"]["kind"] for e in events} == {"CertificateRequest"}
    finally:
        await stop(task)


async def test_an_event_about_a_cluster_scoped_object_goes_to_default_and_long_messages_are_cut() -> None:
    csr = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "x"},
    }
    event = event_body(csr, "Warning", "Failed", "m" * 5000, utcnow(), "pod-1")
    assert event["metadata"]["namespace"] == "default"
    assert event["involvedObject"]["namespace"] == "default"
    assert len(event["message"]) <= 1024 and "..." in event["message"]


class _FailingStreams:
    """A stand-in for the API client (no API server can be told to fail a stream half-way with an
    ERROR event): one listing, then a stream that delivers two changes and fails, then a stream that
    records where it was asked to resume."""

    def __init__(self) -> None:
        self.watched_from: list[str] = []

    async def list_pages(self, path: str, limit: int, *, listing: Any) -> AsyncIterator[list[dict[str, Any]]]:
        listing.resource_version = "10"
        yield [{"metadata": {"namespace": NAMESPACE, "name": "a", "resourceVersion": "10"}}]

    async def watch(self, path: str, version: str, *, timeout_seconds: int) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(version)
        if len(self.watched_from) == 1:
            for rv, name in (("11", "b"), ("12", "c")):
                yield {
                    "type": "ADDED",
                    "object": {"metadata": {"namespace": NAMESPACE, "name": name, "resourceVersion": rv}},
                }
            raise RuntimeError("the API server sent an ERROR event")
        await asyncio.Event().wait()
        yield {}  # pragma: no cover - never reached, but makes this an async generator


async def test_a_stream_that_fails_half_way_resumes_after_its_last_event_without_replaying() -> None:
    client, mirror = _FailingStreams(), Mirror()
    reflector = Reflector(client, "/requests", mirror.observe)  # type: ignore[arg-type]
    task = asyncio.create_task(reflector.run())
    try:
        for _ in range(100):
            if len(client.watched_from) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert client.watched_from == ["10", "12"]  # from the listing, then after the last event seen
    assert mirror.events == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]  # nothing observed twice
    assert reflector.listings == 1
