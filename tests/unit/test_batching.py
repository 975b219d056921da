"""Batch formation with a fake clock: size, deadline, priority, fairness, coalescing, cancellation."""

from __future__ import annotations

from pipeline.batching import BatchOptions, BatchQueue, Pending
from pipeline.clock import FakeClock


def pending(clock: FakeClock, session: str, final: bool = False, tag: str = "") -> Pending[str]:
    return Pending(session=session, final=final, enqueued=clock.now(), payload=tag or session)


def test_a_full_batch_leaves_at_once() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=3, max_wait=1.0))
    for s in "abc":
        q.submit(pending(clock, s))
    assert q.ready_in(clock.now()) == 0
    assert [p.payload for p in q.take(clock.now())] == ["a", "b", "c"]
    assert len(q) == 0


def test_a_partial_batch_waits_for_the_deadline() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.05))
    q.submit(pending(clock, "a"))
    clock.advance(0.02)
    q.submit(pending(clock, "b"))
    assert q.take(clock.now()) == []
    assert q.ready_in(clock.now()) == 0.05 - 0.02
    clock.advance(0.03)
    assert [p.payload for p in q.take(clock.now())] == ["a", "b"]


def test_nothing_waiting_means_no_deadline() -> None:
    q: BatchQueue[str] = BatchQueue()
    assert q.ready_in(0.0) is None
    assert q.take(0.0, force=True) == []


def test_finals_go_before_partials_and_older_before_newer() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=2, max_wait=0.0))
    q.submit(pending(clock, "a", tag="a-partial"))
    clock.advance(0.1)
    q.submit(pending(clock, "b", tag="b-partial"))
    clock.advance(0.1)
    q.submit(pending(clock, "c", final=True, tag="c-final"))
    assert [p.payload for p in q.take(clock.now())] == ["c-final"]  # finals never wait on partials
    assert [p.payload for p in q.take(clock.now())] == ["a-partial", "b-partial"]


def test_partial_batches_have_their_own_cap() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.0, max_partial_batch=2))
    for s in "abcd":
        q.submit(pending(clock, s))
        q.submit(pending(clock, s + "!", final=True, tag=s + "-final"))
    assert [p.payload for p in q.take(clock.now())] == ["a-final", "b-final", "c-final", "d-final"]
    assert [p.payload for p in q.take(clock.now())] == ["a", "b"]
    assert [p.payload for p in q.take(clock.now())] == ["c", "d"]


def test_a_newer_partial_replaces_the_stale_one_but_keeps_its_place() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=1, max_wait=0.0))
    q.submit(pending(clock, "a", tag="a1"))
    clock.advance(0.1)
    q.submit(pending(clock, "b", tag="b1"))
    clock.advance(0.1)
    replaced = q.submit(pending(clock, "a", tag="a2"))
    assert replaced is not None and replaced.payload == "a1"
    assert len(q) == 2
    assert [p.payload for p in q.take(clock.now())] == ["a2"]  # a's original place in line


def test_finals_are_never_coalesced() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue()
    assert q.submit(pending(clock, "a", final=True, tag="f1")) is None
    assert q.submit(pending(clock, "a", final=True, tag="f2")) is None
    assert q.submit(pending(clock, "a", tag="p")) is None
    assert len(q) == 3


def test_a_departing_session_takes_its_requests_with_it() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue()
    q.submit(pending(clock, "a"))
    q.submit(pending(clock, "a", final=True))
    q.submit(pending(clock, "b"))
    assert len(q.cancel("a")) == 2
    assert [p.session for p in q.take(clock.now(), force=True)] == ["b"]


def test_oldest_age_is_the_queue_delay() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue()
    q.submit(pending(clock, "a"))
    clock.advance(0.7)
    q.submit(pending(clock, "b"))
    assert q.oldest_age(clock.now()) == 0.7
