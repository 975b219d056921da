"""Word error rate, as benchmarks and tests score transcripts: both texts normalised (case,
punctuation, hyphens; a digit said alone reads as its word), then the Levenshtein distance
between their words (RapidFuzz, a dependency of the service) over the reference's length, which
is what jiwer's ``wer`` computes; so scoring needs nothing beyond the service's own install."""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

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
    """(substitutions + deletions + insertions) / reference words; an empty hypothesis is 1.0."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not ref:
        raise ValueError("a reference with no words has no word error rate")
    return Levenshtein.distance(ref, hyp) / len(ref)


def pooled_wer(references: list[str], hypotheses: list[str]) -> float:
    """The word error rate over many pairs: every pair's errors over every reference word (as
    jiwer's ``wer`` of two lists); the texts are compared as given, not normalised."""
    errors = sum(
        Levenshtein.distance(r.split(), h.split()) for r, h in zip(references, hypotheses, strict=True)
    )
    return errors / max(1, sum(len(r.split()) for r in references))


def lost_runs(reference: list[str], hypothesis: list[str], run: int) -> list[str]:
    """Runs of ``run`` or more reference words a hypothesis lost: deleted, or replaced by fewer
    words (what a skipped sentence looks like; a misheard word is one substitution, not a run)."""
    out = []
    for op in Levenshtein.opcodes(reference, hypothesis):
        lost = (op.src_end - op.src_start) - (op.dest_end - op.dest_start if op.tag == "replace" else 0)
        if op.tag in ("delete", "replace") and lost >= run:
            out.append(" ".join(reference[op.src_start : op.src_end]))
    return out
