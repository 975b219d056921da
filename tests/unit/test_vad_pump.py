"""One hop to a thread a tick for every session's Silero VAD (pipeline/vad_pump.py): the same
verdicts, in the same order, as one hop a frame each, with far fewer hops."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from bench.corpus import LIBRIVOX
from pipeline.actions import SpeechChange
from pipeline.audio import read_audio
from pipeline.backend import LocalBackend
from pipeline.scheduler import Scheduler
from pipeline.session import CaptionSession, caption_policy
from pipeline.types import TranscribeRequest, Transcript
from pipeline.vad_pump import VadPump


class Nothing:
    """An engine that hears no words: only the VAD's verdicts matter here (pure logic)."""

    name = "whisper"

    def run_batch(self, requests: Sequence[TranscribeRequest]) -> list[Transcript]:
        return [Transcript(words=(), language="en") for _ in requests]


async def speak(pump: VadPump | None, clips: list[np.ndarray]) -> list[list[tuple[bool, float]]]:
    """Each clip into a session of its own, 20 ms at a time as WebRTC delivers it (paced by
    yielding to the loop, not the clock); the speech changes each session saw."""
    backend = LocalBackend([Scheduler({"whisper": Nothing()})])
    heard: list[list[tuple[bool, float]]] = [[] for _ in clips]
    sessions = []
    for i in range(len(clips)):
        backend.open_session(i)

        def note(event: object, i: int = i) -> None:
            if isinstance(event, SpeechChange):
                heard[i].append((event.speaking, event.at))

        sessions.append(CaptionSession(i, caption_policy(), backend, note, pump=pump))
    for start in range(0, max(len(c) for c in clips), 320):
        for session, clip in zip(sessions, clips, strict=True):
            session.push(clip[start : start + 320])
        await asyncio.sleep(0)
    for session in sessions:
        await session.close(timeout=10)
    await backend.aclose()
    return heard


async def test_pumped_sessions_hear_speech_start_and_stop_exactly_as_alone_in_few_hops() -> None:
    clips = [read_audio(str(LIBRIVOX[i].path)) for i in (0, 1, 3)]
    clips = [np.concatenate([np.zeros(8000, np.int16), c, np.zeros(16_000, np.int16)]) for c in clips]
    alone = await speak(None, clips)
    pump = VadPump(tick=0.01)
    together = await speak(pump, clips)
    await pump.aclose()
    assert together == alone and all(changes for changes in alone)
    frames = sum(len(c) for c in clips) // 512
    assert pump.hops < frames / 4, (pump.hops, frames)  # alone, it would be about one a frame
