"""Word-level text helpers used by the caption policy: normalisation, overlap, loops, guards."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.types import Caption, DecodeOptions, Transcript, Word

_NON_WORD = re.compile(r"[^\w']+")
TERMINAL = (".", "?", "!")
_CLOSERS = "\"')] "

# Phrases Whisper is known to invent on silence, noise and music (seen by feeding it silence;
# Vexa and whisper_streaming keep similar lists). Dropped only when the audio is short or
# the model itself doubts there is speech, so a speaker who really says "thank you" is kept.
HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thanks for watching",
        "thank you for watching",
        "thank you very much",
        "please subscribe",
        "subtitles by the amara org community",
        "bye",
        "so",
        "okay",
        "oh",
        "hmm",
        "music",
        "applause",
        "silence",
        "blank audio",
    }
)


def normalize(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


def join_words(words: Sequence[Word]) -> str:
    return "".join(w.text for w in words).strip()


def common_prefix(a: Sequence[Word], b: Sequence[Word]) -> int:
    """How many leading words two hypotheses agree on, ignoring case and punctuation."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize(x.text) != normalize(y.text):
            break
        n += 1
    return n


def overlap(tail: Sequence[Word], head: Sequence[Word], max_n: int = 5) -> int:
    """The longest n such that the last n words of ``tail`` equal the first n of ``head``."""
    for n in range(min(max_n, len(tail), len(head)), 0, -1):
        if [normalize(w.text) for w in tail[-n:]] == [normalize(w.text) for w in head[:n]]:
            return n
    return 0


def collapse_loops(
    words: Sequence[Word], min_repeats: int = 3, max_n: int = 6, phrase_n: int = 4
) -> list[Word]:
    """Keep one copy of any run of n words repeated ``min_repeats`` times or more in a row, and
    of any phrase of ``phrase_n`` words or more said twice in a row.

    Whisper now and then doubles a whole sentence in one decode (through Chromium: "welcome to
    the weekly team meeting. welcome to the weekly team meeting."); a speaker almost never
    repeats four words or more word for word, while short repeats ("no, no") are speech. Copies
    are compared as normalised words, so they match however Whisper split and spaced their
    punctuation ("www. asterisk .org." and "www . asterisk .org.")."""
    out = list(words)
    n = 1
    while True:
        # (index in out, normalised word) of the words that are more than punctuation
        keys = [(i, k) for i, k in ((i, normalize(w.text)) for i, w in enumerate(out)) if k]
        if n > max(max_n, len(keys) // 2):
            return out
        repeats = 2 if n >= phrase_n else min_repeats
        for j in range(len(keys) - n * repeats + 1):
            gram = [k for _, k in keys[j : j + n]]
            reps = 1
            while [k for _, k in keys[j + reps * n : j + (reps + 1) * n]] == gram:
                reps += 1
            if reps >= repeats:
                # From the second copy up to the next real word. At the end of the text the
                # punctuation after the last copy stays, unless the first copy is closed already.
                first = keys[j + n][0]
                if j + reps * n < len(keys):
                    stop = keys[j + reps * n][0]
                elif out[first - 1].text.rstrip().endswith(TERMINAL):
                    stop = len(out)
                else:
                    stop = keys[-1][0] + 1
                del out[first:stop]
                break
        else:
            n += 1


def is_hallucination(transcript: Transcript, duration: float, options: DecodeOptions) -> bool:
    """Whisper's own thresholds plus a phrase list for the texts it invents on non-speech."""
    if not transcript.words:
        return False
    if transcript.compression_ratio > options.compression_ratio_threshold:
        return True
    if (
        transcript.no_speech_prob > options.no_speech_threshold
        and transcript.avg_logprob < options.log_prob_threshold
    ):
        return True
    phrase = " ".join(filter(None, (normalize(w.text) for w in transcript.words)))
    if phrase in HALLUCINATIONS:
        doubtful = transcript.no_speech_prob > 0.2 or transcript.avg_logprob < -0.7
        return doubtful or duration < 1.0
    return not phrase


def ends_sentence(transcript: Transcript, min_probability: float) -> bool:
    """Whether the text closes a sentence, with Whisper at least ``min_probability`` sure of it.

    Whisper ends most pieces of speech with a full stop, also the half of a sentence before a
    pause; the probability it gives that full stop is what tells them apart (measured in
    bench/results/sentences.md). An empty text has nothing to wait for; an ellipsis trails off.
    """
    text = transcript.text.rstrip(_CLOSERS)
    if not text:
        return True
    if not text.endswith(TERMINAL) or text.endswith(("...", "…")):
        return False
    return not transcript.timed or transcript.sentence_end >= min_probability


def bad_decode(transcript: Transcript, options: DecodeOptions) -> bool:
    """Whisper's own sign of a bad decode of speech (a loop, or words it barely believes): the
    final is decoded once more by sampling, as Whisper's fallback does."""
    if not transcript.words:
        return False
    looped = transcript.compression_ratio > options.compression_ratio_threshold
    unsure = (
        transcript.avg_logprob < options.log_prob_threshold
        and transcript.no_speech_prob <= options.no_speech_threshold
    )
    return looped or unsure


def final_of(segment: int, words: Sequence[Word], start: float, end: float, lang: str) -> Caption:
    """A final of these stream-timed words: their text, from the first word's start (else
    ``start``) to ``end``; the words go with it (speaker turns cut a final between them)."""
    first = words[0].start if words else start
    return Caption(segment, True, join_words(words), first, end, lang, words=tuple(words))
