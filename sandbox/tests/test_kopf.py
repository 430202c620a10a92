"""A tiny kopf operator against the sandbox: what kmock 0.8 could not carry through.

The sandbox runs on its own thread: kopf, at exit, waits for and then cancels every task created
in its event loop after it started, which would include an in-process sandbox's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi
from trusted_issuer_sandbox import Sandbox

pytestmark = pytest.mark.asyncio

GVR = ("cert-manager.io", "v1", "certificaterequests")
FINALIZER = "sandbox.test/finalizer"


@contextlib.asynccontextmanager
async def operator(sandbox: Sandbox, registry: kopf.OperatorRegistry, **options: Any) -> AsyncIterator[None]:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(sandbox.url))

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="sandbox.test")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="sandbox.test")
        settings.networking.error_backoffs = [0.1, 0.2, 0.3]
        settings.watching.reconnect_backoff = 0.1

    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, standalone=True, stop_flag=stop, **options))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def eventually(check: Callable[[], Any], timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := await check() if asyncio.iscoroutinefunction(check) else check()):
            await asyncio.sleep(0.05)
    return result


async def test_create_with_a_finalizer_then_delete(
    threaded_sandbox: Sandbox, threaded_api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    sandbox, api = threaded_sandbox, threaded_api
    registry = kopf.OperatorRegistry()
    handled: list[tuple[str, str]] = []

    @kopf.on.create(*GVR, registry=registry)
    def created(name: str, **_: Any) -> None:
        handled.append(("create", name))

    @kopf.on.delete(*GVR, registry=registry)
    def deleted(name: str, **_: Any) -> None:
        handled.append(("delete", name))

    crs = CR_PATH.format(namespace="default")
    async with operator(sandbox, registry, clusterwide=True):
        await api.post(crs, certificate_request())
        await eventually(lambda: handled == [("create", "demo")])
        finalized = await eventually(
            lambda: sandbox.get_object("cert-manager.io/v1", "CertificateRequest", "demo", "default")[
                "metadata"
            ].get("finalizers")
        )
        assert finalized == [FINALIZER]
        await api.delete(f"{crs}/demo")
        await eventually(lambda: handled == [("create", "demo"), ("delete", "demo")])

        async def gone() -> bool:
            return (await api.get(f"{crs}/demo")).status == 404

        await eventually(gone)
    # kopf guards its finalizer edits with a JSON-patch test of the resourceVersion; kmock failed those.
    guarded = [r for r in sandbox["patch"] if r.headers.get("Content-Type") == "application/json-patch+json"]
    assert guarded and all(r.data[0]["path"] == "/metadata/resourceVersion" for r in guarded)


async def test_namespace_patterns_follow_namespaces_as_they_come(
    threaded_sandbox: Sandbox, threaded_api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    sandbox, api = threaded_sandbox, threaded_api
    registry = kopf.OperatorRegistry()
    seen: set[tuple[str, str]] = set()

    @kopf.on.event(*GVR, registry=registry)
    def observed(name: str, namespace: str, **_: Any) -> None:
        seen.add((namespace, name))

    await api.post("/api/v1/namespaces", {"metadata": {"name": "team-a"}})
    async with operator(sandbox, registry, namespaces=["team-*"]):
        await api.post(CR_PATH.format(namespace="team-a"), certificate_request("a", namespace="team-a"))
        await api.post(CR_PATH.format(namespace="default"), certificate_request("ignored"))
        await api.post("/api/v1/namespaces", {"metadata": {"name": "team-b"}})
        await asyncio.sleep(0.3)
        await api.post(CR_PATH.format(namespace="team-b"), certificate_request("b", namespace="team-b"))
        await eventually(lambda: seen >= {("team-a", "a"), ("team-b", "b")})
    assert ("default", "ignored") not in seen
    rules = {call.rule for call in sandbox.calls}
    assert {("", "namespaces", "list"), ("", "namespaces", "watch")} <= rules  # what kmock could not parse


async def test_kopf_rides_out_faults(
    threaded_sandbox: Sandbox, threaded_api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    sandbox, api = threaded_sandbox, threaded_api
    registry = kopf.OperatorRegistry()
    handled: list[str] = []

    @kopf.on.create(*GVR, registry=registry)
    def created(name: str, **_: Any) -> None:
        handled.append(name)

    patch_errors = sandbox.faults.add(status=500, verbs={"patch"}, times=2)
    dropped = sandbox.faults.add(drop_watch_after=0.5, resources={"certificaterequests"}, times=1)
    async with operator(sandbox, registry, clusterwide=True):
        await asyncio.sleep(0.8)  # past the dropped watch: kopf must have reconnected to see this
        await api.post(CR_PATH.format(namespace="default"), certificate_request("late"))
        await eventually(lambda: handled == ["late"])
        # kopf's record of the handled state lands despite the 500s, by kopf's own retries.
        annotations = await eventually(
            lambda: sandbox.get_object("cert-manager.io/v1", "CertificateRequest", "late", "default")[
                "metadata"
            ].get("annotations")
        )
    assert "sandbox.test/last-handled-configuration" in annotations
    assert patch_errors.hits == 2 and dropped.hits == 1
    watches = [c for c in sandbox.calls if (c.resource, c.verb) == ("certificaterequests", "watch")]
    assert len(watches) >= 2  # kopf came back after the cut
