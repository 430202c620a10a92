"""Faults for real, each mid-burst, each ending with every request published exactly once (counted in the
API server's audit log, which records every accepted status write) and verified with openssl:

- the operator SIGKILLed (with its signing workers) and started again;
- kube-apiserver restarted (every watch and connection drops; etcd keeps the data);
- a watch that resumes after etcd compacted its resourceVersion away, so the API server answers 410 Gone
  and the operator must list again. That needs watches served by etcd itself (no watch cache, which would
  keep recent history for minutes) and a short compaction interval: its own control plane.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from issuer.tokens import TokenConfig
from tests.cluster.conftest import (
    Live,
    admin_of,
    assert_no_forbidden,
    control_plane_binaries,
    start_operator,
)
from tests.cluster.controlplane import ControlPlane, free_port
from tests.cluster.install import install
from tests.cluster.kube import ClusterKube, assert_each_published_once
from tests.cluster.test_requests import ready_issuer
from tests.csrs import make_csr
from tests.operator.conftest import Operator, wait_until
from tests.operator.kube import CR_PATH, ApiFailure, certificate_request
from tests.operator.publications import issued_count

pytestmark = pytest.mark.slow


def burst(kube: ClusterKube, namespace: str, issuer: str, count: int, start: int = 0) -> list[str]:
    """``count`` requests created, then approved from several connections (as cert-manager's approver
    would); their names. Made before their issuer exists, they wait Pending and become a burst when it
    turns Ready (the operator signs faster than a client can create and approve)."""
    kube.namespace(namespace)
    path = CR_PATH.format(ns=namespace)
    names = [f"r-{i:04d}" for i in range(start, start + count)]
    for name in names:
        kube.create(path, certificate_request(name, make_csr(dns=[f"{name}.example.com"]), issuer=issuer))
    approvers = threading.local()

    def approve(name: str) -> None:
        if not hasattr(approvers, "kube"):
            approvers.kube = kube.clone()
        approvers.kube.approve(namespace, name)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(approve, names))
    return names


def issued(kube: ClusterKube, path: str) -> int:
    """Requests under ``path`` carrying a certificate; -1 while the API server cannot answer (just
    restarted: 429 while its storage initializes)."""
    try:
        return issued_count(kube, path)
    except (ApiFailure, requests.RequestException):
        return -1


def wait_all_issued(kube: ClusterKube, namespace: str, count: int, timeout: float = 300) -> None:
    path = CR_PATH.format(ns=namespace)
    wait_until(lambda: issued(kube, path) >= count, timeout=timeout)


def test_operator_sigkilled_mid_burst_publishes_each_request_once(live: Live) -> None:
    kube, namespace = live.kube, f"sigkill-{uuid.uuid4().hex[:6]}"
    # RSA-4096 signing is slow enough in SoftHSM2 that the kill lands while signatures are in flight.
    path = CR_PATH.format(ns=namespace)
    names = burst(kube, namespace, "ca", 300)
    ready_issuer(kube, namespace, "ca", algorithm="rsa-4096")
    wait_until(lambda: issued_count(kube, path) >= 5, timeout=120)
    live.operator.kill()
    at_kill = issued_count(kube, path)
    assert at_kill < len(names), "the burst was over before the kill: not a mid-burst fault"
    live.operator.start()  # as the Deployment's kubelet would; it takes the Lease once it expires
    wait_all_issued(kube, namespace, len(names))
    assert_each_published_once(kube, live.plane.audit_events(), path, namespace, names)


def test_apiserver_restarted_mid_burst_publishes_each_request_once(live: Live) -> None:
    kube, namespace = live.kube, f"restart-{uuid.uuid4().hex[:6]}"
    path = CR_PATH.format(ns=namespace)
    names = burst(kube, namespace, "ca", 300)
    ready_issuer(kube, namespace, "ca", algorithm="rsa-4096")
    wait_until(lambda: issued_count(kube, path) >= 5, timeout=120)
    at_restart = issued_count(kube, path)
    live.plane.restart_apiserver()
    assert at_restart < len(names), "the burst was over before the restart: not a mid-burst fault"
    # A leader that could not renew its Lease within the renew deadline (the chart's 10s) fences itself and
    # exits 1; its Deployment's kubelet starts it again. Play the kubelet.
    deadline = time.monotonic() + 300
    while issued(kube, path) < len(names) and time.monotonic() < deadline:
        assert live.operator.process is not None
        if live.operator.process.poll() is not None:
            assert live.operator.process.returncode == 1, live.operator.process.returncode
            assert "lost lease" in live.operator.log()
            live.operator.start()
        time.sleep(0.5)
    assert_each_published_once(kube, live.plane.audit_events(), path, namespace, names)


def _role(operator: Operator) -> object:
    return operator.probe("/healthz")[1].get("role")


def test_leader_killed_mid_burst_the_standby_takes_the_real_lease(live: Live) -> None:
    """Two replicas on a coordination.k8s.io Lease in the chart's namespace (the chart's Role grants
    exactly get/create/update on it): the leader SIGKILLed mid-burst, the warm standby takes the Lease
    once it expires and finishes the burst; every request published once."""
    kube, namespace = live.kube, f"failover-{uuid.uuid4().hex[:6]}"
    standby_env = {
        **live.operator.env,
        "TRUSTED_ISSUER_METRICS_PORT": str(free_port()),
        "TRUSTED_ISSUER_HEALTH_PORT": str(free_port()),
        "POD_NAME": "trusted-issuer-standby",
    }
    standby = Operator(standby_env, live.workdir / "standby.log")
    standby.start()
    try:
        wait_until(lambda: _role(live.operator) == "leader", timeout=60)
        wait_until(lambda: standby.probe("/readyz")[0] == 200 and _role(standby) == "standby", timeout=90)
        path = CR_PATH.format(ns=namespace)
        names = burst(kube, namespace, "ca", 300)
        ready_issuer(kube, namespace, "ca", algorithm="rsa-4096")
        wait_until(lambda: issued_count(kube, path) >= 5, timeout=120)
        live.operator.kill()
        at_kill = issued_count(kube, path)
        assert at_kill < len(names), "the burst was over before the kill: not a mid-burst fault"
        wait_until(lambda: _role(standby) == "leader", timeout=60)
        wait_all_issued(kube, namespace, len(names))
        assert_each_published_once(kube, live.plane.audit_events(), path, namespace, names)
        lease = kube.get("/apis/coordination.k8s.io/v1/namespaces/trusted-issuer/leases/trusted-issuer")
        assert lease["spec"]["holderIdentity"].startswith("trusted-issuer-standby")
        assert_no_forbidden(standby, live.plane)
    finally:
        # The session's operator comes back as the standby of this one, then leads when it stops.
        live.operator.start()
        standby.stop()
        wait_until(lambda: _role(live.operator) == "leader", timeout=60)


@pytest.fixture(scope="module")
def compacting(
    token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ControlPlane, Operator]]:
    """A control plane whose watches are served by etcd (no watch cache) and compacted every 5s, with its
    own operator; a Lease long enough that a 20s pause does not cost the leader its Lease."""
    workdir = tmp_path_factory.mktemp("compacting")
    flags = ("--watch-cache=false", "--etcd-compaction-interval=5s")
    with ControlPlane(workdir / "plane", control_plane_binaries(), apiserver_flags=flags) as plane:
        install(plane)
        operator = start_operator(
            plane,
            token_config,
            workdir / "operator",
            TRUSTED_ISSUER_LEASE_DURATION="60s",
            TRUSTED_ISSUER_LEASE_RENEW_DEADLINE="50s",
            TRUSTED_ISSUER_LEASE_RETRY_PERIOD="2s",
        )
        try:
            yield plane, operator
        finally:
            operator.stop()


def _signal_group(operator: Operator, sig: signal.Signals) -> None:
    assert operator.process is not None
    os.killpg(operator.process.pid, sig)


def test_watch_resumed_after_compaction_gets_410_and_lists_again(
    compacting: tuple[ControlPlane, Operator],
) -> None:
    plane, operator = compacting
    kube, namespace = admin_of(plane), f"gone-{uuid.uuid4().hex[:6]}"
    ready_issuer(kube, namespace, "ca")
    path = CR_PATH.format(ns=namespace)
    first = burst(kube, namespace, "ca", 20)
    wait_all_issued(kube, namespace, len(first), timeout=120)
    log_mark = len(operator.log())
    # Frozen, the operator cannot follow; the restart drops its watches; meanwhile more requests arrive and
    # etcd compacts past the last version it saw. Thawed, it resumes its watches from that version.
    _signal_group(operator, signal.SIGSTOP)
    try:
        plane.restart_apiserver()
        later = burst(kube, namespace, "ca", 30, start=len(first))
        time.sleep(12)  # two compaction intervals after the last write it saw
    finally:
        _signal_group(operator, signal.SIGCONT)
    wait_all_issued(kube, namespace, len(first) + len(later), timeout=180)
    resumed = operator.log()[log_mark:]
    assert "is gone (410): listing again" in resumed, "no watch met 410 Gone: the fault did not happen"
    assert_each_published_once(kube, plane.audit_events(), path, namespace, first + later)
    assert operator.process is not None and operator.process.poll() is None
    assert_no_forbidden(operator, plane)


def test_compacting_plane_is_really_compacting(compacting: tuple[ControlPlane, Operator]) -> None:
    """The control of the test above: a list at an old resourceVersion is refused with 410 Expired."""
    plane, _ = compacting
    kube = admin_of(plane)
    old = kube.get("/api/v1/namespaces")["metadata"]["resourceVersion"]
    for i in range(3):
        kube.namespace(f"churn-{uuid.uuid4().hex[:6]}-{i}")
    time.sleep(12)
    response = kube.http.get(
        f"{plane.server}/api/v1/namespaces", params={"resourceVersion": old, "resourceVersionMatch": "Exact"}
    )
    assert response.status_code == 410, response.text[:300]
