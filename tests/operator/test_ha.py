"""High availability: several operator processes on one token, one Lease, one active signer.

Two (then three) real operator processes share one SoftHSM2 token directory, standing for a network
HSM that every replica reaches, against their own sandbox API server (so the package's operator does
not compete for these requests). The tests observe them only from outside: the Lease and the
requests in the API server, the probe endpoints, the exit status and the audit log. The elector's
rules are also checked in-process against the same API server, with a hand-driven monotonic clock
so that expiry is decided exactly, not by sleeping.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, Sandbox, SandboxThread

from issuer.controller.kubeapi import Credentials, KubeClient
from issuer.controller.replica.election import (
    Attempt,
    FencedKubeClient,
    Leadership,
    LeaseElector,
    LeaseTiming,
)
from issuer.errors import ConfigurationError, RetryableError
from issuer.settings import Settings
from issuer.tokens import TokenConfig
from tests.csrs import make_csr
from tests.operator.conftest import LEASE_TIMING, OUR_CRDS, Operator, operator_env, token_profile, wait_until
from tests.operator.kube import (
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    Kube,
    certificate_request,
    condition,
    issuer_body,
)
from tests.operator.publications import Publications, issued_count

BURST = 200
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/trusted-issuer"
TIMING = LeaseTiming(
    duration=float(LEASE_TIMING["TRUSTED_ISSUER_LEASE_DURATION"].rstrip("s")),
    renew_deadline=float(LEASE_TIMING["TRUSTED_ISSUER_LEASE_RENEW_DEADLINE"].rstrip("s")),
    retry_period=float(LEASE_TIMING["TRUSTED_ISSUER_LEASE_RETRY_PERIOD"].rstrip("s")),
)
#: Scheduling slack on top of the documented bound: the test polls the Lease every 0.1 s, and on this
#: shared 2-core machine a process can wait a second or two for the CPU.
SLACK = 4.0


@dataclass
class HaCluster:
    sandbox: Sandbox
    kube: Kube
    kubeconfig: Path
    profiles_file: Path
    workdir: Path

    def operator(self, name: str) -> Operator:
        env = operator_env(self.kubeconfig, self.profiles_file, POD_NAME=name)
        return Operator(env, self.workdir / f"{name}.log")


@pytest.fixture(scope="module")
def ha(token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaCluster]:
    workdir = tmp_path_factory.mktemp("ha")
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump({"profiles": {"dev": token_profile(token_config)}}))
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        kubeconfig = sandbox.write_kubeconfig(workdir / "kubeconfig")
        yield HaCluster(sandbox, Kube(str(sandbox.url)), kubeconfig, profiles_file, workdir)


def _holder(kube: Kube) -> str:
    try:
        return str(kube.get(LEASE).get("spec", {}).get("holderIdentity") or "")
    except ApiFailure as err:
        if err.status == 404:
            return ""
        raise


def _wait_holder(kube: Kube, prefix: str, timeout: float) -> float:
    """Seconds until the Lease's holder is the replica named ``prefix``."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if _holder(kube).startswith(f"{prefix}_"):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{prefix} did not take the lease within {timeout:.1f}s: {kube.get(LEASE)}")


def _role(operator: Operator) -> object:
    return operator.probe("/healthz")[1].get("role")


