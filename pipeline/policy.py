"""The streaming caption policy: from VAD-split audio and Whisper hypotheses to partials and finals.

LocalAgreement (whisper_streaming): while someone speaks, the growing utterance is
re-transcribed every ``partial_interval`` seconds of new voice; the words two successive
hypotheses agree on are committed, the rest is shown as provisional. Partials are cheap: greedy,
no word alignment, a smaller encoder window. Finals are where the accuracy goes: the whole
utterance once more, with a beam and word times, so a final is as good as offline
transcription of that utterance.

When does an utterance end? The final is decoded ahead, as soon as the voice has paused for
``speculate_ms``; if the pause lasts until the VAD ends the utterance and no voice came since,
that result is the final (no second decode, and the final arrives as the pause ends). If the
voice resumes, the result serves as a partial. A final whose text does not end a sentence
with confidence waits up to ``sentence_wait`` more seconds of silence: speech within that
wait continues the same utterance, so a breath in mid-sentence makes no fragment. An utterance
whose hypothesis stops changing while the VAD still hears "speech" (steady noise) is closed
after ``stale_after`` seconds; one that is over ``max_utterance`` is cut after a committed word.

Pure logic: audio in, actions out. Time is the sample count of the stream, so a replay is
reproducible; the caller does the I/O (scheduler, data channels).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.ledger import VoiceLedger
from pipeline.text import (
    collapse_loops,
    common_prefix,
    ends_sentence,
    is_hallucination,
    join_words,
    normalize,
    overlap,
)
from pipeline.types import SAMPLE_RATE, Caption, DecodeOptions, TranscribeRequest, Transcript, Word
from pipeline.vad import VadFrame, VadOptions, VadSegmenter
from pipeline.vocabulary import NO_VOCABULARY, Vocabulary

# Partials: greedy, words without times, the smallest window tiny.en still reads (800 frames).
PARTIAL_DECODE = DecodeOptions(beam_size=1, word_timestamps=False, min_window_frames=800)
# Finals: beam 5 and word times (bench/results/streaming.md has what the beam buys).
FINAL_DECODE = DecodeOptions(beam_size=5, word_timestamps=True)
# A final that came out as a hallucination is decoded once more by sampling (Whisper's fallback).
FALLBACK_DECODE = DecodeOptions(beam_size=1, temperature=0.4, word_timestamps=True)


@dataclass(frozen=True)
class PolicyOptions:
    """Tunables of the streaming policy, defaults tuned for CPU tiny.en.

    partial_interval: seconds of new voiced audio between partial re-transcriptions (the first
        comes as soon as the utterance opens). One second, not half: partials are most of the
        CPU a speaker costs (bench/results/cost.md), and this halves them.
    max_partial_interval: partials whose hypothesis did not change double the interval, up to
        this (steady noise, a held note); 0 keeps it fixed.
    min_partial_audio: no partial before the utterance (pre-roll included) is this long.
    max_utterance: length cap in seconds; the utterance is cut after a committed word.
    context_chars: how much earlier final text is passed to Whisper as the prompt.
    prompt_min_probability: words Whisper itself doubted stay out of the prompt, since a
        misheard word in the prompt tends to be misheard again in the next utterance.
    backpressure_delay: queue delay (s) beyond which partial updates slow down, and finals are
        decoded greedily: when the device falls behind, a final on time beats a better one late.
    speculate_ms: a pause in the voice this long starts the final's decode before the VAD
        ends the utterance (0: decode the final only when the VAD ends it).
    sentence_wait: extra silence (s) a final waits when its text does not end a sentence; voice
        within it continues the utterance (0: off). A full stop Whisper is sure of (at least
        ``sentence_sure``) waits for nothing, a likely one (at least ``sentence_likely``) for
        half of it: the longer wait costs latency at true sentence ends, where Whisper is mostly
        sure (bench/results/sentences.md).
    stale_after: seconds of transcribed audio without a new word after which an utterance is
        closed even though the VAD still hears speech (0: never).
    partials_on_voice: count only voiced audio towards ``partial_interval`` (False: all audio,
        as before issue 12, kept for comparisons).
    unheard_repair: a final whose words leave this many seconds of voiced audio without a word
        (Whisper stops early, or skips a sentence, mostly on long windows) has that stretch
        decoded once more on its own, and its words put in place (0: never).
    """

    partial_interval: float = 1.0
    max_partial_interval: float = 3.0
    min_partial_audio: float = 0.4
    max_utterance: float = 12.0
    context_chars: int = 200
    prompt_min_probability: float = 0.5
    backpressure_delay: float = 1.0
    language: str = "en"
    speculate_ms: int = 200
    sentence_wait: float = 0.7
    sentence_sure: float = 0.9
    sentence_likely: float = 0.7
    stale_after: float = 3.0
    partials_on_voice: bool = True
    unheard_repair: float = 1.0


@dataclass(frozen=True)
class Submit:
    """Ask the scheduler to transcribe; answer with ``on_result(ticket, ...)``."""

    ticket: int
    final: bool
    segment: int
    request: TranscribeRequest
    origin: int = 0  # stream sample of the request's first audio sample
    repair: bool = False  # a stretch of a final that its decode left without words


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


# Silence put before the audio that carries on after a cut: Whisper, prompted with the text
# before the cut, skips a first sentence that starts abruptly mid-word ("To repeat this
# message press five" after "To hear the next message press 6."); a pause before it does not.
CUT_LEAD = int(0.2 * SAMPLE_RATE)


@dataclass
class _Utterance:
    segment: int
    start_sample: int  # stream sample of the audio's first sample (lead included)
    chunks: list[np.ndarray]
    samples: int = 0
    lead: int = 0  # samples of silence before the first stream sample, not from the stream
    voiced: int = 0  # voiced samples heard so far
    voice_end: int = 0  # utterance samples up to the end of the last voiced frame
    voiced_at_request: int = 0
    # Whether anything was asked of this utterance yet: the first partial comes as it opens,
    # every later one after new voice (an utterance with no voiced frame yet, which webrtcvad
    # opens on steady noise, would otherwise ask again with each answer, without end).
    requested: bool = False
    partial_ticket: int | None = None
    committed: list[Word] = field(default_factory=list)  # stream-timed
    provisional: list[Word] = field(default_factory=list)  # stream-timed
    timed: bool = False  # the words' times come from an alignment, not a guess
    after_cut: bool = False
    scale: float = 1.0  # partial interval multiplier, grows while nothing new is heard
    heard_until: int = 0  # utterance samples covered by the newest hypothesis
    changed_at: int = 0  # utterance samples covered by the hypothesis that last changed the words
    final_ticket: int | None = None  # the newest final-quality request
    final_voice_end: int = 0  # voice_end when it was asked
    final_samples: int = 0  # samples it covers
    final_result: Transcript | None = None
    fallback_tried: bool = False
    retried: bool = False  # a failed final was asked once more
    head: Transcript | None = None  # the final's decode, while a stretch it missed is decoded again
    repair_from: int = 0  # utterance samples where that stretch starts, and ends
    repair_to: int = 0
    repair_retried: bool = False
    ended_at: int | None = None  # stream samples when the VAD (or staleness) ended it
    # Tickets whose answers still count as hypotheses of this utterance, with the samples each covers.
    asked: dict[int, int] = field(default_factory=dict)
    # The room's vocabulary when the utterance began: a change applies from the next one.
    vocabulary: Vocabulary = NO_VOCABULARY

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.samples += len(samples)

    def audio(self, until: int | None = None) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        audio = self.chunks[0] if self.chunks else np.zeros(0, dtype=np.int16)
        return audio if until is None else audio[:until]

    @property
    def start(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def first(self) -> int:
        """The first stream sample the utterance holds."""
        return self.start_sample + self.lead

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def words(self) -> list[Word]:
        return self.committed + self.provisional


class CaptionPolicy:
    """One publisher's stream: feed it audio and transcripts, act on what it returns."""

    def __init__(
        self,
        options: PolicyOptions | None = None,
        vad: VadOptions | VadSegmenter | None = None,
        decode: DecodeOptions | None = None,
        final_decode: DecodeOptions | None = None,
    ) -> None:
        """``decode`` is how partials are decoded, ``final_decode`` how finals are."""
        self.options = options or PolicyOptions()
        self.decode = decode or PARTIAL_DECODE
        self.final_decode = final_decode or FINAL_DECODE
        self._vad = vad if isinstance(vad, VadSegmenter) else VadSegmenter(vad)
        self._stream_samples = 0
        self._next_segment = 0
        self._next_ticket = 0
        self._utt: _Utterance | None = None
        self._finals: dict[int, _Utterance] = {}  # ended utterances awaiting their final
        self._context: deque[str] = deque()
        self._last_final: list[Word] = []
        self._detected = self.options.language  # the language Whisper last detected
        self.vocabulary = NO_VOCABULARY  # the room's, for utterances that start from now on
        self.queue_delay = 0.0
        # Every voiced sample the VAD passed, and the finals (or deliberate drops) that took it.
        self.ledger = VoiceLedger()

    # -- inputs -------------------------------------------------------------------------

    @property
    def vad(self) -> VadSegmenter:
        return self._vad

    @property
    def stream_time(self) -> float:
        return self._stream_samples / SAMPLE_RATE

    @property
    def pending_finals(self) -> int:
        """Finals still to come: detached ones and the current utterance's, once the VAD ended it."""
        held = self._utt is not None and self._utt.ended_at is not None
        return len(self._finals) + int(held)

    def feed(self, samples: np.ndarray) -> list[Action]:
        """16 kHz mono int16 samples, in stream order; the VAD runs here."""
        return self.on_frames(self._vad.push(samples))

    def on_frames(self, frames: Iterable[VadFrame]) -> list[Action]:
        """The VAD's verdicts (from ``vad.push``, possibly run on another thread), in order."""
        actions: list[Action] = []
        for frame in frames:
            self._stream_samples += len(frame.samples)
            if frame.voiced and (frame.speaking or frame.ended):
                self.ledger.voiced(self._stream_samples - len(frame.samples), self._stream_samples)
            utt = self._utt
            if frame.started is not None:
                if utt is not None and self._can_resume(utt):
                    utt.append(frame.samples)  # the pause is in already: no second pre-roll
                    utt.ended_at = None
                    utt.final_result = None  # it heard only the first half
                    self._heard(utt, frame)
                    actions.append(SpeechChange(True, round(self.stream_time, 3)))
                else:
                    if utt is not None:
                        actions.extend(self._detach(utt))
                    utt = self._utt = _Utterance(
                        segment=self._take_segment(),
                        start_sample=self._stream_samples - len(frame.started),
                        chunks=[],
                        vocabulary=self.vocabulary,
                    )
                    utt.append(frame.started)
                    self._heard(utt, frame)
                    actions.append(SpeechChange(True, utt.start))
            elif utt is None:
                continue
            elif utt.ended_at is not None:
                utt.append(frame.samples)  # the pause, kept in case the voice resumes
                actions.extend(self._maybe_release(utt))
                continue
            else:
                utt.append(frame.samples)
                self._heard(utt, frame)
                if frame.ended:
                    actions.extend(self._close(utt))
                    heard_until = self.stream_time - self._vad.options.end_silence_ms / 1000
                    actions.append(SpeechChange(False, round(heard_until, 3)))
                    continue
            actions.extend(self._maybe_update())
        return self._settled(actions)

    def flush(self) -> list[Action]:
        """End of stream: the words of an unfinished utterance still become a final."""
        utt = self._utt
        if utt is None:
            return []
        speaking = utt.ended_at is None
        actions = self._close(utt) if speaking else []
        if self._utt is utt:
            actions.extend(self._detach(utt))
        if speaking:
            actions.append(SpeechChange(False, self.stream_time))
        return self._settled(actions)

    def on_result(self, ticket: int, transcript: Transcript) -> list[Action]:
        done = self._finals.pop(ticket, None)
        if done is not None:
            if done.head is not None:
                return self._settled([Emit(self._final_caption(done, self._mended(done, transcript)))])
            if self._wants_fallback(done, transcript):
                return self._settled(self._fallback(done))
            return self._settled(self._finish(done, transcript))
        utt = self._utt
        if utt is None:
            return []
        if ticket == utt.final_ticket:
            utt.asked.pop(ticket, None)
            return self._settled(self._on_final_result(utt, transcript))
        covered = utt.asked.pop(ticket, None)
        if ticket == utt.partial_ticket:
            utt.partial_ticket = None
        if covered is None or utt.ended_at is not None:
            return []  # a partial of an utterance that has since ended: its final is coming
        return self._settled(self._on_hypothesis(utt, transcript, covered))

    def on_failure(self, ticket: int) -> list[Action]:
        """The engine could not answer. A final is asked once more; failing twice, it closes with
        every word the speaker saw, and its audio is reported as dropped (``engine_failure``)."""
        done = self._finals.pop(ticket, None)
        if done is not None and done.head is not None:
            return self._settled(self._failed_repair(done))
        if done is not None:
            return self._settled(self._failed_final(done))
        utt = self._utt
        if utt is None:
            return []
        utt.asked.pop(ticket, None)
        if utt.partial_ticket == ticket:
            utt.partial_ticket = None
        if utt.final_ticket == ticket:
            utt.final_ticket = None
            if utt.ended_at is not None:
                return self._settled(self._failed_final(utt))
        return []

    def abandon(self, reason: str) -> None:
        """The session ends without waiting for its finals (shed, killed, out of time): whatever
        they held is reported as dropped for ``reason``, never silently gone."""
        for utt in [*self._finals.values(), *([self._utt] if self._utt is not None else [])]:
            self.ledger.dropped(utt.first, utt.start_sample + utt.samples, reason)
        self._finals.clear()
        self._utt = None
        self.ledger.settle(self._stream_samples)

    # -- internals ----------------------------------------------------------------------

    def _settled(self, actions: list[Action]) -> list[Action]:
        """After every input: voiced audio behind the oldest audio still on its way to a final
        can no longer reach one, and the ledger counts it."""
        starts = [u.start_sample for u in self._finals.values()]
        if self._utt is not None:
            starts.append(self._utt.start_sample)
        self.ledger.settle(min(starts, default=self._stream_samples))
        return actions

    def _failed_final(self, utt: _Utterance) -> list[Action]:
        if not utt.retried:
            utt.retried = True
            utt.final_ticket = None
            submit = self._submit_final(utt)
            if self._utt is not utt:
                self._finals[submit.ticket] = utt
            return [submit]
        if self._utt is utt:
            self._utt = None
        return [Emit(self._final_caption(utt, None))]

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

    def _request(self, utt: _Utterance, audio: np.ndarray, options: DecodeOptions) -> TranscribeRequest:
        return TranscribeRequest(
            audio=audio.astype(np.float32) / 32768.0,
            prompt=self._prompt(),
            options=options,
            hotwords=utt.vocabulary.prompt,
        )

    def _heard(self, utt: _Utterance, frame: VadFrame) -> None:
        if frame.voiced or not self.options.partials_on_voice:
            utt.voiced += len(frame.samples)
            utt.voice_end = utt.samples

    def _can_resume(self, utt: _Utterance) -> bool:
        """New voice within a held final's wait continues the same utterance."""
        if utt.ended_at is None or self.options.sentence_wait <= 0:
            return False
        waited = (self._stream_samples - utt.ended_at) / SAMPLE_RATE
        return waited <= self.options.sentence_wait and utt.samples < self.options.max_utterance * SAMPLE_RATE

    def _interval(self, utt: _Utterance) -> float:
        interval = partial_interval(self.options, self.queue_delay) * utt.scale
        # The first partial comes as the utterance opens, on little speech, and often hears
        # nothing yet: until one has words, ask again after half the interval.
        return interval if utt.words else interval / 2

    def _maybe_update(self) -> list[Action]:
        utt = self._utt
        if utt is None or utt.ended_at is not None:
            return []
        opts = self.options
        if utt.duration >= opts.max_utterance:
            return self._cut(utt)
        if opts.stale_after > 0 and utt.heard_until - utt.changed_at >= opts.stale_after * SAMPLE_RATE:
            return self._unstick(utt)
        silent = (utt.samples - utt.voice_end) / SAMPLE_RATE
        if (
            opts.speculate_ms > 0
            and silent * 1000 >= opts.speculate_ms
            and utt.final_ticket is None
            and utt.voice_end > utt.final_voice_end
            and utt.voiced / SAMPLE_RATE >= opts.min_partial_audio
        ):
            return [self._submit_final(utt)]
        if utt.partial_ticket is not None or utt.final_ticket is not None:
            return []
        if utt.duration < opts.min_partial_audio:
            return []
        new_voice = (utt.voiced - utt.voiced_at_request) / SAMPLE_RATE
        if utt.requested and new_voice < self._interval(utt):
            return []
        # Near the length cap the cut needs true word times: align those partials.
        near_cap = utt.duration >= opts.max_utterance - 2 * opts.partial_interval - 1.0
        return [self._submit_partial(utt, timed=near_cap)]

    def _submit_partial(self, utt: _Utterance, timed: bool) -> Submit:
        utt.voiced_at_request, utt.requested = utt.voiced, True
        utt.partial_ticket = ticket = self._ticket()
        utt.asked[ticket] = utt.samples
        options = replace(self.decode, word_timestamps=True) if timed else self.decode
        return Submit(ticket, False, utt.segment, self._request(utt, utt.audio(), options), utt.start_sample)

    def _submit_final(self, utt: _Utterance, options: DecodeOptions | None = None) -> Submit:
        if utt.final_ticket is not None:
            utt.asked[utt.final_ticket] = utt.final_samples  # its answer still serves as a partial
        utt.final_ticket = ticket = self._ticket()
        utt.final_voice_end = utt.voice_end
        utt.final_samples = utt.samples
        utt.final_result = None
        utt.voiced_at_request, utt.requested = utt.voiced, True
        if options is None:
            options = self.final_decode
            if self.queue_delay > self.options.backpressure_delay:
                options = replace(options, beam_size=1)
        return Submit(ticket, True, utt.segment, self._request(utt, utt.audio(), options), utt.start_sample)

    def _close(self, utt: _Utterance) -> list[Action]:
        """The VAD heard the end: reuse the final decoded ahead if no voice came since, or ask now."""
        utt.ended_at = self._stream_samples
        if utt.voiced == 0 and not utt.words:
            self._utt = None  # a remnant after a cut with no voice in it: nothing to finalise
            self.ledger.dropped(utt.first, utt.start_sample + utt.samples, "remnant")
            return []
        if utt.partial_ticket is not None:
            utt.asked.pop(utt.partial_ticket, None)  # the final will say more than it could
            utt.partial_ticket = None
        covered = utt.final_voice_end >= utt.voice_end and (
            utt.final_ticket is not None or utt.final_result is not None
        )
        actions: list[Action] = []
        if not covered:
            actions.append(self._submit_final(utt))
        elif utt.final_result is not None:
            actions.extend(self._maybe_release(utt))
        if self.options.sentence_wait <= 0 and self._utt is utt:
            actions.extend(self._detach(utt))
        return actions

    def _on_final_result(self, utt: _Utterance, transcript: Transcript) -> list[Action]:
        utt.final_ticket = None
        if self._wants_fallback(utt, transcript) and utt.final_voice_end >= utt.voice_end:
            return self._fallback(utt)
        if utt.final_voice_end < utt.voice_end:
            # The voice went on since: a partial, and the final comes later.
            return self._on_hypothesis(utt, transcript, utt.final_samples)
        utt.final_result = transcript
        released = self._maybe_release(utt)
        return released or self._on_hypothesis(utt, transcript, utt.final_samples)

    def _wants_fallback(self, utt: _Utterance, transcript: Transcript) -> bool:
        """Whisper's own sign of a bad decode (a loop, or words it barely believes) on speech."""
        if utt.fallback_tried or not transcript.words:
            return False
        looped = transcript.compression_ratio > self.final_decode.compression_ratio_threshold
        unsure = (
            transcript.avg_logprob < self.final_decode.log_prob_threshold
            and transcript.no_speech_prob <= self.final_decode.no_speech_threshold
        )
        return looped or unsure

    def _fallback(self, utt: _Utterance) -> list[Action]:
        utt.fallback_tried = True
        detached = self._utt is not utt
        utt.final_ticket = None  # answered: not a partial to come
        submit = self._submit_final(utt, replace(FALLBACK_DECODE, language=self.final_decode.language))
        if detached:
            self._finals[submit.ticket] = utt
        return [submit]

    def _maybe_release(self, utt: _Utterance) -> list[Action]:
        """Emit the held final once it ends a sentence, or once the wait for more voice is over."""
        if utt.ended_at is None:
            return []
        waited = (self._stream_samples - utt.ended_at) / SAMPLE_RATE
        result = utt.final_result
        if result is None:
            return self._detach(utt) if waited >= self.options.sentence_wait else []
        return self._detach(utt) if waited >= self._sentence_wait(result) else []

    def _sentence_wait(self, result: Transcript) -> float:
        """How much more silence this final waits for: none at a sure sentence end."""
        opts = self.options
        if ends_sentence(result, opts.sentence_sure):
            return 0.0
        if ends_sentence(result, opts.sentence_likely):
            return opts.sentence_wait / 2
        return opts.sentence_wait

    def _detach(self, utt: _Utterance) -> list[Action]:
        """The utterance is over: emit its final now if decoded, else when its answer comes."""
        if self._utt is utt:
            self._utt = None
        if utt.final_result is not None:
            return self._finish(utt, utt.final_result)
        actions: list[Action] = []
        if utt.final_ticket is None or utt.final_voice_end < utt.voice_end:
            actions.append(self._submit_final(utt))
        assert utt.final_ticket is not None
        self._finals[utt.final_ticket] = utt
        return actions

    def _on_hypothesis(self, utt: _Utterance, transcript: Transcript, covered: int) -> list[Action]:
        if covered < utt.heard_until:
            # Older than a hypothesis already heard (finals run before partials, so answers
            # overtake each other): it would take words back and make the utterance look stale.
            return self._maybe_update()
        if transcript.language:
            self._detected = transcript.language
        before = [normalize(w.text) for w in utt.words]
        self._advance(utt, transcript)
        utt.heard_until = max(utt.heard_until, covered)
        if [normalize(w.text) for w in utt.words] != before:
            utt.changed_at = covered
            utt.scale = 1.0
        elif self.options.max_partial_interval > 0:
            utt.scale = min(utt.scale * 2, self.options.max_partial_interval / self.options.partial_interval)
        actions: list[Action] = []
        if utt.words:
            actions.append(Emit(self._partial_caption(utt)))
        actions.extend(self._maybe_update())
        return actions

    def _guarded(self, utt: _Utterance, transcript: Transcript, duration: float) -> list[Word]:
        if is_hallucination(transcript, duration, self.final_decode):
            return []
        if utt.vocabulary.echoed(transcript, duration):
            return []  # the vocabulary coming back, not speech
        return utt.vocabulary.correct(collapse_loops(transcript.words))

    def _advance(self, utt: _Utterance, transcript: Transcript) -> None:
        words = [
            replace(w, start=w.start + utt.start, end=w.end + utt.start)
            for w in self._guarded(utt, transcript, utt.duration)
        ]
        agreed_prefix = common_prefix(utt.committed, words)
        realigned = transcript.timed and agreed_prefix == len(utt.committed)
        if realigned:
            # Committed text stays; its times become the aligned ones.
            utt.committed = [
                replace(c, start=w.start, end=w.end, probability=w.probability)
                for c, w in zip(utt.committed, words, strict=False)
            ]
        tail = self._after_committed(utt.committed, words, transcript.timed and utt.timed)
        agreed = common_prefix(utt.provisional, tail)
        utt.committed.extend(tail[:agreed])
        utt.provisional = tail[agreed:]
        # Only when every committed word got its aligned time may a cut trust them: a timed
        # hypothesis that disagrees with them leaves their guessed times in place.
        utt.timed = realigned

    @staticmethod
    def _after_committed(committed: list[Word], words: list[Word], timed: bool) -> list[Word]:
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

    def _cut(self, utt: _Utterance) -> list[Action]:
        """Length cap: close the committed words as a final and carry the rest of the audio on."""
        if not utt.committed:
            return self._split(utt, utt.samples, keep_words=True)
        if not utt.timed:
            # The cut needs true word times: wait for an aligned partial (asked near the cap).
            if utt.partial_ticket is None and utt.final_ticket is None:
                return [self._submit_partial(utt, timed=True)]
            return []
        last = utt.committed[-1]
        nxt = utt.provisional[0].start if utt.provisional else last.end
        cut_time = (last.end + max(last.end, nxt)) / 2
        hidden = self.ledger.voiced_in(int((last.end + 0.1) * SAMPLE_RATE), int((nxt - 0.1) * SAMPLE_RATE))
        if hidden > 0.3 * SAMPLE_RATE:
            # Voice between the last committed word and the next one heard: words the last
            # hypothesis skipped, maybe right after it. Cut at its end, so the rest hears them.
            cut_time = last.end
        cut = min(utt.samples, max(0, int(round((cut_time - utt.start) * SAMPLE_RATE))))
        relative = [replace(w, start=w.start - utt.start, end=w.end - utt.start) for w in utt.committed]
        if self._wordless(utt.start_sample, cut, relative) is not None:
            # The committed words skip a stretch of voice (hypotheses that agreed on missing a
            # sentence): the piece before the cut gets a final decode of its own instead.
            return self._split(utt, cut, keep_words=True)
        words = utt.committed
        if utt.after_cut:
            words = words[overlap(self._last_final, words) :]  # heard again across the last cut
        caption = Caption(
            segment=utt.segment,
            final=True,
            text=join_words(words),
            start=words[0].start if words else utt.start,
            end=last.end,
            lang=self.options.language,
        )
        self._remember(words)
        self.ledger.finalised(utt.first, utt.start_sample + cut)
        return [Emit(caption), *self._carry_on(utt, cut, after_cut=True)]

    def _unstick(self, utt: _Utterance) -> list[Action]:
        """Steady noise keeps the VAD open: close what was said, drop what was not, carry on."""
        return self._split(utt, utt.heard_until, keep_words=bool(utt.words))

    def _split(self, utt: _Utterance, cut: int, keep_words: bool) -> list[Action]:
        """End the utterance at ``cut`` while the VAD still hears speech: a final of the audio
        before it (when there is something to keep), a new utterance from it on."""
        actions: list[Action] = []
        if keep_words:
            head = _Utterance(
                segment=utt.segment,
                start_sample=utt.start_sample,
                lead=utt.lead,
                chunks=[utt.audio(cut)],
                samples=cut,
                voiced=utt.voiced,
                voice_end=min(utt.voice_end, cut),
                committed=[w for w in utt.committed if w.start < (utt.start_sample + cut) / SAMPLE_RATE],
                provisional=[w for w in utt.provisional if w.start < (utt.start_sample + cut) / SAMPLE_RATE],
                after_cut=utt.after_cut,
                ended_at=self._stream_samples,
                vocabulary=utt.vocabulary,
            )
            actions.extend(self._detach(head))
        else:
            # Steady noise: no hypothesis heard a word in ``stale_after`` seconds of it.
            self.ledger.dropped(utt.first, utt.start_sample + cut, "noise")
        return [*actions, *self._carry_on(utt, cut, after_cut=keep_words, keep_segment=not keep_words)]

    def _carry_on(
        self, utt: _Utterance, cut: int, after_cut: bool, keep_segment: bool = False
    ) -> list[Action]:
        """Start the next utterance with the audio from ``cut`` on; the VAD still hears speech.

        Answers still due for the old utterance are dropped (its tickets stay with it)."""
        lead = CUT_LEAD
        rest = _Utterance(
            segment=utt.segment if keep_segment else self._take_segment(),
            start_sample=utt.start_sample + cut - lead,
            chunks=[np.zeros(lead, np.int16), utt.audio()[cut:]],
            samples=utt.samples - cut + lead,
            lead=lead,
            after_cut=after_cut,
            scale=utt.scale,
            vocabulary=self.vocabulary,
        )
        rest.voice_end = max(0, utt.voice_end - cut) + lead
        rest.voiced = min(utt.voiced, rest.voice_end - lead)
        self._utt = rest
        return self._maybe_update()

    def _finish(self, utt: _Utterance, transcript: Transcript) -> list[Action]:
        """A detached utterance's final, unless its words leave voiced audio unheard: then that
        stretch is decoded once more first (a repair), and the final waits for it."""
        stretch = self._unheard(utt, transcript)
        if stretch is None:
            return [Emit(self._final_caption(utt, transcript))]
        utt.head = transcript
        utt.repair_from, utt.repair_to = stretch
        self.ledger.repaired(utt.start_sample + stretch[0], utt.start_sample + stretch[1])
        return [self._submit_repair(utt)]

    def _submit_repair(self, utt: _Utterance) -> Submit:
        utt.final_ticket = ticket = self._ticket()
        audio = utt.audio()[utt.repair_from : utt.repair_to]
        # Without the prompt: a model that skipped speech like the text before it (repeated
        # phrases, menus) skips it again when prompted with that text.
        request = replace(self._request(utt, audio, self.final_decode), prompt="")
        self._finals[ticket] = utt
        return Submit(ticket, True, utt.segment, request, utt.start_sample + utt.repair_from, repair=True)

    def _failed_repair(self, utt: _Utterance) -> list[Action]:
        """Asked once more; failing twice, the stretch keeps the words partials showed there,
        and its audio is reported as dropped."""
        if not utt.repair_retried:
            utt.repair_retried = True
            return [self._submit_repair(utt)]
        lo, hi = utt.start_sample + utt.repair_from, utt.start_sample + utt.repair_to
        self.ledger.dropped(lo, hi, "engine_failure")
        origin = lo / SAMPLE_RATE
        seen = tuple(
            replace(w, start=w.start - origin, end=w.end - origin)
            for w in utt.words
            if lo <= (w.start + w.end) / 2 * SAMPLE_RATE < hi
        )
        return [
            Emit(self._final_caption(utt, self._mended(utt, Transcript(words=seen, language=self._detected))))
        ]

    def _unheard(self, utt: _Utterance, transcript: Transcript) -> tuple[int, int] | None:
        """The longest stretch of the final's audio, between its words, with at least
        ``unheard_repair`` seconds of voice and no word: utterance samples, or None."""
        if not transcript.timed:
            return None
        samples = utt.final_samples or utt.samples
        return self._wordless(
            utt.start_sample, samples, self._guarded(utt, transcript, samples / SAMPLE_RATE)
        )

    def _wordless(self, origin: int, samples: int, words: list[Word]) -> tuple[int, int] | None:
        """The longest stretch of the ``samples`` from stream sample ``origin`` on, between
        ``words`` (timed from ``origin``), with ``unheard_repair`` seconds of voice or more and
        no word: samples from ``origin``, or None."""
        need = self.options.unheard_repair * SAMPLE_RATE
        if need <= 0:
            return None
        if not words:
            # Nothing heard in a second of voice or more: noise, or a decode gone wrong.
            return (0, samples) if self.ledger.voiced_in(origin, origin + samples) >= need else None
        # Alignment error around a word's edges; with the 1 s bound, it keeps a word Whisper
        # merely compressed ("ill man" for "ill-disposed young man") from being decoded again.
        margin = int(0.25 * SAMPLE_RATE)
        # A word claims at most what a slow speaker takes to say it, at its end: when Whisper
        # skips a sentence, its alignment often stretches the next word over the skipped
        # speech ("To" 0.0-2.48 s for "To repeat this message press five. To").
        claimed = [max(w.start, w.end - (0.4 + 0.08 * len(normalize(w.text)))) for w in words]
        edges = [0] + [int(w.end * SAMPLE_RATE) for w in words]
        starts = [int(c * SAMPLE_RATE) for c in claimed] + [samples]
        best: tuple[int, int] | None = None
        best_voiced = 0
        for a, b in zip(edges, starts, strict=True):
            lo, hi = max(0, a - margin if a else 0), min(samples, b + margin)
            voiced = self.ledger.voiced_in(origin + a + margin, origin + b - margin)
            if voiced >= need and voiced > best_voiced:
                best, best_voiced = (lo, hi), voiced
        return best

    def _mended(self, utt: _Utterance, repair: Transcript) -> Transcript:
        """The final's words with those of its repaired stretch in place (utterance times)."""
        head = utt.head
        assert head is not None
        offset = utt.repair_from / SAMPLE_RATE
        lo, hi = utt.repair_from / SAMPLE_RATE, utt.repair_to / SAMPLE_RATE
        words = list(head.words)
        before = [w for w in words if w.end <= lo + 0.3]
        after = [w for w in words if w.end > lo + 0.3]
        found = [
            replace(w, start=w.start + offset, end=w.end + offset)
            for w in self._guarded(utt, repair, hi - lo)
        ]
        # The margins may hear a neighbouring word again.
        found = found[overlap(before, found) :]
        found = found[: len(found) - overlap(found, after)]
        merged = [*before, *found, *after]
        return replace(head, words=tuple(merged))

    def _final_caption(self, utt: _Utterance, transcript: Transcript | None) -> Caption:
        """The final of ``utt`` from its answer, or with None (the engine failed) from the words
        the speaker already saw, its audio then reported as dropped."""
        samples = utt.final_samples or utt.samples
        duration = samples / SAMPLE_RATE
        if transcript is None:
            self.ledger.dropped(utt.first, utt.start_sample + samples, "engine_failure")
            transcript = Transcript(words=(), language=self._detected)
            words = list(utt.words)
        else:
            self.ledger.finalised(utt.first, utt.start_sample + samples)
            words = [
                replace(w, start=w.start + utt.start, end=w.end + utt.start)
                for w in self._guarded(utt, transcript, duration)
            ]
        if not words:
            words = list(utt.committed)  # never lose what the speaker already saw confirmed
        if utt.after_cut:
            words = words[overlap(self._last_final, words) :]
        self._remember(words)
        return Caption(
            segment=utt.segment,
            final=True,
            text=join_words(words),
            start=words[0].start if words else utt.start,
            end=words[-1].end if words else utt.start + duration,
            lang=transcript.language or self.options.language,
        )

    def _partial_caption(self, utt: _Utterance) -> Caption:
        words = utt.words
        return Caption(
            segment=utt.segment,
            final=False,
            text=join_words(words),
            start=words[0].start,
            end=words[-1].end,
            lang=self._detected,
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


def caption_policy(
    vad: str = "silero",
    vad_aggressiveness: int = 2,
    end_silence_ms: int = 500,
    partial_interval: float = 1.0,
    max_utterance: float = 12.0,
    sentence_wait: float = 0.7,
    stale_after: float = 3.0,
    beam_size: int = 1,
    final_beam_size: int = 5,
    legacy_partials: bool = False,
    language: str = "en",
    decode_language: str | None = None,
) -> CaptionPolicy:
    """The policy from the server's flat settings.

    ``legacy_partials`` brings back the partials of before issue 12 (aligned, 1000-frame
    window, every ``partial_interval`` of audio, no backoff, no final decoded ahead), so one run
    can compare; with ``final_beam_size=1``, ``sentence_wait=0``, ``stale_after=0`` and the
    webrtc VAD it is the old policy whole. ``language`` is what captions say they are in until
    Whisper detects otherwise; ``decode_language`` tells a multilingual Whisper (None: detect).
    """
    options = PolicyOptions(
        partial_interval=partial_interval,
        max_utterance=max_utterance,
        sentence_wait=sentence_wait,
        stale_after=stale_after,
        language=language,
        **(
            dict(speculate_ms=0, max_partial_interval=0.0, partials_on_voice=False) if legacy_partials else {}
        ),
    )
    partial = DecodeOptions() if legacy_partials else PARTIAL_DECODE
    return CaptionPolicy(
        options,
        VadOptions(engine=vad, aggressiveness=vad_aggressiveness, end_silence_ms=end_silence_ms),
        decode=replace(partial, beam_size=beam_size, language=decode_language),
        final_decode=replace(FINAL_DECODE, beam_size=final_beam_size, language=decode_language),
    )
