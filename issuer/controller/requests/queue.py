"""A keyed work queue with delayed retries, as controller-runtime's workqueue: a key is processed by
one worker at a time, a key added while it is being processed runs once more afterwards, and a
delayed key wakes up at its time (or earlier, when something adds it again).

The queue is bounded: past ``max_size`` keys waiting (ready or delayed) a new key is refused and the
queue remembers that it ``overflowed``; whoever feeds it finds the refused keys again (the request
controller lists the requests once the queue has drained). A key waits at most once: adding a key
that is already waiting, or delaying it again, costs nothing."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] | None = None, max_size: int | None = None) -> None:
        self._loop_time = clock or (lambda: asyncio.get_running_loop().time())
        self.max_size = max_size
        #: Keys were refused for want of room since the last ``take_overflow()``.
        self.overflowed = False
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._delayed_at: dict[K, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        """Keys waiting: ready now, or delayed (the queue depth metric)."""
        return len(self._queued) + len(self._delayed_at)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def _room(self) -> bool:
        if self.max_size is None or len(self) < self.max_size:
            return True
        self.overflowed = True
        return False

    def add(self, key: K) -> bool:
        """Queue ``key`` now; False when it was refused because the queue is full."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            # A delayed key moves up to now (its stale heap entry is skipped when it comes due).
            if self._delayed_at.pop(key, None) is None and not self._room():
                return False
            self._queued.add(key)
            self._ready.put_nowait(key)
        return True

    def add_after(self, key: K, delay: float) -> bool:
        """Queue ``key`` after ``delay`` seconds (or sooner, if it is added meanwhile); False when the
        queue is full."""
        if delay <= 0:
            return self.add(key)
        if key in self._queued:
            return True
        when = self._loop_time() + delay
        earlier = self._delayed_at.get(key)
        if earlier is not None and earlier <= when:
            return True
        if earlier is None and not self._room():
            return False
        self._delayed_at[key] = when
        heapq.heappush(self._delayed, (when, next(self._counter), key))
        self._wakeup.set()
        return True

    def take_overflow(self) -> bool:
        """Whether keys were refused since the last call; clears the mark."""
        overflowed, self.overflowed = self.overflowed, False
        return overflowed

    async def run_delays(self) -> None:
        """Move delayed keys to the ready queue when their time comes; runs until cancelled."""
        while not self._closed:
            now = self._loop_time()
            while self._delayed and self._delayed[0][0] <= now:
                when, _, key = heapq.heappop(self._delayed)
                if self._delayed_at.get(key) == when:  # else superseded by an earlier wake-up
                    del self._delayed_at[key]
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
