"""Speech/silence segmentation as a synchronous state machine over sample counts.

Each frame gets a speech score in [0, 1] from Silero VAD (the default) or webrtcvad (1 or 0);
an utterance opens when enough frames of a short window score above ``threshold`` and
closes after ``end_silence_ms`` of frames below ``neg_threshold`` (hysteresis, as Silero's
own ``get_speech_timestamps``). In steady noise webrtcvad calls most frames speech and
chops real speech into fragments; Silero keeps noise out and speech whole
(bench/results/vad.md has both on pink noise, music, keyboard clicks and a fan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import webrtcvad

from pipeline.types import SAMPLE_RATE

Scorer = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class VadOptions:
    """When speech starts and ends.

    engine: ``silero`` (a neural model, under 1 % of a core per stream) or ``webrtc`` (a GMM,
        ~0.02 %, but it calls steady noise speech).
    threshold: score at which a frame counts as speech when no one is speaking.
    neg_threshold: while someone speaks, frames scoring below this count as silence.
    aggressiveness: webrtcvad mode 0-3; higher rejects more noise as non-speech.
    frame_ms: frame length; 0 picks the engine's (webrtcvad 30 ms, Silero 32 ms).
    start_ms: voiced audio within ``start_window_ms`` that opens an utterance.
    end_silence_ms: unvoiced audio that closes it.
    pre_roll_ms: audio kept from before the start, so the first phoneme is not clipped; Whisper
        also hears speech better with some lead-in (faster-whisper pads VAD speech by 400 ms too).
    """

    engine: str = "silero"
    threshold: float = 0.5
    neg_threshold: float = 0.35
    aggressiveness: int = 2
    frame_ms: int = 0
    start_ms: int = 90
    start_window_ms: int = 150
    end_silence_ms: int = 500
    pre_roll_ms: int = 400

    def __post_init__(self) -> None:
        if self.engine not in {"silero", "webrtc"}:
            raise ValueError(f"unknown VAD engine {self.engine!r}: use silero or webrtc")

    @property
    def frame_length_ms(self) -> int:
        return self.frame_ms or (32 if self.engine == "silero" else 30)

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_length_ms // 1000


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


def _webrtc_scorer(aggressiveness: int) -> Scorer:
    vad = webrtcvad.Vad(aggressiveness)
    return lambda frame: float(vad.is_speech(frame.tobytes(), SAMPLE_RATE))


class VadSegmenter:
    """Feed int16 16 kHz samples of any length; get a verdict per complete frame."""

    def __init__(self, options: VadOptions | None = None, voiced: Scorer | None = None) -> None:
        """``voiced`` scores one frame (a bool will do); the engine's model by default, a rule
        of thumb in unit tests."""
        self.options = options or VadOptions()
        self._many: Callable[[list[np.ndarray]], list[float]] | None = None
        if voiced is None:
            if self.options.engine == "silero":
                from pipeline.silero import SileroScorer

                scorer = SileroScorer()
                voiced, self._many = scorer, scorer.scores
            else:
                voiced = _webrtc_scorer(self.options.aggressiveness)
        self._voiced = voiced
        self._pending = np.zeros(0, dtype=np.int16)
        self._history: list[tuple[np.ndarray, bool]] = []
        self._silence_frames = 0
        self.speaking = False

    def _count(self, ms: int) -> int:
        return max(1, ms // self.options.frame_length_ms)

    def push(self, samples: np.ndarray) -> list[VadFrame]:
        n = self.options.frame_samples
        data = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(data) // n * n
        self._pending = data[whole:]
        frames = [data[i : i + n] for i in range(0, whole, n)]
        scores = self._many(frames) if self._many is not None else [float(self._voiced(f)) for f in frames]
        return [self._frame(f, s) for f, s in zip(frames, scores, strict=True)]

    def _frame(self, frame: np.ndarray, score: float) -> VadFrame:
        opts = self.options
        if not self.speaking:
            voiced = score >= opts.threshold
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
        voiced = score >= opts.neg_threshold
        self._silence_frames = 0 if voiced else self._silence_frames + 1
        if self._silence_frames >= self._count(opts.end_silence_ms):
            self.speaking = False
            self._silence_frames = 0
            return VadFrame(frame, voiced, False, ended=True)
        return VadFrame(frame, voiced, True)
