"""The signing worker pool: the :class:`~issuer.signer.operations.Signer` that runs in worker processes.

Every PKCS#11 call runs in a worker process with its own PKCS#11 context (python-pkcs11 0.10.1 with
SoftHSM2 2.6.1 crashes when two threads sign on two sessions at once; one context per process scaled
RSA-2048 signing with the cores). Workers start as fresh interpreters, never by forking a process
that has initialised PKCS#11 or runs threads: with ``spawn`` the pool starts ``python -c`` running
:func:`worker.main` itself (no multiprocessing bootstrap or resource tracker: every process and every
module imported in a worker counts in the operator's resident memory), with ``forkserver`` it uses
multiprocessing's fork server.

Dispatch is one duplex pipe per worker and one reader thread in the parent (measured against
``ProcessPoolExecutor``, whose feeder and manager threads cost the parent 110-190 us of CPU per task
and on two cores took it from the workers). A caller's thread pickles its task and writes it straight
to the least-busy worker; each worker holds at most :data:`WINDOW` tasks, the rest wait in the parent
and go to whichever worker frees a slot first. The reader thread resolves each task's
``concurrent.futures.Future``. When a worker dies, exactly the tasks that had been written to it fail
with ``RetryableError(reason="WorkerDied")``, a new worker takes its place and ``restarts`` counts it;
tasks still waiting in the parent are not lost.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import itertools
import multiprocessing
import os
import pickle
import selectors
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any, Literal, TypeVar

from issuer.clock import utcnow
from issuer.errors import Reason, RetryableError
from issuer.signer import worker
from issuer.signer.keys import IssuerKey
from issuer.signer.operations import Operation, Signer

R = TypeVar("R")
StartMethod = Literal["spawn", "forkserver"]

#: Tasks written to one worker at a time: one running and one waiting in its pipe, so a worker never
#: idles for a round trip to the parent between tasks, and a worker that dies takes few tasks with it.
WINDOW = 2
#: Pickled arguments kept for :meth:`SignerPool.pickled_once`; issuers are few, so this is never reached
#: in practice and only bounds a caller that sends endless distinct values.
PICKLED_CACHE_SIZE = 256
#: A worker that dies sooner than this after its start is respawned after a growing delay (up to
#: ``MAX_RESPAWN_DELAY``), so a worker that cannot start does not spin the parent.
QUICK_DEATH = 1.0
MAX_RESPAWN_DELAY = 5.0

_Task = tuple[int, concurrent.futures.Future[Any], bytes]  # task id, its future, the framed task


def _worker_died() -> RetryableError:
    return RetryableError("a signing worker died while working; retry", Reason.WORKER_DIED)


class _ExecutedProcess:
    """A worker started as a fresh interpreter running only :func:`worker.main`.

    multiprocessing's ``spawn`` would also start its resource tracker (one more Python process, about
    13 MiB resident, that tracks semaphores and shared memory the pool never makes) and run its child
    bootstrap; here the child is ``python -c`` with its pipe end and a sentinel pipe, nothing else.
    What the pool needs of a process is what ``multiprocessing.Process`` offers: ``pid``, ``sentinel``
    (readable once the process is gone) and ``join``.
    """

    def __init__(self, child_end: Connection) -> None:
        sentinel, held_by_child = os.pipe()
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-c", _WORKER_PROGRAM, str(child_end.fileno())],
                pass_fds=(child_end.fileno(), held_by_child),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(sentinel)
            raise
        finally:
            os.close(held_by_child)
        self.pid = self._popen.pid
        self.sentinel = sentinel
        # Closed when the pool lets go of the process, after the reader thread unregistered it.
        weakref.finalize(self, os.close, sentinel)

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)


_WORKER_PROGRAM = "from issuer.signer.worker import main; main()"


@dataclass(eq=False)
class _Worker:
    """One worker process as the parent sees it: its pipe, and the tasks written to it not yet answered."""

    process: BaseProcess | _ExecutedProcess
    conn: Connection
    started: float
    sent: dict[int, concurrent.futures.Future[Any]] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)


class SignerPool(Signer):
    """A pool of signing worker processes: the :class:`Signer` whose operations run in them.

    Use as a context manager or call :meth:`close`. Any operation may raise ``RetryableError`` with
    reason ``WorkerDied`` if its worker died under it; the pool has already replaced that worker, so
    the caller simply retries.
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
        # spawn: a fresh interpreter of our own making (_ExecutedProcess); forkserver: multiprocessing's.
        self._context: ForkServerContext | None = (
            None if start_method == "spawn" else multiprocessing.get_context("forkserver")
        )
        self._lock = threading.Lock()  # guards everything below; never held while writing to a pipe
        self._slots: list[_Worker | None] = []  # None: dead, respawning at _respawn_at[i]
        self._respawn_at: list[float] = []
        self._quick_deaths: list[int] = []
        self._waiting: collections.deque[_Task] = collections.deque()
        self._next_slot = 0  # where the search for the least-busy worker starts: ties go round
        self._task_ids = itertools.count()
        self._reader: threading.Thread | None = None
        self._wake_reader, self._wake_writer = os.pipe()
        self._closed = False
        self._pickled: dict[Hashable, bytes] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SignerPool:
        """Start every worker now rather than on first use, so the first request pays no start-up."""
        for future in [self.submit(worker.ping) for _ in range(self.workers)]:
            future.result()
        return self

    def close(self) -> None:
        """Let every worker finish the tasks written to it, cancel those still waiting, and stop.

        Idempotent. After it, every method raises ``RuntimeError``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            live = [w for w in self._slots if w is not None]
            reader = self._reader
        for _, future, _ in waiting:
            future.cancel()
        for each in live:
            self._write(each, b"")
        os.write(self._wake_writer, b"x")
        if reader is not None:
            reader.join()  # it returns once every worker has answered its tasks and exited
        for each in live:
            each.process.join()
        os.close(self._wake_reader)
        os.close(self._wake_writer)

    def __enter__(self) -> SignerPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent_end, child_end = multiprocessing.Pipe(duplex=True)
        process: BaseProcess | _ExecutedProcess
        try:
            if self._context is None:
                parent_end.send(sys.path)  # waits in the pipe for the child: it reads it first
                process = _ExecutedProcess(child_end)
            else:
                process = self._context.Process(
                    target=worker.serve, args=(child_end,), daemon=True, name="signer-worker"
                )
                process.start()
        finally:
            # The parent must not hold the child's end, or the pipe would never report EOF when it dies.
            child_end.close()
        return _Worker(process, parent_end, time.monotonic())

    def _started(self) -> None:
        """Spawn the workers and the reader thread on first use; called with ``_lock`` held."""
        if self._closed:
            raise RuntimeError("the signer pool is closed")
        if self._reader is not None:
            return
        self._slots = [self._spawn() for _ in range(self.workers)]
        self._respawn_at = [0.0] * self.workers
        self._quick_deaths = [0] * self.workers
        self._reader = threading.Thread(target=self._read, name="signer-pool-reader", daemon=True)
        self._reader.start()

    # -- dispatch ----------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., R], *args: Any) -> concurrent.futures.Future[R]:
        """Run a top-level function in a worker; the future fails with ``RetryableError`` (``WorkerDied``)
        if the worker dies while it holds the task. Benchmarks use this to run their own pipelines."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        task_id = next(self._task_ids)
        try:
            payload = task_id.to_bytes(worker.TASK_ID_BYTES) + pickle.dumps(
                (fn, args), pickle.HIGHEST_PROTOCOL
            )
        except Exception as err:  # as ProcessPoolExecutor reports it: on the future, not raised
            future.set_exception(err)
            return future
        with self._lock:
            self._started()
            target = self._least_busy()
            if target is None:
                self._waiting.append((task_id, future, payload))
                return future
            future.set_running_or_notify_cancel()
            target.sent[task_id] = future
        self._write(target, payload)
        return future

    def _least_busy(self) -> _Worker | None:
        """The live worker with the fewest tasks, if it has a free slot; called with ``_lock`` held."""
        best: _Worker | None = None
        count = len(self._slots)
        for offset in range(count):
            candidate = self._slots[(self._next_slot + offset) % count]
            if candidate is not None and (best is None or len(candidate.sent) < len(best.sent)):
                best = candidate
        if best is None or len(best.sent) >= WINDOW:
            return None
        self._next_slot = (self._slots.index(best) + 1) % count
        return best

    def _write(self, target: _Worker, payload: bytes) -> None:
        try:
            with target.send_lock:
                target.conn.send_bytes(payload)
        except (OSError, ValueError):
            # The worker died (or its pipe was closed on its death): the reader sees it and fails
            # whatever was sent to it, this task included, unless it already has.
            pass

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` in a worker and wait for it."""
        return self.submit(fn, *args).result()

    def pickled_once(self, value: Hashable) -> bytes:
        """``value`` pickled, from a cache keyed by equality: the same bytes for equal values.

        Tasks accept these bytes in place of the value and unpickle them with
        :func:`worker.unpickled_once`, so a worker decodes each issuer once and its per-issuer caches
        hit by identity; the parent pickles each issuer once rather than per task.
        """
        blob = self._pickled.get(value)
        if blob is None:
            blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            with self._lock:
                if len(self._pickled) >= PICKLED_CACHE_SIZE:
                    self._pickled.clear()
                self._pickled[value] = blob
        return blob

    # -- the reader thread -------------------------------------------------------------------------

    def _read(self) -> None:
        """Resolve futures as workers answer; notice dead workers, fail their tasks, respawn them.

        One persistent epoll selector over every worker's pipe and process sentinel: building a fresh
        one per wake-up, as ``multiprocessing.connection.wait`` does, cost the parent several us a task.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_reader, selectors.EVENT_READ)
            watched: list[_Worker] = []
            while True:
                with self._lock:
                    closed = self._closed
                    live = [w for w in self._slots if w is not None]
                    due = [t for w, t in zip(self._slots, self._respawn_at, strict=True) if w is None]
                if live != watched:
                    for each in watched:
                        if each not in live:
                            selector.unregister(each.process.sentinel)
                    for each in live:
                        if each not in watched:
                            selector.register(each.conn, selectors.EVENT_READ, (each, True))
                            selector.register(each.process.sentinel, selectors.EVENT_READ, (each, False))
                    watched = live
                if closed and not live:
                    return
                timeout: float | None = None
                if not closed and due:
                    now = time.monotonic()
                    if min(due) <= now:
                        self._respawn_due(now)
                        continue
                    timeout = min(due) - now
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        os.read(self._wake_reader, 64)
                        continue
                    source, is_pipe = key.data
                    if source.conn.closed:
                        continue  # its pipe and its sentinel were both ready at once: already settled
                    if is_pipe:
                        self._receive(source, selector)
                    else:
                        self._settle(source, selector)

    def _receive(self, source: _Worker, selector: selectors.BaseSelector) -> None:
        """Take one answer from ``source``; the selector reports the pipe again while more are waiting."""
        try:
            task_id, ok, value = source.conn.recv()
        except (EOFError, OSError):
            self._settle(source, selector)
            return
        self._answered(source, task_id, ok, value)

    def _settle(self, source: _Worker, selector: selectors.BaseSelector) -> None:
        """``source`` died: take the answers it wrote before dying, then fail the rest and replace it."""
        selector.unregister(source.conn)
        try:
            while source.conn.poll():
                task_id, ok, value = source.conn.recv()
                self._answered(source, task_id, ok, value)
        except (EOFError, OSError):
            pass
        self._died(source)

    def _answered(self, source: _Worker, task_id: int, ok: bool, value: Any) -> None:
        with self._lock:
            future = source.sent.pop(task_id, None)
            index = self._slots.index(source) if source in self._slots else -1
            if index >= 0:
                self._quick_deaths[index] = 0
            nxt = self._next_waiting() if not self._closed and index >= 0 else None
            if nxt is not None:
                source.sent[nxt[0]] = nxt[1]
        if nxt is not None:
            self._write(source, nxt[2])
        if future is not None:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _next_waiting(self) -> _Task | None:
        """The oldest waiting task not cancelled meanwhile, now running; called with ``_lock`` held."""
        while self._waiting:
            task = self._waiting.popleft()
            if task[1].set_running_or_notify_cancel():
                return task
        return None

    def _died(self, dead: _Worker) -> None:
        dead.process.join(timeout=5)
        dead.conn.close()
        with self._lock:
            index = self._slots.index(dead)
            lost, dead.sent = dead.sent, {}
            self._slots[index] = None
            if self._closed:
                self._respawn_at[index] = 0.0
            else:
                self.restarts += 1
                quick = time.monotonic() - dead.started < QUICK_DEATH
                self._quick_deaths[index] = self._quick_deaths[index] + 1 if quick else 0
                delay = min(MAX_RESPAWN_DELAY, 0.1 * 2 ** self._quick_deaths[index]) if quick else 0.0
                self._respawn_at[index] = time.monotonic() + delay
        for future in lost.values():
            future.set_exception(_worker_died())

    def _respawn_due(self, now: float) -> None:
        with self._lock:
            due = [i for i, w in enumerate(self._slots) if w is None and self._respawn_at[i] <= now]
        for index in due:
            fresh = self._spawn()
            with self._lock:
                if self._closed:
                    closed = True
                else:
                    closed = False
                    self._slots[index] = fresh
                    batch = [t for t in (self._next_waiting() for _ in range(WINDOW)) if t is not None]
                    for task_id, future, _ in batch:
                        fresh.sent[task_id] = future
            if closed:
                self._write(fresh, b"")
                fresh.process.join()
                fresh.conn.close()
                continue
            for _, _, payload in batch:
                self._write(fresh, payload)

    # -- the signer's operations (the table is issuer.signer.operations.Signer) ------------------------

    def dispatch(
        self, operation: Operation[Any, R], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> concurrent.futures.Future[R]:
        # Issuers go pickled once (pickled_once); keyword arguments ride on a partial, so the wire
        # format of a task stays (fn, args).
        if any(type(arg) is IssuerKey for arg in args):
            args = tuple(self.pickled_once(a) if type(a) is IssuerKey else a for a in args)
        if operation.clocked:
            args = (self.clock(), *args)
        task = functools.partial(operation.task, **kwargs) if kwargs else operation.task
        return self.submit(task, *args)
