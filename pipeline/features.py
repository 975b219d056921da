"""Whisper's log-mel features, each frame computed once per utterance as its audio grows.

A partial re-reads the whole utterance so far, so every update used to recompute the log-mel
of audio already seen (faster-whisper's extractor, on the whole zero-padded window: 4-6 ms
for a 10 s window on one CPU core, and OpenBLAS spinning every core for its matmul). The STFT
is local: frame ``k`` sees the samples ``[160 k - 200, 160 k + 200)``, so when audio is
appended only the frames near the end change, and frames that lie wholly in the zero padding
are the constant ``log10(1e-10)``. Whisper's normalisation (clamp to ``max - 8``, then
``(x + 4) / 4``) depends on the whole window but is a cheap elementwise pass.

``LogMel`` keeps the per-frame ``log10`` mel rows of recent utterances with the audio they came
from, keyed by their first half second; rows are reused only when the new audio starts with
exactly that audio (a 10 s compare costs ~25 us). So it needs no utterance id: it works the
same behind Redis, where a partial may reach any worker.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

N_FFT = 400
HOP = 160
HALF = N_FFT // 2
FLOOR = -10.0  # log10 of the 1e-10 clip: a frame of zeros
KEY_SAMPLES = 8000  # the first half second names an utterance
# About 1 MB per 10 s utterance held (its audio and its rows): ~130 utterances of 10 s.
CACHE_BYTES = 128 << 20


@dataclass
class _Kept:
    audio: np.ndarray  # the audio the rows were computed from
    rows: np.ndarray  # (frames, n_mels) log10 mel of the frames that saw only that audio

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.audio.nbytes


def stable_frames(n: int) -> int:
    """Frames of a window whose samples all lie within the first ``n`` samples of audio."""
    return max(0, (n - HALF) // HOP + 1) if n > HALF else 0


def audio_frames(n: int, frames: int) -> int:
    """Frames of a ``frames``-frame window that see any of ``n`` samples of audio; the rest
    lie wholly in the zero padding (their rows are the constant ``FLOOR``)."""
    return min(frames, -(-(n + HALF) // HOP))


def _padded(audio: np.ndarray, length: int, lo: int, hi: int) -> np.ndarray:
    """Samples ``[lo, hi)`` of ``audio`` zero-extended to ``length`` and reflect-padded at both
    ends (numpy's "reflect", as the STFT's ``center=True`` pads): index -i is sample i."""
    out = np.zeros(hi - lo, dtype=np.float32)
    n = len(audio)

    def put(a: int, b: int, reverse: bool, source_start: int) -> None:
        # out[a - lo : b - lo] gets waveform[source_start ...] forwards or backwards.
        for i in range(a, b):  # at most N_FFT // 2 iterations: only the reflected edges loop
            k = source_start + (i - a) * (-1 if reverse else 1)
            if 0 <= k < n:
                out[i - lo] = audio[k]

    if lo < 0:  # left edge: waveform[-i]
        put(lo, min(0, hi), True, -lo)
    a, b = max(lo, 0), min(hi, length)
    if a < b:
        m = min(b, n)
        if a < m:
            out[a - lo : m - lo] = audio[a:m]
    if hi > length:  # right edge: waveform[2 (length - 1) - i]
        start = max(lo, length)
        put(start, hi, True, 2 * (length - 1) - start)
    return out


class LogMel:
    """Whisper's log-mel spectrogram of audio zero-padded to a window, equal (to float32
    rounding) to faster-whisper's ``FeatureExtractor(padded, padding=0)[:, :frames]``."""

    def __init__(self, filters: np.ndarray, cache_bytes: int = CACHE_BYTES) -> None:
        self.filters_t = np.ascontiguousarray(filters.T, dtype=np.float32)  # (201, n_mels)
        self.n_mels = filters.shape[0]
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[int, _Kept] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, audio: np.ndarray, frames: int) -> np.ndarray:
        """(n_mels, frames) float32 features of ``audio`` (16 kHz float32) padded to ``frames``."""
        audio = np.asarray(audio, dtype=np.float32)[: frames * HOP]
        n = len(audio)
        rows = np.full((frames, self.n_mels), FLOOR, dtype=np.float32)
        needed = audio_frames(n, frames)
        key = hash(audio[:KEY_SAMPLES].tobytes()) if n >= KEY_SAMPLES else None
        kept = self._reusable(key, audio) if key is not None else None
        start = 0 if kept is None else min(len(kept.rows), needed)
        if start:
            rows[:start] = kept.rows[:start]  # type: ignore[union-attr]
        if needed > start:
            rows[start:needed] = self._log_rows(audio, frames, start, needed)
        if key is not None:
            self._keep(key, audio, rows[: min(stable_frames(n), needed)])
        peak = rows.max()
        np.maximum(rows, peak - 8.0, out=rows)
        rows += 4.0
        rows /= 4.0
        return np.ascontiguousarray(rows.T)

    def _log_rows(self, audio: np.ndarray, frames: int, start: int, stop: int) -> np.ndarray:
        """log10 mel rows of frames ``[start, stop)``: the window's reflect-padded samples they see."""
        segment = _padded(audio, frames * HOP, start * HOP - HALF, (stop - 1) * HOP + HALF)
        windows = np.lib.stride_tricks.sliding_window_view(segment, N_FFT)[::HOP]
        spectrum = np.fft.rfft(windows * self.window, axis=-1)
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        mel = power @ self.filters_t
        return np.log10(np.maximum(mel, 1e-10, out=mel), out=mel)

    def _reusable(self, key: int, audio: np.ndarray) -> _Kept | None:
        with self._lock:
            kept = self._cache.get(key)
            if kept is not None:
                self._cache.move_to_end(key)
        if kept is None or len(kept.audio) > len(audio):
            self.misses += 1
            return None
        if not np.array_equal(audio[: len(kept.audio)], kept.audio):
            self.misses += 1
            return None
        self.hits += 1
        return kept

    def _keep(self, key: int, audio: np.ndarray, rows: np.ndarray) -> None:
        kept = _Kept(audio.copy(), rows.copy())
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._held -= old.nbytes
            self._cache[key] = kept
            self._held += kept.nbytes
            while self._held > self.cache_bytes and self._cache:
                _, dropped = self._cache.popitem(last=False)
                self._held -= dropped.nbytes
