"""The in-memory request store is bounded: a flood of requests costs a key each beyond the limit, and
an oversized ``spec.request`` is never held. Pure: no API server, no token (the runtime's pool and
client are never reached by the code under test, so they are left out)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

from issuer.controller import requests
from issuer.controller.issuers import IssuerRegistry
from issuer.controller.kinds import CERTIFICATE_REQUESTS
from issuer.controller.runtime import Runtime
from issuer.settings import Settings
from issuer.signer.x509 import utcnow

CSR_TEXT = base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 1500).decode()


def _runtime(max_cached: int, max_bytes: int = 64 * 1024) -> Runtime:
    settings = Settings(max_cached_requests=max_cached, max_request_bytes=max_bytes)
    runtime = Runtime(
        settings=settings,
        profiles=cast(Any, None),
        pool=cast(Any, None),
        client=cast(Any, None),
        clock=utcnow,
        issuers=IssuerRegistry(),
    )
    runtime.tasks.append(cast(Any, "workers started"))  # _observe must not start real workers here
    return runtime


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
    assert len(runtime.requests) == 100
    assert len(runtime.uncached) == 9_900
    assert len(runtime.queue) == 10_000  # every request is still queued: none is lost
    assert not set(runtime.requests) & runtime.uncached


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
    assert runtime.requests[("certificaterequests", "flood", "first")]["metadata"]["resourceVersion"] == "8"
    assert runtime.uncached == {("certificaterequests", "flood", "second")}


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
    assert runtime.requests == {}
    assert runtime.uncached == set()


def test_an_oversized_request_is_not_held_and_its_size_is_reported() -> None:
    huge = "A" * (2 * 1024 * 1024)

    async def run() -> Runtime:
        runtime = _runtime(max_cached=10, max_bytes=64 * 1024)
        requests._observe(CERTIFICATE_REQUESTS, _event("huge", request=huge), runtime)
        return runtime

    runtime = asyncio.run(run())
    body = runtime.requests[("certificaterequests", "flood", "huge")]
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
    body = runtime.requests[("certificaterequests", "flood", "edge")]
    assert body["spec"]["request"] == CSR_TEXT
    assert requests._oversized_message(runtime, body) is None
