"""End-to-end benchmark: the operator against the sandbox API server, beside the floor and the token.

    python -m benchmarks.bench_operator [--requests 1000] [--held 10000] [--algorithms ecdsa-p256,rsa-2048]

Every part runs in its own process, so no two share a GIL: the sandbox API server
(``python -m trusted_issuer_sandbox``), the operator (``python -m issuer run``, its own process group with
its signing workers), the floor (``benchmarks.floor_client``), and this driver, which creates the
requests, approves them and watches them.

A burst is ``--requests`` CertificateRequests (distinct P-256 CSRs, DNS SANs) naming a Ready
TrustedIssuer, created first without approval (the issuer has nothing to do yet; the driver waits
until the issuer's processes are quiet, i.e. the creations' watch events are digested), then
approved all at once, as cert-manager's approver does, by ``--concurrency`` concurrent status patches.
The API server drops ``status`` on create, as Kubernetes does, so approval is when a request becomes
work. A request's latency runs from the moment its approval patch returned to this driver to the
moment this driver's watch saw it with a certificate, both on this driver's monotonic clock (the
Ready condition's lastTransitionTime has one-second resolution). Throughput is requests over the time
from the first approval sent to the last certificate seen. Before each burst one request is issued to
warm up (worker processes, token sessions, connections) and is not counted.

Measured in one run, in this order:

- ``raw-token``: bench_signer's raw sign loop (python-pkcs11 signatures in ``--workers`` worker
  processes, 32 per task), and ``pipeline``: bench_signer's full signing path, no Kubernetes;
- ``floor``: the floor client (no signing, the same HTTP stack and concurrency) on a burst;
- ``operator <algorithm>``: the operator on a burst, for each algorithm;
- ``operator <algorithm> held``: the operator restarted with ``--held`` requests in the cluster, all
  but the burst's already issued before it starts (it lists them all), then the burst.

The peak RSS of the operator is sampled every 50 ms as the sum of VmRSS over its process group
(the operator, the signing workers and multiprocessing's helper); the sum of each process's VmHWM is
recorded too (an upper bound: the processes peak at different times). Results go to
``benchmarks/results/operator.json`` and a markdown table is printed for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks import bench_signer
from benchmarks.floor_client import fixed_certificate, issued_status
from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer.devtoken import init_dev_token
from issuer.signer.keys import Algorithm
from issuer.signer.pool import SignerPool
from issuer.tokens import PinSource, TokenConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "operator.json"
CR = "apis/cert-manager.io/v1/namespaces/{ns}/certificaterequests"
ISSUERS = "apis/trusted-issuer.dev/v1alpha1/namespaces/{ns}/trustedissuers"
GOAL_FLOOR_RATIO = 0.7
GOAL_P99_SECONDS = 2.0
GOAL_RSS_MIB = 150.0
#: Issue 13: operator CPU per certificate <= 1.5 x (floor CPU per write + token CPU per signature).
GOAL_CPU_RATIO = 1.5


# -- processes ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members.append(int(entry))
    return members


def _status_kib(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples the sum of VmRSS over a process group every ``interval`` on a thread; keeps the peak."""

    def __init__(self, pgid: int, interval: float = 0.05) -> None:
        self.pgid = pgid
        self.interval = interval
        self.peak_kib = 0
        self.hwm: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        total = 0
        for pid in _group_members(self.pgid):
            total += _status_kib(pid, "VmRSS")
            self.hwm[pid] = max(self.hwm.get(pid, 0), _status_kib(pid, "VmHWM"))
            if pid not in self.roles:
                self.roles[pid] = _role(pid, self.pgid)
        self.peak_kib = max(self.peak_kib, total)

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_sum_vm_rss_kib": self.peak_kib,
            "sum_vm_hwm_kib": sum(self.hwm.values()),
            "vm_hwm_kib_by_process": [
                {"role": self.roles.get(pid, "?"), "vm_hwm_kib": kib} for pid, kib in sorted(self.hwm.items())
            ],
        }


