"""One scheduler per device: a worker thread that runs batched engine calls for every session.

The batching decisions live in ``pipeline.batching`` (pure); this module is the thin shell
that owns the thread, the lock and the hand-off of results to asyncio futures.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.batching import BatchOptions, BatchQueue, Pending, Priority, choose
from pipeline.clock import Clock, MonotonicClock
from pipeline.engines import Engine
from pipeline.errors import SchedulerClosed, SchedulerFull, Superseded

log = logging.getLogger(__name__)

__all__ = ["NullObserver", "Scheduler", "SchedulerClosed", "SchedulerFull", "SchedulerObserver", "Superseded"]


class SchedulerObserver(Protocol):
    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None: ...

    def on_coalesced(self, engine: str) -> None: ...

    def on_cancelled(self, engine: str, count: int) -> None: ...


class NullObserver:
    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        pass

    def on_coalesced(self, engine: str) -> None:
        pass

    def on_cancelled(self, engine: str, count: int) -> None:
        pass


@dataclass
class _Job:
    request: Any
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop that asked is gone (its program ended): nobody is left to tell


class Scheduler:
    """Serialises one device: batches of one engine at a time, finals first, oldest first."""

    def __init__(
        self,
        engines: dict[str, Engine[Any, Any]],
        options: BatchOptions | None = None,
        device: str = "cpu",
        clock: Clock | None = None,
        observer: SchedulerObserver | None = None,
        engine_options: dict[str, BatchOptions] | None = None,
        on_taken: Callable[[], None] | None = None,
    ) -> None:
        """``engine_options`` batches an engine differently from ``options`` (translation lines
        are far cheaper than Whisper windows, so a device can take more of them per call).
        ``on_taken`` is called on the device's thread each time it takes a batch (a Redis worker
        reads its next batch then, so that it is ready when this one ends)."""
        self.engines = engines
        self.device = device
        self.options = options or BatchOptions()
        self._clock = clock or MonotonicClock()
        self.observer = observer or NullObserver()
        per_engine = engine_options or {}
        self._queues: dict[str, BatchQueue[_Job]] = {
            n: BatchQueue(per_engine.get(n, self.options)) for n in engines
        }
        self._cond = threading.Condition()
        self._closed = False
        self._busy_since: float | None = None
        self._live_at = float("-inf")  # when live work last arrived or ended on this device
        self._on_taken = on_taken
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{device}", daemon=True)
        self._thread.start()

    # -- called from the event loop -------------------------------------------------------

    async def submit(
        self, engine: str, session: Hashable, request: Any, final: bool, background: bool = False
    ) -> Any:
        """Run ``request`` in a batch of its engine. ``background``: a file chunk, run only when
        no live request waits (pipeline.batching)."""
        loop = asyncio.get_running_loop()
        job = _Job(request, loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise SchedulerClosed("scheduler is closed")
            pending = Pending(
                session=session, final=final, enqueued=self._clock.now(), payload=job, background=background
            )
            replaced = self._queues[engine].submit(pending)
            if not background:
                self._live_at = pending.enqueued
            self._cond.notify()
        if replaced is not None:
            self.observer.on_coalesced(engine)
            _resolve(replaced.payload, error=Superseded())
        try:
            return await job.future
        except asyncio.CancelledError:
            self._drop(engine, job)
            raise

    def _drop(self, engine: str, job: _Job) -> None:
        with self._cond:
            gone = self._queues[engine].cancel_matching(lambda p: p.payload is job)
        if gone:
            self.observer.on_cancelled(engine, len(gone))

    def cancel_session(self, session: Hashable) -> None:
        """Drop everything a departing session still has waiting."""
        with self._cond:
            gone = {name: q.cancel(session) for name, q in self._queues.items()}
        for name, items in gone.items():
            if items:
                self.observer.on_cancelled(name, len(items))
            for p in items:
                _resolve(p.payload, error=SchedulerClosed("session left"))

    def queue_delay(self) -> float:
        """How long the oldest waiting request has waited, or the running batch has run."""
        now = self._clock.now()
        with self._cond:
            waiting = max((q.oldest_age(now) for q in self._queues.values()), default=0.0)
            running = now - self._busy_since if self._busy_since is not None else 0.0
        return max(waiting, running if waiting else 0.0)

    def depth(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def files_waiting(self) -> int:
        """File chunks waiting for the device (counted in ``depth`` too)."""
        with self._cond:
            return sum(q.files() for q in self._queues.values())

    def running_alone(self) -> bool:
        """A batch is on the device and nothing else waits for it."""
        with self._cond:
            return self._busy_since is not None and not any(len(q) for q in self._queues.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            leftovers = [p for q in self._queues.values() for p in q.cancel_matching(lambda _: True)]
            self._cond.notify_all()
        for p in leftovers:
            _resolve(p.payload, error=SchedulerClosed("scheduler closed"))
        self._thread.join(timeout=30)

    # -- the worker thread ------------------------------------------------------------------

    def _next(self) -> tuple[str, list[Pending[_Job]]] | None:
        """Under the lock: the engine whose batch should run now (pipeline.batching.choose)."""
        while not self._closed:
            now = self._clock.now()
            name, soonest = choose(self._queues, now, quiet=now - self._live_at)
            if name is not None:
                return name, self._queues[name].take(now)
            self._cond.wait(timeout=soonest)
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
                if picked is None:
                    return
                self._busy_since = self._clock.now()
            if self._on_taken is not None:
                self._on_taken()
            name, batch = picked
            started = time.perf_counter()
            # File chunks wait on purpose while live work runs: their waits are not queue delay.
            waited = [self._busy_since - p.enqueued for p in batch if p.priority is not Priority.FILE]
            outcomes = self._execute(name, [p.payload.request for p in batch])
            with self._cond:
                self._busy_since = None
                if any(p.priority is not Priority.FILE for p in batch):
                    self._live_at = self._clock.now()
            # Metrics first, then results: whoever reads a result also sees its batch counted.
            self.observer.on_batch(name, self.device, len(batch), time.perf_counter() - started, waited)
            for p, (result, error) in zip(batch, outcomes, strict=True):
                _resolve(p.payload, result, error)

    def _execute(self, name: str, requests: list[Any]) -> list[tuple[Any, BaseException | None]]:
        engine = self.engines[name]
        try:
            return [(r, None) for r in engine.run_batch(requests)]
        except Exception:  # noqa: BLE001 - one bad item must not fail its batch, nor kill the device
            log.exception("%s batch of %d failed; retrying one by one", name, len(requests))
        outcomes: list[tuple[Any, BaseException | None]] = []
        for request in requests:
            try:
                (one,) = engine.run_batch([request])
                outcomes.append((one, None))
            except Exception as exc:  # noqa: BLE001
                outcomes.append((None, exc))
        return outcomes
