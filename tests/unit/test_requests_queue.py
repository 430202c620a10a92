"""The work queue is bounded and never holds a key twice. The clock is injected: no test waits."""

from __future__ import annotations

import asyncio

from issuer.controller.requests.queue import WorkQueue


def test_keys_past_the_limit_are_refused_and_the_overflow_is_remembered_once() -> None:
    async def run() -> tuple[list[bool], int, bool, bool]:
        queue: WorkQueue[str] = WorkQueue(clock=lambda: 0.0, max_size=3)
        accepted = [queue.add(k) for k in ("a", "b", "c", "d", "e")]
        return accepted, len(queue), queue.take_overflow(), queue.take_overflow()

    accepted, length, first, second = asyncio.run(run())
    assert accepted == [True, True, True, False, False]
    assert length == 3
    assert (first, second) == (True, False)


def test_a_key_already_waiting_takes_no_more_room() -> None:
    async def run() -> tuple[bool, bool, int, bool]:
        queue: WorkQueue[str] = WorkQueue(clock=lambda: 0.0, max_size=2)
        queue.add("a")
        queue.add_after("b", 10)
        again = queue.add("a") and queue.add_after("b", 5) and queue.add_after("b", 20)
        moved_up = queue.add("b")  # a delayed key added now moves up, in the room it had
        return again, moved_up, len(queue), queue.overflowed

    again, moved_up, length, overflowed = asyncio.run(run())
    assert again and moved_up
    assert length == 2
    assert not overflowed


def test_a_delayed_key_moved_up_is_not_run_again_when_its_old_time_comes() -> None:
    now = [0.0]

    async def run() -> list[str]:
        queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0], max_size=10)
        processed: list[str] = []

        async def process(key: str) -> None:
            processed.append(key)

        tasks = [asyncio.create_task(queue.run_delays()), asyncio.create_task(queue.worker(process))]
        queue.add_after("a", 10)
        queue.add("a")
        for _ in range(5):
            await asyncio.sleep(0)
        now[0] = 11.0
        queue._wakeup.set()
        for _ in range(5):
            await asyncio.sleep(0)
        queue.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(queue) == 0
        return processed

    assert asyncio.run(run()) == ["a"]


def test_a_delayed_key_runs_when_its_time_comes() -> None:
    now = [0.0]

    async def run() -> list[str]:
        queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
        processed: list[str] = []

        async def process(key: str) -> None:
            processed.append(key)

        tasks = [asyncio.create_task(queue.run_delays()), asyncio.create_task(queue.worker(process))]
        queue.add_after("a", 10)
        queue.add_after("a", 3)  # the earlier time wins
        for _ in range(5):
            await asyncio.sleep(0)
        before = list(processed)
        now[0] = 3.5
        queue._wakeup.set()
        for _ in range(5):
            await asyncio.sleep(0)
        now[0] = 11.0
        queue._wakeup.set()
        for _ in range(5):
            await asyncio.sleep(0)
        queue.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert before == []
        return processed

    assert asyncio.run(run()) == ["a"]
