"""Batch formation with a fake clock: size, deadline, priority, fairness, coalescing, cancellation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.batching import BatchOptions, BatchQueue, Pending, Priority, choose
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


# -- file chunks: background work below every live request (issue 33) -------------------------


def chunk(clock: FakeClock, job: str, tag: str = "") -> Pending[str]:
    return Pending(session=job, final=True, enqueued=clock.now(), payload=tag or job, background=True)


def test_file_chunks_go_after_every_live_request_one_per_call() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.0, max_file_batch=1))
    q.submit(chunk(clock, "job", "c1"))
    q.submit(chunk(clock, "job", "c2"))
    clock.advance(5.0)  # the chunks have waited long; age does not lift them above live work
    q.submit(pending(clock, "a", tag="a-partial"))
    q.submit(pending(clock, "b", final=True, tag="b-final"))
    assert [p.payload for p in q.take(clock.now())] == ["b-final"]
    assert [p.payload for p in q.take(clock.now())] == ["a-partial"]
    assert [p.payload for p in q.take(clock.now())] == ["c1"]
    assert [p.payload for p in q.take(clock.now())] == ["c2"]


def test_file_chunks_are_never_coalesced_nor_counted_as_queue_delay() -> None:
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.0, max_file_batch=0))
    assert q.submit(chunk(clock, "job", "c1")) is None
    assert q.submit(chunk(clock, "job", "c2")) is None
    clock.advance(30.0)
    assert q.oldest_age(clock.now()) == 0.0  # a live session's policy must not think the device behind
    assert q.files() == 2 and not q.has_live()
    assert [p.payload for p in q.take(clock.now())] == ["c1", "c2"]  # 0: max_batch, as on a GPU


def test_no_file_batch_starts_while_a_live_request_gathers_company() -> None:
    """A partial waiting its 10 ms for company must not find the device taken by a file chunk."""
    clock = FakeClock()
    whisper: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.25))
    nllb: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.25))
    queues = {"whisper": whisper, "nllb": nllb}
    whisper.submit(chunk(clock, "job"))
    clock.advance(0.5)
    nllb.submit(pending(clock, "line", final=True))  # live work of another engine, not yet ready
    assert choose(queues, clock.now()) == (None, 0.25)
    clock.advance(0.25)
    assert choose(queues, clock.now()) == ("nllb", None)
    nllb.take(clock.now())
    assert choose(queues, clock.now()) == ("whisper", None)  # the gap is the file's


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["final", "partial", "file", "run"]),
            st.sampled_from(["whisper", "nllb"]),
            st.sampled_from(["s1", "s2", "job"]),
            st.floats(min_value=0.0, max_value=0.05),
        ),
        max_size=60,
    )
)
def test_a_file_batch_runs_only_when_no_live_request_waits_anywhere(
    steps: list[tuple[str, str, str, float]],
) -> None:
    """Whatever arrives in whatever order, the scheduler's choice never starts a file batch
    while a live final or partial of any engine waits, and never leaves work waiting forever."""
    clock = FakeClock()
    queues: dict[str, BatchQueue[str]] = {
        "whisper": BatchQueue(BatchOptions(max_batch=4, max_wait=0.01, max_partial_batch=2)),
        "nllb": BatchQueue(BatchOptions(max_batch=4, max_wait=0.01)),
    }

    def run_one() -> None:
        name, wait = choose(queues, clock.now())
        if name is None:
            if wait is not None:
                clock.advance(max(wait, 0.001))  # the scheduler's wait, past float rounding
            return
        live_before = any(q.has_live() for q in queues.values())
        batch = queues[name].take(clock.now())
        assert batch, "a queue chosen to run has a batch ready"
        kinds = {p.priority for p in batch}
        assert len(kinds) == 1, "finals, partials and file chunks never share a call"
        if Priority.FILE in kinds:
            assert not live_before

    for kind, engine, session, dt in steps:
        clock.advance(dt)
        if kind == "run":
            run_one()
        elif kind == "file":
            queues[engine].submit(chunk(clock, session))
        else:
            queues[engine].submit(pending(clock, session, final=kind == "final"))
    for _ in range(200):
        if not any(len(q) for q in queues.values()):
            break
        run_one()
    assert not any(len(q) for q in queues.values()), "everything runs in the end"


def test_a_file_batch_waits_for_a_lull_in_live_work() -> None:
    """``file_gap``: the device must have been without live work that long before a chunk starts."""
    clock = FakeClock()
    q: BatchQueue[str] = BatchQueue(BatchOptions(max_batch=8, max_wait=0.0, file_gap=0.25))
    q.submit(chunk(clock, "job"))
    assert choose({"whisper": q}, clock.now(), quiet=0.0) == (None, 0.25)
    assert choose({"whisper": q}, clock.now(), quiet=0.125) == (None, 0.125)
    assert choose({"whisper": q}, clock.now(), quiet=0.25) == ("whisper", None)
    q.submit(pending(clock, "a", final=True))
    assert choose({"whisper": q}, clock.now(), quiet=0.0) == ("whisper", None)  # live work never waits
    assert [p.payload for p in q.take(clock.now())] == ["a"]
