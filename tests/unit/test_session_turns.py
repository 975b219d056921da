"""The caption session's shell around speaker turns: windows go to the ``speaker`` engine as
the voice fills them, and a final is held for its label only so long (``TurnOptions.hold``):
an engine that never answers costs the label, never the caption. The backend is a fake
answering in this process (pure logic under test: the hand-over, not the models)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import numpy as np

from pipeline.policy import CaptionPolicy
from pipeline.policy_options import PolicyOptions
from pipeline.session import CaptionSession
from pipeline.turns import SpeakerTurns
from pipeline.types import SAMPLE_RATE, Caption, Embeddings, EmbedRequest, TranscribeRequest, Transcript, Word
from pipeline.vad import VadOptions, VadSegmenter


class FakeBackend:
    """Whisper hears two words in any audio; the speaker engine answers one voice, or never."""

    def __init__(self, speaker_answers: bool) -> None:
        self.speaker_answers = speaker_answers
        self.windows = 0
        self.never = asyncio.Event()

    async def submit(self, engine: str, session: Hashable, request: Any, final: bool) -> Any:
        await asyncio.sleep(0)
        if engine == "speaker":
            assert isinstance(request, EmbedRequest) and final
            self.windows += 1
            if not self.speaker_answers:
                await self.never.wait()  # a worker that is gone
            return Embeddings(np.ones((1, 8), np.float32) / np.sqrt(8), 0.4, 0.815)
        assert isinstance(request, TranscribeRequest)
        d = len(request.audio) / SAMPLE_RATE
        return Transcript(words=(Word(" hello", 0.3, d / 2), Word(" world.", d / 2, d - 0.3)), language="en")

    def queue_delay(self, session: Hashable | None = None) -> float:
        return 0.0

    def close_session(self, session: Hashable) -> None:
        pass


def policy() -> CaptionPolicy:
    vad = VadSegmenter(VadOptions(engine="webrtc", end_silence_ms=500), voiced=lambda f: bool(f.any()))
    return CaptionPolicy(PolicyOptions(sentence_wait=0.0), vad)


async def speak(speaker_answers: bool) -> tuple[list[Caption], SpeakerTurns, FakeBackend]:
    backend = FakeBackend(speaker_answers)
    turns = SpeakerTurns()
    finals: list[Caption] = []
    got = asyncio.Event()

    def on_event(event: object) -> None:
        if isinstance(event, Caption) and event.final:
            finals.append(event)
            got.set()

    session = CaptionSession("s", policy(), backend, on_event, turns=turns)  # type: ignore[arg-type]
    audio = np.concatenate(
        [np.full(int(3.0 * SAMPLE_RATE), 500, np.int16), np.zeros(SAMPLE_RATE * 2, np.int16)]
    )
    for i in range(0, len(audio), 320):
        session.push(audio[i : i + 320])
    async with asyncio.timeout(20):
        await got.wait()
    await session.abort()
    return finals, turns, backend


async def test_a_final_waits_for_its_windows_and_carries_their_voice() -> None:
    finals, turns, backend = await speak(speaker_answers=True)
    assert backend.windows >= 5  # 3 s of voice: a window every 0.4 s as it filled
    assert [f.speaker for f in finals] == ["Speaker 1"] and turns.late == 0


async def test_a_speaker_engine_that_never_answers_costs_the_label_not_the_caption() -> None:
    finals, turns, _ = await speak(speaker_answers=False)
    assert [f.text for f in finals] == ["hello world."]
    assert finals[0].speaker is None and turns.late == 1  # released when the hold ran out
