"""Per-token benchmark: signatures/s and certificates/s on each development token, in one run.

    python -m benchmarks.bench_tokens [--seconds 3] [--tokens softhsm,tpm,opencryptoki] [--workers 2]

For each token (SoftHSM2, a TPM 2.0 simulator behind tpm2-pkcs11, opencryptoki's soft token), set up as
``hsm init-dev-token --backend`` does, and each of ECDSA P-256 and RSA-2048 the token can do:

- ``signatures/s``: ``hsm probe``'s loop, one process signing with the token's own plan (hash-and-sign,
  or a digest computed outside), the token's ceiling for one caller;
- ``certificates/s``: ``SignerPool.sign`` with ``--workers`` workers and 4 tasks in flight per
  worker: parse and check the CSR, build, sign in the token; every certificate is checked against
  its CA before it counts;
- ``ratio``: certificates/s over signatures/s: how close the pipeline comes to the token.

A token that cannot do an algorithm prints why (its own words) instead of a number. The results go to
``benchmarks/results/tokens.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from benchmarks.bench_signer import make_requests
from issuer.signer.certificates import SigningRequest
from issuer.signer.devtoken import BACKENDS, exported, init_dev_token
from issuer.signer.keys import Algorithm, IssuerKey
from issuer.signer.policy import Policy
from issuer.signer.pool import SignerPool
from issuer.tokens import PinSource, TokenConfig

ALGORITHMS = (Algorithm.ECDSA_P256, Algorithm.RSA_2048)
RESULTS = Path(__file__).parent / "results" / "tokens.json"
OPENCRYPTOKI_DIR = Path.home() / ".cache" / "trusted-issuer" / "opencryptoki-bench"


async def _certificates_per_second(
    pool: SignerPool, issuer: IssuerKey, requests: list[SigningRequest], seconds: float, inflight: int
) -> float:
    ca = x509.load_pem_x509_certificate(issuer.ca_pem)
    done = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def lane(offset: int) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < deadline:
            bundle = await pool.sign(issuer, requests[i % len(requests)])
            leaf = x509.load_pem_x509_certificate(bundle.chain_pem)
            leaf.verify_directly_issued_by(ca)
            done += 1
            i += inflight

    await asyncio.gather(*(lane(n) for n in range(inflight)))
    return done / (time.monotonic() - started)


def bench_token(backend: str, args: argparse.Namespace, requests: list[SigningRequest]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
        directory = OPENCRYPTOKI_DIR if backend == "opencryptoki" else Path(tmp)
        token, _ = init_dev_token(directory, "bench-tokens", backend, reset=True)
        config = TokenConfig(module=token.module, token_label=token.label, pin=PinSource(file=token.pin_file))
        try:
            with exported(token), SignerPool(args.workers) as pool:
                probe = pool.probe_token.blocking(config, args.seconds)
                support = {a.algorithm: a for a in probe.algorithms}
                rows: list[dict[str, Any]] = []
                for algorithm in ALGORITHMS:
                    found = support[algorithm]
                    if not found.usable:
                        rows.append({"algorithm": algorithm.value, "whyNot": found.why_not})
                        continue
                    label = f"bench-{algorithm.value}-{uuid.uuid4().hex[:8]}"
                    handle = pool.generate_key.blocking(config, algorithm, label)
                    ca_pem = pool.create_self_signed_ca.blocking(
                        config, handle, f"CN=bench {backend} {algorithm.value}", timedelta(days=365)
                    )
                    issuer = IssuerKey(config, handle, ca_pem, Policy())
                    certs = asyncio.run(
                        _certificates_per_second(pool, issuer, requests, args.seconds, 4 * args.workers)
                    )
                    pool.destroy_key.blocking(config, handle)
                    sigs = found.signatures_per_second or 0.0
                    rows.append(
                        {
                            "algorithm": algorithm.value,
                            "mechanism": found.signing_mechanism,
                            "signaturesPerSecond": round(sigs, 1),
                            "certificatesPerSecond": round(certs, 1),
                            "ratio": round(certs / sigs, 2) if sigs else None,
                        }
                    )
            return {
                "token": backend,
                "model": f"{probe.manufacturer} {probe.model}",
                "module": probe.module,
                "rows": rows,
            }
        finally:
            token.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_tokens", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timed duration of each measurement")
    parser.add_argument("--tokens", default=",".join(BACKENDS), help="comma-separated token backends")
    parser.add_argument("--workers", type=int, default=2, help="signer worker processes (default 2)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    requests = make_requests(64)
    results = []
    for backend in [t.strip() for t in args.tokens.split(",") if t.strip()]:
        print(f"# {backend} ...", file=sys.stderr)
        results.append(bench_token(backend, args, requests))
    print(f"{'TOKEN':13} {'ALGORITHM':11} {'SIGN WITH':20} {'SIGS/S':>8} {'CERTS/S':>8} {'RATIO':>6}")
    for result in results:
        for row in result["rows"]:
            if "whyNot" in row:
                print(f"{result['token']:13} {row['algorithm']:11} cannot: {row['whyNot']}")
                continue
            print(
                f"{result['token']:13} {row['algorithm']:11} CKM_{row['mechanism']:16} "
                f"{row['signaturesPerSecond']:8.0f} {row['certificatesPerSecond']:8.0f} {row['ratio']:6.2f}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"workers": args.workers, "seconds": args.seconds, "tokens": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
