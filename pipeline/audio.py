"""Audio conversion: the one module that imports PyAV.

WebRTC hands us 48 kHz Opus decoded to s16 frames, often stereo; Whisper and webrtcvad want
16 kHz mono. PyAV's resampler (libswresample) does the work. PyAV is imported where media is
decoded, not with this module: a benchmark host (a bare CUDA box) runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.types import SAMPLE_RATE

if TYPE_CHECKING:
    import av


class Resampler:
    """Turns any PyAV audio frame into 16 kHz mono int16 samples, keeping filter state."""

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        import av

        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)

    def flush(self) -> np.ndarray:
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, dtype=np.int16)


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def read_audio(path: str, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any file PyAV can open to mono int16 at ``rate``."""
    import av

    resampler = Resampler(rate)
    parts: list[np.ndarray] = []
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            parts.append(resampler.convert(frame))
    parts.append(resampler.flush())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class GapTracker:
    """Counts the samples lost between frames (from their pts), so stream time stays media time.

    WebRTC drops packets and senders pause; feeding silence for the gap keeps caption times in
    line with the audio instead of drifting earlier with every loss.
    """

    def __init__(self, max_gap: float = 2.0) -> None:
        self._next_pts: int | None = None
        self._max_gap = max_gap

    def gap(self, pts: int | None, samples: int, sample_rate: int, rate: int = SAMPLE_RATE) -> int:
        """Samples at ``rate`` missing before a frame at ``pts`` (in 1/sample_rate units)."""
        if pts is None:
            return 0
        missing = 0 if self._next_pts is None else pts - self._next_pts
        self._next_pts = pts + samples
        if missing <= 0:
            return 0
        return int(min(missing / sample_rate, self._max_gap) * rate)
