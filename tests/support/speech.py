"""Real speech for tests: LibriVox clips with transcripts, espeak-ng sentences, and WER."""

from __future__ import annotations

import re
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from pipeline.audio import read_audio

RATE = 16_000
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
ALSA_NOISE = Path("/usr/share/sounds/alsa/Noise.wav")


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str


def _librivox() -> list[Clip]:
    clips = []
    transcription = LIBRIVOX_DIR / "transcription"
    if not transcription.exists():
        return clips
    for line in transcription.read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.*)\)", line.strip())
        if m:
            clips.append(Clip(LIBRIVOX_DIR / f"{m.group(2)}.wav", m.group(1).strip()))
    return clips


LIBRIVOX = _librivox()

# Sentences that espeak-ng says clearly enough for tiny.en to transcribe them exactly offline.
ESPEAK_TEXT = (
    "Welcome to the weekly team meeting. "
    "Today we will talk about the new release and the budget for next year."
)

_NUMBERS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    # Whisper writes a number said alone as a digit or a word, either is right.
    **dict(zip("0123456789", "zero one two three four five six seven eight nine".split(), strict=True)),
}


def normalize(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(_NUMBERS.get(w, w) for w in text.split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<empty>"))


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return path


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def espeak(text: str, path: Path) -> np.ndarray:
    """espeak-ng's en-us voice, resampled to 16 kHz mono."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    return read_audio(str(raw))
