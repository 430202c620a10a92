"""What the request hot path leaves out: the decoding of a status write's answer nobody reads. The API
is a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json

import aiohttp.web
import pytest

from issuer.controller.kubeapi import Conflict, Credentials, KubeClient


def test_a_status_write_without_answer_is_sent_whole_and_its_errors_still_count() -> None:
    seen: list[dict[str, object]] = []

    async def patch(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json()
        seen.append(body)
        if body["metadata"]["resourceVersion"] == "stale":
            return aiohttp.web.json_response({"message": "conflict"}, status=409)
        return aiohttp.web.json_response({"metadata": {"resourceVersion": "2"}, "status": body["status"]})

    async def run() -> tuple[dict[str, object], dict[str, object]]:
        app = aiohttp.web.Application()
        app.router.add_patch("/apis/x/v1/namespaces/n/things/a/status", patch)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with KubeClient(Credentials(server=f"http://127.0.0.1:{port}")) as client:
                path = "/apis/x/v1/namespaces/n/things/a"
                quiet = await client.patch_status(path, {"certificate": "Y2VydA=="}, "1", answer=False)
                full = await client.patch_status(path, {"certificate": "Y2VydA=="}, "1")
                with pytest.raises(Conflict):
                    await client.patch_status(path, {"certificate": "Y2VydA=="}, "stale", answer=False)
                return quiet, full
        finally:
            await runner.cleanup()

    quiet, full = asyncio.run(run())
    assert quiet == {}
    assert full == {"metadata": {"resourceVersion": "2"}, "status": {"certificate": "Y2VydA=="}}
    assert json.dumps(seen[0]) == json.dumps(
        {"metadata": {"resourceVersion": "1"}, "status": {"certificate": "Y2VydA=="}}
    )
