"""Silero VAD v6, the ONNX model that ships inside faster-whisper, as a streaming speech scorer.

One 32 ms frame (512 samples at 16 kHz) in, a speech probability out; the LSTM state and the
64 samples of context before each frame are carried from one call to the next, so a stream is
scored exactly as if it had been scored in one piece. Several frames go through one ONNX run
(``scores``), which is about half the cost per frame of one run each.

Cost measured on this 2-core CPU (bench/results/vad.md): ~0.1-0.2 ms per frame, under 1 % of one core
per live stream, against ~0.005 ms for webrtcvad; onnxruntime releases the GIL, so the caption
session runs it on an executor thread, off the event loop.
"""

from __future__ import annotations

import functools
import os

import numpy as np

FRAME = 512  # samples per frame at 16 kHz (32 ms): the model's only window at this rate
CONTEXT = 64  # samples of the previous frame the model sees before each one


def model_path() -> str:
    import faster_whisper

    return os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")


@functools.cache
def load_model(path: str | None = None) -> object:
    """One ONNX session per process, shared by every stream: ``run`` is thread-safe and the
    per-stream state lives in ``SileroScorer``. Cached like faster-whisper's ``get_vad_model``."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    # One thread: the model is tiny and streams are many; threads would only spin.
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(
        path or model_path(), providers=["CPUExecutionProvider"], sess_options=opts
    )


class SileroScorer:
    """Speech probability of consecutive 512-sample int16 frames of one stream."""

    def __init__(self, path: str | None = None) -> None:
        self._session = load_model(path)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        return self.scores([frame])[0]

    def scores(self, frames: list[np.ndarray]) -> list[float]:
        if not frames:
            return []
        audio = np.stack([f.astype(np.float32) / 32768.0 for f in frames])
        if audio.shape[1] != FRAME:
            raise ValueError(f"Silero VAD takes frames of {FRAME} samples, got {audio.shape[1]}")
        contexts = np.concatenate([self._context[None], audio[:-1, -CONTEXT:]])
        batch = np.ascontiguousarray(np.concatenate([contexts, audio], axis=1))
        out, self._h, self._c = self._session.run(  # type: ignore[attr-defined]
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = audio[-1, -CONTEXT:].copy()
        return [float(p) for p in np.asarray(out).reshape(-1)]
