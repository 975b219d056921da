"""A caption session: the async shell around the pure policy, talking to a scheduler.

Audio goes in with ``push``; captions and speech changes come out through ``on_event``.
The policy decides; this shell only runs its Submit actions on the inference backend and
hands results back, so a session never touches a model or knows where one runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable

import numpy as np

from pipeline.backend import InferenceBackend, SchedulerClosed, Superseded
from pipeline.policy import Action, CaptionPolicy, Emit, SpeechChange, Submit
from pipeline.types import Caption

log = logging.getLogger(__name__)

Event = Caption | SpeechChange


class CaptionSession:
    def __init__(
        self,
        key: Hashable,
        policy: CaptionPolicy,
        backend: InferenceBackend,
        on_event: Callable[[Event], None],
    ) -> None:
        """The caller has admitted ``key`` on ``backend`` (``open_session``); ``abort`` closes it."""
        self.key = key
        self.policy = policy
        self.backend = backend
        self._on_event = on_event
        self._tasks: set[asyncio.Task[None]] = set()
        self._finals_done = asyncio.Event()
        self._finals_done.set()
        self.closed = False

    def push(self, samples: np.ndarray) -> None:
        """16 kHz mono int16 samples; cheap (VAD only), safe to call from the media task."""
        if self.closed:
            return
        self.policy.queue_delay = self.queue_delay()
        self._apply(self.policy.feed(samples))

    def queue_delay(self) -> float:
        return self.backend.queue_delay(self.key)

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Submit):
                task = asyncio.get_running_loop().create_task(self._run(action))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(action, Emit):
                self._on_event(action.caption)
            elif isinstance(action, SpeechChange):
                self._on_event(action)
        if self.policy.pending_finals:
            self._finals_done.clear()
        else:
            self._finals_done.set()

    async def _run(self, submit: Submit) -> None:
        try:
            result = await self.backend.submit("whisper", self.key, submit.request, submit.final)
        except Superseded:
            return
        except SchedulerClosed:
            self._apply(self.policy.on_failure(submit.ticket))
            return
        except Exception:  # noqa: BLE001 - an engine error must still close the segment
            log.exception("transcription failed in session %s", self.key)
            self._apply(self.policy.on_failure(submit.ticket))
            return
        self._apply(self.policy.on_result(submit.ticket, result))

    async def close(self, timeout: float = 30.0) -> None:
        """End of audio: the last words still become a final before the session goes."""
        if self.closed:
            return
        self._apply(self.policy.flush())
        self.closed = True
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                await self._finals_done.wait()
        except TimeoutError:
            log.warning("session %s: final captions did not arrive in %.0f s", self.key, timeout)
        await self.abort()

    async def abort(self) -> None:
        self.closed = True
        self.backend.close_session(self.key)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
