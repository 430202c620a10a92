"""Signing-core benchmark: certificates per second through the signer pool, against a ceiling and a peer.

    python -m benchmarks.bench_signer [--seconds 3] [--only rsa-2048,pipeline] [--workers 1,2]

Measured side by side in one run, on one temporary SoftHSM2 token, for ECDSA P-256 and RSA-2048 CA keys
and each worker count:

- ``pipeline``: ``worker.sign_request`` through ``SignerPool.submit``, its issuer pickled once by
  ``SignerPool.pickled_once`` (what ``SignerPool.sign`` runs): parse and verify the CSR, check the CA,
  policy, build, sign in the token;
- ``raw-token``: the ceiling, a bare python-pkcs11 sign loop in the same worker processes
  (``--raw-batch`` signatures per task, so the loop and not the dispatch is measured);
- ``raw-token-1``: the same loop with one signature per task, to show what dispatch alone costs;
- ``software``: the peer, the same pipeline with a software CA key in ``cryptography``, its issuer
  shipped the same way.

Every variant keeps ``--inflight`` (default 4) x workers tasks in flight for ``--seconds``, after a
warm-up that opens the sessions and proves the keys; with ``--rounds`` above 1 the rate is the median
round. CSRs (distinct P-256 keys, DNS SANs) are made before anything is timed. The machine may be
shared, so each run also records the CPU the rest of the machine used meanwhile ("other"); a run with
more than ``--max-other`` of a core is repeated once and flagged "noisy" if it stays so. The numbers,
the ratios against the goals, the peak RSS of the process tree (sum of each process's VmHWM) and the
machine's facts go to ``benchmarks/results/signer.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from benchmarks import signer_tasks
from benchmarks.signer_tasks import SoftwareIssuer
from issuer.clock import utcnow
from issuer.settings import DEFAULT_PKCS11_MODULE
from issuer.signer import worker
from issuer.signer.certificates import PEMBundle, SigningRequest, build_ca_certificate, parse_subject
from issuer.signer.devtoken import init_dev_token
from issuer.signer.keys import Algorithm, IssuerKey, KeyHandle, public_key_fingerprint
from issuer.signer.policy import Policy
from issuer.signer.pool import SignerPool
from issuer.tokens import PinSource, TokenConfig

RESULTS = Path(__file__).resolve().parent / "results" / "signer.json"
ALGORITHMS = (Algorithm.ECDSA_P256, Algorithm.RSA_2048)
KINDS = ("pipeline", "raw-token", "raw-token-1", "software")
DNS_DOMAINS = ("bench.example", "svc.cluster.local")
CA_LIFETIME = timedelta(days=365)
LEAF_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class Goal:
    """A ratio the issue asks for: ``numerator / denominator >= minimum``."""

    label: str
    numerator: tuple[str, str, int]  # (algorithm, kind, workers)
    denominator: tuple[str, str, int]
    minimum: float | None  # None: shown for context, no goal


@dataclass
class Timing:
    """One timed run of one variant."""

    tasks: int
    seconds: float
    parent_cpu: float  # CPU seconds of this process (the pool's dispatch threads and the driver)
    workers_cpu: float  # CPU seconds of every descendant (the workers)
    other_cpu: float  # CPU seconds the rest of the machine used meanwhile: noise if not near zero


@dataclass
class Measurement:
    """A variant over every round: its rate is the median round's."""

    algorithm: str
    kind: str
    workers: int
    inflight: int
    units_per_task: int
    timings: list[Timing] = field(default_factory=list)
    repeated: int = 0  # runs thrown away because the rest of the machine was busy

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.algorithm, self.kind, self.workers)

    @property
    def rates(self) -> list[float]:
        return [t.tasks * self.units_per_task / t.seconds for t in self.timings]

    @property
    def rate(self) -> float:
        """Units (certificates or signatures) per second, median over rounds."""
        return statistics.median(self.rates)

    def share(self, what: str) -> float:
        """CPU of ``what`` (parent, workers, other) as a fraction of one core, over all rounds."""
        return sum(getattr(t, f"{what}_cpu") for t in self.timings) / sum(t.seconds for t in self.timings)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "variant": self.kind,
            "workers": self.workers,
            "inflight": self.inflight,
            "units_per_task": self.units_per_task,
            "unit": "certificate" if self.kind in ("pipeline", "software") else "signature",
            "rate": round(self.rate, 1),
            "rates": [round(r, 1) for r in self.rates],
            "tasks": sum(t.tasks for t in self.timings),
            "seconds": round(sum(t.seconds for t in self.timings), 3),
            "cpu_cores": {w: round(self.share(w), 3) for w in ("parent", "workers", "other")},
            "repeated_for_noise": self.repeated,
        }


