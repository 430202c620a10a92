"""The cluster tier: a real kube-apiserver, etcd and kube-controller-manager (``controlplane.py``), our CRDs,
cert-manager's CRDs and the whole chart applied server-side, and the operator as its own process,
authenticated as the chart's ServiceAccount (a TokenRequest token), so it has exactly the chart's RBAC.

Where the binaries are missing and Go is absent the tier skips, saying why; with ``CI=true`` that is a
failure. A 403 answered to the operator (its log or the API server's audit log) fails the test that
caused it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from issuer.tokens import TokenConfig
from tests.chart.rendering import NAMESPACE
from tests.cluster.controlplane import OPERATOR_USER, BinariesMissing, ControlPlane, binaries_dir
from tests.cluster.install import chart_operator_args, chart_operator_env, install, operator_kubeconfig
from tests.cluster.kube import ClusterKube
from tests.operator.conftest import Operator, _free_port, token_profile

#: How a 403 shows in the operator's log: its own client's "answered 403", kopf's APIForbiddenError.
FORBIDDEN_IN_LOG = re.compile(r"answered 403|[\"']code[\"']: ?403|[Ff]orbidden")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)


@dataclass
class Live:
    """The running control plane, its admin client, the operator and the token it signs with."""

    plane: ControlPlane
    kube: ClusterKube
    operator: Operator
    token: TokenConfig
    workdir: Path

    def tenant(self, user: str) -> ClusterKube:
        """A client authenticated as ``user`` (a client certificate of the control plane's CA), with no
        rights until a binding gives some."""
        cert = self.plane.pki.issue(f"user-{user}", _subject(user))
        return ClusterKube(self.plane.server, self.plane.pki.ca_file, cert=cert)


def _subject(user: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])


def control_plane_binaries() -> Path:
    """The binaries, or a skip saying why (a failure under ``CI=true``)."""
    try:
        return binaries_dir()
    except BinariesMissing as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: the cluster tier cannot run: {err}")
        pytest.skip(f"cluster tier: {err}")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), control_plane_binaries()) as plane:
        install(plane)
        yield plane


def operator_env(
    live_kubeconfig: Path, profiles_file: Path, values: dict[str, Any] | None = None, **extra: str
) -> dict[str, str]:
    """The chart's environment for the operator container, with this machine's ports and files."""
    return {
        **os.environ,
        **chart_operator_env(values),
        "KUBECONFIG": str(live_kubeconfig),
        "TRUSTED_ISSUER_PROFILES_FILE": str(profiles_file),
        "TRUSTED_ISSUER_METRICS_PORT": str(_free_port()),
        "TRUSTED_ISSUER_HEALTH_PORT": str(_free_port()),
        "TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE": NAMESPACE,
        "TRUSTED_ISSUER_PROVISIONING_RECHECK_INTERVAL": "1s",
        "TRUSTED_ISSUER_MAX_RETRY_DURATION": "60s",
        "POD_NAME": "trusted-issuer-test",
        **extra,
    }


def start_operator(
    plane: ControlPlane, token: TokenConfig, workdir: Path, values: dict[str, Any] | None = None, **extra: str
) -> Operator:
    """``python -m issuer run`` with the chart's arguments and environment (for chart ``values``), a
    profiles file naming the test token, and a kubeconfig holding only a TokenRequest token of the chart's
    ServiceAccount."""
    workdir.mkdir(parents=True, exist_ok=True)
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump({"profiles": {"dev": token_profile(token)}}))
    kubeconfig = operator_kubeconfig(plane, workdir / "operator.kubeconfig")
    operator = Operator(
        operator_env(kubeconfig, profiles_file, values, **extra),
        workdir / "operator.log",
        args=chart_operator_args(values),
    )
    operator.start()
    return operator


def admin_of(plane: ControlPlane) -> ClusterKube:
    return ClusterKube(plane.server, plane.pki.ca_file, cert=plane.admin_client)


@pytest.fixture(scope="session")
def live(
    control_plane: ControlPlane, token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("cluster-operator")
    operator = start_operator(control_plane, token_config, workdir)
    try:
        yield Live(control_plane, admin_of(control_plane), operator, token_config, workdir)
    finally:
        operator.stop()


@pytest.fixture(autouse=True)
def no_forbidden(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that used the operator fails if the operator met a 403 meanwhile: the chart's RBAC is too
    narrow for something it does."""
    if "live" not in request.fixturenames:
        yield
        return
    running: Live = request.getfixturevalue("live")
    log_start = len(running.operator.log())
    audit_start = len(running.plane.audit_events())
    yield
    assert_no_forbidden(running.operator, running.plane, log_start, audit_start)


def assert_no_forbidden(
    operator: Operator, plane: ControlPlane, log_start: int = 0, audit_start: int = 0
) -> None:
    """No 403 answered to the operator's identity since the marks: none in the API server's audit log
    (every call, even one whose error the operator swallows) and none in the operator's log. The only
    403s forgiven are those answered while a restarted API server's RBAC was still syncing (it then
    denies what RBAC allows); the audit log tells them apart by time, the operator's log cannot, so it is
    checked only when no such window fell in the test."""
    events = plane.audit_events()[audit_start:]
    denied = forbidden_to_operator(plane, events)
    assert not denied, f"the API server answered 403 to the operator: {denied[:10]}"
    restarted = any(plane.during_rbac_sync(e) for e in events)
    if restarted:
        return
    in_log = [line for line in operator.log()[log_start:].splitlines() if FORBIDDEN_IN_LOG.search(line)]
    assert not in_log, "the operator met 403s:\n" + "\n".join(in_log[:10])


def forbidden_to_operator(plane: ControlPlane, events: list[dict[str, Any]]) -> list[str]:
    """403s the API server answered to the operator's identity in ``events``, but while its RBAC synced."""
    return [
        f"{e['verb']} {e['requestURI']}"
        for e in events
        if e.get("user", {}).get("username") == OPERATOR_USER
        and e.get("responseStatus", {}).get("code") == 403
        and not plane.during_rbac_sync(e)
    ]
