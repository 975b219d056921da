"""LocalAgreement (whisper_streaming): of two successive hypotheses of one utterance, the words
they agree on are committed and the rest stays provisional; committed words are never taken
back, and the next hypothesis is read from where the committed words end."""

from __future__ import annotations

from dataclasses import replace

from pipeline.text import common_prefix, normalize, overlap
from pipeline.types import Word
from pipeline.utterance import Utterance


def agree(utt: Utterance, words: list[Word], timed: bool) -> None:
    """A fresh hypothesis of the whole utterance (``words`` on stream time; ``timed``: aligned):
    what it agrees on with the provisional words is committed, the rest becomes provisional."""
    agreed_prefix = common_prefix(utt.committed, words)
    realigned = timed and agreed_prefix == len(utt.committed)
    if realigned:
        # Committed text stays; its times become the aligned ones.
        utt.committed = [
            replace(c, start=w.start, end=w.end, probability=w.probability)
            for c, w in zip(utt.committed, words, strict=False)
        ]
    tail = after_committed(utt.committed, words, timed and utt.timed)
    agreed = common_prefix(utt.provisional, tail)
    utt.committed.extend(tail[:agreed])
    utt.provisional = tail[agreed:]
    # Only when every committed word got its aligned time may a cut trust them: a timed
    # hypothesis that disagrees with them leaves their guessed times in place.
    utt.timed = realigned


def after_committed(committed: list[Word], words: list[Word], timed: bool) -> list[Word]:
    """The part of a fresh hypothesis of the whole utterance that follows the committed words."""
    if not committed:
        return words
    if common_prefix(committed, words) == len(committed):
        return words[len(committed) :]
    if timed:
        # The hypothesis rewrote committed words: fall back to time, then trim any overlap.
        edge = committed[-1].end - 0.1
        tail = [w for w in words if w.start >= edge]
        return tail[overlap(committed, tail) :]
    # Untimed: find where the last committed words recur, else count words.
    last = [normalize(w.text) for w in committed[-3:]]
    seen = [normalize(w.text) for w in words]
    for i in range(len(seen) - len(last), -1, -1):
        if seen[i : i + len(last)] == last:
            return words[i + len(last) :]
    return words[len(committed) :]
