"""The one seam between caption sessions and inference.

A caption session submits requests and never learns where they run: on a scheduler per
device in this process (``LocalBackend``), or on workers behind Redis Streams. Server code
sees only ``InferenceBackend``; settings go in when a backend is built, never afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import BackendUnavailable, SchedulerClosed, SchedulerFull, Superseded

if TYPE_CHECKING:
    from pipeline.scheduler import Scheduler

# The errors live in pipeline.errors (the scheduler raises them too); named here for callers.
__all__ = [
    "BackendStats",
    "BackendUnavailable",
    "DeviceStats",
    "InferenceBackend",
    "LocalBackend",
    "SchedulerClosed",
    "SchedulerFull",
    "Superseded",
]


@dataclass(frozen=True)
class DeviceStats:
    device: str
    sessions: int
    queue_depth: int
    queue_delay: float
    max_batch: int


@dataclass(frozen=True)
class BackendStats:
    """What ``/health/full`` and admission decisions need to know about inference."""

    kind: str
    ready: bool
    sessions: int
    max_sessions: int
    queue_depth: int
    queue_delay: float
    devices: tuple[DeviceStats, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["queue_delay"] = round(self.queue_delay, 3)
        out["devices"] = [asdict(d) | {"queue_delay": round(d.queue_delay, 3)} for d in self.devices]
        out["detail"] = dict(self.detail)
        return out


class InferenceBackend(Protocol):
    """Where caption sessions send their engine requests."""

    def open_session(self, session: Hashable) -> None:
        """Admit a session, or raise ``SchedulerFull`` (``BackendUnavailable`` when unreachable)."""
        ...

    async def submit(
        self, engine: str, session: Hashable, request: Any, final: bool, background: bool = False
    ) -> Any:
        """Run one request; raises ``Superseded`` or ``SchedulerClosed`` when it will not run.
        ``background``: a chunk of a file job, served below every live request (final=True)."""
        ...

    def close_session(self, session: Hashable) -> None:
        """Forget a session and drop whatever it still has waiting."""
        ...

    def queue_delay(self, session: Hashable | None = None) -> float:
        """How far behind inference runs for this session (or the worst device), in seconds."""
        ...

    def stats(self) -> BackendStats: ...

    async def aclose(self) -> None: ...


class LocalBackend:
    """One scheduler per device in this process; each new session goes to the least loaded."""

    kind = "local"

    def __init__(
        self,
        schedulers: list[Scheduler],
        max_sessions: int = 0,
        detail: Mapping[str, Any] | None = None,
        engine_schedulers: Mapping[str, Scheduler] | None = None,
    ) -> None:
        """``engine_schedulers`` gives an engine that needs no device (Apertium runs in its own
        processes) a worker of its own, so it never waits behind a Whisper batch."""
        if not schedulers:
            raise ValueError("at least one scheduler is needed")
        self.schedulers = schedulers
        self.engine_schedulers = dict(engine_schedulers or {})
        self.max_sessions = max_sessions
        self._detail = dict(detail or {})
        self._placed: dict[Hashable, Scheduler] = {}

    def _load(self, scheduler: Scheduler) -> tuple[int, float]:
        return sum(1 for s in self._placed.values() if s is scheduler), scheduler.queue_delay()

    def open_session(self, session: Hashable) -> None:
        if session in self._placed:
            return
        if self.max_sessions and len(self._placed) >= self.max_sessions:
            raise SchedulerFull(f"all {self.max_sessions} session slots are taken")
        self._placed[session] = min(self.schedulers, key=self._load)

    def _scheduler(self, session: Hashable) -> Scheduler:
        return self._placed.get(session) or min(self.schedulers, key=self._load)

    async def submit(
        self, engine: str, session: Hashable, request: Any, final: bool, background: bool = False
    ) -> Any:
        own = self.engine_schedulers.get(engine)
        if own is not None:
            return await own.submit(engine, session, request, final, background)
        return await self._scheduler(session).submit(engine, session, request, final, background)

    def close_session(self, session: Hashable) -> None:
        scheduler = self._placed.pop(session, None)
        for s in [scheduler] if scheduler is not None else self.schedulers:
            s.cancel_session(session)
        for s in self.engine_schedulers.values():
            s.cancel_session(session)

    def queue_delay(self, session: Hashable | None = None) -> float:
        if session is not None and session in self._placed:
            return self._placed[session].queue_delay()
        return max(s.queue_delay() for s in self.schedulers)

    def stats(self) -> BackendStats:
        devices = tuple(
            DeviceStats(
                device=s.device,
                sessions=self._load(s)[0],
                queue_depth=s.depth(),
                queue_delay=s.queue_delay(),
                max_batch=s.options.max_batch,
            )
            for s in self.schedulers
        )
        return BackendStats(
            kind=self.kind,
            ready=True,
            sessions=len(self._placed),
            max_sessions=self.max_sessions,
            queue_depth=sum(d.queue_depth for d in devices),
            queue_delay=max(d.queue_delay for d in devices),
            devices=devices,
            detail=self._detail,
        )

    async def aclose(self) -> None:
        # Joining the worker threads blocks until their batch ends: never on the event loop.
        every = [*self.schedulers, *self.engine_schedulers.values()]
        await asyncio.gather(*(asyncio.to_thread(s.close) for s in every))