@dataclass
class Issuers:
    """One algorithm's CA, twice: its key in the token, and a software key for the peer."""

    token: IssuerKey
    software: SoftwareIssuer
    ca_pem: bytes


@dataclass
class Run:
    measurements: list[Measurement] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)
    ipc_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    repeats_left: int = 4  # runs that may be repeated because the machine was busy


# -- /proc: the process tree, its CPU time and peak RSS --------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(_descendants(child))
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _workers_cpu() -> float:
    return sum(_cpu_seconds(pid) for pid in _descendants(os.getpid()))


def _machine_busy() -> float:
    """CPU seconds every core of the machine spent not idle (user, nice, system, irq, softirq, steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _tree_rss(workers: int) -> dict[str, Any]:
    """VmHWM (peak RSS) of this process and every descendant: workers and multiprocessing helpers."""
    me = os.getpid()
    processes = []
    for pid in [me, *_descendants(me)]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        # A worker is `python -c "from issuer.signer.worker import main; ..."` (the pool's spawn) or a
        # multiprocessing child (forkserver); multiprocessing's resource tracker and fork server are helpers.
        command = b" ".join(argv)
        role = (
            "parent"
            if pid == me
            else "worker"
            if b"issuer.signer.worker" in command or b"spawn_main" in command
            else "helper"
        )
        if role == "worker" and b"resource_tracker" in command:
            role = "helper"
        processes.append({"pid": pid, "role": role, "vm_hwm_kib": _status_kib(pid, "VmHWM")})
    return {
        "workers": workers,
        "processes": processes,
        "sum_vm_hwm_kib": sum(p["vm_hwm_kib"] for p in processes),
    }


# -- inputs -----------------------------------------------------------------------------------------------


def make_requests(count: int) -> list[SigningRequest]:
    """Distinct P-256 CSRs shaped like cert-manager's: CN, DNS SANs, KeyUsage from the default usages."""
    requests = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        host = f"app-{i}.bench.example"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(host), x509.DNSName(f"app-{i}.bench.svc.cluster.local")]
                ),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        requests.append(
            SigningRequest(csr_pem=csr.public_bytes(serialization.Encoding.PEM), duration=LEAF_LIFETIME)
        )
    return requests


def make_issuers(pool: SignerPool, config: TokenConfig, algorithm: Algorithm) -> Issuers:
    """A token CA (key generated in the token) and a software CA of the same algorithm and policy."""
    policy = Policy(dns_domains=DNS_DOMAINS)
    handle: KeyHandle = pool.generate_key.blocking(config, algorithm, f"bench-{algorithm.value}")
    ca_pem = pool.create_self_signed_ca.blocking(
        config, handle, f"CN=bench {algorithm.value} CA", CA_LIFETIME
    )
    software_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm.family == "ec":
        software_key = ec.generate_private_key(ec.SECP256R1())
    else:
        software_key = rsa.generate_private_key(public_exponent=65537, key_size=algorithm.rsa_bits)
    software_ca = build_ca_certificate(
        software_key,
        parse_subject(f"CN=bench {algorithm.value} software CA"),
        duration=CA_LIFETIME,
        now=utcnow(),
    )
    software = SoftwareIssuer(
        key_pem=software_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        key_sha256=public_key_fingerprint(software_key.public_key()),
        ca_pem=software_ca.public_bytes(serialization.Encoding.PEM),
        policy=policy,
    )
    return Issuers(IssuerKey(config, handle, ca_pem, policy), software, ca_pem)


# -- the measurement --------------------------------------------------------------------------------------

Submit = Callable[[int], concurrent.futures.Future[Any]]


