"""Two workloads doing mTLS, fed the way a kubelet feeds pods: the test's stand-in for a mesh's data plane.

- ``ProjectedVolume`` is a kubelet's projected volume of a Secret (``tls.crt``, ``tls.key``) and the
  issuer's trust-bundle ConfigMap (``ca.crt``), written like the kubelet's AtomicWriter: each version in
  a fresh ``..<timestamp>`` directory, then the ``..data`` symlink swapped to it with one rename, and
  the visible files symlinks through ``..data``. It polls the API server (a kubelet syncs on its own
  period; here about every second).
- ``Workload`` reads one consistent version: it resolves ``..data`` once and reads every file from that
  directory, as a program that watches ``..data`` and reloads does.
- ``MTLSServer`` loads its certificate and trust afresh for each connection (a server that reloads on
  change) and requires a client certificate; ``MTLSClient`` handshakes several times a second, verifying
  the server's name, and counts successes and failures with their reasons.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.kube import ClusterKube


@dataclass
class ProjectedVolume:
    """A Secret's tls.crt/tls.key and a ConfigMap's ca.crt, projected into ``root`` atomically."""

    kube: ClusterKube
    namespace: str
    secret: str
    config_map: str
    root: Path
    period: float = 1.0
    versions: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last: dict[str, bytes] = field(default_factory=dict)

    def read(self) -> dict[str, bytes] | None:
        secret = self.kube.get(f"/api/v1/namespaces/{self.namespace}/secrets/{self.secret}").get("data") or {}
        bundle = self.kube.get(f"/api/v1/namespaces/{self.namespace}/configmaps/{self.config_map}")
        if "tls.crt" not in secret or "tls.key" not in secret:
            return None
        return {
            "tls.crt": base64.b64decode(secret["tls.crt"]),
            "tls.key": base64.b64decode(secret["tls.key"]),
            "ca.crt": str((bundle.get("data") or {}).get("ca.crt", "")).encode(),
        }

    def sync(self) -> bool:
        """One kubelet sync: write a new version if anything changed. True if it wrote one."""
        files = self.read()
        if files is None or files == self._last:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        version = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns()}"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content)
        staging = self.root / "..data_tmp"
        staging.unlink(missing_ok=True)
        os.symlink(version.name, staging)
        os.replace(staging, self.root / "..data")  # the atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        # Keep the previous version a while (a reader may hold it open), as the kubelet removes old ones.
        old = sorted(p for p in self.root.glob("..2*") if p != version)
        for stale in old[:-1]:
            shutil.rmtree(stale, ignore_errors=True)
        self._last = files
        self.versions += 1
        return True

    def start(self) -> None:
        self.sync()

        def loop() -> None:
            while not self._stop.wait(self.period):
                try:
                    self.sync()
                except Exception as err:  # a failed sync is retried, as a kubelet does
                    self.errors.append(f"{type(err).__name__}: {err}")

        self._thread = threading.Thread(target=loop, name=f"kubelet-{self.secret}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass(frozen=True)
class Workload:
    """A program's view of its projected volume: one version at a time."""

    root: Path

    def files(self) -> Path:
        """The version directory ``..data`` points at now (resolved once, so all files match)."""
        return self.root / os.readlink(self.root / "..data")

    def server_context(self) -> ssl.SSLContext:
        here = self.files()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(here / "tls.crt", here / "tls.key")
        context.load_verify_locations(cafile=str(here / "ca.crt"))
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        here = self.files()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(here / "tls.crt", here / "tls.key")
        context.load_verify_locations(cafile=str(here / "ca.crt"))
        return context


@dataclass
class Counts:
    handshakes: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    server_failures: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, Any]:
        return {
            "handshakes": self.handshakes,
            "client_failures": len(self.failures),
            "server_failures": len(self.server_failures),
        }


class MTLSServer:
    """Accepts connections on 127.0.0.1, handshakes with a context loaded for each one, answers ``pong``."""

    def __init__(self, workload: Workload, counts: Counts) -> None:
        self.workload = workload
        self.counts = counts
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="mtls-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.workload.server_context().wrap_socket(conn, server_side=True) as tls:
                    if tls.recv(4) == b"ping":
                        tls.sendall(b"pong")
            except (ssl.SSLError, OSError) as err:
                with self.counts.lock:
                    self.counts.server_failures.append((time.time(), f"{type(err).__name__}: {err}"))
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


class MTLSClient:
    """Handshakes with the server ``rate`` times a second, verifying ``server_name``."""

    def __init__(
        self, workload: Workload, port: int, server_name: str, counts: Counts, rate: float = 8
    ) -> None:
        self.workload = workload
        self.port = port
        self.server_name = server_name
        self.counts = counts
        self.interval = 1 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mtls-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def once(self) -> None:
        context = self.workload.client_context()
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=self.server_name) as tls,
        ):
            tls.sendall(b"ping")
            answer = tls.recv(4)
        if answer != b"pong":
            raise ConnectionError(f"answered {answer!r}")

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.once()
            except (ssl.SSLError, OSError) as err:
                with self.counts.lock:
                    self.counts.failures.append((time.time(), f"{type(err).__name__}: {err}"))
            else:
                with self.counts.lock:
                    self.counts.handshakes += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
