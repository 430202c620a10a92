"""trust-manager (v0.25.0, its own ``cmd/trust-manager`` built by ``scripts/trust-manager-bins.sh`` from
the Go module proxy, with its CRDs kept beside the binary) as a process beside the control plane.

It runs as an administrator (its chart's RBAC is not ours to reproduce), without leader election, with
its webhook serving a throwaway certificate on 127.0.0.1 that no API server calls (no webhook
configuration is installed: only its Bundle controller is under test).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cluster.controlplane import ROOT

BINS_SCRIPT = ROOT / "scripts" / "trust-manager-bins.sh"
BINARY = "trust-manager"


class TrustManagerMissing(Exception):
    """trust-manager is not built and cannot be (no Go toolchain)."""


def trust_manager_dir() -> Path:
    """The directory holding ``trust-manager`` and ``crds/``, built there first if Go is present."""
    printed = subprocess.run([str(BINS_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True)
    found = Path(printed.stdout.strip())
    if (found / BINARY).is_file() and (found / "crds").is_dir():
        return found
    if shutil.which("go") is None:
        raise TrustManagerMissing(
            f"trust-manager is not built ({found}) and Go is not installed to build it "
            "(install Go >= 1.26, then `scripts/trust-manager-bins.sh`)"
        )
    built = subprocess.run([str(BINS_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(built.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _webhook_certificate(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trust-manager-webhook.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@dataclass
class TrustManager:
    bins: Path
    kubeconfig: Path
    trust_namespace: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    readiness_port: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / "trust-manager.log"

    def start(self) -> None:
        _webhook_certificate(self.workdir / "webhook")
        self.readiness_port = _free_port()
        command = [
            str(self.bins / BINARY),
            f"--trust-namespace={self.trust_namespace}",
            "--leader-elect=false",
            f"--readiness-probe-port={self.readiness_port}",
            f"--metrics-port={_free_port()}",
            "--webhook-host=127.0.0.1",
            f"--webhook-port={_free_port()}",
            f"--webhook-certificate-dir={self.workdir / 'webhook'}",
            "--log-level=2",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"trust-manager exited:\n{self.tail()}")
            try:
                if (
                    requests.get(f"http://127.0.0.1:{self.readiness_port}/readyz", timeout=2).status_code
                    == 200
                ):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"trust-manager not ready in 60 s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
