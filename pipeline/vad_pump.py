"""The VAD of every caption session of one event loop, scored in one hop to a thread per tick.

Silero runs on an executor thread (onnxruntime releases the GIL; pipeline/session.py), and each
session used to hop there as soon as a 32 ms frame had arrived: about 31 hand-offs a second a
session, each a thread wake-up, a future and a call back into the loop. On a gateway with 16
live sessions those hand-offs were about a quarter of its CPU (py-spy, bench/results/gateway.md).
The pump waits ``tick`` seconds for audio to gather, then scores what every waiting session has
in one hop, session after session (each in one ONNX run, which is cheaper per frame than one run
a frame), and applies the verdicts on the loop in each session's order. A verdict comes at most
a tick later than it would have: 64 ms, where an utterance ends after 500 ms of silence.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

TICK = 0.064  # two Silero frames
GROUP = 8  # sessions scored in one hop


class Pumped(Protocol):
    """A caption session as the pump drives it."""

    def take_audio(self) -> Any | None:
        """The audio waiting for the VAD, now marked in flight; None when none is ready."""
        ...

    def score(self, audio: Any) -> Any:
        """The VAD's verdicts on ``audio``: runs on the pump's thread."""
        ...

    def scored(self, verdicts: Any, error: BaseException | None) -> None:
        """Back on the loop: apply the verdicts (or note the failure), in order."""
        ...


class VadPump:
    """One per event loop (an app's); sessions ``wake`` it when a frame's worth has arrived."""

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        self._ready: dict[int, Pumped] = {}  # insertion-ordered: sessions in the order they woke it
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.hops = 0  # executor hand-offs made, for tests and benchmarks

    def wake(self, session: Pumped) -> None:
        if self._closed:
            return
        self._ready[id(session)] = session
        self._work.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await self._work.wait()
            await asyncio.sleep(self.tick)  # a tick's audio gathers: the batching interval, not a wait
            self._work.clear()
            waiting, self._ready = list(self._ready.values()), {}
            batch = [(s, audio) for s in waiting if (audio := s.take_audio()) is not None]
            if not batch:
                continue
            # A few sessions a hop, the hops side by side: ONNX releases the GIL, so a host with
            # cores to spare scores on several at once (and one thread is not a gateway's limit).
            groups = [batch[i : i + GROUP] for i in range(0, len(batch), GROUP)]
            self.hops += len(groups)
            done = await asyncio.gather(*(loop.run_in_executor(None, _score_all, g) for g in groups))
            for session, verdicts, error in (r for group in done for r in group):
                try:
                    session.scored(verdicts, error)
                except Exception:  # noqa: BLE001 - one session's failure must not stop the others
                    log.exception("applying the VAD's verdicts failed")


def _score_all(batch: list[tuple[Pumped, Any]]) -> list[tuple[Pumped, Any, BaseException | None]]:
    out: list[tuple[Pumped, Any, BaseException | None]] = []
    for session, audio in batch:
        try:
            out.append((session, session.score(audio), None))
        except Exception as exc:  # noqa: BLE001 - one session's failure must not stop the others
            out.append((session, None, exc))
    return out
