"""Which requests run together, and which engine's batch runs next: the pure core of the scheduler.

Three classes of work share a device, in this order (``Priority``): live finals, live partials,
and file chunks (transcription jobs of whole recordings, from the OpenAI and Deepgram compatible
APIs). Finals before partials, oldest first across sessions; a session's newer partial replaces
its stale one still waiting (coalescing); a batch leaves when it is full or its oldest request
has waited ``max_wait``. File chunks are background work: a batch of them starts only while no
live request of any engine waits, ready or not, so a file keeps the device busy in the gaps live
sessions leave and never in front of them. A file batch already running is not interrupted:
``max_file_batch`` (one chunk on a CPU) bounds what a live request arriving meanwhile waits.
No threads, no clock of its own: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Priority(IntEnum):
    """The classes of work, most urgent first."""

    FINAL = 0
    PARTIAL = 1
    FILE = 2


@dataclass(frozen=True)
class BatchOptions:
    """How batches are formed.

    max_batch: requests per engine call.
    max_wait: how long the first request may wait for company.
    max_partial_batch: requests per call of partials only (0: max_batch). Finals never share
        a call with partials, and a smaller partial batch bounds how long a final that arrives
        meanwhile waits for the device: on a CPU each item of a batch costs its own encoder time.
    max_file_batch: file chunks per call (0: max_batch). A live request that arrives while a
        file batch runs waits for it, so on a CPU (where width buys no encoder time) one chunk.
    file_gap: seconds the device must have been without live work (no live request waiting or
        arriving, no live batch ending) before a file batch starts. A chunk cannot be stopped
        once it runs, and on a CPU it costs about as much as a live final: starting one only in
        a real lull, not in the few milliseconds between two live requests, keeps it out of the
        way of the next (bench/results/files.md).
    """

    max_batch: int = 8
    max_wait: float = 0.01
    max_partial_batch: int = 0
    max_file_batch: int = 1
    file_gap: float = 0.0

    def size(self, priority: Priority) -> int:
        if priority is Priority.PARTIAL:
            return self.max_partial_batch or self.max_batch
        if priority is Priority.FILE:
            return self.max_file_batch or self.max_batch
        return self.max_batch


@dataclass
class Pending(Generic[T]):
    session: Hashable
    final: bool
    enqueued: float
    payload: T
    seq: int = field(default=0)
    # A file chunk: never coalesced or dropped (as a final), but served after every live request.
    background: bool = False

    @property
    def priority(self) -> Priority:
        if self.background:
            return Priority.FILE
        return Priority.FINAL if self.final else Priority.PARTIAL

    def order(self) -> tuple[int, float, int]:
        return (self.priority, self.enqueued, self.seq)


class BatchQueue(Generic[T]):
    def __init__(self, options: BatchOptions | None = None) -> None:
        self.options = options or BatchOptions()
        self._items: list[Pending[T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def submit(self, item: Pending[T]) -> Pending[T] | None:
        """Queue ``item``; a partial replaces the same session's waiting partial, which is returned."""
        self._seq += 1
        item.seq = self._seq
        replaced = None
        if item.priority is Priority.PARTIAL:
            for i, old in enumerate(self._items):
                if old.session == item.session and old.priority is Priority.PARTIAL:
                    replaced = self._items.pop(i)
                    # Keep the older place in line so coalescing never starves a session.
                    item.enqueued = min(item.enqueued, old.enqueued)
                    break
        self._items.append(item)
        return replaced

    def cancel(self, session: Hashable) -> list[Pending[T]]:
        return self.cancel_matching(lambda p: p.session == session)

    def cancel_matching(self, match: Callable[[Pending[T]], bool]) -> list[Pending[T]]:
        gone = [p for p in self._items if match(p)]
        self._items = [p for p in self._items if not match(p)]
        return gone

    def has_final(self) -> bool:
        return any(p.priority is Priority.FINAL for p in self._items)

    def has_live(self) -> bool:
        """Whether a live request (a final or a partial) waits here."""
        return any(p.priority is not Priority.FILE for p in self._items)

    def files(self) -> int:
        return sum(1 for p in self._items if p.priority is Priority.FILE)

    def urgency(self) -> Priority | None:
        """The most urgent class waiting, None when nothing waits."""
        return min((p.priority for p in self._items), default=None)

    def oldest_age(self, now: float) -> float:
        """How long the oldest live request has waited: the delay live sessions see. File chunks
        wait on purpose while live work runs, and would read as a device that is behind."""
        return max((now - p.enqueued for p in self._items if p.priority is not Priority.FILE), default=0.0)

    def _front(self) -> list[Pending[T]]:
        """The requests a batch is formed from: the live ones if any wait, else the file chunks."""
        live = [p for p in self._items if p.priority is not Priority.FILE]
        return live or self._items

    def ready_in(self, now: float) -> float | None:
        """Seconds until a batch may leave (0 when it may now); None when nothing waits."""
        front = self._front()
        if not front:
            return None
        if len(front) >= self.options.max_batch:
            return 0.0
        if front[0].priority is Priority.FILE and len(front) >= self.options.size(Priority.FILE):
            return 0.0
        oldest = max(now - p.enqueued for p in front)
        return max(0.0, self.options.max_wait - oldest)

    def take(self, now: float, force: bool = False) -> list[Pending[T]]:
        """The next batch if one may leave now (or ``force``), else an empty list."""
        wait = self.ready_in(now)
        if wait is None or (wait > 0 and not force):
            return []
        self._items.sort(key=Pending.order)
        priority = self._items[0].priority
        batch = [p for p in self._items if p.priority is priority][: self.options.size(priority)]
        taken = {id(p) for p in batch}
        self._items = [p for p in self._items if id(p) not in taken]
        return batch


def choose(
    queues: Mapping[str, BatchQueue[T]], now: float, quiet: float = float("inf")
) -> tuple[str | None, float | None]:
    """Which engine's batch runs now: ``(name, None)``; or ``(None, seconds)`` to wait before
    asking again (None: until something arrives).

    The most urgent class first (finals, then partials, across engines), then the queue whose
    live request is oldest. No file batch starts while any live request waits, even one still
    gathering company: it is the gap between live batches that files may fill, not the 10 ms a
    partial waits for another; nor before the device has been ``quiet`` (seconds without live
    work) for its queue's ``file_gap``.
    """
    live = any(q.has_live() for q in queues.values())
    best: tuple[tuple[int, float], str] | None = None
    soonest: float | None = None
    for name, q in queues.items():
        if live and not q.has_live():
            continue
        wait = q.ready_in(now)
        if wait is None:
            continue
        if wait > 0:
            soonest = wait if soonest is None else min(soonest, wait)
            continue
        urgency = q.urgency()
        assert urgency is not None  # ready_in said something waits
        if urgency is Priority.FILE and quiet < q.options.file_gap:
            lull = q.options.file_gap - quiet
            soonest = lull if soonest is None else min(soonest, lull)
            continue
        key = (int(urgency), -q.oldest_age(now))
        if best is None or key < best[0]:
            best = (key, name)
    if best is not None:
        return best[1], None
    return None, soonest
