"""Real voices of several people, offline, and a panel of them taking turns on one microphone.

What exists on a Debian machine without a download of data sets (none of it synthetic):
- the LibriVox reader of ``pocketsphinx-testdata`` (Sense and Sensibility; 5 clips, 25 s, with
  transcripts);
- Allison Smith, the voice of Asterisk's prompts (``asterisk-core-sounds-en-wav``: 571 clips,
  8 kHz telephone audio; references below are Whisper base's transcripts of the clean clips);
- the speaker of ``pocketsphinx-testdata``'s ``cards`` clips (5 clips, 10 s, with transcripts);
- the CMU speaker of its ``goforward``, ``something``, ``numbers`` clips, and the voice of
  ``alsa-utils``' channel test sounds: used only to set thresholds (the dev voices).

Every clip is brought to one telephone band (under 3.6 kHz, since Allison's are 8 kHz) and one
loudness, so a model cannot tell people apart by their recording's bandwidth or level.
The panel is held out: no threshold was chosen on it (pipeline/clusterer.py says which were).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.corpus import LIBRIVOX, RATE
from pipeline.audio import read_audio

SPHINX = Path("/usr/share/pocketsphinx/test/data")
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ALSA = Path("/usr/share/sounds/alsa")

ALLISON_TEXT = {
    "demo-thanks": "Goodbye, thank you for trying out the asterisk open source PBX",
    "vm-saveoper": "Press one to accept this recording. Otherwise, please continue to hold.",
    "agent-user": "Agent Login, please enter your agent number followed by the pound key.",
    "vm-mismatch": "The password you entered and re-entered did not match. Please try again.",
    "vm-tmpexists": "There is a temporary greeting, which overrides your standard greetings.",
    "vm-nobox": "You cannot reply to this message because the sender does not have a mailbox.",
    "vm-rec-busy": "After the tone, say your busy message and then press the pound key.",
    "pbx-invalidpark": "I am sorry, but there is no call parked on that extension. Please try again.",
    "vm-mailboxfull": "Sorry, but the user's mailbox can't accept more messages.",
    "priv-introsaved": "Thank you. Please hold while I attempt to connect you with your party.",
    "confbridge-begin-glorious-b": "The conference will begin when our glorious leader arrives.",
    "conf-getconfno": "Please enter your conference number followed by the pound key.",
    "confbridge-only-one": "There is currently one other participant in the conference.",
}
CARDS_TEXT = {
    "001": "ten of clubs",
    "002": "four queen of clubs",
    "003": "seven of clubs",
    "004": "five five",
    "005": "eight of spades four of clubs seven of hearts",
}


@dataclass(frozen=True)
class Clip:
    person: str
    audio: np.ndarray  # int16, 16 kHz, telephone band
    text: str


def telephone(audio: np.ndarray, cutoff: float = 3600.0, level: float = 0.06) -> np.ndarray:
    """One band and one loudness for every voice: a brick-wall low-pass, then RMS ``level``;
    the recording's own silence before and after the voice trimmed to 0.1 s, so that the
    gaps between turns are the panel's."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 0.05 * max(1, int(np.abs(audio).max())))
    if len(loud):
        margin = int(0.1 * RATE)
        audio = audio[max(0, loud[0] - margin) : loud[-1] + margin]
    x = audio.astype(np.float64)
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / RATE) > cutoff] = 0
    y = np.fft.irfft(spectrum, len(x))
    loud = y[np.abs(y) > 0.05 * np.max(np.abs(y))] if len(y) else y
    rms = float(np.sqrt(np.mean(loud**2))) if len(loud) else 1.0
    y = y * (level * 32768 / max(rms, 1.0))
    return np.clip(y, -32768, 32767).astype(np.int16)


def _raw(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype=np.int16).copy()


def available() -> bool:
    return ALLISON.is_dir() and (SPHINX / "cards").is_dir() and len(LIBRIVOX) == 5


def allison(name: str) -> Clip:
    return Clip("Allison", telephone(read_audio(str(ALLISON / f"{name}.wav"))), ALLISON_TEXT[name])


