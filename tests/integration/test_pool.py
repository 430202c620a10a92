"""The signing worker pool under concurrency and when a worker process dies."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from issuer.errors import RetryableError
from issuer.signer.certificates import SigningRequest
from issuer.signer.keys import Algorithm, IssuerKey
from issuer.signer.policy import Policy
from issuer.signer.pool import SignerPool
from issuer.tokens import TokenConfig
from tests.conftest import CAFactory
from tests.csrs import make_csr
from tests.integration import worker_probe
from tests.verifiers import openssl_verify


@pytest.fixture
def own_pool(token_config: TokenConfig) -> Iterator[SignerPool]:
    with SignerPool(2) as pool:
        yield pool


def test_many_concurrent_signatures_on_two_workers_all_verify(pool: SignerPool, cas: CAFactory) -> None:
    # python-pkcs11 0.10.1 + SoftHSM2 2.6.1 crash when two threads sign on two sessions; here 8 threads
    # submit at once and the worker processes must absorb it.
    ca = cas.get(Algorithm.RSA_2048)
    issuer = IssuerKey(ca.token, ca.key, ca.pem, Policy())
    requests = [SigningRequest(make_csr(dns=[f"w{i}.example.com"])) for i in range(200)]
    with concurrent.futures.ThreadPoolExecutor(8) as threads:
        bundles = list(threads.map(lambda r: pool.sign.blocking(issuer, r), requests))
    names = set()
    for bundle in bundles:
        leaf = x509.load_pem_x509_certificate(bundle.chain_pem)
        names.update(
            leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName
            )
        )
    assert names == {f"w{i}.example.com" for i in range(200)}
    openssl_verify(bundles[-1].chain_pem, bundles[-1].ca_pem)


def test_async_signing_does_not_block_and_returns_certificates(pool: SignerPool, cas: CAFactory) -> None:
    import asyncio

    ca = cas.get(Algorithm.ECDSA_P256)
    issuer = IssuerKey(ca.token, ca.key, ca.pem, Policy())

    async def burst() -> list[int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        tick_task = asyncio.create_task(ticker())
        bundles = await asyncio.gather(
            *(pool.sign(issuer, SigningRequest(make_csr(dns=[f"a{i}.example.com"]))) for i in range(50))
        )
        tick_task.cancel()
        return [ticks, len({b.serial_number for b in bundles})]

    ticks, distinct = asyncio.run(burst())
    assert distinct == 50
    assert ticks > 50  # the loop kept running while workers signed


def test_a_killed_worker_fails_its_task_as_retryable_and_the_pool_heals(
    own_pool: SignerPool, cas: CAFactory
) -> None:
    ca = cas.get(Algorithm.ECDSA_P256)
    issuer = IssuerKey(ca.token, ca.key, ca.pem, Policy())
    own_pool.sign.blocking(issuer, SigningRequest(make_csr(dns=["before.example.com"])))
    victims = {own_pool.call(os.getpid) for _ in range(8)}
    failures: list[BaseException] = []

    def busy() -> None:
        try:
            own_pool.call(time.sleep, 5)
        except BaseException as err:  # the test inspects what the caller sees
            failures.append(err)

    thread = threading.Thread(target=busy)
    thread.start()
    time.sleep(0.5)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=30)
    assert len(failures) == 1 and isinstance(failures[0], RetryableError), failures
    assert failures[0].reason == "WorkerDied"

    bundle = None
    for _ in range(3):  # the executor may still be settling; a caller retries RetryableError
        try:
            bundle = own_pool.sign.blocking(issuer, SigningRequest(make_csr(dns=["after.example.com"])))
            break
        except RetryableError:
            time.sleep(0.2)
    assert bundle is not None
    openssl_verify(bundle.chain_pem, bundle.ca_pem)
    assert own_pool.restarts >= 1
    assert {own_pool.call(os.getpid) for _ in range(8)}.isdisjoint(victims)


def test_pool_refuses_fork() -> None:
    with pytest.raises(ValueError, match="never fork"):
        SignerPool(1, start_method="fork")  # type: ignore[arg-type]


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # a thread that ended between the listing and the read has no children
    return found


def test_a_worker_is_a_lean_process_of_its_own(token_config: TokenConfig) -> None:
    # Every process and every module a worker holds is resident memory of the operator, per worker:
    # the pool starts nothing but its workers (no multiprocessing resource tracker), and a worker
    # imports what signing needs, not the pool, asyncio or anything of the controller.
    before = _children()
    with SignerPool(2) as own:
        pids = {own.call(os.getpid) for _ in range(8)}
        assert len(pids) == 2
        assert _children() - before == pids
        loaded = set(own.call(worker_probe.loaded_modules))
        # The worker frames messages itself: large ones cross the pipe in many reads and writes.
        assert own.call(len, b"x" * 3_000_000) == 3_000_000
        assert own.call(bytes, 3_000_000) == bytes(3_000_000)
    assert {"pkcs11", "cryptography.x509", "issuer.signer.worker"} <= loaded
    unwanted = {"asyncio", "concurrent.futures", "issuer.signer.pool", "issuer.controller", "kopf"}
    unwanted |= {"kubernetes", "aiohttp", "prometheus_client", "multiprocessing", "logging", "tempfile"}
    assert unwanted.isdisjoint(loaded), sorted(unwanted & loaded)


def test_a_forkserver_pool_signs_too(cas: CAFactory) -> None:
    ca = cas.get(Algorithm.ECDSA_P256)
    with SignerPool(1, start_method="forkserver") as own:
        bundle = own.sign.blocking(
            IssuerKey(ca.token, ca.key, ca.pem, Policy()), SigningRequest(make_csr(dns=["f.example.com"]))
        )
    openssl_verify(bundle.chain_pem, bundle.ca_pem)