def _role(pid: int, pgid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    if pid == pgid:
        return "main"
    if b"resource_tracker" in argv:
        return "helper"
    # The pool starts its own lean workers (issuer.signer.worker); multiprocessing's under forkserver.
    return "worker" if b"issuer.signer.worker" in argv or b"spawn_main" in argv else "other"


@dataclass
class Child:
    """A child process in its own process group (so the whole group can be measured and stopped)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # The signing workers and multiprocessing's helper must be gone before the next phase.
        deadline = time.monotonic() + 10
        while _group_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in _group_members(self.process.pid):
            os.kill(pid, signal.SIGKILL)


def start_sandbox(workdir: Path) -> tuple[Child, str, Path]:
    kubeconfig = workdir / "kubeconfig"
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "trusted_issuer_sandbox",
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
    ]
    argv += ["--cert-manager"] + [
        a for crd in sorted((ROOT / "crds").glob("*.yaml")) for a in ("--crd", str(crd))
    ]
    child = Child("sandbox", argv, dict(os.environ), workdir / "sandbox.log")
    child.start()
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if time.monotonic() > deadline or child.process is None or child.process.poll() is not None:
            raise RuntimeError(f"the sandbox did not start; see {child.log_path}")
        time.sleep(0.05)
    return child, f"http://127.0.0.1:{port}/", kubeconfig


@dataclass
class ApiServer:
    """The API server the run uses: the sandbox (one Child) or a real control plane."""

    server: str
    kubeconfig: Path
    ssl_context: ssl.SSLContext | None
    #: Processes whose CPU is the API server's share (kube-apiserver and etcd; the sandbox).
    pids: list[int]
    stop: Any


def start_api(kind: str, workdir: Path) -> ApiServer:
    if kind == "sandbox":
        child, server, kubeconfig = start_sandbox(workdir)
        return ApiServer(server, kubeconfig, None, [child.pid], child.stop)
    # A real kube-apiserver + etcd (+ kube-controller-manager), as the cluster test tier runs them
    # (docs/cluster.md): our CRDs, cert-manager's and the chart applied; the driver, floor and operator
    # are its admin (the bench measures speed; the tests prove the chart's RBAC suffices).
    from tests.cluster.controlplane import ControlPlane, binaries_dir
    from tests.cluster.install import install

    plane = ControlPlane(workdir / "control-plane", binaries_dir())
    plane.start()
    try:
        install(plane)
    except BaseException:
        plane.stop()
        raise
    context = ssl.create_default_context(cafile=str(plane.pki.ca_file))
    context.load_cert_chain(str(plane.admin_client[0]), str(plane.admin_client[1]))
    pids = [c.process.pid for c in (plane.apiserver, plane.etcd) if c.process is not None]
    return ApiServer(plane.server + "/", plane.admin_kubeconfig, context, pids, plane.stop)


# -- the driver's API client --------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


class Api:
    def __init__(self, server: str, concurrency: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.session = aiohttp.ClientSession(
            base_url=server,
            connector=aiohttp.TCPConnector(limit=concurrency, ssl=ssl_context or False),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def call(self, method: str, path: str, body: Any = None, patch: bool = False) -> Any:
        headers = {"Content-Type": "application/merge-patch+json" if patch else "application/json"}
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, path, data=data, headers=headers) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiError(response.status, text)
            return json.loads(text) if text else None

    async def namespace(self, name: str) -> None:
        try:
            await self.call(
                "POST",
                "api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )
        except ApiError as err:
            if err.status != 409:
                raise

    async def approve(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        approved = {
            "type": "Approved",
            "status": "True",
            "reason": "cert-manager.io",
            "message": "bench",
            "lastTransitionTime": stamp,
        }
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": {"conditions": [approved]},
        }
        return dict(await self.call("PATCH", f"{CR.format(ns=namespace)}/{name}/status", patch, patch=True))

    async def close(self) -> None:
        await self.session.close()


def request_body(name: str, csr_b64: str, issuer: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "CertificateRequest",
        "metadata": {"name": name},
        "spec": {
            "request": csr_b64,
            "issuerRef": {"name": issuer, "kind": "TrustedIssuer", "group": "trusted-issuer.dev"},
            "usages": ["digital signature", "key encipherment", "server auth"],
            "duration": "24h",
        },
    }


async def _bounded(concurrency: int, jobs: Sequence[Any]) -> list[Any]:
    slots = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with slots:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


class Watcher:
    """Watches one namespace's requests; records when each was first seen with a certificate or failed."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.issued: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.api.call("GET", CR.format(ns=self.namespace))
        self._task = asyncio.create_task(self._run(listing["metadata"]["resourceVersion"]))

    async def _run(self, version: str) -> None:
        path = CR.format(ns=self.namespace)
        while True:
            params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "600"}
            async with self.api.session.get(
                path, params=params, timeout=aiohttp.ClientTimeout(total=None)
            ) as response:
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        now = time.monotonic()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        status = obj.get("status") or {}
                        name = obj.get("metadata", {}).get("name", "")
                        if status.get("certificate"):
                            self.issued.setdefault(name, now)
                            self.changed.set()
                        elif status.get("failureTime"):
                            ready = [c for c in status.get("conditions") or () if c.get("type") == "Ready"]
                            self.failed.setdefault(name, ready[0].get("message", "") if ready else "")
                            self.changed.set()

    async def wait_for(self, names: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(n not in self.issued and n not in self.failed for n in names):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sum(1 for n in names if n not in self.issued and n not in self.failed)
                raise TimeoutError(f"{missing} of {len(names)} requests unfinished after {timeout:.0f}s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class Burst:
    label: str
    requests: int
    held: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    rss: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    main_cpu_seconds: float = 0.0
    settle_seconds: float = 0.0
    other_cpu_share: float = 0.0
    api_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requests": self.requests,
            "held_in_cluster": self.held,
            "issued": len(self.latencies),
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "issued_per_second": round(self.rate, 1),
            "latency_seconds": {
                "p50": round(self.percentile(0.5), 3),
                "p90": round(self.percentile(0.9), 3),
                "p99": round(self.percentile(0.99), 3),
                "max": round(max(self.latencies, default=float("nan")), 3),
                "mean": round(statistics.fmean(self.latencies), 3) if self.latencies else None,
            },
            "process_cpu_seconds": round(self.cpu_seconds, 2),
            "seconds_to_digest_the_creations": round(self.settle_seconds, 2),
            "main_process_cpu_ms_per_request": round(1000 * self.main_cpu_seconds / self.requests, 3),
            "process_group_cpu_ms_per_request": round(1000 * self.cpu_seconds / self.requests, 3),
            "api_server_cpu_share_of_a_core": round(self.api_cpu_seconds / self.seconds, 3)
            if self.seconds
            else None,
            "rss": self.rss,
        }


def _machine_busy() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


async def create_requests(
    api: Api, namespace: str, names: Sequence[str], csrs: Sequence[str], issuer: str, concurrency: int
) -> list[dict[str, Any]]:
    path = CR.format(ns=namespace)
    jobs = [api.call("POST", path, request_body(n, csrs[i % len(csrs)], issuer)) for i, n in enumerate(names)]
    return await _bounded(concurrency, jobs)


async def burst(
    api: Api,
    label: str,
    namespace: str,
    issuer: str,
    csrs: Sequence[str],
    args: argparse.Namespace,
    pgid: int,
    held: int = 0,
    api_pids: Sequence[int] = (),
) -> Burst:
    """Warm up with one request, then create ``--requests`` unapproved requests, approve them all at once and
    wait until every one is issued or failed."""
    watcher = Watcher(api, namespace)
    await watcher.start()
    try:
        warm = f"warm-{label.replace(' ', '-')}"
        [body] = await create_requests(api, namespace, [warm], csrs, issuer, 1)
        await api.approve(namespace, warm, body)
        await watcher.wait_for([warm], timeout=120)
        names = [f"r{i:05d}" for i in range(args.requests)]
        bodies = await create_requests(api, namespace, names, csrs, issuer, args.concurrency)
        # The issuer digests the creations' watch events before the clock starts, so that a burst of
        # 10,000 measures the approvals as a burst of 1,000 does (the floor waits the same way).
        settle = await _quiet(pgid)
        approved_at: dict[str, float] = {}

        async def approve(name: str, body: dict[str, Any]) -> None:
            await api.approve(namespace, name, body)
            approved_at[name] = time.monotonic()

        members = _group_members(pgid)
        cpu0, main0, machine0 = _cpu_seconds(members), _cpu_seconds([pgid]), _machine_busy()
        api0 = _cpu_seconds(api_pids)
        profiler = _start_profiler(args.profile, label, pgid)
        with RssSampler(pgid) as sampler:
            started = time.monotonic()
            await _bounded(args.concurrency, [approve(n, b) for n, b in zip(names, bodies, strict=True)])
            await watcher.wait_for(names, timeout=args.timeout)
            finished = max([watcher.issued.get(n, started) for n in names])
            result = Burst(label, args.requests, held, seconds=finished - started)
        _stop_profiler(profiler)
        members = _group_members(pgid)
        result.cpu_seconds = _cpu_seconds(members) - cpu0
        result.settle_seconds = settle
        result.main_cpu_seconds = _cpu_seconds([pgid]) - main0
        result.other_cpu_share = (_machine_busy() - machine0) / max(result.seconds, 1e-9)
        result.api_cpu_seconds = _cpu_seconds(api_pids) - api0
        result.latencies = [watcher.issued[n] - approved_at[n] for n in names if n in watcher.issued]
        result.failed = sum(1 for n in names if n in watcher.failed)
        if result.failed:
            example = next(watcher.failed[n] for n in names if n in watcher.failed)
            print(f"# {label}: {result.failed} failed, e.g. {example!r}", file=sys.stderr)
        result.rss = sampler.to_json()
        return result
    finally:
        await watcher.stop()


async def _quiet(pgid: int, share: float = 0.1, window: float = 0.5, limit: float = 120.0) -> float:
    """Wait until the process group used under ``share`` of a core over ``window``; returns the wait."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = _cpu_seconds(_group_members(pgid))
        await asyncio.sleep(window)
        if _cpu_seconds(_group_members(pgid)) - before < share * window:
            break
    return time.monotonic() - started


def _start_profiler(directory: Path | None, label: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy on the burst's main process (not its workers), as collapsed stacks, when ``--profile``."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{label.replace(' ', '-')}.txt"
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=30)


async def hold(
    api: Api, namespace: str, count: int, csrs: Sequence[str], issuer: str, concurrency: int
) -> None:
    """``count`` requests already issued (created, approved, given a certificate), as clusters keep them."""
    certificate, ca = fixed_certificate()
    path = CR.format(ns=namespace)

    async def one(i: int) -> None:
        name = f"held-{i:05d}"
        body = await api.call("POST", path, request_body(name, csrs[i % len(csrs)], issuer))
        approved = await api.approve(namespace, name, body)
        status = issued_status(approved["status"]["conditions"], certificate, ca)
        patch = {"metadata": {"resourceVersion": approved["metadata"]["resourceVersion"]}, "status": status}
        await api.call("PATCH", f"{path}/{name}/status", patch, patch=True)

    await _bounded(concurrency, [one(i) for i in range(count)])


async def wait_issuer_ready(api: Api, namespace: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = await api.call("GET", f"{ISSUERS.format(ns=namespace)}/{name}")
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions") or ()
        ):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"issuer {namespace}/{name} not Ready after {timeout:.0f}s")


def issuer_body(name: str, algorithm: str) -> dict[str, Any]:
    return {
        "apiVersion": "trusted-issuer.dev/v1alpha1",
        "kind": "TrustedIssuer",
        "metadata": {"name": name},
        "spec": {
            "tokenProfile": "bench",
            "key": {"algorithm": algorithm},
            "ca": {"selfSigned": {"subject": f"CN=bench {algorithm},O=trusted-issuer bench"}},
            "policy": {},
            "deletionPolicy": "Destroy",
        },
    }


# -- the run ------------------------------------------------------------------------------------------------


def signing_rates(
    config: TokenConfig, algorithms: Sequence[Algorithm], workers: int, seconds: float
) -> dict[str, dict[str, float]]:
    """bench_signer's raw sign loop and signing pipeline, in this run, with the operator's worker count."""
    rates: dict[str, dict[str, float]] = {}
    requests = bench_signer.make_requests(100)
    with SignerPool(workers) as pool:
        for algorithm in algorithms:
            issuers = bench_signer.make_issuers(pool, config, algorithm)
            rates[algorithm.value] = {}
            for kind in ("raw-token", "pipeline"):
                submit, units = bench_signer._variant_submit(pool, issuers, kind, requests, 32)
                timing, _ = bench_signer.measure(
                    submit, seconds=seconds, inflight=4 * workers, warmup_tasks=8 * workers
                )
                rates[algorithm.value][kind] = timing.tasks * units / timing.seconds
                print(f"# {algorithm.value} {kind}: {rates[algorithm.value][kind]:.0f}/s", file=sys.stderr)
    return rates


def operator_child(
    workdir: Path,
    kubeconfig: Path,
    profiles: Path,
    token_env: dict[str, str],
    args: argparse.Namespace,
    label: str,
) -> Child:
    env = {
        **os.environ,
        **token_env,
        "KUBECONFIG": str(kubeconfig),
        "TRUSTED_ISSUER_PROFILES_FILE": str(profiles),
        "TRUSTED_ISSUER_WORKERS": str(args.workers),
        "TRUSTED_ISSUER_CONCURRENCY": str(args.concurrency),
        "TRUSTED_ISSUER_METRICS_PORT": str(_free_port()),
    }
    return Child(
        f"operator {label}", [sys.executable, "-m", "issuer", "run"], env, workdir / f"operator-{label}.log"
    )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    token, _ = init_dev_token(workdir / "token", "bench-operator")
    os.environ.update(token.env())
    config = TokenConfig(
        module=os.environ.get("TRUSTED_ISSUER_PKCS11_MODULE", DEFAULT_PKCS11_MODULE),
        token_label=token.label,
        pin=PinSource(file=token.pin_file),
    )
    profiles = workdir / "profiles.yaml"
    profiles.write_text(
        yaml.safe_dump(
            {
                "profiles": {
                    "bench": {
                        "module": config.module,
                        "tokenLabel": token.label,
                        "pinFile": str(token.pin_file),
                    }
                }
            }
        )
    )
    algorithms = [Algorithm(a) for a in args.algorithms.split(",")]

    started = time.perf_counter()
    csrs = [base64.b64encode(r.csr_pem).decode() for r in bench_signer.make_requests(args.csrs)]
    print(f"# {len(csrs)} CSRs in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    signing = signing_rates(config, algorithms, args.workers, args.signer_seconds)

    api_server = start_api(args.api, workdir)
    server, kubeconfig, api_pids = api_server.server, api_server.kubeconfig, api_server.pids
    api = Api(server, args.concurrency, api_server.ssl_context)
    bursts: list[Burst] = []
    try:
        # The floor: the same bursts, nothing signed.
        await api.namespace("floor")
        floor = Child(
            "floor",
            [
                sys.executable,
                "-m",
                "benchmarks.floor_client",
                "--kubeconfig",
                str(kubeconfig),
                "--concurrency",
                str(args.concurrency),
            ],
            dict(os.environ),
            workdir / "floor.log",
        )
        floor.start()
        try:
            bursts.append(
                await burst(api, "floor", "floor", "floor", csrs, args, floor.pid, api_pids=api_pids)
            )
        finally:
            floor.stop()
        _report_burst(bursts[-1])
        # Clean the floor's requests away so that every operator phase meets the same cluster.
        await api.call("DELETE", CR.format(ns="floor"))

        for algorithm in algorithms:
            namespace = f"bench-{algorithm.value}"
            await api.namespace(namespace)
            await api.call("POST", ISSUERS.format(ns=namespace), issuer_body("ca", algorithm.value))
            operator = operator_child(workdir, kubeconfig, profiles, token.env(), args, algorithm.value)
            operator.start()
            try:
                await wait_issuer_ready(api, namespace, "ca")
                bursts.append(
                    await burst(
                        api,
                        f"operator {algorithm.value}",
                        namespace,
                        "ca",
                        csrs,
                        args,
                        operator.pid,
                        api_pids=api_pids,
                    )
                )
            finally:
                operator.stop()
            _report_burst(bursts[-1])
            await api.call("DELETE", CR.format(ns=namespace))

        if args.held > args.requests:
            algorithm = algorithms[0]
            namespace = f"bench-{algorithm.value}"
            preissued = args.held - args.requests
            started = time.perf_counter()
            await hold(api, namespace, preissued, csrs, "ca", args.concurrency)
            print(
                f"# {preissued} issued requests held in {namespace} in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
            )
            operator = operator_child(
                workdir, kubeconfig, profiles, token.env(), args, f"{algorithm.value}-held"
            )
            operator.start()
            try:
                bursts.append(
                    await burst(
                        api,
                        f"operator {algorithm.value} held",
                        namespace,
                        "ca",
                        csrs,
                        args,
                        operator.pid,
                        held=args.held,
                        api_pids=api_pids,
                    )
                )
            finally:
                operator.stop()
            _report_burst(bursts[-1])
    finally:
        await api.close()
        api_server.stop()
    return {"signing": signing, "bursts": bursts}


def _report_burst(b: Burst) -> None:
    print(
        f"# {b.label}: {len(b.latencies)}/{b.requests} in {b.seconds:.2f}s = {b.rate:.0f}/s, "
        f"p50 {b.percentile(0.5):.2f}s p99 {b.percentile(0.99):.2f}s, "
        f"peak RSS {b.rss.get('peak_sum_vm_rss_kib', 0) / 1024:.0f} MiB, "
        f"CPU/request {1000 * b.main_cpu_seconds / b.requests:.2f} ms main, "
        f"{1000 * b.cpu_seconds / b.requests:.2f} ms group, "
        f"machine busy {b.other_cpu_share:.0%} of a core, "
        f"API server {b.api_cpu_seconds / max(b.seconds, 1e-9):.0%} of a core",
        file=sys.stderr,
    )


def ratios(
    signing: dict[str, dict[str, float]], bursts: Sequence[Burst], workers: int = 2
) -> list[dict[str, Any]]:
    by_label = {b.label: b for b in bursts}
    floor = by_label.get("floor")
    rows: list[dict[str, Any]] = []

    def row(name: str, value: float, goal: float | None, higher_is_better: bool = True) -> None:
        met = None if goal is None else (value >= goal if higher_is_better else value <= goal)
        rows.append({"ratio": name, "value": round(value, 3), "goal": goal, "met": met})

    for b in bursts:
        if not b.label.startswith("operator"):
            continue
        algorithm = b.label.split()[1]
        if floor is not None and floor.rate:
            row(
                f"{b.label} / floor (issued/s)",
                b.rate / floor.rate,
                GOAL_FLOOR_RATIO if "held" not in b.label else None,
            )
        raw = signing.get(algorithm, {}).get("raw-token")
        if raw:
            row(f"{b.label} / raw-token (issued/s per sig/s)", b.rate / raw, None)
        pipeline = signing.get(algorithm, {}).get("pipeline")
        if pipeline:
            row(f"{b.label} / signing pipeline", b.rate / pipeline, None)
        if floor is not None and raw and "held" not in b.label:
            # Machine-independent: the operator's whole CPU per certificate (main process and workers)
            # over the floor's CPU per status write plus the token's CPU per signature (the raw loop
            # keeps ``workers`` processes busy, so a signature costs workers / rate CPU seconds).
            floor_cpu = floor.cpu_seconds / floor.requests
            token_cpu = workers / raw
            row(
                f"{b.label} CPU per certificate / (floor CPU per write + token CPU per signature)",
                (b.cpu_seconds / b.requests) / (floor_cpu + token_cpu),
                GOAL_CPU_RATIO,
                higher_is_better=False,
            )
    return rows


def render(document: dict[str, Any]) -> str:
    machine = document["machine"]
    s = document["settings"]
    lines = [
        f"End-to-end, `make bench` ({machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']}, "
        f"SoftHSM2 {machine['softhsm']}; {s['workers']} signing workers, concurrency {s['concurrency']}; "
        f"{'sandbox API server' if s['api'] == 'sandbox' else 'kube-apiserver + etcd'}, operator, floor and "
        "driver each in its own process):",
        "",
        "| run | requests in cluster | issued/s | p50 | p90 | p99 | peak RSS (MiB) | API server CPU | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in document["bursts"]:
        lat = b["latency_seconds"]
        peak = b["rss"].get("peak_sum_vm_rss_kib", 0) / 1024
        goals = []
        if b["label"].startswith("operator") and "held" not in b["label"]:
            goals.append(
                f"p99 < {GOAL_P99_SECONDS:g} s: {'met' if lat['p99'] < GOAL_P99_SECONDS else '**not met**'}"
            )
        if "held" in b["label"]:
            goals.append(f"RSS < {GOAL_RSS_MIB:g} MiB: {'met' if peak < GOAL_RSS_MIB else '**not met**'}")
        failed = f" ({b['failed']} failed)" if b["failed"] else ""
        lines.append(
            f"| {b['label']}{failed} | {b['held_in_cluster'] or b['requests']} | "
            f"{b['issued_per_second']:.0f} | {lat['p50']:.2f} s | {lat['p90']:.2f} s | {lat['p99']:.2f} s | "
            f"{peak:.0f} | {b.get('api_server_cpu_share_of_a_core') or 0:.0%} | {'; '.join(goals)} |"
        )
    lines += ["", "| ratio | value | goal |", "|---|---|---|"]
    for r in document["ratios"]:
        relation = "<=" if "CPU per certificate" in r["ratio"] else ">="
        goal = (
            "" if r["goal"] is None else f"{relation} {r['goal']:g}: {'met' if r['met'] else '**not met**'}"
        )
        lines.append(f"| {r['ratio']} | {r['value']:.3f} | {goal} |")
    signing = ", ".join(
        f"{alg} raw token {v['raw-token']:.0f} sig/s, pipeline {v['pipeline']:.0f} cert/s"
        for alg, v in document["signing"].items()
    )
    lines += ["", f"Signing measured in the same run ({s['workers']} workers): {signing}."]
    busy = document["machine_busy_cores"].values()
    lines.append(
        f"The machine's {machine['cores']} cores were {min(busy):.1f}-{max(busy):.1f} busy during the bursts "
        "(API server, driver, operator or floor, and anything else running): ratios within one run are "
        "the numbers to compare."
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_operator", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=int(os.environ.get("BENCH_REQUESTS", "1000")),
        help="requests per burst (default 1000, or BENCH_REQUESTS)",
    )
    parser.add_argument(
        "--held",
        type=int,
        default=int(os.environ.get("BENCH_HELD", "10000")),
        help="requests in the cluster for the held run, the burst included; 0 skips it (default 10000)",
    )
    parser.add_argument(
        "--algorithms",
        default="ecdsa-p256,rsa-2048",
        help="issuer key algorithms, comma-separated; the held run uses the first",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="signing worker processes of the operator (default 2)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="operator and floor concurrency, and the driver's (default 64)",
    )
    parser.add_argument("--csrs", type=int, default=200, help="distinct CSRs to cycle through")
    parser.add_argument(
        "--signer-seconds", type=float, default=2.0, help="timed seconds of each signing-core variant"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds a burst may take before the run fails"
    )
    parser.add_argument(
        "--profile", type=Path, help="record each burst's main process with py-spy (collapsed stacks) here"
    )
    parser.add_argument(
        "--api",
        choices=("sandbox", "cluster"),
        default="sandbox",
        help="the API server: the in-process sandbox, or a real kube-apiserver + etcd (docs/cluster.md)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON results (default {RESULTS}, operator-cluster.json for --api cluster)",
    )
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = RESULTS if args.api == "sandbox" else RESULTS.with_name("operator-cluster.json")
    if args.requests < 1 or args.workers < 1 or args.concurrency < 1 or args.held < 0:
        parser.error("--requests, --workers and --concurrency must be positive; --held not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        try:
            outcome = asyncio.run(run(args, Path(tmp)))
        except BaseException:
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name} (last lines)", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
            raise
    bursts: list[Burst] = outcome["bursts"]
    document = {
        "benchmark": "operator",
        "latency_clock": (
            "from the return of the request's approval patch to this driver's watch seeing its "
            "certificate (driver's monotonic clock)"
        ),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": bench_signer.machine_facts(),
        "signing": {
            alg: {k: round(v, 1) for k, v in rates.items()} for alg, rates in outcome["signing"].items()
        },
        "bursts": [b.to_json() for b in bursts],
        "ratios": ratios(outcome["signing"], bursts, args.workers),
        "machine_busy_cores": {b.label: round(b.other_cpu_share, 2) for b in bursts},
    }
    print(render(document))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