def _variant_submit(
    pool: SignerPool, issuers: Issuers, kind: str, requests: Sequence[SigningRequest], raw_batch: int
) -> tuple[Submit, int]:
    """How to submit task ``i`` of a variant, and how many units (certificates, signatures) a task is."""
    if kind == "pipeline":
        return (
            lambda i: pool.submit(
                worker.sign_request,
                pool.clock(),
                pool.pickled_once(issuers.token),
                requests[i % len(requests)],
            ),
            1,
        )
    if kind == "software":
        return (
            lambda i: pool.submit(
                signer_tasks.software_sign_request,
                pool.pickled_once(issuers.software),
                requests[i % len(requests)],
                pool.clock(),
            ),
            1,
        )
    batch = raw_batch if kind == "raw-token" else 1
    token, handle = issuers.token.token, issuers.token.key
    return lambda _i: pool.submit(signer_tasks.raw_token_sign, token, handle, batch), batch


def _check_result(result: Any, kind: str, issuers: Issuers) -> None:
    """The warm-up's answer must be a real certificate from the right CA (a fast wrong answer is no use)."""
    if kind not in ("pipeline", "software"):
        return
    assert isinstance(result, PEMBundle)
    leaf = x509.load_pem_x509_certificates(result.chain_pem)[0]
    ca_pem = issuers.ca_pem if kind == "pipeline" else issuers.software.ca_pem
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))


