"""Faults during a burst: the token goes away, a signing worker dies, the API server misbehaves.

Each test runs its own sandbox API server, its own SoftHSM2 token and its own operator process, so the
fault it injects (a token directory moved away, a PIN file changed, API errors) touches nothing else.
Each ends the same way: every request published exactly once (a watch sees one certificate value per
request, never two) and none lost or failed.

SIGKILL of the whole operator mid-burst is covered in test_crash_and_marks.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, SandboxThread

from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer.devtoken import DevToken, init_dev_token
from issuer.tokens import PinSource, TokenConfig
from tests.csrs import make_csr
from tests.operator.conftest import OUR_CRDS, Cluster, Operator, operator_env, wait_until
from tests.operator.kube import (
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    Kube,
    certificate_request,
    condition,
    issuer_body,
)
from tests.operator.publications import Publications

pytestmark = pytest.mark.slow

#: Below the time a token outage lasts in these tests, so a request that waits only until its retry
#: deadline (instead of waiting for its issuer) would fail and be caught.
MAX_RETRY = "20s"
RECHECK = "5s"


@contextlib.contextmanager
def isolated_cluster(workdir: Path, **env: str) -> Iterator[tuple[Cluster, DevToken]]:
    """A sandbox, a fresh token and an operator of their own; ``env`` adds TRUSTED_ISSUER_* settings."""
    token, _ = init_dev_token(workdir / "softhsm", f"faults-{uuid.uuid4().hex[:6]}")
    profiles = {
        "profiles": {
            "dev": {
                "module": DEFAULT_PKCS11_MODULE,
                "tokenLabel": token.label,
                "pinFile": str(token.pin_file),
            }
        }
    }
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump(profiles))
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        kubeconfig = sandbox.write_kubeconfig(workdir / "kubeconfig")
        full_env = operator_env(
            kubeconfig,
            profiles_file,
            **{
                **token.env(),
                "TRUSTED_ISSUER_MAX_RETRY_DURATION": MAX_RETRY,
                # Issuers notice a token outage and its end within seconds, not the default minute.
                "TRUSTED_ISSUER_ISSUER_RECHECK_INTERVAL": RECHECK,
                **env,
            },
        )
        operator = Operator(full_env, workdir / "operator.log")
        operator.start()
        config = TokenConfig(
            module=DEFAULT_PKCS11_MODULE, token_label=token.label, pin=PinSource(file=token.pin_file)
        )
        try:
            yield Cluster(sandbox, Kube(str(sandbox.url)), operator, config, workdir), token
        finally:
            sandbox.faults.clear()
            operator.stop()


def _ready_issuer(
    kube: Kube, namespace: str, name: str = "ca", algorithm: str = "ecdsa-p256"
) -> dict[str, Any]:
    kube.namespace(namespace)
    path = ISSUER_PATH.format(ns=namespace)
    kube.create(path, issuer_body(name, namespace=namespace, algorithm=algorithm))
    return kube.wait(f"{path}/{name}", lambda o: condition(o).get("status") == "True", timeout=90)


def _burst(kube: Kube, namespace: str, names: list[str], issuer: str = "ca") -> None:
    path = CR_PATH.format(ns=namespace)
    csr = make_csr(dns=["fault.example.com"])
    for name in names:
        kube.create(path, certificate_request(name, csr, issuer=issuer, usages=["server auth"]))
        kube.approve(namespace, name)


def _issued(kube: Kube, namespace: str) -> int:
    for _ in range(50):
        try:
            items = kube.get(CR_PATH.format(ns=namespace))["items"]
            break
        except ApiFailure:  # an injected fault on the tests' own list
            time.sleep(0.1)
    else:
        raise AssertionError("the API server refused 50 lists in a row")
    return sum(1 for item in items if item.get("status", {}).get("certificate"))


def _wait_issued(kube: Kube, namespace: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _issued(kube, namespace) < count and time.monotonic() < deadline:
        time.sleep(0.5)


# -- the token goes away and comes back ---------------------------------------------------------------------


def _token_away_moved(cluster: Cluster, token: DevToken) -> object:
    away = token.token_dir.with_name("tokens-away")
    token.token_dir.rename(away)
    return away


def _restore_moved(token: DevToken, state: object) -> None:
    assert isinstance(state, Path)
    state.rename(token.token_dir)


def _token_away_replaced_by_file(cluster: Cluster, token: DevToken) -> object:
    # Running as root, chmod 000 does not make a directory unreadable; a file in its place does.
    away = token.token_dir.with_name("tokens-away")
    token.token_dir.rename(away)
    token.token_dir.write_text("not a directory\n")
    return away


def _restore_replaced(token: DevToken, state: object) -> None:
    assert isinstance(state, Path)
    token.token_dir.unlink()
    state.rename(token.token_dir)


def _module_fails(cluster: Cluster, token: DevToken) -> object:
    """SoftHSM2's configuration becomes unreadable and the signing workers restart, so the module
    cannot initialise in them (open sessions would otherwise go on signing from memory)."""
    saved = token.config_file.read_text()
    token.config_file.write_text("directories.tokendir = \nthis is = not a configuration\x00\n")
    for pid in _worker_pids(cluster):
        os.kill(pid, signal.SIGKILL)
    return saved


def _restore_module(token: DevToken, state: object) -> None:
    assert isinstance(state, str)
    token.config_file.write_text(state)


#: After the token is back, the issuer's recheck (every RECHECK) makes it Ready again; generous, for
#: a loaded machine.
RECOVERY = {"token": 90.0, "module": 90.0}


@pytest.mark.parametrize(
    ("break_token", "restore_token", "recovery"),
    [
        pytest.param(_token_away_moved, _restore_moved, RECOVERY["token"], id="token-directory-moved-away"),
        pytest.param(
            _token_away_replaced_by_file,
            _restore_replaced,
            RECOVERY["token"],
            id="token-directory-unreadable",
        ),
        pytest.param(_module_fails, _restore_module, RECOVERY["module"], id="module-cannot-initialise"),
    ],
)
def test_token_unavailable_mid_burst_requests_wait_then_all_issued(
    tmp_path: Path, break_token: Any, restore_token: Any, recovery: float
) -> None:
    with isolated_cluster(tmp_path) as (cluster, token):
        kube, namespace = cluster.kube, "tokenloss"
        _ready_issuer(kube, namespace)
        path = CR_PATH.format(ns=namespace)
        seen = Publications(kube, path)
        names = [f"r{i:03d}" for i in range(80)]
        _burst(kube, namespace, names[:40])
        _wait_issued(kube, namespace, 5, timeout=60)
        state = break_token(cluster, token)
        broken_at = time.monotonic()
        try:
            _burst(kube, namespace, names[40:])
            # The issuer's periodic check notices (every RECHECK) and says why, in a way a person can act on.
            issuer = kube.wait(
                f"{ISSUER_PATH.format(ns=namespace)}/ca",
                lambda o: condition(o).get("status") == "False",
                timeout=150,
            )
            ready = condition(issuer)
            assert ready["reason"] and ready["reason"] != "KeyReady", ready
            assert "token" in ready["message"].lower() or "module" in ready["message"].lower(), ready
            # Requests wait for the issuer, past their retry deadline, without failing.
            while time.monotonic() - broken_at < 30:
                time.sleep(1)
            waiting = [i for i in kube.get(path)["items"] if not i.get("status", {}).get("certificate")]
            assert waiting, "the outage came after the burst; the test proved nothing"
            assert all(condition(i).get("reason") != "Failed" for i in waiting), [
                condition(i) for i in waiting if condition(i).get("reason") == "Failed"
            ][:3]
            assert any(condition(i).get("reason") == "Pending" for i in waiting)
        finally:
            restore_token(token, state)
        kube.wait(
            f"{ISSUER_PATH.format(ns=namespace)}/ca",
            lambda o: condition(o).get("status") == "True",
            timeout=recovery,
        )
        _wait_issued(kube, namespace, len(names), timeout=180)
        seen.assert_each_published_once(kube, names)
        assert cluster.operator.process is not None and cluster.operator.process.poll() is None


def test_pin_changed_requests_wait_then_all_issued(tmp_path: Path) -> None:
    """The PIN file is changed to a PIN the token rejects (a botched rotation) and the signing workers
    restart, so they must log in again: the issuer says PINIncorrect, requests wait, and once the
    file holds the right PIN again everything is issued. The wrong PIN is never retried meanwhile."""
    with isolated_cluster(tmp_path) as (cluster, token):
        kube, namespace = cluster.kube, "pinchange"
        _ready_issuer(kube, namespace)
        path = CR_PATH.format(ns=namespace)
        seen = Publications(kube, path)
        names = [f"r{i:03d}" for i in range(60)]
        _burst(kube, namespace, names[:30])
        _wait_issued(kube, namespace, 5, timeout=60)
        right_pin = token.pin_file.read_text()
        wrong_pin = "wrong-" + uuid.uuid4().hex
        token.pin_file.write_text(wrong_pin + "\n")
        try:
            for pid in _worker_pids(cluster):
                os.kill(pid, signal.SIGKILL)
            _burst(kube, namespace, names[30:])
            issuer = kube.wait(
                f"{ISSUER_PATH.format(ns=namespace)}/ca",
                lambda o: condition(o).get("reason") == "PINIncorrect",
                timeout=150,
            )
            assert condition(issuer)["status"] == "False"
            waiting = [i for i in kube.get(path)["items"] if not i.get("status", {}).get("certificate")]
            assert waiting and all(condition(i).get("reason") != "Failed" for i in waiting)
        finally:
            token.pin_file.write_text(right_pin)
        kube.wait(
            f"{ISSUER_PATH.format(ns=namespace)}/ca",
            lambda o: condition(o).get("status") == "True",
            timeout=150,
        )
        _wait_issued(kube, namespace, len(names), timeout=180)
        seen.assert_each_published_once(kube, names)
        assert wrong_pin not in cluster.operator.log()
        assert wrong_pin not in str(kube.get("/api/v1/events"))


# -- a signing worker dies while signing -----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _worker_pids(cluster: Cluster) -> list[int]:
    """The operator's signing workers: its spawned children, not multiprocessing's resource tracker."""
    assert cluster.operator.process is not None
    workers = []
    for pid in _children(cluster.operator.process.pid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                workers.append(pid)
    return workers


def _cpu_ticks(pid: int) -> int:
    """User plus system CPU ticks of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _signing_now(workers: list[int]) -> int | None:
    """The worker that is computing right now (its CPU time moved over 50 ms): in SoftHSM2 the
    signature is computed in the worker's own process, so that worker is mid-task."""
    before = {pid: _cpu_ticks(pid) for pid in workers}
    time.sleep(0.05)
    moved = {pid: _cpu_ticks(pid) - before[pid] for pid in workers}
    busiest = max(moved, key=lambda pid: moved[pid], default=None)
    return busiest if busiest is not None and moved[busiest] > 0 else None


