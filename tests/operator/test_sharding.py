"""Sharding: a namespace shard and a release for cluster issuers, side by side, never touch each other's
objects.

Two real operator processes on one token, each with its own Lease, against their own sandbox API server
(so the package's operator does not take these requests): the shard serves TrustedIssuers of team-a
(``--namespace team-a``, ``TRUSTED_ISSUER_ISSUER_KINDS=TrustedIssuer``), the other serves only
TrustedClusterIssuers (every namespace). Objects neither serves stay untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, SandboxThread

from issuer.tokens import TokenConfig
from tests.csrs import make_csr
from tests.operator.conftest import OUR_CRDS, Operator, operator_env, token_profile, wait_until
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    Kube,
    certificate_request,
    condition,
    issuer_body,
)

SUFFIX = uuid.uuid4().hex[:6]
TEAM_A, TEAM_B = f"team-a-{SUFFIX}", f"team-b-{SUFFIX}"
CLUSTER_ISSUER = f"mesh-root-{SUFFIX}"


def _ready(obj: dict) -> bool:
    return condition(obj).get("status") == "True"


def _issued_by(operator: Operator) -> list[str]:
    """Requests this operator's audit trail says it published."""
    return re.findall(
        r"trusted-issuer\.audit .*\] issued kind='CertificateRequest' request='([^']+)'", operator.log()
    )


@pytest.fixture(scope="module")
def releases(
    token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kube, Operator, Operator]]:
    workdir: Path = tmp_path_factory.mktemp("sharding")
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump({"profiles": {"dev": token_profile(token_config)}}))
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        kubeconfig = sandbox.write_kubeconfig(workdir / "kubeconfig")

        def release(name: str, kinds: str, *args: str) -> Operator:
            env = operator_env(
                kubeconfig,
                profiles_file,
                POD_NAME=name,
                TRUSTED_ISSUER_LEASE_NAME=name,
                TRUSTED_ISSUER_ISSUER_KINDS=kinds,
            )
            return Operator(env, workdir / f"{name}.log", args=args)

        shard = release("shard-a", "TrustedIssuer", "--namespace", TEAM_A)
        cluster = release("cluster", "TrustedClusterIssuer")
        shard.start()
        cluster.start()
        try:
            yield Kube(str(sandbox.url)), shard, cluster
        finally:
            shard.stop()
            cluster.stop()


def test_each_release_serves_only_its_share(releases: tuple[Kube, Operator, Operator]) -> None:
    kube, shard, cluster = releases
    for namespace in (TEAM_A, TEAM_B):
        kube.namespace(namespace)
        kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("local", namespace=namespace))
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(CLUSTER_ISSUER))

    local = kube.wait(f"{ISSUER_PATH.format(ns=TEAM_A)}/local", _ready, timeout=90)
    root = kube.wait(f"{CLUSTER_ISSUER_PATH}/{CLUSTER_ISSUER}", _ready, timeout=90)
    assert local["status"]["keyHandle"]["keyLabel"].startswith(f"ti:ns/{TEAM_A}/local/")
    assert root["status"]["keyHandle"]["keyLabel"].startswith(f"ti:cluster/{CLUSTER_ISSUER}/")

    csr = make_csr(dns=["svc.example.com"])
    requests = {
        (TEAM_A, "to-local"): certificate_request("to-local", csr, issuer="local"),
        (TEAM_A, "to-root"): certificate_request(
            "to-root", csr, issuer=CLUSTER_ISSUER, kind="TrustedClusterIssuer"
        ),
        (TEAM_B, "unserved"): certificate_request("unserved", csr, issuer="local"),
    }
    for (namespace, name), body in requests.items():
        kube.create(CR_PATH.format(ns=namespace), body)
        kube.approve(namespace, name)
    for namespace, name in [(TEAM_A, "to-local"), (TEAM_A, "to-root")]:
        issued = kube.wait(f"{CR_PATH.format(ns=namespace)}/{name}", _ready, timeout=90)
        assert issued["status"]["certificate"]

    # Each certificate came from the release that serves its issuer, and from no other. The audit line
    # follows the status write, so it may land a moment after the test saw the certificate.
    wait_until(lambda: _issued_by(shard) and _issued_by(cluster), timeout=10)
    assert _issued_by(shard) == [f"{TEAM_A}/to-local"]
    assert _issued_by(cluster) == [f"{TEAM_A}/to-root"]

    # team-b is nobody's: its issuer and request stay as their owner left them, with no status at all.
    time.sleep(3)  # both releases have long finished their listings; give a wrong write time to land
    assert not kube.get(f"{ISSUER_PATH.format(ns=TEAM_B)}/local").get("status")
    unserved = kube.get(f"{CR_PATH.format(ns=TEAM_B)}/unserved")["status"]["conditions"]
    assert [c["type"] for c in unserved] == ["Approved"]  # only the approver wrote
    assert TEAM_B not in shard.log() + cluster.log()
    assert "issuer='TrustedClusterIssuer" not in shard.log()
    assert "issuer='TrustedIssuer" not in cluster.log()
