"""The signing worker pool: the signer's surface to the rest of trusted-issuer.

Every PKCS#11 call runs in a worker process with its own PKCS#11 context (python-pkcs11 0.10.1 with
SoftHSM2 2.6.1 crashes when two threads sign on two sessions at once; one context per process scaled
RSA-2048 signing with the cores). Workers start with ``spawn`` (or ``forkserver``), never by forking
a process that has initialised PKCS#11 or runs threads. A worker that dies breaks the executor; the
pool replaces it and the caller gets a ``RetryableError`` for the task that was lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from issuer.errors import RetryableError
from issuer.signer import worker
from issuer.signer.keys import Algorithm, KeyHandle, TokenConfig
from issuer.signer.worker import IssuerKey
from issuer.signer.x509 import PEMBundle, SigningRequest, utcnow

R = TypeVar("R")
StartMethod = Literal["spawn", "forkserver"]


class SignerPool:
    """A pool of signing worker processes with named, plain-data operations.

    Use as a context manager or call :meth:`close`. Methods come in two forms: blocking (for the CLI
    and benchmarks) and ``a``-prefixed coroutines (for the operator's event loop, which only awaits).
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        start_method: StartMethod = "spawn",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if workers < 1:
            raise ValueError("a signer pool needs at least one worker")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError("workers start with spawn or forkserver, never fork")
        self.workers = workers
        self.clock = clock
        self.restarts = 0
        self._context = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SignerPool:
        """Start every worker now rather than on first use, so the first request pays no start-up."""
        executor = self._current()
        for future in [executor.submit(worker.ping) for _ in range(self.workers)]:
            future.result()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SignerPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _current(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the signer pool is closed")
            if self._executor is None:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=self._context,
                    initializer=worker.initialise,
                )
            return self._executor

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:
                return  # another caller already replaced it
            self._executor = None
            self.restarts += 1
        broken.shutdown(wait=False, cancel_futures=True)

    # -- dispatch ----------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., R], *args: Any) -> concurrent.futures.Future[R]:
        """Run a top-level function in a worker. Benchmarks use this to run their own pipelines."""
        executor = self._current()
        try:
            future = executor.submit(fn, *args)
        except BrokenProcessPool:
            self._replace(executor)
            raise RetryableError("a signing worker died; the pool is restarting", "WorkerDied") from None
        future.add_done_callback(lambda f: self._after(executor, f))
        return future

    def _after(
        self, executor: concurrent.futures.ProcessPoolExecutor, future: concurrent.futures.Future[Any]
    ) -> None:
        if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
            self._replace(executor)

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` in a worker and wait for it."""
        try:
            return self.submit(fn, *args).result()
        except BrokenProcessPool:
            raise RetryableError("a signing worker died while working; retry", "WorkerDied") from None

    async def acall(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` in a worker and await it without blocking the event loop."""
        try:
            return await asyncio.wrap_future(self.submit(fn, *args))
        except BrokenProcessPool:
            raise RetryableError("a signing worker died while working; retry", "WorkerDied") from None

    # -- the signer's operations ---------------------------------------------------------------------

    def sign(self, issuer: IssuerKey, request: SigningRequest) -> PEMBundle:
        return self.call(worker.sign_request, issuer, request, self.clock())

    async def asign(self, issuer: IssuerKey, request: SigningRequest) -> PEMBundle:
        return await self.acall(worker.sign_request, issuer, request, self.clock())

    def check(self, issuer: IssuerKey) -> None:
        self.call(worker.check_issuer, issuer, self.clock())

    async def acheck(self, issuer: IssuerKey) -> None:
        await self.acall(worker.check_issuer, issuer, self.clock())

    def generate_key(self, token: TokenConfig, algorithm: Algorithm, key_label: str) -> KeyHandle:
        return self.call(worker.generate_key, token, algorithm, key_label)

    def find_key(self, token: TokenConfig, key_label: str) -> KeyHandle:
        return self.call(worker.find_key, token, key_label)

    def create_self_signed_ca(
        self,
        token: TokenConfig,
        key: KeyHandle,
        subject: str,
        duration: timedelta,
        *,
        path_length: int | None = None,
        rsa_pss: bool = False,
    ) -> bytes:
        return self.call(
            worker.create_self_signed_ca, token, key, subject, duration, self.clock(), path_length, rsa_pss
        )

    def list_keys(self, token: TokenConfig) -> list[Any]:
        return self.call(worker.list_keys, token)

    def destroy_key(self, token: TokenConfig, key: KeyHandle) -> None:
        self.call(worker.destroy_key, token, key)
