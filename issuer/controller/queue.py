"""A keyed work queue with delayed retries, as controller-runtime's workqueue: a key is processed by
one worker at a time, a key added while it is being processed runs once more afterwards, and a
delayed key wakes up at its time (or earlier, when something adds it again)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._loop_time = clock or (lambda: asyncio.get_running_loop().time())
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        """Keys waiting: ready now, or delayed (the queue depth metric)."""
        return len(self._queued) + len(self._delayed)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def add(self, key: K) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        heapq.heappush(self._delayed, (self._loop_time() + delay, next(self._counter), key))
        self._wakeup.set()

    async def run_delays(self) -> None:
        """Move delayed keys to the ready queue when their time comes; runs until cancelled."""
        while not self._closed:
            now = self._loop_time()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, key = heapq.heappop(self._delayed)
                self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def worker(self, process: Callable[[K], Awaitable[None]]) -> None:
        """Take keys and process them one at a time; errors are the caller's to handle in ``process``."""
        while not self._closed:
            key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await process(key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