def _leader_gauge(operator: Operator) -> float:
    port = operator.env["TRUSTED_ISSUER_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    (value,) = [line.split()[1] for line in text.splitlines() if line.startswith("trusted_issuer_leader ")]
    return float(value)


def test_one_leader_and_a_killed_leaders_burst_is_finished_by_the_standby(ha: HaCluster) -> None:
    kube = ha.kube
    a, b = ha.operator("op-a"), ha.operator("op-b")
    a.start()
    try:
        _wait_holder(kube, "op-a", 60)
        b.start()
        wait_until(lambda: b.probe("/readyz")[0] == 200, timeout=60)  # warm standby: ready, not leading
        assert _role(b) == "standby" and _role(a) == "leader"
        assert (_leader_gauge(a), _leader_gauge(b)) == (1.0, 0.0)
        assert _holder(kube).startswith("op-a_")

        namespace = f"ha-{uuid.uuid4().hex[:6]}"
        kube.namespace(namespace)
        kube.create(ISSUER_PATH.format(ns=namespace), issuer_body("mesh", namespace=namespace))
        kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/mesh", lambda o: condition(o).get("status") == "True")
        path = CR_PATH.format(ns=namespace)

        # Every version of every request, from before the burst: one certificate value per request.
        seen = Publications(kube, path)
        csr = make_csr(dns=["ha.example.com"])
        names = [f"r{i:03d}" for i in range(BURST)]
        for name in names:
            kube.create(path, certificate_request(name, csr, issuer="mesh", usages=["server auth"]))

        # Approvals arrive while the leader signs; it dies a quarter of the way through.
        def approve(batch: list[str]) -> None:
            approver = Kube(kube.base)
            for name in batch:
                approver.approve(namespace, name)

        approvers = [threading.Thread(target=approve, args=(names[i::2],), daemon=True) for i in range(2)]
        for thread in approvers:
            thread.start()

        def issued() -> int:
            return issued_count(kube, path)

        deadline = time.monotonic() + 120
        while issued() < BURST // 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        a.kill()
        killed = time.monotonic()
        at_kill = issued()
        takeover = _wait_holder(kube, "op-b", TIMING.failover_bound() + SLACK)
        wait_until(lambda: issued() > at_kill, timeout=60)
        resumed = time.monotonic() - killed
        for thread in approvers:
            thread.join(timeout=120)

        deadline = time.monotonic() + 180
        while issued() < BURST and time.monotonic() < deadline:
            time.sleep(0.2)
        assert at_kill < BURST, "the kill came after the burst; the test proved nothing"
        seen.assert_each_published_once(kube, names)

        # The standby finished what the dead leader left: its own audit log says it published.
        published_by_b = len(
            re.findall(r"trusted-issuer\.audit .*\] issued kind='CertificateRequest'", b.log())
        )
        assert 0 < published_by_b <= BURST - at_kill, (published_by_b, at_kill)
        lease = kube.get(LEASE)["spec"]
        assert lease["holderIdentity"].startswith("op-b_") and lease["leaseTransitions"] >= 1
        assert _role(b) == "leader"
        print(
            f"\ntakeover after SIGKILL {takeover:.2f}s (bound {TIMING.failover_bound():g}s), "
            f"first certificate by the new leader {resumed:.2f}s after the kill, issued at kill {at_kill}"
        )
    finally:
        a.stop()
        b.stop()


def test_sigterm_releases_the_lease_so_the_standby_takes_over_at_once(ha: HaCluster) -> None:
    kube = ha.kube
    c, d = ha.operator("op-c"), ha.operator("op-d")
    c.start()
    try:
        wait_until(lambda: _holder(kube).startswith("op-c_"), timeout=TIMING.failover_bound() + 60)
        d.start()
        wait_until(lambda: d.probe("/readyz")[0] == 200 and _role(d) == "standby", timeout=60)
        assert c.process is not None
        started = time.monotonic()
        c.stop()
        # Released before the process ended: nobody holds it, or the standby already does.
        assert not _holder(kube).startswith("op-c_"), kube.get(LEASE)
        takeover = _wait_holder(kube, "op-d", TIMING.duration)
        assert c.process.returncode == 0
        assert "released lease=default/trusted-issuer" in c.log()
        # Taken on the standby's next try, not after the lease duration.
        assert takeover < TIMING.retry_period + SLACK / 2, takeover
        # From SIGTERM to the standby leading: a retry period and the shutdown, never the lease duration.
        assert time.monotonic() - started < TIMING.retry_period + SLACK < TIMING.duration
        print(f"\ntakeover after SIGTERM: {takeover:.2f}s (lease duration {TIMING.duration:g}s)")
    finally:
        c.stop()
        d.stop()


def test_a_leader_that_cannot_renew_stops_and_exits(ha: HaCluster) -> None:
    """The API server refuses every Lease write: the leader passes its renew deadline, stops signing
    and publishing (fenced), stops kopf and exits 1, so Kubernetes would restart it as a standby."""
    kube = ha.kube
    e = ha.operator("op-e")
    e.start()
    rule = None
    try:
        wait_until(lambda: _holder(kube).startswith("op-e_"), timeout=TIMING.failover_bound() + 60)
        wait_until(lambda: _role(e) == "leader", timeout=30)
        rule = ha.sandbox.faults.add(status=500, verbs={"update"}, resources={"leases"})
        started = time.monotonic()
        assert e.process is not None
        e.process.wait(timeout=TIMING.renew_deadline + 30)
        assert e.process.returncode == 1
        stopped = time.monotonic() - started
        assert stopped >= TIMING.renew_deadline - TIMING.retry_period, "it gave up before its deadline"
        log = e.log()
        assert "lost lease=default/trusted-issuer" in log and "stopped signing and publishing" in log
    finally:
        if rule is not None:
            ha.sandbox.faults.remove(rule)
        e.stop()


# -- the elector's rules, in-process against the same API server --------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _elector(client: KubeClient, identity: str, clock: Clock, name: str) -> LeaseElector:
    return LeaseElector(
        client,
        namespace="default",
        name=name,
        identity=identity,
        timing=LeaseTiming(duration=15, renew_deadline=10, retry_period=2),
        leadership=Leadership(clock),
        clock=clock,
    )


def test_elector_follows_client_gos_rules(ha: HaCluster) -> None:
    async def scenario() -> None:
        name = f"rules-{uuid.uuid4().hex[:6]}"
        async with KubeClient(Credentials(server=str(ha.sandbox.url).rstrip("/"))) as client:
            clock = Clock()
            first, second = _elector(client, "one", clock, name), _elector(client, "two", clock, name)
            assert await first.attempt() is Attempt.HELD  # created
            assert first.leadership.holds() and not second.leadership.holds()
            assert await second.attempt() is Attempt.TAKEN
            clock.now += 9
            assert await first.attempt() is Attempt.HELD  # renewed: same holder, no transition
            assert await second.attempt() is Attempt.TAKEN  # the standby sees the renewal now
            clock.now += 14
            # 14 s after the renewal the standby saw: still the holder's (15 s), though past one's
            # fence (10 s after its renewal began): the fence always closes before a takeover.
            assert await second.attempt() is Attempt.TAKEN
            assert not first.leadership.holds()
            with pytest.raises(RetryableError, match="fenced"):
                first.leadership.check("signing")
            clock.now += 1.5
            assert await second.attempt() is Attempt.HELD  # expired as the standby observed it
            lease = await client.get(f"{second.collection}/{name}")
            assert lease["spec"]["holderIdentity"] == "two"
            assert lease["spec"]["leaseTransitions"] == 1
            assert await first.attempt() is Attempt.TAKEN  # the old leader sees it is gone
            await second.release()
            assert not second.leadership.holds()
            released = await client.get(f"{second.collection}/{name}")
            assert "holderIdentity" not in released["spec"]
            assert await first.attempt() is Attempt.HELD  # a released Lease is taken at once
            after = await client.get(f"{second.collection}/{name}")
            assert after["spec"]["leaseTransitions"] == 2
            acquired = datetime.fromisoformat(after["spec"]["acquireTime"].replace("Z", "+00:00"))
            assert abs((datetime.now(UTC) - acquired).total_seconds()) < 60

    asyncio.run(scenario())


def test_only_one_of_two_simultaneous_creators_wins(ha: HaCluster) -> None:
    async def scenario() -> list[Attempt]:
        name = f"race-{uuid.uuid4().hex[:6]}"
        async with KubeClient(Credentials(server=str(ha.sandbox.url).rstrip("/"))) as client:
            clock = Clock()
            electors = [_elector(client, f"racer-{i}", clock, name) for i in range(4)]
            return list(await asyncio.gather(*(e.attempt() for e in electors)))

    outcomes = asyncio.run(scenario())
    assert outcomes.count(Attempt.HELD) == 1, outcomes


def test_a_fenced_replica_writes_nothing(ha: HaCluster) -> None:
    """Without the Lease, the request path's client refuses every write before it leaves the process."""

    async def scenario() -> None:
        leadership = Leadership(Clock())
        credentials = Credentials(server=str(ha.sandbox.url).rstrip("/"))
        async with FencedKubeClient(credentials, leadership) as client:
            before = len(ha.sandbox.calls)
            with pytest.raises(RetryableError, match="fenced") as refused:
                await client.patch_status(f"{CR_PATH.format(ns='default')}/any", {"certificate": "x"}, "1")
            assert refused.value.reason == "Fenced"
            assert len(ha.sandbox.calls) == before, "a fenced write reached the API server"
            assert (await client.get("/api/v1/namespaces/default"))["metadata"]["name"] == "default"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEASE_DURATION": "10s", "LEASE_RENEW_DEADLINE": "10s"}, "LEASE_RENEW_DEADLINE < "),
        ({"LEASE_RETRY_PERIOD": "12s"}, "must hold"),
        ({"LEADER_ELECTION": "maybe"}, "must be true or false"),
        ({"HEALTH_PORT": "http"}, "HEALTH_PORT must be a port number"),
        ({"READINESS_INTERVAL": "0s"}, "READINESS_INTERVAL must be positive"),
    ],
    ids=[
        "deadline-not-below-duration",
        "retry-above-deadline",
        "election-not-boolean",
        "port-not-a-number",
        "no-interval",
    ],
)
def test_election_settings_are_checked_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Settings.from_env({f"TRUSTED_ISSUER_{k}": v for k, v in env.items()})