def reader(i: int) -> Clip:
    c = LIBRIVOX[i]
    return Clip("Reader", telephone(read_audio(str(c.path))), c.text)


def cards(name: str) -> Clip:
    return Clip("Cards", telephone(read_audio(str(SPHINX / "cards" / f"{name}.wav"))), CARDS_TEXT[name])


def dev_voices() -> dict[str, list[np.ndarray]]:
    """Voices for choosing thresholds, apart from the panel's clips."""
    return {
        "cmu": [telephone(_raw(SPHINX / f"{n}.raw")) for n in ("goforward", "something", "numbers")],
        "alsa": [
            telephone(np.concatenate([read_audio(str(p)) for p in sorted(ALSA.glob(f"{side}*.wav"))]))
            for side in ("Front", "Rear", "Side")
        ],
        "allison": [
            allison(n).audio
            for n in ("vm-mailboxfull", "priv-introsaved", "confbridge-begin-glorious-b", "conf-getconfno")
        ],
        "cards": [
            np.concatenate([cards(a).audio, cards(b).audio]) for a, b in (("001", "002"), ("003", "004"))
        ],
    }


def named_mic() -> list[Clip]:
    """What Allison says on her own named microphone before the panel (not in the panel)."""
    return [allison(n) for n in ("agent-user", "vm-mismatch", "vm-tmpexists")]


QUICK, PAUSE = 0.25, 1.0  # seconds between turns: under the VAD's 0.5 s end, and over it

# Turns of 2-10 s: (clips of one person, silence before the next turn).
TURNS: list[tuple[list[tuple[str, str]], float]] = [
    ([("reader", "0")], QUICK),
    ([("allison", "demo-thanks")], QUICK),
    ([("cards", "001"), ("cards", "002")], PAUSE),
    ([("reader", "1")], QUICK),
    ([("allison", "vm-saveoper")], PAUSE),
    ([("cards", "003"), ("cards", "004")], QUICK),
    ([("reader", "2")], QUICK),
    ([("allison", "vm-nobox")], PAUSE),
    ([("reader", "3")], PAUSE),
    ([("cards", "005")], QUICK),
    ([("allison", "vm-rec-busy")], QUICK),
    ([("reader", "4")], PAUSE),
    ([("allison", "pbx-invalidpark")], PAUSE),
]


@dataclass(frozen=True)
class Turn:
    person: str
    start: float  # stream seconds
    end: float
    text: str


@dataclass(frozen=True)
class Panel:
    audio: np.ndarray
    turns: list[Turn]

    @property
    def people(self) -> set[str]:
        return {t.person for t in self.turns}

    @property
    def reference(self) -> str:
        return " ".join(t.text for t in self.turns)

    def who(self, at: float) -> str:
        """The person speaking at ``at`` (the nearest turn, for times in a gap)."""
        return min(
            self.turns,
            key=lambda t: 0.0 if t.start <= at <= t.end else min(abs(at - t.start), abs(at - t.end)),
        ).person


def _clip(kind: str, name: str) -> Clip:
    return {
        "reader": lambda: reader(int(name)),
        "allison": lambda: allison(name),
        "cards": lambda: cards(name),
    }[kind]()


def panel(turns: list[tuple[list[tuple[str, str]], float]] | None = None, lead: float = 1.0) -> Panel:
    """The held-out recording: people taking turns on one microphone."""
    parts = [np.zeros(int(lead * RATE), np.int16)]
    pos = len(parts[0])
    out: list[Turn] = []
    for clips, gap in turns or TURNS:
        made = [_clip(k, n) for k, n in clips]
        start = pos
        for i, c in enumerate(made):
            parts.append(c.audio)
            pos += len(c.audio)
            if i < len(made) - 1:
                parts.append(np.zeros(int(0.3 * RATE), np.int16))
                pos += int(0.3 * RATE)
        out.append(Turn(made[0].person, start / RATE, pos / RATE, " ".join(c.text for c in made)))
        parts.append(np.zeros(int(gap * RATE), np.int16))
        pos += int(gap * RATE)
    parts.append(np.zeros(int(1.5 * RATE), np.int16))
    return Panel(np.concatenate(parts), out)
