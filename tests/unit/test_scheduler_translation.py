"""Whisper and NLLB on one device: neither starves the other (fake clock, both engines)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.batching import BatchOptions
from pipeline.clock import FakeClock
from pipeline.engines.nllb import NllbConfig, NllbEngine
from pipeline.scheduler import Scheduler
from pipeline.types import TranslateRequest
from tests.support.tiny_nllb import tiny_nllb


class Recording:
    """A fake engine that logs each batch on a shared list, once the first gate opens."""

    def __init__(self, name: str, log: list[tuple[str, list[str]]], gate: threading.Event) -> None:
        self.name = name
        self.log = log
        self.gate = gate
        self.entered = threading.Event()

    def run_batch(self, requests: Sequence[str]) -> list[str]:
        self.entered.set()
        self.gate.wait(timeout=30)
        self.log.append((self.name, list(requests)))
        return list(requests)


async def until_queued(s: Scheduler, n: int) -> None:
    while s.depth() < n:  # noqa: ASYNC110 - each submission needs one loop turn; bounded by the timeout
        await asyncio.sleep(0)


async def test_whisper_and_nllb_take_turns_by_age_and_finals_go_first() -> None:
    clock = FakeClock()
    log: list[tuple[str, list[str]]] = []
    gate = threading.Event()
    whisper, nllb = Recording("whisper", log, gate), Recording("nllb", log, gate)
    s = Scheduler(
        {"whisper": whisper, "nllb": nllb},
        BatchOptions(max_batch=4, max_wait=0.0, max_partial_batch=4),
        clock=clock,
    )
    try:
        tasks = [asyncio.create_task(s.submit("whisper", "blocker", "block", final=False))]
        await asyncio.to_thread(whisper.entered.wait, 30)

        async def submit(engine: str, name: str, final: bool = False) -> None:
            clock.advance(0.01)  # distinct arrival times on the fake clock
            tasks.append(asyncio.create_task(s.submit(engine, name, name, final=final)))
            await until_queued(s, len(tasks) - 1)

        for i in range(8):
            await submit("whisper", f"w{i}")
        await submit("nllb", "n-partial")
        for i in range(8, 16):
            await submit("whisper", f"w{i}")
        await submit("nllb", "n-final", final=True)
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        s.close()
    order = [(engine, batch) for engine, batch in log[1:]]
    # A translated final goes ahead of every waiting partial transcription ...
    assert order[0] == ("nllb", ["n-final"])
    # ... and a translated partial runs when it is the oldest, not after all of Whisper's work.
    engines = [e for e, _ in order]
    assert engines.index("nllb", 1) == 3  # after w0-3 and w4-7, before w8-15
    assert [b for e, b in order if e == "whisper"] == [
        [f"w{i}" for i in range(k, k + 4)] for k in range(0, 16, 4)
    ]


@pytest.fixture(scope="module")
def nllb(tmp_path_factory: pytest.TempPathFactory) -> NllbEngine:
    folder: Path = tiny_nllb(tmp_path_factory.mktemp("nllb"))
    return NllbEngine(NllbConfig(str(folder), compute_type="float32", cpu_threads=1))


class Sizes:
    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        self.batches.append((engine, size))

    def on_coalesced(self, engine: str) -> None:
        pass

    def on_cancelled(self, engine: str, count: int) -> None:
        pass


async def test_translations_of_many_rooms_and_languages_share_one_batch(nllb: NllbEngine) -> None:
    sizes = Sizes()
    gate = threading.Event()
    log: list[tuple[str, list[str]]] = []
    blocker = Recording("whisper", log, gate)
    s = Scheduler({"whisper": blocker, "nllb": nllb}, BatchOptions(max_batch=8, max_wait=0.0), observer=sizes)
    try:
        first = asyncio.create_task(s.submit("whisper", "w", "block", final=True))
        await asyncio.to_thread(blocker.entered.wait, 30)
        requests = [
            (room, TranslateRequest(f"Line from room {room}.", "en", lang))
            for room in ("a", "b")
            for lang in ("es", "fr", "de")
        ]
        tasks = [
            asyncio.create_task(s.submit("nllb", (room, r.target), r, final=True)) for room, r in requests
        ]
        await until_queued(s, len(requests))
        gate.set()
        await first
        results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        s.close()
    assert [(t.source, t.target) for t in results] == [(r.source, r.target) for _, r in requests]
    assert ("nllb", 6) in sizes.batches  # six lines, two rooms, three languages: one engine call


async def test_an_engine_with_a_worker_of_its_own_never_waits_behind_whisper() -> None:
    from pipeline.backend import LocalBackend

    log: list[tuple[str, list[str]]] = []
    held, free = threading.Event(), threading.Event()
    free.set()
    whisper, apertium = Recording("whisper", log, held), Recording("apertium", log, free)
    device = Scheduler({"whisper": whisper}, BatchOptions(max_batch=4, max_wait=0.0))
    own = Scheduler({"apertium": apertium}, BatchOptions(max_batch=4, max_wait=0.0))
    backend = LocalBackend([device], engine_schedulers={"apertium": own})
    try:
        busy = asyncio.create_task(backend.submit("whisper", "s", "long batch", final=True))
        await asyncio.to_thread(whisper.entered.wait, 30)
        # Whisper holds the device; the translation still comes back.
        assert await asyncio.wait_for(backend.submit("apertium", "r", "line", final=True), 30) == "line"
        assert log == [("apertium", ["line"])]
        held.set()
        assert await busy == "long batch"
    finally:
        held.set()
        await backend.aclose()