def _metric(cluster: Cluster, name: str) -> float:
    port = cluster.operator.env["TRUSTED_ISSUER_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_worker_killed_while_signing_request_retried_pool_heals(tmp_path: Path) -> None:
    with isolated_cluster(tmp_path) as (cluster, _token):
        kube, namespace = cluster.kube, "workerdeath"
        # RSA-4096 signs slowly enough (milliseconds in SoftHSM2) that the workers are still signing
        # while the burst's status writes go out; with P-256 they finished the whole burst in a fraction
        # of a second and then sat idle, so a kill during the burst often caught no signature.
        _ready_issuer(kube, namespace, algorithm="rsa-4096")
        path = CR_PATH.format(ns=namespace)
        seen = Publications(kube, path)
        assert len(_worker_pids(cluster)) == 2
        names = [f"r{i:03d}" for i in range(600)]
        cluster.operator.stop()  # the burst waits for the operator, so the workers are busy when killed
        _burst(kube, namespace, names)
        cluster.operator.start()
        kube.wait(f"{ISSUER_PATH.format(ns=namespace)}/ca", lambda o: condition(o).get("status") == "True")
        killed: list[int] = []
        deadline = time.monotonic() + 60
        # Requests in flight (a cheap scrape, where listing 600 requests took long enough on a loaded
        # machine for the burst to end first) means the workers are signing: kill one then.
        while time.monotonic() < deadline and len(killed) < 3:
            try:
                busy = _metric(cluster, "trusted_issuer_requests_in_flight") > 0
            except requests.ConnectionError:  # the restarted operator is not serving metrics yet
                busy = False
            if killed and not busy:
                break
            workers = _worker_pids(cluster)
            # Kill the worker that is computing, not one that happens to wait for its next task: a
            # kill between tasks proves only the restart, not the retry of a request mid-signature.
            target = _signing_now(workers) if len(workers) == 2 and busy else None
            if target is not None:
                os.kill(target, signal.SIGKILL)
                killed.append(target)
                time.sleep(0.3)
            time.sleep(0.02)
        assert killed, "no worker was killed: the burst was over too soon"
        _wait_issued(kube, namespace, len(names), timeout=180)
        seen.assert_each_published_once(kube, names)
        # The pool healed: two live workers again, none of them one that was killed, and restarts counted.
        healed = _worker_pids(cluster)
        assert len(healed) == 2 and not set(healed) & set(killed), (healed, killed)
        assert _metric(cluster, "trusted_issuer_signing_worker_restarts_total") >= len(killed)

        def retried() -> bool:
            # Events are posted from a background queue, so the last may land after the certificates.
            return any(
                e["reason"] == "Retrying" and "worker died" in e["message"]
                for e in kube.get(f"/api/v1/namespaces/{namespace}/events")["items"]
            )

        try:
            wait_until(retried, timeout=20)
        except AssertionError:
            raise AssertionError(
                "no request was caught mid-signature; the kill proved less than it should"
            ) from None


# -- the API server misbehaves ----------------------------------------------------------------------------


def test_api_errors_conflicts_slowness_and_dropped_watches(tmp_path: Path) -> None:
    with isolated_cluster(tmp_path, TRUSTED_ISSUER_MAX_RETRY_DURATION="300s") as (cluster, _token):
        kube, sandbox, namespace = cluster.kube, cluster.sandbox, "apifaults"
        _ready_issuer(kube, namespace)
        path = CR_PATH.format(ns=namespace)
        seen = Publications(kube, path)
        names = [f"r{i:03d}" for i in range(120)]
        cluster.operator.stop()
        _burst(kube, namespace, names)
        # Faults hit the operator's own calls: status writes, Events, watches and lists. The tests' client
        # creates and approves before they start, and its watch resumes after a drop.
        operator_writes = {"certificaterequests/status", "events"}
        rules = [
            sandbox.faults.add(status=500, share=0.2, verbs={"patch", "create"}, resources=operator_writes),
            sandbox.faults.add(
                status=409, share=0.2, verbs={"patch"}, resources={"certificaterequests/status"}
            ),
            sandbox.faults.add(status=503, share=0.1, verbs={"list"}, resources={"certificaterequests"}),
            sandbox.faults.add(delay=0.5, share=0.1, verbs={"patch", "create", "list"}),
            sandbox.faults.add(drop_watch_after=1.5, resources={"certificaterequests"}, times=12),
        ]
        cluster.operator.start()
        _wait_issued(kube, namespace, len(names), timeout=240)
        hits = {
            f"{r.status or ''}{'delay' if r.delay else ''}{'drop' if r.drop_watch_after else ''}": r.hits
            for r in rules
        }
        sandbox.faults.clear()
        seen.assert_each_published_once(kube, names)
        assert hits["500"] > 0 and hits["409"] > 0 and hits["delay"] > 0 and hits["drop"] > 0, hits
        assert cluster.operator.process is not None and cluster.operator.process.poll() is None
