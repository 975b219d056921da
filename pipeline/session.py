"""A caption session: the async shell around the pure policy, talking to a scheduler.

Audio goes in with ``push``; captions and speech changes come out through ``on_event``.
The policy decides; this shell only runs its Submit actions on the inference backend and
hands results back, so a session never touches a model or knows where one runs.

The VAD is the one piece of model work on the audio path itself. Silero costs ~0.1 ms per
32 ms frame: it runs on an executor thread (onnxruntime releases the GIL), one batch of
whatever audio has arrived at a time, so the event loop only hands audio over. With a
``VadPump`` (a server's sessions share one) every session's waiting audio goes in one hop a
tick instead of one hop a frame each (pipeline/vad_pump.py). webrtcvad costs ~5 us a frame,
less than the hop to a thread, and runs in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.actions import Action, Emit, SpeechChange, Submit
from pipeline.backend import InferenceBackend
from pipeline.errors import SchedulerClosed, Superseded
from pipeline.ledger import VoiceReport
from pipeline.policy import CaptionPolicy
from pipeline.policy_options import FINAL_DECODE, PARTIAL_DECODE, PolicyOptions
from pipeline.turns import SpeakerTurns, WindowRequest
from pipeline.types import Caption, DecodeOptions, Embeddings
from pipeline.vad import VadFrame, VadOptions
from pipeline.vad_pump import VadPump

log = logging.getLogger(__name__)

Event = Caption | SpeechChange
AccountHook = Callable[[VoiceReport], None]


class CaptionSession:
    def __init__(
        self,
        key: Hashable,
        policy: CaptionPolicy,
        backend: InferenceBackend,
        on_event: Callable[[Event], None],
        on_account: AccountHook | None = None,
        turns: SpeakerTurns | None = None,
        pump: VadPump | None = None,
    ) -> None:
        """The caller has admitted ``key`` on ``backend`` (``open_session``); ``abort`` closes it.
        ``on_account`` hears where the voiced audio went (for metrics); gaps are logged here.
        ``turns``: speaker turns on this microphone (the ``speaker`` engine embeds its voiced
        windows; finals are held at most ``turns.options.hold`` seconds for their labels).
        ``pump`` scores the Silero VAD of many sessions in one hop a tick (else one a frame)."""
        self.key = key
        self.turns = turns
        self._holding = 0
        self._last_hold: asyncio.Task[None] | None = None
        self._answered = asyncio.Event()
        self._on_account = on_account
        self._accounted = VoiceReport()
        self.policy = policy
        self.backend = backend
        self._on_event = on_event
        self._tasks: set[asyncio.Task[None]] = set()
        self._finals_done = asyncio.Event()
        self._finals_done.set()
        self.closed = False
        self.offload_vad = policy.vad.options.engine == "silero"
        self._audio: list[np.ndarray] = []
        self._audio_samples = 0
        self._vad_task: asyncio.Task[None] | None = None
        self._pump = pump if self.offload_vad else None
        self._pumped = False  # audio is with the pump's thread now
        self._pump_done = asyncio.Event()
        self._aborted = False

    def push(self, samples: np.ndarray) -> None:
        """16 kHz mono int16 samples; cheap (a hand-over), safe to call from the media task."""
        if self.closed:
            return
        if not self.offload_vad:
            self.policy.queue_delay = self.queue_delay()
            self._frames(self.policy.vad.push(samples))
            return
        self._audio.append(samples)
        self._audio_samples += len(samples)
        if self._audio_samples < self.policy.vad.options.frame_samples:
            return
        if self._pump is not None:
            if not self._pumped and self._vad_task is None:
                self._pump.wake(self)
        elif self._vad_task is None:
            self._vad_task = asyncio.get_running_loop().create_task(self._run_vad())

    # -- the pump's side (pipeline/vad_pump.py) ----------------------------------------------

    def take_audio(self) -> np.ndarray | None:
        if self.closed or self._pumped or self._vad_task is not None or not self._audio:
            return None
        self._pumped = True
        self._pump_done.clear()
        return self._take()

    def score(self, audio: np.ndarray) -> list[VadFrame]:
        return self.policy.vad.push(audio)

    def scored(self, verdicts: list[VadFrame] | None, error: BaseException | None) -> None:
        self._pumped = False
        self._pump_done.set()
        if self._aborted:
            return  # ended without waiting: nothing more comes of it
        if error is not None:
            log.error("session %s: the VAD failed: %s", self.key, error)
        else:
            self.policy.queue_delay = self.queue_delay()
            self._frames(verdicts or [])
        if self._pump is not None and self._audio_samples >= self.policy.vad.options.frame_samples:
            self._pump.wake(self)

    # -- its own hop --------------------------------------------------------------------------

    def _take(self) -> np.ndarray:
        chunk = np.concatenate(self._audio)
        self._audio.clear()
        self._audio_samples = 0
        return chunk

    async def _run_vad(self) -> None:
        """Runs the VAD on each batch of waiting audio in a thread, and the policy here, in order."""
        loop = asyncio.get_running_loop()
        try:
            while self._audio:
                frames = await loop.run_in_executor(None, self.policy.vad.push, self._take())
                self.policy.queue_delay = self.queue_delay()
                self._frames(frames)
        finally:
            self._vad_task = None

    def _frames(self, frames: list[VadFrame]) -> None:
        if self.turns is not None:
            for window in self.turns.on_frames(frames):
                self._spawn(self._embed(window))
        self._apply(self.policy.on_frames(frames))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _embed(self, window: WindowRequest) -> None:
        """One window's speaker embedding; never dropped (a final may wait for it)."""
        assert self.turns is not None
        try:
            result: Embeddings = await self.backend.submit("speaker", self.key, window.request, True)
            self.turns.on_embeddings(window.start, result.vectors, result.step, result.span)
        except (Superseded, SchedulerClosed):
            self.turns.on_embeddings(window.start, np.zeros((0, 1), np.float32), 0.0, 0.0)
        except Exception:  # noqa: BLE001 - a failed embedding costs a label, never a caption
            log.exception("speaker embedding failed in session %s", self.key)
            self.turns.on_embeddings(window.start, np.zeros((0, 1), np.float32), 0.0, 0.0)
        self._answered.set()

    async def _hold(self, caption: Caption, before: asyncio.Task[None] | None, deadline: float) -> None:
        """Send a final once its speaker is known, or at ``deadline`` with what is known then;
        in the order finals came."""
        assert self.turns is not None
        loop = asyncio.get_running_loop()
        try:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            while not self.turns.ready(caption.end) and (left := deadline - loop.time()) > 0:
                self._answered.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._answered.wait()
                except TimeoutError:
                    break
            for piece in self.turns.final(caption):
                self._on_event(piece)
        finally:
            self._holding -= 1
            self._finals_state()

    def _finals_state(self) -> None:
        if self.policy.pending_finals or self._holding:
            self._finals_done.clear()
        else:
            self._finals_done.set()

    def _emit(self, caption: Caption) -> None:
        turns = self.turns
        if turns is None or turns.learning:
            self._on_event(caption)
        elif not caption.final:
            self._on_event(turns.partial(caption))
        else:
            self._holding += 1
            deadline = asyncio.get_running_loop().time() + turns.options.hold
            self._last_hold = self._spawn(self._hold(caption, self._last_hold, deadline))

    async def _drain_vad(self) -> None:
        """Until the VAD has seen every sample pushed so far."""
        while self._vad_task is not None or self._audio or self._pumped:
            if self._pumped:
                await self._pump_done.wait()  # the pump's thread has this session's audio
                continue
            if self._vad_task is None:
                self._vad_task = asyncio.get_running_loop().create_task(self._run_vad())
            await asyncio.shield(self._vad_task)

    def queue_delay(self) -> float:
        return self.backend.queue_delay(self.key)

    async def settled(self) -> None:
        """Until every sample pushed so far has been through the VAD and every request it led
        to has been answered (replays that must not depend on the machine's speed)."""
        await self._drain_vad()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Submit):
                task = asyncio.get_running_loop().create_task(self._run(action))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(action, Emit):
                self._emit(action.caption)
            elif isinstance(action, SpeechChange):
                self._on_event(action)
        self._finals_state()
        self._account()

    def _account(self) -> None:
        """Log what the ledger found since last time, and hand it to the metrics."""
        totals = self.policy.ledger.report()
        delta = replace(
            totals,
            voiced=totals.voiced - self._accounted.voiced,
            doubled=totals.doubled - self._accounted.doubled,
            repaired=totals.repaired - self._accounted.repaired,
            repairs=totals.repairs - self._accounted.repairs,
        )
        self._accounted = replace(totals, gaps=())
        for gap in delta.gaps:
            if gap.reason == "unfinalised":
                log.error(
                    "session %s: %.2f s of voiced audio at %.2f-%.2f s reached no final",
                    self.key, gap.voiced, gap.start, gap.end,
                )  # fmt: skip
            else:
                level = logging.INFO if gap.reason in ("noise", "remnant") else logging.WARNING
                log.log(
                    level, "session %s: %.2f s of voiced audio at %.2f-%.2f s dropped (%s)",
                    self.key, gap.voiced, gap.start, gap.end, gap.reason,
                )  # fmt: skip
        if delta.doubled > 0:
            log.error("session %s: %.2f s of voiced audio went into two finals", self.key, delta.doubled)
        if self._on_account is not None and delta != VoiceReport():
            self._on_account(delta)

    async def _run(self, submit: Submit) -> None:
        try:
            result = await self.backend.submit("whisper", self.key, submit.request, submit.final)
        except Superseded:
            # A newer request of this session took its place: for the policy, an unanswered one.
            self._apply(self.policy.on_failure(submit.ticket))
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
        self.closed = True
        await self._drain_vad()
        if self.turns is not None:
            for window in self.turns.flush():
                self._spawn(self._embed(window))
        self._apply(self.policy.flush())
        reason = "session_closed"
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                await self._finals_done.wait()
        except TimeoutError:
            log.warning("session %s: final captions did not arrive in %.0f s", self.key, timeout)
            reason = "finalise_timeout"
        await self.abort(reason)

    async def abort(self, reason: str = "session_closed") -> None:
        """End now: finals still to come are not waited for, and are reported as dropped."""
        self.closed = True
        self._aborted = True
        self.policy.abandon(reason)
        self._account()
        self.backend.close_session(self.key)
        tasks = [*self._tasks, *([self._vad_task] if self._vad_task is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def caption_policy(
    vad: str = "silero",
    vad_aggressiveness: int = 2,
    end_silence_ms: int = 500,
    partial_interval: float = 1.0,
    max_utterance: float = 12.0,
    sentence_wait: float = 0.7,
    stale_after: float = 3.0,
    beam_size: int = 1,
    final_beam_size: int = 5,
    legacy_partials: bool = False,
    language: str = "en",
    decode_language: str | None = None,
) -> CaptionPolicy:
    """The policy from the server's flat settings.

    ``legacy_partials`` brings back the partials of before issue 12 (aligned, 1000-frame
    window, every ``partial_interval`` of audio, no backoff, no final decoded ahead), so one run
    can compare; with ``final_beam_size=1``, ``sentence_wait=0``, ``stale_after=0`` and the
    webrtc VAD it is the old policy whole. ``language`` is what captions say they are in until
    Whisper detects otherwise; ``decode_language`` tells a multilingual Whisper (None: detect).
    """
    options = PolicyOptions(
        partial_interval=partial_interval,
        max_utterance=max_utterance,
        sentence_wait=sentence_wait,
        stale_after=stale_after,
        language=language,
        **(
            dict(speculate_ms=0, max_partial_interval=0.0, partials_on_voice=False) if legacy_partials else {}
        ),
    )
    partial = DecodeOptions() if legacy_partials else PARTIAL_DECODE
    return CaptionPolicy(
        options,
        VadOptions(engine=vad, aggressiveness=vad_aggressiveness, end_silence_ms=end_silence_ms),
        decode=replace(partial, beam_size=beam_size, language=decode_language),
        final_decode=replace(FINAL_DECODE, beam_size=final_beam_size, language=decode_language),
    )
