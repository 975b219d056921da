"""A bounded soak (issue #9): 500 publish/unpublish cycles and 500 ghost offers against a real
server in this process; peers, tasks, descriptors and memory end where they started (5 %).
The same driver runs against a separate server process in bench/soak.py."""

from __future__ import annotations

import math

import pytest

from bench.soak import soak
from server.state import STATE
from tests.support.probes import Levels, wait_until

CYCLES = 500
GHOSTS = 500
WARM_UP = 50


def within(value: int, start: int, share: float = 0.05) -> bool:
    return value <= start + max(1, math.ceil(start * share))


@pytest.mark.timeout(290)
async def test_a_soak_of_cycles_and_ghosts_ends_where_it_started(nova) -> None:
    server = await nova(connect_timeout=5.0, offers_per_minute=0, max_pending=0, max_peers=0)
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    # Warm up first: first-use allocations (codecs, caches, pools), and the allocator's
    # high-water mark under as many pending ghosts at once as the soak will have (~0.25 MB
    # each; memory freed then is kept for reuse, not returned), are not leaks.
    await soak(base, WARM_UP, GHOSTS, concurrency=4, room="warm")
    await wait_until(lambda: len(state.peers) == 0, 30, "the warm-up's peers are closed")
    start = Levels.now(peers=len(state.peers))

    run = await soak(base, CYCLES, GHOSTS, concurrency=4)
    assert run.refused == 0

    await wait_until(lambda: len(state.peers) == 0, 60, "every peer is closed")
    assert state.publishers == {} and state.admission.peers == 0 and state.admission.pending() == 0
    assert state.backend.stats().sessions == 0
    await wait_until(lambda: within(Levels.now(0).tasks, start.tasks), 20, "tasks back to their level")
    await wait_until(lambda: within(Levels.now(0).fds, start.fds), 20, "descriptors back to their level")
    end = Levels.now(peers=len(state.peers))
    print(f"soak: {run.seconds:.0f} s, {start} -> {end}")
    assert end.peers == start.peers == 0
    assert within(end.objects, start.objects), f"Python objects {start.objects} -> {end.objects}"
    assert within(end.blocks, start.blocks), f"allocated blocks {start.blocks} -> {end.blocks}"
    assert within(end.rss_kib, start.rss_kib), f"RSS {start.rss_kib} KiB -> {end.rss_kib} KiB"
