"""The scheduler's thread shell with a fake engine: results, batching, coalescing, leaving, limits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from pipeline.batching import BatchOptions
from pipeline.scheduler import (
    Scheduler,
    SchedulerClosed,
    Superseded,
)


class GatedEngine:
    """Echoes requests; holds each batch until the test opens the gate, and records batches."""

    name = "echo"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_batches = False

    def run_batch(self, requests: Sequence[str]) -> list[str]:
        self.entered.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(requests))
        if self.fail_batches and len(requests) > 1:
            raise RuntimeError("batch failed")
        if "boom" in requests:
            raise ValueError("bad item")
        return [r.upper() for r in requests]


class Recorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.coalesced = 0
        self.cancelled = 0

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        self.sizes.append(size)

    def on_coalesced(self, engine: str) -> None:
        self.coalesced += 1

    def on_cancelled(self, engine: str, count: int) -> None:
        self.cancelled += count


@pytest.fixture
def engine() -> GatedEngine:
    return GatedEngine()


async def queued(scheduler: Scheduler, n: int) -> None:
    """Yield to the loop until ``n`` submissions have reached the queue (each needs one turn)."""
    while scheduler.depth() < n:  # noqa: ASYNC110 - no event exists for this; bounded by the test timeout
        await asyncio.sleep(0)


async def blocked(engine: GatedEngine, scheduler: Scheduler) -> asyncio.Task[str]:
    """Occupy the worker with one request so that the next ones queue up behind it."""
    task = asyncio.create_task(scheduler.submit("echo", "blocker", "first", final=True))
    await asyncio.to_thread(engine.entered.wait, 10)
    return task


async def test_requests_waiting_together_run_as_one_batch(engine: GatedEngine) -> None:
    rec = Recorder()
    s = Scheduler({"echo": engine}, BatchOptions(max_batch=8, max_wait=0.0), observer=rec)
    try:
        first = await blocked(engine, s)
        tasks = [asyncio.create_task(s.submit("echo", f"s{i}", f"r{i}", final=True)) for i in range(4)]
        await queued(s, 4)
        engine.gate.set()
        assert await first == "FIRST"
        assert await asyncio.gather(*tasks) == ["R0", "R1", "R2", "R3"]
        assert engine.batches == [["first"], ["r0", "r1", "r2", "r3"]]
        assert rec.sizes == [1, 4]
    finally:
        s.close()


async def test_a_stale_partial_is_superseded(engine: GatedEngine) -> None:
    rec = Recorder()
    s = Scheduler({"echo": engine}, BatchOptions(max_batch=8, max_wait=0.0), observer=rec)
    try:
        first = await blocked(engine, s)
        old = asyncio.create_task(s.submit("echo", "a", "old", final=False))
        await queued(s, 1)
        new = asyncio.create_task(s.submit("echo", "a", "new", final=False))
        with pytest.raises(Superseded):
            await old
        engine.gate.set()
        await first
        assert await new == "NEW"
        assert rec.coalesced == 1
        assert ["old"] not in engine.batches
    finally:
        s.close()


async def test_cancel_session_drops_its_waiting_requests(engine: GatedEngine) -> None:
    rec = Recorder()
    s = Scheduler({"echo": engine}, BatchOptions(max_batch=8, max_wait=0.0), observer=rec)
    try:
        first = await blocked(engine, s)
        gone = asyncio.create_task(s.submit("echo", "leaver", "x", final=True))
        kept = asyncio.create_task(s.submit("echo", "stayer", "y", final=True))
        await queued(s, 2)
        s.cancel_session("leaver")
        with pytest.raises(SchedulerClosed):
            await gone
        engine.gate.set()
        await first
        assert await kept == "Y"
        assert rec.cancelled == 1
    finally:
        s.close()


async def test_a_failed_batch_is_retried_item_by_item(engine: GatedEngine) -> None:
    engine.fail_batches = True
    s = Scheduler({"echo": engine}, BatchOptions(max_batch=8, max_wait=0.0))
    try:
        first = await blocked(engine, s)
        good = asyncio.create_task(s.submit("echo", "a", "fine", final=True))
        bad = asyncio.create_task(s.submit("echo", "b", "boom", final=True))
        await queued(s, 2)
        engine.gate.set()
        await first
        assert await good == "FINE"
        with pytest.raises(ValueError):
            await bad
    finally:
        s.close()


async def test_two_engines_share_one_device_thread(engine: GatedEngine) -> None:
    other = GatedEngine()
    other.gate.set()
    s = Scheduler({"echo": engine, "other": other}, BatchOptions(max_batch=4, max_wait=0.0))
    try:
        engine.gate.set()
        assert await s.submit("other", "a", "x", final=False) == "X"
        assert await s.submit("echo", "a", "y", final=False) == "Y"
    finally:
        s.close()


async def test_close_fails_what_still_waits(engine: GatedEngine) -> None:
    s = Scheduler({"echo": engine}, BatchOptions(max_batch=8, max_wait=0.0))
    first = await blocked(engine, s)
    waiting = asyncio.create_task(s.submit("echo", "a", "late", final=True))
    await queued(s, 1)
    closer = asyncio.create_task(asyncio.to_thread(s.close))
    with pytest.raises(SchedulerClosed):
        await waiting
    engine.gate.set()
    await closer
    assert await first == "FIRST"  # the batch already running still completes
    with pytest.raises(SchedulerClosed):
        await s.submit("echo", "a", "after", final=True)


async def test_a_file_chunk_waits_for_live_requests_that_came_after_it() -> None:
    """The scheduler's thread with a real queue: chunks submitted first, a final and a partial
    after them while the device is busy; the live two run before the remaining chunks."""
    order: list[str] = []
    started, gate = threading.Event(), threading.Event()

    class Recorder:
        name = "echo"

        def run_batch(self, requests: list[str]) -> list[str]:
            if requests == ["block"]:
                started.set()
                gate.wait(10)
            order.extend(requests)
            return requests

    s = Scheduler({"echo": Recorder()}, BatchOptions(max_batch=4, max_wait=0.0, max_file_batch=1))
    try:
        blocker = asyncio.create_task(s.submit("echo", "job", "block", True, background=True))
        assert await asyncio.to_thread(started.wait, 10)  # the blocker is on the device
        chunks = [
            asyncio.create_task(s.submit("echo", "job", f"c{i}", True, background=True)) for i in range(2)
        ]
        live = [
            asyncio.create_task(s.submit("echo", "a", "final", final=True)),
            asyncio.create_task(s.submit("echo", "b", "partial", final=False)),
        ]
        await asyncio.sleep(0)  # one loop turn: each task queues its request in its first step
        assert s.depth() == 4 and s.files_waiting() == 2
        gate.set()
        await asyncio.gather(blocker, *chunks, *live)
    finally:
        s.close()
    assert order == ["block", "final", "partial", "c0", "c1"]
