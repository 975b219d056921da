"""Log-mel features computed once per frame of a growing utterance equal faster-whisper's over
the whole padded window, update after update, whatever else the cache has seen."""

from __future__ import annotations

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.features import HOP, KEY_SAMPLES, LogMel

EXTRACTOR = FeatureExtractor(80)
RNG = np.random.default_rng(7)
# Speech-like: loud and quiet stretches, so the window's peak (and so the clamp) moves.
AUDIO = (RNG.standard_normal(16_000 * 12) * np.repeat(RNG.uniform(0.01, 0.5, 120), 1600)).astype(np.float32)


def reference(audio: np.ndarray, frames: int) -> np.ndarray:
    padded = np.zeros(frames * HOP, np.float32)
    padded[: len(audio)] = audio[: frames * HOP]
    return EXTRACTOR(padded, padding=0)[:, :frames]


def test_cold_features_equal_faster_whispers_for_any_length_and_window() -> None:
    mel = LogMel(EXTRACTOR.mel_filters, cache_bytes=0)
    for n in (1, 150, 201, 3000, KEY_SAMPLES, 16_000 * 3 + 17, 16_000 * 10):
        for frames in (800, 1000, 1500):
            got = mel(AUDIO[:n], frames)
            assert got.shape == (80, frames) and got.dtype == np.float32
            assert np.abs(got - reference(AUDIO[:n], frames)).max() < 1e-4, (n, frames)
    # Audio that fills the window reaches its right edge (reflected there, as faster-whisper does).
    assert np.abs(mel(AUDIO[: 800 * HOP], 800) - reference(AUDIO[: 800 * HOP], 800)).max() < 1e-4


@settings(max_examples=25, deadline=None, database=None, derandomize=True)
@given(steps=st.lists(st.integers(1, 40_000), min_size=1, max_size=8), offset=st.integers(0, 16_000))
def test_a_growing_utterance_reuses_its_frames_and_still_equals_the_whole_computation(
    steps: list[int], offset: int
) -> None:
    mel = LogMel(EXTRACTOR.mel_filters)
    n = KEY_SAMPLES
    for step in steps:
        n = min(n + step, 16_000 * 11)
        audio = AUDIO[offset : offset + n]
        frames = 1500 if len(audio) > 950 * HOP else 1000
        assert np.abs(mel(audio, frames) - reference(audio, frames)).max() < 1e-4
    assert mel.hits >= len(steps) - 1


def test_utterances_that_start_alike_never_borrow_each_others_frames() -> None:
    mel = LogMel(EXTRACTOR.mel_filters)
    first = AUDIO[: 16_000 * 4]
    other = first.copy()
    other[KEY_SAMPLES + 5_000] += 0.25  # the same first half second, then one sample differs
    mel(first, 1000)
    assert np.abs(mel(other, 1000) - reference(other, 1000)).max() < 1e-4
    assert mel.hits == 0 and mel.misses == 2


def test_the_cache_keeps_within_its_bytes() -> None:
    mel = LogMel(EXTRACTOR.mel_filters, cache_bytes=1 << 20)
    for i in range(20):
        mel(AUDIO[i * 1000 : i * 1000 + 16_000 * 5], 1000)
    assert mel._held <= 1 << 20  # noqa: SLF001 - the bound is the point
