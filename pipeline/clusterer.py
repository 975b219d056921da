"""Which voice is this? The online clusterer of one shared microphone's speakers.

Each stretch of speech comes as one speaker embedding (the mean of its windows' d-vectors,
pipeline/engines/speaker.py) and how many seconds of voice it holds. It goes to the voice it
is closest to by cosine similarity, if that is close enough; a long enough stretch close to
none opens a new voice, "Speaker N" in order of first appearance, unless ``max_speakers``
voices exist already (then the closest takes it). A voice's label never changes for the
session. Named voices of the room (enrolled with audio, or heard on a speaker's own named
microphone) are tried too: a stretch close to one of them is labelled by that name.

The thresholds come from the dev voices of bench/panel.py: in one telephone band, a 2 s
stretch scores 0.86-0.96 against its own voice's centroid and at most 0.70 against another's
(two US women; other pairs 0.29-0.65) (bench/results/diarization.md), so a stretch is a voice
from 0.74. Short stretches are noisy, so under ``min_new`` seconds a stretch never opens a
voice: it goes to the closest, or follows the previous turn. A borderline match is labelled
but not learnt from (``learn_from``), so one voice's centroid never drifts into another's.
(First set at 0.70 with no learning rule; the held-out panel's first real-time run merged
two of its people into one label, and 0.74 is still within what the dev voices allow: said in the
results file.)

Pure logic, no model and no clock: tested with Hypothesis (labels stable, ``max_speakers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

LABEL = "Speaker {n}"


@dataclass(frozen=True)
class VoiceOptions:
    """How voices are told apart.

    same: cosine similarity from which a stretch is the voice it is closest to.
    named: the similarity from which a stretch is a named voice of the room (stricter: a
        wrong name misleads a reader more than a wrong number).
    min_new: seconds of voice a stretch needs to open a new voice.
    min_learn: seconds of voice a stretch needs to move its voice's centroid.
    learn_from: the similarity a stretch needs to move its voice's centroid: a borderline match
        (another voice close to this one) is labelled, but not learnt from, so that one voice's
        centroid never drifts toward another's and swallows it.
    max_weight: seconds after which a centroid stops growing its weight (keeps adapting to a
        voice that drifts over a long event: microphone distance, fatigue).
    known_weight: the seconds a named voice of the room counts for when the session first
        meets it (enrolled audio is a few seconds to a minute).
    """

    same: float = 0.74
    named: float = 0.76
    min_new: float = 1.2
    min_learn: float = 0.8
    learn_from: float = 0.8
    max_weight: float = 120.0
    known_weight: float = 10.0


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class Voice:
    label: str
    centroid: np.ndarray  # unit length
    weight: float  # seconds of voice it was learnt from
    named: bool = False

    def learn(self, vector: np.ndarray, seconds: float, cap: float) -> None:
        total = self.weight + seconds
        self.centroid = unit(self.centroid * self.weight + unit(vector) * seconds)
        self.weight = min(total, cap)


@dataclass
class VoiceClusterer:
    """One session's voices. ``known`` gives the room's named voices (name -> unit vector)."""

    options: VoiceOptions = field(default_factory=VoiceOptions)
    max_speakers: int | None = None
    known: Callable[[], Mapping[str, np.ndarray]] = dict
    voices: list[Voice] = field(default_factory=list)
    _numbered: int = 0

    def labels(self) -> list[str]:
        return [v.label for v in self.voices]

    def _closest(self, vector: np.ndarray) -> tuple[Voice | None, float]:
        best, score = None, -1.0
        for v in self.voices:
            s = float(v.centroid @ vector)
            if s > score:
                best, score = v, s
        return best, score

    def _named(self, vector: np.ndarray) -> tuple[str | None, float]:
        best, score = None, -1.0
        taken = {v.label for v in self.voices}
        for name, centroid in self.known().items():
            if name in taken:
                continue  # already a voice of this session: matched as one
            s = float(unit(np.asarray(centroid, dtype=np.float32)) @ vector)
            if s > score:
                best, score = name, s
        return best, score

    def peek(self, vector: np.ndarray) -> str | None:
        """The voice a stretch would go to without opening or moving one (partials), or None."""
        vector = unit(np.asarray(vector, dtype=np.float32))
        best, score = self._closest(vector)
        name, named = self._named(vector)
        if name is not None and named >= self.options.named and named > score:
            return name
        return best.label if best is not None and score >= self.options.same else None

    def assign(self, vector: np.ndarray, seconds: float, previous: str | None = None) -> str:
        """The label of a stretch of ``seconds`` of voice; may open a voice or move one."""
        o = self.options
        vector = unit(np.asarray(vector, dtype=np.float32))
        best, score = self._closest(vector)
        name, named = self._named(vector)
        full = self.max_speakers is not None and len(self.voices) >= self.max_speakers
        if name is not None and named >= o.named and named > score and (not full or best is None):
            # The room's voice, as enrolled or heard on its own microphone, is where it starts.
            voice = Voice(
                name, unit(np.asarray(self.known()[name], dtype=np.float32)), o.known_weight, named=True
            )
            if named >= o.learn_from and seconds >= o.min_learn:
                voice.learn(vector, seconds, o.max_weight)
            self.voices.append(voice)
            return name
        if best is not None and (score >= o.same or full):
            chosen = best
            if score < o.learn_from:
                return chosen.label
        elif seconds < o.min_new and self.voices:
            chosen = next((v for v in self.voices if v.label == previous), best)
            assert chosen is not None
            return chosen.label  # too short to say, and too short to learn from
        else:
            self._numbered += 1
            chosen = Voice(LABEL.format(n=self._numbered), vector.copy(), seconds)
            self.voices.append(chosen)
            return chosen.label
        if seconds >= o.min_learn:
            chosen.learn(vector, seconds, o.max_weight)
        return chosen.label
