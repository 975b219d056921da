"""The streaming caption policy: from VAD-split audio and Whisper hypotheses to partials and finals.

LocalAgreement (whisper_streaming): while someone speaks, the growing utterance is
re-transcribed every ``partial_interval`` seconds of audio; the words two successive
hypotheses agree on are committed, the rest is shown as provisional. When VAD hears the end
of speech the whole utterance is transcribed once more as the final, so a final is as good
as offline transcription of that utterance. An utterance that reaches ``max_utterance`` is
cut after its last committed word, never inside one.

Pure logic: audio in, actions out. Time is the sample count of the stream, so a replay is
reproducible; the caller does the I/O (scheduler, data channels).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.text import collapse_loops, common_prefix, is_hallucination, join_words, overlap
from pipeline.types import SAMPLE_RATE, Caption, DecodeOptions, TranscribeRequest, Transcript, Word
from pipeline.vad import VadOptions, VadSegmenter


@dataclass(frozen=True)
class PolicyOptions:
    """Tunables of the streaming policy, defaults tuned for CPU tiny.en.

    partial_interval: seconds of new speech between partial re-transcriptions.
    min_partial_audio: no partial before this much speech (too little audio gives noise).
    max_utterance: length cap in seconds; the utterance is cut after a committed word.
    context_chars: how much earlier final text is passed to Whisper as the prompt.
    prompt_min_probability: words Whisper itself doubted stay out of the prompt, since a
        misheard word in the prompt tends to be misheard again in the next utterance.
    backpressure_delay: queue delay (s) beyond which partial updates slow down.
    """

    partial_interval: float = 0.5
    min_partial_audio: float = 0.4
    max_utterance: float = 12.0
    context_chars: int = 200
    prompt_min_probability: float = 0.5
    backpressure_delay: float = 1.0
    language: str = "en"


@dataclass(frozen=True)
class Submit:
    """Ask the scheduler to transcribe; answer with ``on_result(ticket, ...)``."""

    ticket: int
    final: bool
    segment: int
    request: TranscribeRequest


@dataclass(frozen=True)
class Emit:
    caption: Caption


@dataclass(frozen=True)
class SpeechChange:
    speaking: bool
    at: float


Action = Submit | Emit | SpeechChange


def partial_interval(options: PolicyOptions, queue_delay: float) -> float:
    """Backpressure: the further behind the scheduler runs, the rarer the partial updates."""
    if queue_delay <= options.backpressure_delay:
        return options.partial_interval
    return options.partial_interval * (1.0 + queue_delay / options.backpressure_delay)


@dataclass
class _Utterance:
    segment: int
    start_sample: int
    chunks: list[np.ndarray]
    samples: int = 0
    samples_at_request: int = 0
    partial_ticket: int | None = None
    committed: list[Word] = field(default_factory=list)  # stream-timed
    provisional: list[Word] = field(default_factory=list)  # stream-timed
    after_cut: bool = False

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.samples += len(samples)

    def audio(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, dtype=np.int16)

    @property
    def start(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE


@dataclass(frozen=True)
class _FinalJob:
    segment: int
    start: float
    end: float
    committed: tuple[Word, ...]
    after_cut: bool
    duration: float


class CaptionPolicy:
    """One publisher's stream: feed it audio and transcripts, act on what it returns."""

    def __init__(
        self,
        options: PolicyOptions | None = None,
        vad: VadOptions | VadSegmenter | None = None,
        decode: DecodeOptions | None = None,
    ) -> None:
        self.options = options or PolicyOptions()
        self.decode = decode or DecodeOptions()
        self._vad = vad if isinstance(vad, VadSegmenter) else VadSegmenter(vad)
        self._stream_samples = 0
        self._next_segment = 0
        self._next_ticket = 0
        self._utt: _Utterance | None = None
        self._finals: dict[int, _FinalJob] = {}
        self._context: deque[str] = deque()
        self._last_final: list[Word] = []
        self._heard = self.options.language  # the language Whisper last detected
        self.queue_delay = 0.0

    # -- inputs -------------------------------------------------------------------------

    @property
    def stream_time(self) -> float:
        return self._stream_samples / SAMPLE_RATE

    @property
    def pending_finals(self) -> int:
        return len(self._finals)

    def feed(self, samples: np.ndarray) -> list[Action]:
        """16 kHz mono int16 samples, in stream order."""
        actions: list[Action] = []
        for frame in self._vad.push(samples):
            self._stream_samples += len(frame.samples)
            if frame.started is not None:
                self._utt = _Utterance(
                    segment=self._take_segment(),
                    start_sample=self._stream_samples - len(frame.started),
                    chunks=[],
                )
                self._utt.append(frame.started)
                actions.append(SpeechChange(True, self._utt.start))
            elif self._utt is not None:
                self._utt.append(frame.samples)
                if frame.ended:
                    actions.extend(self._finish())
                    heard_until = self.stream_time - self._vad.options.end_silence_ms / 1000
                    actions.append(SpeechChange(False, round(heard_until, 3)))
                    continue
            actions.extend(self._maybe_cut_or_update())
        return actions

    def flush(self) -> list[Action]:
        """End of stream: the words of an unfinished utterance still become a final."""
        if self._utt is None:
            return []
        return [*self._finish(), SpeechChange(False, self.stream_time)]

    def on_result(self, ticket: int, transcript: Transcript) -> list[Action]:
        job = self._finals.pop(ticket, None)
        if job is not None:
            return [Emit(self._final_caption(job, transcript))]
        utt = self._utt
        if utt is None or utt.partial_ticket != ticket:
            return []  # a partial of an utterance that has since ended
        utt.partial_ticket = None
        if transcript.language:
            self._heard = transcript.language
        self._advance(utt, transcript)
        actions: list[Action] = []
        if utt.committed or utt.provisional:
            actions.append(Emit(self._partial_caption(utt)))
        actions.extend(self._maybe_cut_or_update())
        return actions

    def on_failure(self, ticket: int) -> list[Action]:
        """The engine could not answer: a final still closes with what was committed."""
        job = self._finals.pop(ticket, None)
        if job is not None:
            return [Emit(self._final_caption(job, Transcript(words=(), language=self.options.language)))]
        if self._utt is not None and self._utt.partial_ticket == ticket:
            self._utt.partial_ticket = None
        return []

    # -- internals ----------------------------------------------------------------------

    def _take_segment(self) -> int:
        self._next_segment += 1
        return self._next_segment - 1

    def _ticket(self) -> int:
        self._next_ticket += 1
        return self._next_ticket

    def _prompt(self) -> str:
        text = " ".join(self._context)
        if len(text) > self.options.context_chars:
            text = text[-self.options.context_chars :]
            text = text[text.find(" ") + 1 :]
        return text

    def _request(self, audio: np.ndarray) -> TranscribeRequest:
        return TranscribeRequest(
            audio=audio.astype(np.float32) / 32768.0, prompt=self._prompt(), options=self.decode
        )

    def _maybe_cut_or_update(self) -> list[Action]:
        utt = self._utt
        if utt is None:
            return []
        if utt.duration >= self.options.max_utterance:
            return self._cut(utt)
        if utt.partial_ticket is not None or utt.duration < self.options.min_partial_audio:
            return []
        new_audio = (utt.samples - utt.samples_at_request) / SAMPLE_RATE
        if utt.samples_at_request and new_audio < partial_interval(self.options, self.queue_delay):
            return []
        utt.samples_at_request = utt.samples
        utt.partial_ticket = self._ticket()
        return [Submit(utt.partial_ticket, False, utt.segment, self._request(utt.audio()))]

    def _guarded(self, transcript: Transcript, duration: float) -> list[Word]:
        if is_hallucination(transcript, duration, self.decode):
            return []
        return collapse_loops(transcript.words)

    def _advance(self, utt: _Utterance, transcript: Transcript) -> None:
        words = [
            replace(w, start=w.start + utt.start, end=w.end + utt.start)
            for w in self._guarded(transcript, utt.duration)
        ]
        tail = self._after_committed(utt.committed, words)
        agreed = common_prefix(utt.provisional, tail)
        utt.committed.extend(tail[:agreed])
        utt.provisional = tail[agreed:]

    @staticmethod
    def _after_committed(committed: list[Word], words: list[Word]) -> list[Word]:
        """The part of a fresh hypothesis of the whole utterance that follows the committed words."""
        if not committed:
            return words
        if common_prefix(committed, words) == len(committed):
            return words[len(committed) :]
        # The hypothesis rewrote committed words: fall back to time, then trim any overlap.
        edge = committed[-1].end - 0.1
        tail = [w for w in words if w.start >= edge]
        return tail[overlap(committed, tail) :]

    def _cut(self, utt: _Utterance) -> list[Action]:
        """Length cap: close the committed words as a final and carry the rest of the audio on."""
        if not utt.committed:
            return self._finish()
        last = utt.committed[-1]
        nxt = utt.provisional[0].start if utt.provisional else last.end
        cut_time = (last.end + max(last.end, nxt)) / 2
        cut = min(utt.samples, max(0, int(round((cut_time - utt.start) * SAMPLE_RATE))))
        audio = utt.audio()
        caption = Caption(
            segment=utt.segment,
            final=True,
            text=join_words(utt.committed),
            start=utt.committed[0].start,
            end=last.end,
            lang=self.options.language,
        )
        self._remember(utt.committed)
        rest = _Utterance(
            segment=self._take_segment(), start_sample=utt.start_sample + cut, chunks=[], after_cut=True
        )
        rest.append(audio[cut:])
        self._utt = rest
        return [Emit(caption), *self._maybe_cut_or_update()]

    def _finish(self) -> list[Action]:
        utt = self._utt
        assert utt is not None
        self._utt = None
        ticket = self._ticket()
        self._finals[ticket] = _FinalJob(
            segment=utt.segment,
            start=utt.start,
            end=utt.start + utt.duration,
            committed=tuple(utt.committed),
            after_cut=utt.after_cut,
            duration=utt.duration,
        )
        return [Submit(ticket, True, utt.segment, self._request(utt.audio()))]

    def _final_caption(self, job: _FinalJob, transcript: Transcript) -> Caption:
        words = [
            replace(w, start=w.start + job.start, end=w.end + job.start)
            for w in self._guarded(transcript, job.duration)
        ]
        if not words:
            words = list(job.committed)  # never lose what the speaker already saw confirmed
        if job.after_cut:
            words = words[overlap(self._last_final, words) :]
        self._remember(words)
        return Caption(
            segment=job.segment,
            final=True,
            text=join_words(words),
            start=words[0].start if words else job.start,
            end=words[-1].end if words else job.end,
            lang=transcript.language or self.options.language,
        )

    def _partial_caption(self, utt: _Utterance) -> Caption:
        words = utt.committed + utt.provisional
        return Caption(
            segment=utt.segment,
            final=False,
            text=join_words(words),
            start=words[0].start,
            end=words[-1].end,
            lang=self._heard,
            stable=join_words(utt.committed),
        )

    def _remember(self, words: list[Word]) -> None:
        if not words:
            return
        self._last_final = list(words)
        sure = [w for w in words if w.probability >= self.options.prompt_min_probability]
        self._context.append(join_words(sure))
        while len(self._context) > 1 and sum(map(len, self._context)) > 4 * self.options.context_chars:
            self._context.popleft()
