"""The repair of skipped speech: Whisper sometimes leaves a stretch of voiced audio without a
word (it stops early, or skips a sentence, mostly on long windows). Such a stretch is found
from the final's word times and the VAD's ledger of voiced audio, decoded once more on its
own, and its words are put in place."""

from __future__ import annotations

from dataclasses import replace

from pipeline.ledger import VoiceLedger
from pipeline.text import normalize, overlap
from pipeline.types import SAMPLE_RATE, Transcript, Word

# Alignment error around a word's edges; with the 1 s bound, it keeps a word Whisper merely
# compressed ("ill man" for "ill-disposed young man") from being decoded again.
MARGIN = int(0.25 * SAMPLE_RATE)


def wordless(
    ledger: VoiceLedger, origin: int, samples: int, words: list[Word], need: float
) -> tuple[int, int] | None:
    """The longest stretch of the ``samples`` from stream sample ``origin`` on, between
    ``words`` (timed from ``origin``), with ``need`` samples of voice or more and no word:
    samples from ``origin``, or None."""
    if need <= 0:
        return None
    if not words:
        # Nothing heard in a second of voice or more: noise, or a decode gone wrong.
        return (0, samples) if ledger.voiced_in(origin, origin + samples) >= need else None
    # A word claims at most what a slow speaker takes to say it, at its end: when Whisper
    # skips a sentence, its alignment often stretches the next word over the skipped
    # speech ("To" 0.0-2.48 s for "To repeat this message press five. To").
    claimed = [max(w.start, w.end - (0.4 + 0.08 * len(normalize(w.text)))) for w in words]
    edges = [0] + [int(w.end * SAMPLE_RATE) for w in words]
    starts = [int(c * SAMPLE_RATE) for c in claimed] + [samples]
    best: tuple[int, int] | None = None
    best_voiced = 0
    for a, b in zip(edges, starts, strict=True):
        lo, hi = max(0, a - MARGIN if a else 0), min(samples, b + MARGIN)
        voiced = ledger.voiced_in(origin + a + MARGIN, origin + b - MARGIN)
        if voiced >= need and voiced > best_voiced:
            best, best_voiced = (lo, hi), voiced
    return best


def mended(head: Transcript, found: list[Word], repair_from: int, repair_to: int) -> Transcript:
    """The final's words with ``found`` (the repaired stretch's words, timed from its start) in
    place of whatever it had there (utterance times)."""
    offset = repair_from / SAMPLE_RATE
    lo = repair_from / SAMPLE_RATE
    words = list(head.words)
    before = [w for w in words if w.end <= lo + 0.3]
    after = [w for w in words if w.end > lo + 0.3]
    placed = [replace(w, start=w.start + offset, end=w.end + offset) for w in found]
    # The margins may hear a neighbouring word again.
    placed = placed[overlap(before, placed) :]
    placed = placed[: len(placed) - overlap(placed, after)]
    return replace(head, words=tuple([*before, *placed, *after]))
