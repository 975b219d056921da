"""Which requests run together: the pure core of the scheduler.

Finals before partials, oldest first across sessions; a session's newer partial replaces its
stale one still waiting (coalescing); a batch leaves when it is full or its oldest request
has waited ``max_wait``. No threads, no clock of its own: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BatchOptions:
    """How batches are formed.

    max_batch: requests per engine call.
    max_wait: how long the first request may wait for company.
    max_partial_batch: requests per call of partials only (0: max_batch). Finals never share
        a call with partials, and a smaller partial batch bounds how long a final that arrives
        meanwhile waits for the device: on a CPU each item of a batch costs its own encoder time.
    """

    max_batch: int = 8
    max_wait: float = 0.01
    max_partial_batch: int = 0


@dataclass
class Pending(Generic[T]):
    session: Hashable
    final: bool
    enqueued: float
    payload: T
    seq: int = field(default=0)

    def order(self) -> tuple[int, float, int]:
        return (0 if self.final else 1, self.enqueued, self.seq)


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
        if not item.final:
            for i, old in enumerate(self._items):
                if old.session == item.session and not old.final:
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
        return any(p.final for p in self._items)

    def oldest_age(self, now: float) -> float:
        return max((now - p.enqueued for p in self._items), default=0.0)

    def ready_in(self, now: float) -> float | None:
        """Seconds until a batch may leave (0 when it may now); None when nothing waits."""
        if not self._items:
            return None
        if len(self._items) >= self.options.max_batch:
            return 0.0
        return max(0.0, self.options.max_wait - self.oldest_age(now))

    def take(self, now: float, force: bool = False) -> list[Pending[T]]:
        """The next batch if one may leave now (or ``force``), else an empty list."""
        wait = self.ready_in(now)
        if wait is None or (wait > 0 and not force):
            return []
        self._items.sort(key=Pending.order)
        final = self._items[0].final
        size = self.options.max_batch if final else (self.options.max_partial_batch or self.options.max_batch)
        batch = [p for p in self._items if p.final == final][:size]
        taken = {id(p) for p in batch}
        self._items = [p for p in self._items if id(p) not in taken]
        return batch
