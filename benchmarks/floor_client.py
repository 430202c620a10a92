"""The floor of the end-to-end benchmark: an "issuer" that signs nothing.

    python -m benchmarks.floor_client --kubeconfig PATH [--concurrency 64]

It does what the operator does on the Kubernetes side and nothing else, with the same HTTP stack
(aiohttp, one connection pool of ``--concurrency`` connections) and the same number of concurrent
workers: one cluster-wide watch on CertificateRequests (list, then stream, resumed from the last
resourceVersion), the latest body of each approved, unfinished request naming a ``trusted-issuer.dev``
issuer kept in memory, a de-duplicating queue, and for each request one merge patch of ``/status``
carrying the resourceVersion it read (after a 409 it reads the object again and tries once more if it
is still unfinished). The status written is the operator's shape (certificate, ca, Ready=True Issued,
other conditions kept) with a fixed certificate made at start-up. No issuer can beat this on the same
API server, so the operator's throughput is reported as a share of it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from issuer.controller.kubeapi import Credentials

GROUP = "trusted-issuer.dev"
LIST_PATH = "apis/cert-manager.io/v1/certificaterequests"
Key = tuple[str, str]


def fixed_certificate() -> tuple[str, str]:
    """A P-256 CA and a leaf it signed, as the base64 of their PEM (cert-manager's status fields)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floor CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.bench.example")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(hours=24))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("app.bench.example")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def b64(cert: x509.Certificate) -> str:
        return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()

    return b64(leaf), b64(ca)


def issued_status(conditions: Sequence[dict[str, Any]] | None, certificate: str, ca: str) -> dict[str, Any]:
    """The status the operator writes for an issued request (``status.request_issued``'s shape)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kept = [c for c in conditions or () if c.get("type") != "Ready"]
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Issued",
        "message": "Certificate fetched from issuer successfully",
        "lastTransitionTime": stamp,
    }
    return {"certificate": certificate, "ca": ca, "conditions": [*kept, ready]}


def _condition_true(status: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or ())


def _finished(status: dict[str, Any]) -> bool:
    if status.get("certificate") or status.get("failureTime"):
        return True
    return _condition_true(status, "Ready")


async def json_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Lines of a watch stream, split by hand as kopf does (aiohttp's readline caps a line's length)."""
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


class Floor:
    def __init__(self, server: str, concurrency: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = server.rstrip("/") + "/"
        self.ssl_context = ssl_context
        self.concurrency = concurrency
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.queued: set[Key] = set()
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self.certificate, self.ca = fixed_certificate()
        self.published = 0

    def observe(self, event: dict[str, Any]) -> None:
        body = event.get("object") or {}
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        status = body.get("status") or {}
        ref = (body.get("spec") or {}).get("issuerRef") or {}
        if event.get("type") == "DELETED" or ref.get("group") != GROUP or _finished(status):
            self.bodies.pop(key, None)
            return
        if not _condition_true(status, "Approved"):
            return
        self.bodies[key] = body
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    async def watch(self, session: aiohttp.ClientSession) -> None:
        version = ""
        while True:
            params = {"watch": "true", "timeoutSeconds": "300"}
            if version:
                params["resourceVersion"] = version
            async with session.get(LIST_PATH, params=params) as response:
                async for line in json_lines(response.content):
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        version = ""
                        break
                    version = (event.get("object") or {}).get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") != "BOOKMARK":
                        self.observe(event)

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            body = self.bodies.pop(key, None)
            if body is not None:
                await self.publish(session, key, body)

    async def publish(self, session: aiohttp.ClientSession, key: Key, body: dict[str, Any]) -> None:
        path = f"apis/cert-manager.io/v1/namespaces/{key[0]}/certificaterequests/{key[1]}"
        for _ in range(2):
            status = body.get("status") or {}
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": issued_status(status.get("conditions"), self.certificate, self.ca),
            }
            async with session.patch(
                path + "/status",
                data=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as response:
                text = await response.text()
                if response.status < 300:
                    json.loads(text)  # the operator's client decodes the answer too
                    self.published += 1
                    return
                if response.status != 409:
                    print(f"floor: PATCH {path} answered {response.status}", file=sys.stderr)
                    return
            async with session.get(path) as response:
                if response.status >= 300:
                    return
                body = json.loads(await response.text())
            if _finished(body.get("status") or {}):
                return

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ssl=self.ssl_context or False)
        async with aiohttp.ClientSession(
            base_url=self.server, connector=connector, headers={"Accept": "application/json"}
        ) as session:
            tasks = [asyncio.create_task(self.watch(session))]
            tasks += [asyncio.create_task(self.worker(session)) for _ in range(self.concurrency)]
            await stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def server_of(kubeconfig: str) -> tuple[str, ssl.SSLContext | None]:
    """The server, and for https the TLS context with the kubeconfig's CA and client certificate (loaded
    as the operator loads them)."""
    credentials = Credentials.load(kubeconfig)
    if not credentials.server.startswith("https"):
        return credentials.server, None
    context = ssl.create_default_context(cafile=credentials.ca_file)
    if credentials.cert_file and credentials.key_file:
        context.load_cert_chain(credentials.cert_file, credentials.key_file)
    return credentials.server, context


async def main_async(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server, context = server_of(args.kubeconfig)
    floor = Floor(server, args.concurrency, context)
    print("floor: started", flush=True)
    await floor.run(stop)
    print(f"floor: published {floor.published}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_client", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
