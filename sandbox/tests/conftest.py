"""Fixtures for the sandbox's conformance tests: the sandbox in-process and on a thread, clients."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import pytest_asyncio
from sandbox_clients import CertificateRequestFactory, HttpApi, Kubectl, kubectl_binary
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, Sandbox, SandboxThread

#: Short, so that the bookmark tests are quick.
BOOKMARK_INTERVAL = 0.3
PEM_CSR = b"-----BEGIN CERTIFICATE REQUEST-----\nMIIBsandbox\n-----END CERTIFICATE REQUEST-----\n"


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    # strict: a defect inside the sandbox (a 500 it did not mean) fails the test that provoked it.
    async with Sandbox(
        crds=[CERTIFICATE_REQUEST_CRD], bookmark_interval=BOOKMARK_INTERVAL, strict=True
    ) as sb:
        yield sb


@pytest_asyncio.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[HttpApi]:
    client = HttpApi(sandbox)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def threaded_api(threaded_sandbox: Sandbox) -> AsyncIterator[HttpApi]:
    """HTTP to the sandbox on its own thread, for tests whose event loop must not host the sandbox."""
    client = HttpApi(threaded_sandbox)
    yield client
    await client.close()


@pytest.fixture
def threaded_sandbox() -> Iterator[Sandbox]:
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD], bookmark_interval=BOOKMARK_INTERVAL) as sb:
        yield sb


@pytest.fixture
def kubeconfig(threaded_sandbox: Sandbox, tmp_path: Path) -> Path:
    return threaded_sandbox.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kubectl_command(kubeconfig: Path, tmp_path: Path) -> list[str]:
    """kubectl and the options that point it at the threaded sandbox (for Popen)."""
    return [kubectl_binary(), f"--kubeconfig={kubeconfig}", f"--cache-dir={tmp_path / 'kubectl-cache'}"]


@pytest.fixture
def kubectl(kubectl_command: list[str]) -> Kubectl:
    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*kubectl_command, *args], capture_output=True, text=True, input=stdin, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return run


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


@pytest.fixture
def certificate_request() -> CertificateRequestFactory:
    """A valid cert-manager CertificateRequest body; keyword arguments override spec fields."""

    def build(name: str = "demo", namespace: str = "default", **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "cert-manager.io/v1",
            "kind": "CertificateRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "request": base64.b64encode(PEM_CSR).decode(),
                "issuerRef": {"name": "ca", "kind": "TrustedIssuer", "group": "trusted-issuer.dev"},
                "usages": ["digital signature", "server auth"],
                **spec,
            },
        }

    return build
