"""A room's vocabulary as Whisper hears it: the prompt it goes into, the guard that keeps it
from putting words in anyone's mouth, and the spelling it restores.

Whisper's prompt is "text that came before": terms in it are far more likely to be written as
given ("Elasticsearch", not "elastic search"). The same bias makes a model that hears noise
write something: with a vocabulary in the prompt its no-speech probability on noise falls from
~0.9 to 0.5-0.7 (under its own 0.6 threshold), while on speech it stays under 0.1 for whole
utterances and under 0.3 for a partial's first second (bench/results/vocabulary.md). So a text
heard with a vocabulary is kept only when that probability is low, and a text made only of
vocabulary words only when the model is sure and the audio long enough to have said it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from pipeline.text import normalize
from pipeline.types import Transcript, Word

# How like a term a run of heard words must be (letters only, spaces ignored) to be written as
# the term: "data bricks", "Akonkwo", "Dmitri Milkonsky" are; "the bricks", "graph on" are not.
SIMILAR = 0.75  # 0.7-0.85 recover as many terms, within run-to-run noise (bench/results/vocabulary.md)
# Whisper's no-speech probability above which a text heard with the vocabulary is not speech.
NO_SPEECH = 0.35
# Terms shorter than this (in letters) are only ever taken as heard: too many words are near them.
MIN_FUZZY = 5
_LETTERS = re.compile(r"[^\w]+")
_TRAILING = re.compile(r"[^\w]+$")

# Words that join terms in a list ("Ana and Ben", "the Mastodon"): no evidence of speech either.
_GLUE = frozenset({"a", "an", "and", "the", "of", "or", "to", "in", "on", "with", "um", "uh"})


@dataclass(frozen=True)
class Vocabulary:
    terms: tuple[str, ...] = ()

    @cached_property
    def prompt(self) -> str:
        """The terms as a short list sentence: how they would look in a transcript that came
        before, which is what Whisper's prompt is trained on."""
        return ", ".join(self.terms) + "." if self.terms else ""

    @cached_property
    def words(self) -> frozenset[str]:
        return frozenset(filter(None, (normalize(w) for term in self.terms for w in term.split())))

    def echoed(self, transcript: Transcript, duration: float) -> bool:
        """Whether the text is the prompt's doing rather than speech: heard while the model
        gave speech little chance, or nothing but vocabulary words (and list glue) while it
        doubts there was speech or the audio is too short to have said them."""
        if not self.terms or not transcript.words:
            return False
        if transcript.no_speech_prob > NO_SPEECH:
            return True
        spoken = [w for w in (normalize(w.text) for w in transcript.words) if w]
        if not spoken or not any(w in self.words for w in spoken):
            return False
        if not all(w in self.words or w in _GLUE for w in spoken):
            return False
        doubtful = transcript.no_speech_prob > 0.2 or transcript.avg_logprob < -0.7
        return doubtful or duration < 0.4 * len(spoken)

    @cached_property
    def _keys(self) -> list[tuple[str, str, int]]:
        """(letters, term, words) for each term, longest first."""
        keys = [(_LETTERS.sub("", t.lower()), t, len(t.split())) for t in self.terms]
        # A name's parts stand alone too ("Okonkwo said"): each part of a longer term.
        keys += [(_LETTERS.sub("", p.lower()), p, 1) for t in self.terms if " " in t for p in t.split()]
        unique = {k[0]: k for k in reversed(keys) if len(k[0]) >= 2}
        return sorted(unique.values(), key=lambda k: -len(k[0]))

    def correct(self, words: list[Word]) -> list[Word]:
        """Runs of heard words that are a term misheard by a letter or two, or split ("data
        bricks"), written as the term; times and confidence kept. Exact spellings stay."""
        if not self.terms or not words:
            return words
        keys = self._keys
        longest = max(size for _, _, size in keys) + 1
        letters = [_LETTERS.sub("", w.text.lower()) for w in words]
        # Every run of 1..longest heard words, against every key at once (RapidFuzz, in C): a
        # hypothesis of 40 words against 100 terms costs ~1 ms instead of ~30 one by one.
        runs = {(i, n): "".join(letters[i : i + n]) for i in range(len(words)) for n in range(1, longest + 1)}
        order = list(runs)
        scores = cdist(
            [runs[k] for k in order],
            [key for key, _, _ in keys],
            scorer=Levenshtein.normalized_similarity,
            score_cutoff=SIMILAR,
            dtype=np.float32,
        )
        row = {k: r for r, k in enumerate(order)}
        out: list[Word] = []
        i = 0
        while i < len(words):
            match = self._match(len(words), i, runs, scores, row)
            if match is None:
                out.append(words[i])
                i += 1
                continue
            term, n = match
            out.extend(_as_term(words[i : i + n], term))
            i += n
        return out

    def _match(
        self,
        count: int,
        i: int,
        runs: dict[tuple[int, int], str],
        scores: np.ndarray,
        row: dict[tuple[int, int], int],
    ) -> tuple[str, int] | None:
        here = [row[(i, n)] for n in range(1, count - i + 1) if (i, n) in row]
        if not here or scores[here].max() < SIMILAR:
            return None  # no run from here is near any term (the common case, checked at once)
        for k, (key, term, size) in enumerate(self._keys):
            for n in (size, size + 1, size - 1):
                if n < 1 or i + n > count:
                    continue
                heard = runs[(i, n)]
                if heard == key:
                    return term, n
                # A run of another length than the term must begin and end as it does, or a
                # neighbour would be swallowed ("the Elasticsearch").
                edges = n == size or (heard[:2] == key[:2] and heard[-1:] == key[-1:])
                if len(key) >= MIN_FUZZY and edges and scores[row[(i, n)], k] >= SIMILAR:
                    return term, n
        return None


def _as_term(run: list[Word], term: str) -> list[Word]:
    """The term's words over the run's span, the run's trailing punctuation kept."""
    parts = term.split()
    start, end = run[0].start, run[-1].end
    step = (end - start) / len(parts)
    tail = _TRAILING.search(run[-1].text.strip())
    probability = min(w.probability for w in run)
    lead = " " if run[0].text.startswith(" ") else ""
    out = []
    for k, part in enumerate(parts):
        text = (lead if k == 0 else " ") + part + (tail.group(0) if tail and k == len(parts) - 1 else "")
        out.append(
            replace(
                run[0], text=text, start=start + k * step, end=start + (k + 1) * step, probability=probability
            )
        )
    return out


NO_VOCABULARY = Vocabulary()
