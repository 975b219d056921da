"""Replaying a caption policy on synthetic speech, with a scheduler that answers late, out of
order, supersedes and fails: the pure policy on a fake clock, for property tests.

Speech is synthetic: word ``k`` is a run of samples of the constant value ``BASE + k``, silence
is zero. The fake engine "hears" a word when the centre sample of the word is inside the
request's audio, so a word split between two requests is heard by exactly one of them, and
returns the words it hears with their true times (timed requests) or spread evenly over the
audio (untimed ones, as the real engine's guess). Every word said must then end up in exactly
one final, whatever the answers' timing: a word in no final is speech the policy lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.actions import Emit, Submit
from pipeline.policy import CaptionPolicy
from pipeline.policy_options import PolicyOptions
from pipeline.types import SAMPLE_RATE, Caption, Transcript, Word
from pipeline.vad import VadOptions, VadSegmenter

BASE = 1000


@dataclass(frozen=True)
class SpokenWord:
    index: int
    start: int  # stream samples
    end: int
    ends_sentence: bool

    @property
    def centre(self) -> int:
        return (self.start + self.end) // 2

    @property
    def text(self) -> str:
        return f" w{self.index}" + ("." if self.ends_sentence else "")


@dataclass
class SyntheticStream:
    audio: np.ndarray
    words: list[SpokenWord]

    @classmethod
    def build(cls, layout: list[tuple[float, float, bool]], lead: float = 0.5) -> SyntheticStream:
        """``layout``: (word seconds, silence after it in seconds, sentence ends) per word."""
        parts = [np.zeros(int(lead * SAMPLE_RATE), np.int16)]
        pos = len(parts[0])
        words = []
        for i, (dur, gap, ends) in enumerate(layout):
            n, g = max(1, int(dur * SAMPLE_RATE)), int(gap * SAMPLE_RATE)
            parts += [np.full(n, BASE + i, np.int16), np.zeros(g, np.int16)]
            words.append(SpokenWord(i, pos, pos + n, ends))
            pos += n + g
        return cls(np.concatenate(parts), words)


def hear(audio: np.ndarray, words_by_value: dict[int, SpokenWord], offset: int, timed: bool) -> list[Word]:
    """The words whose centre lies in ``audio`` (which starts at stream sample ``offset``)."""
    ints = np.round(audio * 32768.0).astype(np.int32)
    heard = []
    for value in np.unique(ints[ints >= BASE]):
        w = words_by_value.get(int(value))
        # Heard where its centre sample is, and only if that sample is the word's own (the
        # policy may put silence of its own before audio that carries on after a cut).
        if w is not None and offset <= w.centre < offset + len(audio) and ints[w.centre - offset] == value:
            heard.append(w)
    heard.sort(key=lambda w: w.start)
    if timed:
        return [
            Word(
                w.text, max(0, w.start - offset) / SAMPLE_RATE, min(len(audio), w.end - offset) / SAMPLE_RATE
            )
            for w in heard
        ]
    step = len(audio) / SAMPLE_RATE / max(1, len(heard))
    return [Word(w.text, i * step, (i + 1) * step) for i, w in enumerate(heard)]


@dataclass
class Queued:
    submit: Submit
    offset: int  # the stream sample the request's audio starts at
    asked_at: int


@dataclass
class Replay:
    """Drives one policy over a stream; ``choose(n)`` picks an int in [0, n) (Hypothesis' data)."""

    stream: SyntheticStream
    choose: Callable[[int], int]
    options: PolicyOptions = field(default_factory=PolicyOptions)
    fail_rate: int = 0  # of 100: answers that fail instead
    empty_partial_rate: int = 0  # of 100: partial hypotheses that hear nothing
    short_final_rate: int = 0  # of 100: final decodes that skip 1.6 s of speech or more
    chunk: int = 480  # samples fed at a time (30 ms, a WebRTC packet's worth and a bit)
    max_busy: int = 3  # the most steps (chunks of audio) one batch may take
    shuffled: bool = False
    others: int = 0  # of 100: steps in which a free device first runs other sessions' work
    finals: list[Caption] = field(default_factory=list)
    queue: list[Queued] = field(default_factory=list)
    running: list[Queued] = field(default_factory=list)
    superseded: int = 0
    skipped: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        vad = VadSegmenter(VadOptions(engine="webrtc", frame_ms=30), voiced=lambda f: bool(f.any()))
        self.policy = CaptionPolicy(self.options, vad)
        self._by_value = {BASE + w.index: w for w in self.stream.words}
        self._segments: dict[int, int] = {}  # segment -> stream sample of its utterance start
        self._busy = 0

    # -- the scheduler --------------------------------------------------------------------

    def _apply(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Submit):
                offset = self._offset(a)
                if not a.final:
                    # A session's newer partial replaces its older one still waiting.
                    for q in list(self.queue):
                        if not q.submit.final:
                            self.queue.remove(q)
                            self.superseded += 1
                self.queue.append(Queued(a, offset, self.policy._stream_samples))
            elif isinstance(a, Emit) and a.caption.final:
                self.finals.append(a.caption)

    def _offset(self, submit: Submit) -> int:
        """Where the request's audio starts in the stream: the policy sends the utterance's
        audio from its start, so it is the stream position minus what the utterance holds."""
        return submit.origin

    def _answer(self, q: Queued) -> None:
        sub = q.submit
        if self.fail_rate and self.choose(100) < self.fail_rate:
            self.failed += 1
            self._apply(self.policy.on_failure(sub.ticket))
            return
        timed = sub.request.options.word_timestamps
        words = hear(sub.request.audio, self._by_value, q.offset, timed)
        if not sub.final and self.empty_partial_rate and self.choose(100) < self.empty_partial_rate:
            words = []
        if (
            sub.final
            and not sub.repair
            and self.short_final_rate
            and self.choose(100) < self.short_final_rate
        ):
            words = self._skip(words)
        ends = bool(words) and words[-1].text.endswith(".")
        transcript = Transcript(
            words=tuple(words),
            language="en",
            timed=timed,
            sentence_end=(0.3 + 0.7 * self.choose(2)) if ends else 0.0,
        )
        self._apply(self.policy.on_result(sub.ticket, transcript))

    def _skip(self, words: list[Word]) -> list[Word]:
        """Whisper's failure on long windows: it stops early, or skips a sentence, leaving at
        least 1.6 s of speech without a word (what the policy's repair is built to catch)."""
        runs = []
        for i in range(len(words)):
            total = 0.0
            for j in range(i, len(words)):
                total += words[j].end - words[j].start
                if total >= 1.6:
                    runs += [(i, j + 1), (i, len(words))]  # a sentence skipped, or the rest
                    break
        runs = [r for r in runs if r != (0, len(words))]  # hearing nothing is ``empty``'s case
        if not runs:
            return words
        i, j = runs[self.choose(len(runs))]
        self.skipped += 1
        return words[:i] + words[j:]

    def _step_scheduler(self) -> None:
        """One step of a device that is ``busy`` for a drawn number of steps per batch: finals
        before partials, oldest first (the local scheduler), or in any order (``shuffled``: Redis
        workers racing). Answers of a batch come back together, in a drawn order."""
        if self.running and self._busy > 0:
            self._busy -= 1
        if self.running and self._busy <= 0:
            done, self.running = self.running, []
            while done:
                self._answer(done.pop(self.choose(len(done))))
        if not self.running and self._busy <= 0 and self.others and self.choose(100) < self.others:
            self._busy = self.choose(self.max_busy + 1)  # other sessions' batch holds the device
        elif not self.running and self._busy > 0:
            self._busy -= 1
        elif not self.running and self.queue:
            if self.shuffled:
                pool = list(self.queue)
            else:
                finals = [q for q in self.queue if q.submit.final]
                pool = sorted(finals or self.queue, key=lambda q: q.asked_at)
            size = 1 + self.choose(min(3, len(pool)))
            batch = [pool.pop(self.choose(len(pool))) for _ in range(size)] if self.shuffled else pool[:size]
            for q in batch:
                self.queue.remove(q)
            self.running = batch
            self._busy = self.choose(self.max_busy + 1)
        waiting = [q.asked_at for q in [*self.queue, *self.running]]
        self.policy.queue_delay = (
            self.policy._stream_samples - min(waiting, default=self.policy._stream_samples)
        ) / SAMPLE_RATE

    # -- the run ----------------------------------------------------------------------------

    def run(self, tail: float = 3.0) -> list[Caption]:
        audio = np.concatenate([self.stream.audio, np.zeros(int(tail * SAMPLE_RATE), np.int16)])
        for i in range(0, len(audio), self.chunk):
            self._apply(self.policy.feed(audio[i : i + self.chunk]))
            self._step_scheduler()
        self._apply(self.policy.flush())
        while self.queue or self.running:
            self._busy = 0
            self._step_scheduler()
        return self.finals

    def words_in_finals(self) -> list[int]:
        out = []
        for c in self.finals:
            out += [int(t.rstrip(".")[1:]) for t in c.text.split()]
        return out

    def lost_words(self, excuse: frozenset[str] = frozenset()) -> tuple[list[int], list[int]]:
        """Words in no final and words in more than one, less those inside audio the ledger
        reported dropped for a reason in ``excuse``."""
        gaps = [g for g in self.policy.ledger.take_gaps() if g.reason in excuse]
        said = [
            w.index
            for w in self.stream.words
            if not any(g.start * SAMPLE_RATE <= w.centre < g.end * SAMPLE_RATE for g in gaps)
        ]
        got: dict[int, int] = {}
        for i in self.words_in_finals():
            got[i] = got.get(i, 0) + 1
        missing = [i for i in said if i not in got]
        doubled = [i for i, n in got.items() if n > 1]
        return missing, doubled
