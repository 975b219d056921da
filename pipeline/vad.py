"""Speech/silence segmentation with webrtcvad, as a synchronous state machine over sample counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import webrtcvad

from pipeline.types import SAMPLE_RATE


@dataclass(frozen=True)
class VadOptions:
    """When speech starts and ends.

    aggressiveness: webrtcvad mode 0-3; higher rejects more noise as non-speech.
    frame_ms: webrtcvad frame length (10, 20 or 30 ms).
    start_ms: voiced audio within ``start_window_ms`` that opens an utterance.
    end_silence_ms: unvoiced audio that closes it.
    pre_roll_ms: audio kept from before the start, so the first phoneme is not clipped; Whisper
        also hears speech better with some lead-in (faster-whisper pads VAD speech by 400 ms too).
    """

    aggressiveness: int = 2
    frame_ms: int = 30
    start_ms: int = 90
    start_window_ms: int = 150
    end_silence_ms: int = 500
    pre_roll_ms: int = 400

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000


@dataclass(frozen=True)
class VadFrame:
    """One frame's verdict.

    ``speaking`` is the utterance state after this frame; ``started`` carries the audio
    (pre-roll included) that opens an utterance, and ``ended`` marks its close.
    """

    samples: np.ndarray
    voiced: bool
    speaking: bool
    started: np.ndarray | None = None
    ended: bool = False


class VadSegmenter:
    """Feed int16 16 kHz samples of any length; get a verdict per complete frame."""

    def __init__(
        self, options: VadOptions | None = None, voiced: Callable[[np.ndarray], bool] | None = None
    ) -> None:
        """``voiced`` decides one frame; webrtcvad by default, a rule of thumb in unit tests."""
        self.options = options or VadOptions()
        if voiced is None:
            vad = webrtcvad.Vad(self.options.aggressiveness)
            voiced = lambda frame: vad.is_speech(frame.tobytes(), SAMPLE_RATE)  # noqa: E731
        self._voiced = voiced
        self._pending = np.zeros(0, dtype=np.int16)
        self._history: list[tuple[np.ndarray, bool]] = []
        self._silence_frames = 0
        self.speaking = False

    def _count(self, ms: int) -> int:
        return max(1, ms // self.options.frame_ms)

    def push(self, samples: np.ndarray) -> list[VadFrame]:
        n = self.options.frame_samples
        data = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(data) // n * n
        self._pending = data[whole:]
        return [self._frame(data[i : i + n]) for i in range(0, whole, n)]

    def _frame(self, frame: np.ndarray) -> VadFrame:
        voiced = self._voiced(frame)
        opts = self.options
        if not self.speaking:
            self._history.append((frame, voiced))
            keep = self._count(max(opts.pre_roll_ms, opts.start_window_ms))
            del self._history[:-keep]
            window = self._history[-self._count(opts.start_window_ms) :]
            if sum(v for _, v in window) >= self._count(opts.start_ms):
                self.speaking = True
                self._silence_frames = 0
                pre = self._history[-self._count(opts.pre_roll_ms) :]
                started = np.concatenate([f for f, _ in pre])
                self._history.clear()
                return VadFrame(frame, voiced, True, started=started)
            return VadFrame(frame, voiced, False)
        self._silence_frames = 0 if voiced else self._silence_frames + 1
        if self._silence_frames >= self._count(opts.end_silence_ms):
            self.speaking = False
            self._silence_frames = 0
            return VadFrame(frame, voiced, False, ended=True)
        return VadFrame(frame, voiced, True)
