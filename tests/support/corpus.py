"""Long-form real speech with known utterance boundaries, for the benchmarks."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import read_audio

RATE = 16_000
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

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
    import re

    clips = []
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.*)\)", line.strip())
        if m:
            clips.append((read_audio(str(LIBRIVOX / f"{m.group(2)}.wav")), m.group(1).strip()))
    return build("librivox", clips)


def espeak_passage() -> Stream:
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(ESPEAK_SENTENCES):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), sentence], check=True)
            clips.append((read_audio(str(path)), sentence))
    return build("espeak", clips, gap=1.0)
