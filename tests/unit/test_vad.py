"""Both VADs on real speech, and Silero on noise: utterances open with pre-roll, close after the
silence, and steady noise opens none."""

from __future__ import annotations

import numpy as np
import pytest

from bench.corpus import LIBRIVOX
from bench.noise import NOISES, mix, noise_only, speech_rms
from pipeline.audio import read_audio
from pipeline.silero import FRAME, SileroScorer
from pipeline.vad import VadOptions, VadSegmenter

RATE = 16_000
ENGINES = ["webrtc", "silero"]


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


@pytest.mark.parametrize("engine", ENGINES)
def test_silence_is_not_speech(engine: str) -> None:
    starts, _, _ = run(VadSegmenter(VadOptions(engine=engine)), np.zeros(3 * RATE, dtype=np.int16))
    assert starts == []


@pytest.mark.parametrize("engine", ENGINES)
def test_one_clip_between_silences_is_one_utterance(engine: str) -> None:
    clip = read_audio(str(LIBRIVOX[1].path))
    audio = np.concatenate([np.zeros(RATE, np.int16), clip, np.zeros(RATE, np.int16)])
    options = VadOptions(engine=engine, end_silence_ms=500, pre_roll_ms=300)
    starts, ends, prerolls = run(VadSegmenter(options), audio)
    assert len(starts) == 1 and len(ends) == 1
    assert 1.0 <= starts[0] <= 1.5
    frame = options.frame_samples
    assert prerolls == [300 * RATE // 1000 // frame * frame]
    speech_end = 1.0 + len(clip) / RATE
    assert speech_end - 0.5 <= ends[0] <= speech_end + 0.7


@pytest.mark.parametrize("engine", ENGINES)
def test_frames_are_cut_the_same_whatever_the_chunk_size(engine: str) -> None:
    clip = read_audio(str(LIBRIVOX[1].path))
    a = run(VadSegmenter(VadOptions(engine=engine)), clip, chunk=160)
    b = run(VadSegmenter(VadOptions(engine=engine)), clip, chunk=4000)
    assert a == b


def test_silero_scores_a_stream_as_it_would_score_it_in_one_piece() -> None:
    from faster_whisper.vad import get_vad_model

    clip = read_audio(str(LIBRIVOX[0].path))
    n = len(clip) // FRAME
    frames = [clip[i * FRAME : (i + 1) * FRAME] for i in range(n)]
    one_by_one = SileroScorer()
    streamed = [one_by_one(f) for f in frames]
    batched = SileroScorer()
    in_batches = [p for i in range(0, n, 7) for p in batched.scores(frames[i : i + 7])]
    whole = np.asarray(get_vad_model()(clip[: n * FRAME].astype(np.float32) / 32768)).reshape(-1)
    # faster-whisper zeroes the last 64 samples of the last frame (its context slice is a view
    # into the audio), so its last score differs; every other frame must match.
    assert np.allclose(streamed[:-1], whole[:-1], atol=1e-5)
    assert np.allclose(in_batches, streamed, atol=1e-5)
    assert max(streamed) > 0.9 and min(streamed) < 0.1


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_silero_opens_nothing_in_steady_noise(noise: str) -> None:
    # The level speech at 15 dB SNR would bring it to (bench/results/vad.md: webrtcvad stays
    # open through most of the keyboard and music noise at this level).
    clip = read_audio(str(LIBRIVOX[0].path))
    audio = noise_only(NOISES[noise](20.0), speech_rms(clip) / 10 ** (15 / 20))
    starts, _, _ = run(VadSegmenter(VadOptions(engine="silero")), audio)
    assert starts == []


def test_silero_keeps_speech_in_pink_noise_whole() -> None:
    clips = [read_audio(str(c.path)) for c in LIBRIVOX[:3]]
    gap = np.zeros(int(1.2 * RATE), np.int16)
    clean = np.concatenate([gap, clips[0], gap, clips[1], gap, clips[2], gap])
    noisy = mix(clean, NOISES["pink"](len(clean) / RATE), 15)
    starts, ends, _ = run(VadSegmenter(VadOptions(engine="silero")), noisy)
    assert len(starts) == 3 and len(ends) == 3
