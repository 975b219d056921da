"""webrtcvad on real speech: utterances open with pre-roll and close after the silence."""

from __future__ import annotations

import numpy as np

from pipeline.audio import read_audio
from pipeline.vad import VadOptions, VadSegmenter
from tests.support.speech import LIBRIVOX

RATE = 16_000


def run(
    segmenter: VadSegmenter, audio: np.ndarray, chunk: int = 333
) -> tuple[list[float], list[float], list[int]]:
    starts, ends, prerolls = [], [], []
    t = 0
    for i in range(0, len(audio), chunk):
        for frame in segmenter.push(audio[i : i + chunk]):
            t += len(frame.samples)
            if frame.started is not None:
                starts.append(t / RATE)
                prerolls.append(len(frame.started))
            if frame.ended:
                ends.append(t / RATE)
    return starts, ends, prerolls


def test_silence_is_not_speech() -> None:
    starts, _, _ = run(VadSegmenter(), np.zeros(3 * RATE, dtype=np.int16))
    assert starts == []


def test_one_clip_between_silences_is_one_utterance() -> None:
    clip = read_audio(str(LIBRIVOX[1].path))
    audio = np.concatenate([np.zeros(RATE, np.int16), clip, np.zeros(RATE, np.int16)])
    starts, ends, prerolls = run(VadSegmenter(VadOptions(end_silence_ms=500, pre_roll_ms=300)), audio)
    assert len(starts) == 1 and len(ends) == 1
    assert 1.0 <= starts[0] <= 1.5
    assert prerolls == [int(0.3 * RATE)]
    speech_end = 1.0 + len(clip) / RATE
    assert speech_end - 0.5 <= ends[0] <= speech_end + 0.6


def test_frames_are_cut_the_same_whatever_the_chunk_size() -> None:
    clip = read_audio(str(LIBRIVOX[1].path))
    a = run(VadSegmenter(), clip, chunk=160)
    b = run(VadSegmenter(), clip, chunk=4000)
    assert a == b
