"""Resampling with PyAV and the gap tracker that keeps stream time honest."""

from __future__ import annotations

import av
import numpy as np

from pipeline.audio import GapTracker, Resampler


def stereo_tone(hz: float, seconds: float, rate: int = 48_000) -> av.AudioFrame:
    t = np.arange(int(seconds * rate)) / rate
    mono = (np.sin(2 * np.pi * hz * t) * 10_000).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(np.stack([mono, mono]).T.reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = rate
    return frame


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float32)))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_48k_stereo_becomes_16k_mono_with_pitch_kept() -> None:
    r = Resampler()
    out = np.concatenate([r.convert(stereo_tone(440, 0.5)) for _ in range(2)] + [r.flush()])
    assert out.dtype == np.int16
    assert abs(len(out) - 16_000) <= 64
    assert abs(dominant_hz(out[1000:], 16_000) - 440) < 5
    assert 6_000 < np.abs(out[1000:]).max() <= 10_100


def test_gaps_between_frames_are_counted_in_output_samples() -> None:
    g = GapTracker(max_gap=1.0)
    assert g.gap(0, 960, 48_000) == 0
    assert g.gap(960, 960, 48_000) == 0
    assert g.gap(960 * 2 + 4800, 960, 48_000) == 1600  # 100 ms lost
    assert g.gap(10 * 48_000, 960, 48_000) == 16_000  # capped at max_gap
    assert g.gap(None, 960, 48_000) == 0
