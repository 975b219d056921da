"""Real speech the benchmarks and tests run on: LibriVox clips with their transcripts (Debian's
pocketsphinx-testdata), espeak-ng sentences, and long streams built of them with known
utterance boundaries; WAV writing and silence. Needs only the service's own install (PyAV
decodes the clips) and, for espeak, the espeak-ng program."""

from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

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

ESPEAK_SENTENCES = [
    "Welcome to the weekly team meeting.",
    "Today we will talk about the new release and the budget for next year.",
    "The design review is scheduled for Thursday afternoon.",
    "Please send your questions to the project channel before Friday.",
    "Our customers asked for better search and faster loading pages.",
    "We hired two new engineers who will join the platform team next month.",
    "The server migration finished last weekend without any downtime.",
    "Thank you all for your hard work during this busy quarter.",
]


@dataclass(frozen=True)
class Utterance:
    text: str
    start: float  # true stream time of the first sample of speech
    end: float  # true stream time of the last


@dataclass(frozen=True)
class Stream:
    name: str
    audio: np.ndarray  # int16 at 16 kHz
    utterances: list[Utterance]

    @property
    def reference(self) -> str:
        return " ".join(u.text for u in self.utterances)

    def head(self, n: int, tail: float = 1.2) -> Stream:
        """The first ``n`` utterances, the audio cut ``tail`` seconds after the last of them."""
        kept = self.utterances[:n]
        return Stream(self.name, self.audio[: int((kept[-1].end + tail) * RATE)], kept)


def _speech_bounds(clip: np.ndarray) -> tuple[int, int]:
    """First and last sample louder than a quiet floor, so 'true end' means the end of the voice."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > 300)
    return (int(loud[0]), int(loud[-1])) if len(loud) else (0, len(clip))


def build(name: str, clips: list[tuple[np.ndarray, str]], gap: float = 1.2) -> Stream:
    parts = [np.zeros(int(RATE * gap), np.int16)]
    pos = len(parts[0])
    utterances = []
    for audio, text in clips:
        a, b = _speech_bounds(audio)
        utterances.append(Utterance(text, (pos + a) / RATE, (pos + b) / RATE))
        parts += [audio, np.zeros(int(RATE * gap), np.int16)]
        pos += len(audio) + int(RATE * gap)
    return Stream(name, np.concatenate(parts), utterances)


def librivox() -> Stream:
    """Every LibriVox clip, in order, as one stream."""
    return build("librivox", [(read_audio(str(c.path)), c.text) for c in LIBRIVOX])


def espeak_passage() -> Stream:
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(ESPEAK_SENTENCES):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), sentence], check=True)
            clips.append((read_audio(str(path)), sentence))
    return build("espeak", clips, gap=1.0)


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
