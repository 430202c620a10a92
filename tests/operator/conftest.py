"""A sandbox API server on a thread and the real operator as a separate process, on a real token.

The operator is started exactly as a person starts it (``python -m issuer run``), with a profiles file
naming the test token, so these tests cross the same process, HTTP and PKCS#11 boundaries as a
deployment does. Its log is kept so tests can scan it (no PIN may appear there). Several operators
can run at once (the high-availability tests): each has its own log, probe port and metrics port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, Sandbox, SandboxThread

from issuer.tokens import TokenConfig
from tests.conftest import TokenAbilities
from tests.operator.kube import Kube

ROOT = Path(__file__).resolve().parents[2]
OUR_CRDS = sorted((ROOT / "crds").glob("*.yaml"))
#: Lease timing of the high-availability tests' operators, each set on its own quiet sandbox: short, so a
#: failover is measured in seconds.
LEASE_TIMING = {
    "TRUSTED_ISSUER_LEASE_DURATION": "8s",
    "TRUSTED_ISSUER_LEASE_RENEW_DEADLINE": "6s",
    "TRUSTED_ISSUER_LEASE_RETRY_PERIOD": "1s",
}
#: The package operator's: client-go's defaults. Its sandbox also serves bursts of hundreds of requests
#: on a shared 2-core machine, and a leader starved past its renew deadline exits (as it must), which
#: would fail every later test; the price is a longer wait for the Lease after the SIGKILL test.
SHARED_LEASE_TIMING = {
    "TRUSTED_ISSUER_LEASE_DURATION": "15s",
    "TRUSTED_ISSUER_LEASE_RENEW_DEADLINE": "10s",
    "TRUSTED_ISSUER_LEASE_RETRY_PERIOD": "2s",
}


@dataclass
class Operator:
    """One operator process; ``stop()`` (SIGTERM) and ``kill()`` (SIGKILL) serve the crash tests.

    ``args`` are extra arguments of ``trusted-issuer run``; ``env`` must carry its own
    ``TRUSTED_ISSUER_HEALTH_PORT`` and ``TRUSTED_ISSUER_METRICS_PORT`` (``operator_env`` picks them)."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "issuer", "run", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        assert self.process is not None
        # The whole process group: the operator and its signing workers die together, as in a node loss.
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def probe(self, path: str) -> tuple[int, dict[str, object]]:
        """Ask the operator's own probe server (``/healthz`` or ``/readyz``): status and JSON body;
        (0, {}) while nothing answers."""
        url = f"http://127.0.0.1:{self.env['TRUSTED_ISSUER_HEALTH_PORT']}{path}"
        try:
            response = requests.get(url, timeout=10)
        except requests.RequestException:
            return 0, {}
        return response.status_code, response.json()


def operator_env(kubeconfig: Path, profiles_file: Path, **extra: str) -> dict[str, str]:
    """The environment of one operator process, with its own free probe and metrics ports."""
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "TRUSTED_ISSUER_PROFILES_FILE": str(profiles_file),
        "TRUSTED_ISSUER_WORKERS": "2",
        "TRUSTED_ISSUER_MAX_RETRY_DURATION": "60s",
        "TRUSTED_ISSUER_METRICS_PORT": str(_free_port()),
        "TRUSTED_ISSUER_HEALTH_PORT": str(_free_port()),
        # Where TrustedClusterIssuers' import and CA Secrets live (in a pod: its own namespace).
        "TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE": "trusted-issuer",
        "TRUSTED_ISSUER_PROVISIONING_RECHECK_INTERVAL": "1s",
        **LEASE_TIMING,
        **extra,
    }


def token_profile(token_config: TokenConfig) -> dict[str, str]:
    """A token profile for the test token (module, label and its PIN source)."""
    token = {"module": str(token_config.module), "tokenLabel": str(token_config.token_label)}
    if token_config.pin.file:
        return {**token, "pinFile": str(token_config.pin.file)}
    return {**token, "pinEnv": str(token_config.pin.env)}


@dataclass
class Cluster:
    sandbox: Sandbox
    kube: Kube
    operator: Operator
    token: TokenConfig
    workdir: Path


@pytest.fixture(scope="package")
def cluster(
    token_config: TokenConfig, token_can: TokenAbilities, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("operator")
    wrong_pin = workdir / "wrong.pin"
    wrong_pin.write_text("not-the-pin-4711\n")
    wrong_pin.chmod(0o600)
    dev = token_profile(token_config)
    token = {"module": dev["module"], "tokenLabel": dev["tokenLabel"]}
    profiles = {
        "profiles": {
            "dev": dev,
            "restricted": {**dev, "namespaces": ["team-a"], "clusterIssuers": False},
            "badpin": {**token, "pinFile": str(wrong_pin)},
        }
    }
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump(profiles))
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        kubeconfig = sandbox.write_kubeconfig(workdir / "kubeconfig")
        operator = Operator(
            operator_env(kubeconfig, profiles_file, **SHARED_LEASE_TIMING), workdir / "operator.log"
        )
        operator.start()
        try:
            yield Cluster(sandbox, Kube(str(sandbox.url)), operator, token_config, workdir)
        finally:
            operator.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")
