"""Fault injection, the call log, and kmock's scripted answers layered over the sandbox."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import kmock
import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi
from trusted_issuer_sandbox import ApiCall, ApiError, Sandbox

pytestmark = pytest.mark.asyncio

CMS = "/api/v1/namespaces/default/configmaps"


async def test_every_call_is_logged_as_rbac_would_name_it(
    api: HttpApi, sandbox: Sandbox, certificate_request: CertificateRequestFactory
) -> None:
    sandbox.clear_calls()
    crs = CR_PATH.format(namespace="default")
    await api.post(crs, certificate_request())
    await api.patch(f"{crs}/demo/status", {"status": {}})
    await api.get("/apis/cert-manager.io/v1/certificaterequests")
    await api.get("/version")
    assert sandbox.calls == [
        ApiCall("POST", crs, "create", "cert-manager.io", "v1", "certificaterequests", None, "default", None),
        ApiCall(
            "PATCH",
            f"{crs}/demo/status",
            "patch",
            "cert-manager.io",
            "v1",
            "certificaterequests",
            "status",
            "default",
            "demo",
        ),
        ApiCall(
            "GET",
            "/apis/cert-manager.io/v1/certificaterequests",
            "list",
            "cert-manager.io",
            "v1",
            "certificaterequests",
        ),
        ApiCall("GET", "/version", "get"),
    ]
    assert {call.rule for call in sandbox.calls if call.resource} == {
        ("cert-manager.io", "certificaterequests", "create"),
        ("cert-manager.io", "certificaterequests/status", "patch"),
        ("cert-manager.io", "certificaterequests", "list"),
    }


async def test_errors_for_a_limited_number_of_calls(api: HttpApi, sandbox: Sandbox) -> None:
    rule = sandbox.faults.add(status=500, verbs={"create"}, resources={"configmaps"}, times=2)
    replies = [await api.post(CMS, {"metadata": {"name": f"c{i}"}}) for i in range(3)]
    assert [r.status for r in replies] == [500, 500, 201]
    assert replies[0].body["reason"] == "InternalError" and replies[0].body["kind"] == "Status"
    assert rule.hits == 2
    assert (await api.get("/api/v1")).status == 200  # discovery is never faulted


async def test_a_share_of_calls_fails_reproducibly(api: HttpApi, sandbox: Sandbox) -> None:
    sandbox.faults.add(status=409, share=0.5, verbs={"get"})
    statuses = [(await api.get("/api/v1/namespaces/default")).status for _ in range(40)]
    assert 10 <= statuses.count(409) <= 30 and statuses.count(200) == 40 - statuses.count(409)
    async with Sandbox() as again, HttpApi(again) as api_again:
        again.faults.add(status=409, share=0.5, verbs={"get"})
        replay = [(await api_again.get("/api/v1/namespaces/default")).status for _ in range(40)]
    assert replay == statuses  # same seed, same faults


async def test_slow_answers(api: HttpApi, sandbox: Sandbox) -> None:
    sandbox.faults.add(delay=0.3, resources={"namespaces"})
    started = time.monotonic()
    reply = await api.get("/api/v1/namespaces/default")
    assert reply.status == 200 and time.monotonic() - started >= 0.3
    sandbox.faults.clear()
    started = time.monotonic()
    await api.get("/api/v1/namespaces/default")
    assert time.monotonic() - started < 0.3


async def test_dropped_watch_streams(sandbox: Sandbox) -> None:
    sandbox.faults.add(drop_watch_after=0.3, resources={"configmaps"}, times=1)
    started = time.monotonic()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with sandbox.get(f"{CMS}?watch=true&timeoutSeconds=5") as response:
            assert response.status == 200
            await response.read()
    assert time.monotonic() - started < 2
    async with sandbox.get(f"{CMS}?watch=true&timeoutSeconds=1") as response:
        assert await response.read() == b""  # the next watch is whole again


async def test_scripted_kmock_answers_take_precedence(api: HttpApi, sandbox: Sandbox) -> None:
    sandbox["post", kmock.resource("", "v1", "configmaps")][:1] << ApiError(
        409, "scripted by the test", reason="Conflict"
    )
    first = await api.post(CMS, {"metadata": {"name": "c"}})
    second = await api.post(CMS, {"metadata": {"name": "c"}})
    assert (first.status, first.body["message"]) == (409, "scripted by the test")
    assert second.status == 201
    assert len(sandbox["post"]) == 2  # kmock's request views see every request


async def test_faults_can_be_set_from_another_thread() -> None:
    async with Sandbox() as sandbox, HttpApi(sandbox) as api:
        await asyncio.to_thread(sandbox.faults.add, status=503, verbs={"list"})
        assert (await api.get(CMS)).status == 503
