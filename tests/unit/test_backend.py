"""The local inference backend: sessions placed on the least loaded device, admission, stats."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pipeline.backend import LocalBackend, SchedulerClosed, SchedulerFull
from pipeline.batching import BatchOptions
from pipeline.scheduler import Scheduler


class Echo:
    name = "echo"

    def run_batch(self, requests: Sequence[str]) -> list[str]:
        return [r.upper() for r in requests]


async def test_sessions_go_to_the_least_loaded_device_up_to_a_limit() -> None:
    s1 = Scheduler({"echo": Echo()}, BatchOptions(max_wait=0.0), device="cuda:0")
    s2 = Scheduler({"echo": Echo()}, BatchOptions(max_wait=0.0), device="cuda:1")
    backend = LocalBackend([s1, s2], max_sessions=3, detail={"model": {"name": "echo"}})
    try:
        for i in range(3):
            backend.open_session(f"p{i}")
        per_device = sorted(d.sessions for d in backend.stats().devices)
        assert per_device == [1, 2]
        with pytest.raises(SchedulerFull):
            backend.open_session("p3")
        assert await backend.submit("echo", "p0", "hi", final=True) == "HI"
        backend.close_session("p0")
        stats = backend.stats()
        assert stats.sessions == 2 and stats.max_sessions == 3 and stats.kind == "local"
        assert stats.to_dict()["detail"]["model"]["name"] == "echo"
        backend.open_session("p4")
    finally:
        await backend.aclose()
    with pytest.raises(SchedulerClosed):
        await asyncio.wait_for(backend.submit("echo", "p4", "late", final=True), 5)
