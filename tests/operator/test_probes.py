"""Probes that mean something: liveness never follows the token, readiness does, in every role.

Real operator processes against their own sandbox API server, on the test token, with a token
profile whose PIN file the test controls: a wrong PIN stands for a broken token (the token refuses
the login), and writing the right PIN into the file is the repair. The probes are asked over HTTP,
as the kubelet asks them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, SandboxThread

from issuer.tokens import TokenConfig
from tests.operator.conftest import OUR_CRDS, Operator, _free_port, operator_env, token_profile, wait_until
from tests.operator.kube import Kube

LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/trusted-issuer"
WRONG_PIN = "not-the-pin-0815"


@dataclass
class ProbeSetup:
    kube: Kube
    kubeconfig: Path
    workdir: Path
    pin_file: Path
    right_pin: str

    def operator(self, name: str, profile: dict[str, str], *args: str) -> Operator:
        profiles = self.workdir / f"{name}-profiles.yaml"
        profiles.write_text(yaml.safe_dump({"profiles": {"probe": profile}}))
        env = operator_env(self.kubeconfig, profiles, POD_NAME=name, TRUSTED_ISSUER_READINESS_INTERVAL="1s")
        return Operator(env, self.workdir / f"{name}.log", args=args)


@pytest.fixture(scope="module")
def setup(token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeSetup]:
    if token_config.pin.file is None:
        pytest.skip("the probe tests rewrite a PIN file; this token's PIN comes from the environment")
    workdir = tmp_path_factory.mktemp("probes")
    pin_file = workdir / "probe.pin"
    right_pin = token_config.pin.file.read_text().strip()
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        kubeconfig = sandbox.write_kubeconfig(workdir / "kubeconfig")
        yield ProbeSetup(Kube(str(sandbox.url)), kubeconfig, workdir, pin_file, right_pin)


def _write_pin(path: Path, pin: str) -> None:
    path.write_text(pin + "\n")
    path.chmod(0o600)


def test_liveness_ignores_a_broken_token_and_readiness_follows_it(
    setup: ProbeSetup, token_config: TokenConfig
) -> None:
    _write_pin(setup.pin_file, WRONG_PIN)
    profile = {**token_profile(token_config), "pinFile": str(setup.pin_file)}
    operator = setup.operator("probe-leader", profile)
    operator.start()
    try:
        wait_until(lambda: operator.probe("/readyz")[1].get("tokens") == {"probe": "PINIncorrect"}, 60)
        # The token refuses, so this replica cannot sign: not ready. It is alive all the same, and
        # stays so: a restart would not make the PIN right.
        for _ in range(5):
            live, live_body = operator.probe("/healthz")
            ready, ready_body = operator.probe("/readyz")
            assert (live, ready) == (200, 503), (live_body, ready_body)
            time.sleep(0.5)
        assert ready_body["role"] == "leader" and ready_body["workersStarted"] is True

        _write_pin(setup.pin_file, setup.right_pin)  # the repair
        wait_until(lambda: operator.probe("/readyz")[0] == 200, 30)
        assert operator.probe("/readyz")[1]["tokens"] == {"probe": "Reached"}
        assert operator.probe("/healthz")[0] == 200
        assert operator.process is not None and operator.process.poll() is None
        assert setup.right_pin not in operator.log() and WRONG_PIN not in operator.log()
    finally:
        operator.stop()


def test_a_warm_standby_is_ready_and_stops_at_once(setup: ProbeSetup, token_config: TokenConfig) -> None:
    leader = setup.operator("probe-a", token_profile(token_config))
    standby = setup.operator("probe-b", token_profile(token_config))
    leader.start()
    try:
        wait_until(
            lambda: str(setup.kube.get(LEASE)["spec"].get("holderIdentity", "")).startswith("probe-a_"), 60
        )
        standby.start()
        # Ready while the other replica holds the Lease: a rollout's new pod is not held back by it.
        wait_until(lambda: standby.probe("/readyz")[0] == 200, 60)
        body = standby.probe("/readyz")[1]
        assert body["role"] == "standby" and body["tokens"] == {"probe": "Reached"}
        live, live_body = standby.probe("/healthz")
        assert live == 200 and live_body["role"] == "standby"
        assert str(setup.kube.get(LEASE)["spec"]["holderIdentity"]).startswith("probe-a_")

        assert standby.process is not None
        started = time.monotonic()
        standby.stop()
        assert standby.process.returncode == 0
        assert time.monotonic() - started < 15
        assert str(setup.kube.get(LEASE)["spec"]["holderIdentity"]).startswith("probe-a_")
    finally:
        standby.stop()
        leader.stop()


def test_kopfs_liveness_endpoint_carries_the_same_answers(
    setup: ProbeSetup, token_config: TokenConfig
) -> None:
    """``--liveness`` also serves kopf's own endpoint (while leading), fed by our ``@kopf.on.probe``s."""
    port = _free_port()
    operator = setup.operator(
        "probe-kopf", token_profile(token_config), "--liveness", f"http://127.0.0.1:{port}/healthz"
    )
    operator.start()
    try:
        wait_until(lambda: operator.probe("/readyz")[0] == 200, 60)

        def kopf_says() -> dict[str, object]:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            except requests.RequestException:
                return {}
            return dict(answer.json()) if answer.status_code == 200 else {}

        # kopf caches probe results for 10 s; readiness may have been checked before it was reached.
        wait_until(lambda: kopf_says().get("canSign") is True, 30)
        assert kopf_says()["role"] == "leader"
    finally:
        operator.stop()