def measure(submit: Submit, *, seconds: float, inflight: int, warmup_tasks: int) -> tuple[Timing, Any]:
    """Keep ``inflight`` tasks going for ``seconds``; returns the timing and a warm-up task's result.

    A semaphore of ``inflight`` slots paces submissions and each task's done-callback frees its slot,
    so the driver costs the parent little and never scans the pending set. Elapsed runs from the first
    submission to the last completion: submitting stops at the deadline and the tasks in flight are
    drained and counted, so no finished work is left out of the rate.
    """
    warm = [submit(i) for i in range(warmup_tasks)]
    sample = next(f.result() for f in warm)
    slots = threading.Semaphore(inflight)
    failures: list[BaseException] = []
    finished = [0, 0.0]  # tasks, time of the last completion

    def done(future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            failures.append(error)
        finished[0] += 1
        finished[1] = time.perf_counter()
        slots.release()

    parent0, workers0, machine0 = time.process_time(), _workers_cpu(), _machine_busy()
    start = time.perf_counter()
    deadline = start + seconds
    submitted = 0
    while not failures and time.perf_counter() < deadline:
        slots.acquire()
        submit(submitted).add_done_callback(done)
        submitted += 1
    for _ in range(inflight):
        slots.acquire()
    if failures:
        raise failures[0]
    parent = time.process_time() - parent0
    workers = _workers_cpu() - workers0
    other = max(0.0, _machine_busy() - machine0 - parent - workers)
    return Timing(finished[0], finished[1] - start, parent, workers, other), sample


def _selected(selectors: Sequence[str], algorithm: Algorithm, kind: str) -> bool:
    if not selectors:
        return True
    parts = {algorithm.value, kind}
    return any(set(s.split("/")) <= parts for s in selectors)


def _ipc_bytes(issuers: Issuers, request: SigningRequest) -> dict[str, int]:
    """Pickled sizes of what crosses the pipe per task: the pool pickles ``(function, arguments)``, the
    issuer among them already pickled (once) by ``SignerPool.pickled_once``."""
    now = utcnow()
    token_issuer = pickle.dumps(issuers.token, pickle.HIGHEST_PROTOCOL)
    software_issuer = pickle.dumps(issuers.software, pickle.HIGHEST_PROTOCOL)
    task = (worker.sign_request, (now, token_issuer, request))
    software_task = (signer_tasks.software_sign_request, (software_issuer, request, now))
    return {
        "pipeline_task": len(pickle.dumps(task, pickle.HIGHEST_PROTOCOL)),
        "issuer_key": len(token_issuer),
        "request": len(pickle.dumps(request, pickle.HIGHEST_PROTOCOL)),
        "software_task": len(pickle.dumps(software_task, pickle.HIGHEST_PROTOCOL)),
    }


def run(args: argparse.Namespace) -> tuple[Run, dict[str, Any]]:
    selectors = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else []
    worker_counts = [int(w) for w in args.workers.split(",")]
    result = Run()
    with tempfile.TemporaryDirectory(prefix="bench-signer-") as tmp:
        token, _ = init_dev_token(Path(tmp), "bench-signer")
        # Spawned workers inherit the environment when they start: set it before the first pool.
        os.environ.update(token.env())
        config = TokenConfig(
            module=os.environ.get("TRUSTED_ISSUER_PKCS11_MODULE", DEFAULT_PKCS11_MODULE),
            token_label=token.label,
            pin=PinSource(file=token.pin_file),
        )
        started = time.perf_counter()
        requests = make_requests(args.csrs)
        print(f"# {len(requests)} CSRs in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        algorithms = [a for a in ALGORITHMS if any(_selected(selectors, a, k) for k in KINDS)]
        issuers: dict[Algorithm, Issuers] = {}
        for workers in worker_counts:
            with SignerPool(workers) as pool:
                for algorithm in algorithms:
                    if algorithm not in issuers:
                        issuers[algorithm] = make_issuers(pool, config, algorithm)
                        result.ipc_bytes[algorithm.value] = _ipc_bytes(issuers[algorithm], requests[0])
                variants = [(a, k) for a in algorithms for k in KINDS if _selected(selectors, a, k)]
                inflight = args.inflight * workers
                measured: dict[tuple[Algorithm, str], Measurement] = {}
                # Rounds go round every variant in turn, so a slow spell of the machine hits them alike.
                for _ in range(args.rounds):
                    for algorithm, kind in variants:
                        submit, units = _variant_submit(
                            pool, issuers[algorithm], kind, requests, args.raw_batch
                        )
                        m = measured.setdefault(
                            (algorithm, kind), Measurement(algorithm.value, kind, workers, inflight, units)
                        )
                        # The machine may be shared: a run during which the rest of the machine took
                        # more than --max-other of a core is run again (once, within a budget for the
                        # whole benchmark, so that it stays short) and is flagged in the table if noisy.
                        while True:
                            timing, sample = measure(
                                submit, seconds=args.seconds, inflight=inflight, warmup_tasks=2 * inflight
                            )
                            other = timing.other_cpu / timing.seconds
                            print(
                                f"# {algorithm.value:10} {kind:11} w={workers} "
                                f"{timing.tasks * units / timing.seconds:9.1f}/s ({timing.tasks} tasks, "
                                f"{timing.seconds:.2f}s, other cpu {other:.0%})",
                                file=sys.stderr,
                            )
                            if other <= args.max_other or m.repeated >= 1 or result.repeats_left <= 0:
                                break
                            m.repeated += 1
                            result.repeats_left -= 1
                        _check_result(sample, kind, issuers[algorithm])
                        m.timings.append(timing)
                result.measurements.extend(measured.values())
                result.rss.append(_tree_rss(workers))
    return result, machine_facts()


# -- report -----------------------------------------------------------------------------------------------


def goals(worker_counts: Sequence[int]) -> Iterator[Goal]:
    ec, rs = Algorithm.ECDSA_P256.value, Algorithm.RSA_2048.value
    for w in worker_counts:
        yield Goal(f"rsa-2048 pipeline/raw-token w={w}", (rs, "pipeline", w), (rs, "raw-token", w), 0.75)
        yield Goal(f"ecdsa-p256 pipeline/software w={w}", (ec, "pipeline", w), (ec, "software", w), 0.7)
        yield Goal(f"ecdsa-p256 pipeline/raw-token w={w}", (ec, "pipeline", w), (ec, "raw-token", w), None)
        yield Goal(f"rsa-2048 pipeline/software w={w}", (rs, "pipeline", w), (rs, "software", w), None)
    if 1 in worker_counts and 2 in worker_counts:
        for alg in (ec, rs):
            yield Goal(f"{alg} pipeline 2w/1w", (alg, "pipeline", 2), (alg, "pipeline", 1), 1.7)
            for kind in ("raw-token", "software"):
                yield Goal(f"{alg} {kind} 2w/1w", (alg, kind, 2), (alg, kind, 1), None)


def ratios(run_: Run, worker_counts: Sequence[int]) -> list[dict[str, Any]]:
    by_key = {m.key: m for m in run_.measurements}
    rows = []
    for goal in goals(worker_counts):
        top, bottom = by_key.get(goal.numerator), by_key.get(goal.denominator)
        if top is None or bottom is None:
            continue
        value = top.rate / bottom.rate
        rows.append(
            {
                "ratio": goal.label,
                "value": round(value, 3),
                "goal": goal.minimum,
                "met": None if goal.minimum is None else value >= goal.minimum,
            }
        )
    return rows


def machine_facts() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    softhsm = subprocess.run(
        ["softhsm2-util", "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "softhsm": softhsm,
        "python_pkcs11": metadata.version("python-pkcs11"),
        "cryptography": metadata.version("cryptography"),
        "openssl": backend.openssl_version_text(),
    }


def render(
    run_: Run, ratio_rows: list[dict[str, Any]], machine: dict[str, Any], args: argparse.Namespace
) -> str:
    lines = [
        f"signer benchmark: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"SoftHSM2 {machine['softhsm']}; {args.seconds:g}s per variant, {args.inflight}x workers in flight",
        "",
        f"{'algorithm':11} {'variant':12} {'workers':>7} {'rate':>9} {'':6} "
        f"{'parent':>7} {'workers':>8} {'other':>6}   (CPU in cores; other = rest of the machine)",
    ]
    for m in run_.measurements:
        unit = "cert/s" if m.kind in ("pipeline", "software") else "sig/s"
        lines.append(
            f"{m.algorithm:11} {m.kind:12} {m.workers:>7} {m.rate:>9.1f} {unit:6} "
            f"{m.share('parent'):>7.0%} {m.share('workers'):>8.0%} {m.share('other'):>6.0%}"
            + ("  noisy: the machine was busy" if m.share("other") > args.max_other else "")
        )
    lines += ["", f"{'ratio':36} {'value':>6}  goal"]
    for row in ratio_rows:
        verdict = "" if row["goal"] is None else f">= {row['goal']:.2f}  {'met' if row['met'] else 'NOT MET'}"
        lines.append(f"{row['ratio']:36} {row['value']:>6.2f}  {verdict}")
    peak = max(run_.rss, key=lambda r: r["sum_vm_hwm_kib"], default=None)
    if peak is not None:
        parts = ", ".join(f"{p['role']} {p['vm_hwm_kib'] / 1024:.0f}" for p in peak["processes"])
        lines += [
            "",
            f"peak RSS of the process tree (sum of VmHWM, {peak['workers']} workers): "
            f"{peak['sum_vm_hwm_kib'] / 1024:.0f} MiB ({parts} MiB)",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_signer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timed duration of each variant")
    parser.add_argument(
        "--only",
        help="comma-separated selectors: an algorithm, a variant or both as ALG/VARIANT "
        f"(algorithms {', '.join(a.value for a in ALGORITHMS)}; variants {', '.join(KINDS)})",
    )
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--inflight", type=int, default=4, help="tasks in flight per worker (default 4)")
    parser.add_argument("--raw-batch", type=int, default=32, help="signatures per raw-token task")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds over all variants; each rate is the median round"
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.15,
        help="run a variant again (once; 4 times in all) if the rest of the machine used more than this "
        "share of a core meanwhile (default 0.15)",
    )
    parser.add_argument("--csrs", type=int, default=300, help="distinct CSRs to cycle through")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.inflight < 1 or args.raw_batch < 1 or args.csrs < 1 or args.rounds < 1:
        parser.error("--seconds, --inflight, --raw-batch, --csrs and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_, machine = run(args)
    worker_counts = [int(w) for w in args.workers.split(",")]
    ratio_rows = ratios(run_, worker_counts)
    print(render(run_, ratio_rows, machine, args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "signer",
        "settings": {
            "seconds": args.seconds,
            "inflight_per_worker": args.inflight,
            "raw_batch": args.raw_batch,
            "csrs": args.csrs,
            "rounds": args.rounds,
            "max_other": args.max_other,
            "workers": worker_counts,
            "only": args.only,
        },
        "machine": machine,
        "measurements": [m.to_json() for m in run_.measurements],
        "ratios": ratio_rows,
        "peak_rss": {
            "sum_vm_hwm_kib": max((r["sum_vm_hwm_kib"] for r in run_.rss), default=0),
            "by_pool": run_.rss,
        },
        "ipc_pickled_bytes": run_.ipc_bytes,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
