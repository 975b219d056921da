"""Captions read as sentences: a pause in mid-sentence makes no fragment and no full stop (issue 12).

LibriVox sentences, each with a 0.7 s pause put between two of its words near the middle (a
breath; the VAD ends an utterance after 0.5 s): before issue 12 each half became a final of its
own, and Whisper closed the first half with a full stop ("And so my fellow American. ask not.").
"""

from __future__ import annotations

import difflib
import re

import numpy as np
from faster_whisper import WhisperModel

from bench.corpus import LIBRIVOX, Stream, silence
from bench.harness import replay_one
from bench.scoring import normalize, wer
from pipeline.audio import read_audio
from pipeline.backend import LocalBackend
from pipeline.batching import BatchOptions
from pipeline.scheduler import Scheduler
from tests.support.offline import Offline

RATE = 16_000
PAUSE = 0.7
ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st."}


def pause_in_the_middle(model: WhisperModel, clip: np.ndarray) -> np.ndarray:
    """The clip with ``PAUSE`` s of silence at the quietest point between the two words nearest
    its middle (word times from Whisper's alignment, so no word is cut in two)."""
    segments, _ = model.transcribe(clip.astype(np.float32) / 32768, language="en", word_timestamps=True)
    words = [w for s in segments for w in s.words]
    middle = len(clip) / RATE / 2
    k = min(range(1, len(words)), key=lambda i: abs(words[i].start - middle))
    a, b = int(words[k - 1].end * RATE) - 800, int(words[k].start * RATE) + 800
    envelope = np.convolve(np.abs(clip[a:b].astype(np.float64)), np.ones(160) / 160, mode="same")
    cut = a + int(np.argmin(envelope))
    return np.concatenate([clip[:cut], silence(PAUSE), clip[cut:]])


def breaks_inside_sentences(sentences: list[str], finals: list[str]) -> list[str]:
    """Where the finals break a sentence of the reference: a word ending with . ? or ! or the end
    of a final, where the reference goes on.

    The joined finals are aligned to the joined reference word by word; a break is allowed where
    the reference words consumed so far are within one word of a sentence boundary."""
    ref = [w for s in sentences for w in normalize(s).split()]
    bounds = np.cumsum([len(normalize(s).split()) for s in sentences])
    raw = [w for f in finals for w in f.split()]
    last_of_final = set(np.cumsum([len(f.split()) for f in finals]) - 1)
    hyp = [normalize(w) for w in raw]
    consumed = [0] * len(raw)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes():
        for k, j in enumerate(range(j1, j2)):
            consumed[j] = i1 + 1 + min(k, max(0, i2 - i1 - 1)) if tag in {"equal", "replace"} else i1
    bad = []
    for i, (word, pos) in enumerate(zip(raw, consumed, strict=True)):
        stop = re.search(r"[.?!][\"')]*$", word) and word.lower() not in ABBREVIATIONS
        if (stop or i in last_of_final) and min(abs(pos - b) for b in bounds) > 1:
            bad.append(f"{word}{' |' if i in last_of_final else ''} (after reference word {pos})")
    return bad


def test_the_checker_finds_full_stops_and_splits_inside_a_sentence() -> None:
    sentences = ["and so my fellow americans ask not", "what your country can do"]
    whole = ["And so my fellow Americans, ask not.", "What your country can do."]
    assert breaks_inside_sentences(sentences, whole) == []
    stop = ["And so my fellow American. Ask not.", "What your country can do."]
    assert breaks_inside_sentences(sentences, stop) == ["American. (after reference word 5)"]
    split = ["And so my fellow Americans", "ask not what your country can do."]
    assert breaks_inside_sentences(sentences, split) == ["Americans | (after reference word 5)"]


async def test_a_pause_in_mid_sentence_makes_no_fragment_and_no_full_stop(
    inference, offline: Offline
) -> None:
    """Replayed through a caption session on the real model, each chunk waiting for the requests
    it caused: the policy's decisions are in stream time, so the machine's load cannot move them
    (the WebRTC path around the policy is proven by the streaming tests)."""
    model = offline.model()
    clips = [read_audio(str(c.path)) for c in LIBRIVOX]
    gap = silence(1.5)
    audio = np.concatenate([gap, *[np.concatenate([pause_in_the_middle(model, c), gap]) for c in clips]])
    sentences = [c.text for c in LIBRIVOX]

    ((_, engines),) = inference.devices
    backend = LocalBackend([Scheduler(engines, BatchOptions(max_batch=8, max_wait=0.01))])
    try:
        result = await replay_one(Stream("pauses", audio, []), backend, "pauses", {}, paced=False)
    finally:
        await backend.aclose()

    finals = [s.caption.text for s in result.finals()]
    assert wer(" ".join(sentences), " ".join(finals)) <= 0.15, finals
    # One final per sentence, and no full stop inside one: the pause made no fragment.
    assert breaks_inside_sentences(sentences, finals) == [], finals
