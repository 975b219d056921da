"""The worker's pure decisions: what to do with an entry, and when an entry counts as abandoned."""

from __future__ import annotations

from pipeline.worker import WorkerOptions, reclaim_idle_ms, triage


def test_finals_never_expire_and_late_partials_are_dropped_unrun() -> None:
    assert triage(final=True, ttl_ms=0, age_ms=60_000, deliveries=1, max_deliveries=3) == "run"
    assert triage(final=False, ttl_ms=2500, age_ms=100, deliveries=1, max_deliveries=3) == "run"
    assert triage(final=False, ttl_ms=2500, age_ms=2600, deliveries=1, max_deliveries=3) == "late"


def test_an_entry_delivered_more_than_n_times_is_dead_lettered_final_or_not() -> None:
    assert triage(final=True, ttl_ms=0, age_ms=0, deliveries=3, max_deliveries=3) == "run"
    assert triage(final=True, ttl_ms=0, age_ms=0, deliveries=4, max_deliveries=3) == "dead"
    assert triage(final=False, ttl_ms=2500, age_ms=9999, deliveries=4, max_deliveries=3) == "dead"


def test_reclaim_waits_a_few_p99_batch_times_but_never_less_than_the_floor() -> None:
    options = WorkerOptions(min_idle_floor=2.0, idle_factor=3.0)
    assert reclaim_idle_ms([], options) == 2000
    assert reclaim_idle_ms([0.1] * 50, options) == 2000  # 3 x 0.1 s is under the floor
    slow = [0.2] * 98 + [1.5, 1.5]  # p99 near 1.5 s: a GPU under a big batch, or a loaded CPU
    assert 4000 <= reclaim_idle_ms(slow, options) <= 4500
