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

What stands apart, each in a module of its own: the agreement of two hypotheses
(pipeline/agreement.py), the repair of speech a final's words skipped (pipeline/repair.py),
what the policy does when the device falls behind (pipeline/backpressure.py), the prompt of
earlier finals (pipeline/context.py), an utterance's state (pipeline/utterance.py), and the
options (pipeline/policy_options.py). Every voiced second ends in exactly one final or is
dropped on purpose, and the ledger (pipeline/ledger.py) counts it.

Pure logic: audio in, actions out (pipeline/actions.py). Time is the sample count of the
stream, so a replay is reproducible; the caller does the I/O (scheduler, data channels).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from pipeline.actions import Action, Emit, SpeechChange, Submit
from pipeline.agreement import agree
from pipeline.backpressure import final_options, next_scale, partial_wait
from pipeline.context import PromptContext
from pipeline.ledger import VoiceLedger
from pipeline.policy_options import (
    FALLBACK_DECODE,
    FINAL_DECODE,
    PARTIAL_DECODE,
    PolicyOptions,
    sentence_wait,
)
from pipeline.repair import mended, wordless
from pipeline.text import (
    bad_decode,
    collapse_loops,
    final_of,
    is_hallucination,
    join_words,
    normalize,
    overlap,
)
from pipeline.types import SAMPLE_RATE, Caption, DecodeOptions, TranscribeRequest, Transcript, Word
from pipeline.utterance import CUT_LEAD, Utterance
from pipeline.vad import VadFrame, VadOptions, VadSegmenter
from pipeline.vocabulary import NO_VOCABULARY


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
        self._utt: Utterance | None = None
        self._finals: dict[int, Utterance] = {}  # ended utterances awaiting their final
        self._context = PromptContext(self.options.context_chars, self.options.prompt_min_probability)
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
                    utt = self._utt = Utterance(
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
            if not done.fallback_tried and bad_decode(transcript, self.final_decode):
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

    def _failed_final(self, utt: Utterance) -> list[Action]:
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

    def _request(self, utt: Utterance, audio: np.ndarray, options: DecodeOptions) -> TranscribeRequest:
        return TranscribeRequest(
            audio=audio.astype(np.float32) / 32768.0,
            prompt=self._context.prompt(),
            options=options,
            hotwords=utt.vocabulary.prompt,
        )

    def _heard(self, utt: Utterance, frame: VadFrame) -> None:
        if frame.voiced or not self.options.partials_on_voice:
            utt.voiced += len(frame.samples)
            utt.voice_end = utt.samples

    def _can_resume(self, utt: Utterance) -> bool:
        """New voice within a held final's wait continues the same utterance."""
        if utt.ended_at is None or self.options.sentence_wait <= 0:
            return False
        waited = (self._stream_samples - utt.ended_at) / SAMPLE_RATE
        return waited <= self.options.sentence_wait and utt.samples < self.options.max_utterance * SAMPLE_RATE

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
        if utt.requested and new_voice < partial_wait(opts, self.queue_delay, utt.scale, bool(utt.words)):
            return []
        # Near the length cap the cut needs true word times: align those partials.
        near_cap = utt.duration >= opts.max_utterance - 2 * opts.partial_interval - 1.0
        return [self._submit_partial(utt, timed=near_cap)]

    def _submit_partial(self, utt: Utterance, timed: bool) -> Submit:
        utt.voiced_at_request, utt.requested = utt.voiced, True
        utt.partial_ticket = ticket = self._ticket()
        utt.asked[ticket] = utt.samples
        options = replace(self.decode, word_timestamps=True) if timed else self.decode
        return Submit(ticket, False, utt.segment, self._request(utt, utt.audio(), options), utt.start_sample)

    def _submit_final(self, utt: Utterance, options: DecodeOptions | None = None) -> Submit:
        if utt.final_ticket is not None:
            utt.asked[utt.final_ticket] = utt.final_samples  # its answer still serves as a partial
        utt.final_ticket = ticket = self._ticket()
        utt.final_voice_end = utt.voice_end
        utt.final_samples = utt.samples
        utt.final_result = None
        utt.voiced_at_request, utt.requested = utt.voiced, True
        if options is None:
            options = final_options(self.options, self.final_decode, self.queue_delay)
        return Submit(ticket, True, utt.segment, self._request(utt, utt.audio(), options), utt.start_sample)

    def _close(self, utt: Utterance) -> list[Action]:
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

    def _on_final_result(self, utt: Utterance, transcript: Transcript) -> list[Action]:
        utt.final_ticket = None
        if (
            not utt.fallback_tried
            and bad_decode(transcript, self.final_decode)
            and utt.final_voice_end >= utt.voice_end
        ):
            return self._fallback(utt)
        if utt.final_voice_end < utt.voice_end:
            # The voice went on since: a partial, and the final comes later.
            return self._on_hypothesis(utt, transcript, utt.final_samples)
        utt.final_result = transcript
        released = self._maybe_release(utt)
        return released or self._on_hypothesis(utt, transcript, utt.final_samples)

    def _fallback(self, utt: Utterance) -> list[Action]:
        utt.fallback_tried = True
        detached = self._utt is not utt
        utt.final_ticket = None  # answered: not a partial to come
        submit = self._submit_final(utt, replace(FALLBACK_DECODE, language=self.final_decode.language))
        if detached:
            self._finals[submit.ticket] = utt
        return [submit]

    def _maybe_release(self, utt: Utterance) -> list[Action]:
        """Emit the held final once it ends a sentence, or once the wait for more voice is over."""
        if utt.ended_at is None:
            return []
        waited = (self._stream_samples - utt.ended_at) / SAMPLE_RATE
        result = utt.final_result
        if result is None:
            return self._detach(utt) if waited >= self.options.sentence_wait else []
        return self._detach(utt) if waited >= sentence_wait(self.options, result) else []

    def _detach(self, utt: Utterance) -> list[Action]:
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

    def _on_hypothesis(self, utt: Utterance, transcript: Transcript, covered: int) -> list[Action]:
        if covered < utt.heard_until:
            # Older than a hypothesis already heard (finals run before partials, so answers
            # overtake each other): it would take words back and make the utterance look stale.
            return self._maybe_update()
        if transcript.language:
            self._detected = transcript.language
        before = [normalize(w.text) for w in utt.words]
        words = self._guarded(utt, transcript, utt.duration)
        shifted = [replace(w, start=w.start + utt.start, end=w.end + utt.start) for w in words]
        agree(utt, shifted, transcript.timed)
        utt.heard_until = max(utt.heard_until, covered)
        changed = [normalize(w.text) for w in utt.words] != before
        if changed:
            utt.changed_at = covered
        utt.scale = next_scale(self.options, utt.scale, changed)
        actions: list[Action] = []
        if utt.words:
            actions.append(Emit(self._partial_caption(utt)))
        actions.extend(self._maybe_update())
        return actions

    def _guarded(self, utt: Utterance, transcript: Transcript, duration: float) -> list[Word]:
        if is_hallucination(transcript, duration, self.final_decode):
            return []
        if utt.vocabulary.echoed(transcript, duration):
            return []  # the vocabulary coming back, not speech
        return utt.vocabulary.correct(collapse_loops(transcript.words))

    def _cut(self, utt: Utterance) -> list[Action]:
        """Length cap: close the committed words as a final and carry the rest of the audio on."""
        if not utt.committed:
            return self._split(utt, utt.samples, keep_words=True)
        if not utt.timed:
            # The cut needs true word times: wait for an aligned partial (asked near the cap).
            if utt.partial_ticket is None and utt.final_ticket is None:
                if utt.asked_cut():  # its aligned answer for this very audio disagreed: not again
                    return self._split(utt, utt.samples, keep_words=True)
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
            words = words[overlap(self._context.last_final, words) :]  # heard again across the last cut
        caption = final_of(utt.segment, words, utt.start, last.end, self.options.language)
        self._context.remember(words)
        self.ledger.finalised(utt.first, utt.start_sample + cut)
        return [Emit(caption), *self._carry_on(utt, cut, after_cut=True)]

    def _unstick(self, utt: Utterance) -> list[Action]:
        """Steady noise keeps the VAD open: close what was said, drop what was not, carry on."""
        return self._split(utt, utt.heard_until, keep_words=bool(utt.words))

    def _split(self, utt: Utterance, cut: int, keep_words: bool) -> list[Action]:
        """End the utterance at ``cut`` while the VAD still hears speech: a final of the audio
        before it (when there is something to keep), a new utterance from it on."""
        actions: list[Action] = []
        if keep_words:
            head = Utterance(
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
        self, utt: Utterance, cut: int, after_cut: bool, keep_segment: bool = False
    ) -> list[Action]:
        """Start the next utterance with the audio from ``cut`` on; the VAD still hears speech.

        Answers still due for the old utterance are dropped (its tickets stay with it)."""
        lead = CUT_LEAD
        rest = Utterance(
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

    def _finish(self, utt: Utterance, transcript: Transcript) -> list[Action]:
        """A detached utterance's final, unless its words leave voiced audio unheard: then that
        stretch is decoded once more first (a repair), and the final waits for it."""
        stretch = self._unheard(utt, transcript)
        if stretch is None:
            return [Emit(self._final_caption(utt, transcript))]
        utt.head = transcript
        utt.repair_from, utt.repair_to = stretch
        self.ledger.repaired(utt.start_sample + stretch[0], utt.start_sample + stretch[1])
        return [self._submit_repair(utt)]

    def _submit_repair(self, utt: Utterance) -> Submit:
        utt.final_ticket = ticket = self._ticket()
        audio = utt.audio()[utt.repair_from : utt.repair_to]
        # Without the prompt: a model that skipped speech like the text before it (repeated
        # phrases, menus) skips it again when prompted with that text.
        request = replace(self._request(utt, audio, self.final_decode), prompt="")
        self._finals[ticket] = utt
        return Submit(ticket, True, utt.segment, request, utt.start_sample + utt.repair_from, repair=True)

    def _failed_repair(self, utt: Utterance) -> list[Action]:
        """Asked once more; failing twice, the stretch keeps the words partials showed there,
        and its audio is reported as dropped."""
        if not utt.repair_retried:
            utt.repair_retried = True
            return [self._submit_repair(utt)]
        lo, hi = utt.start_sample + utt.repair_from, utt.start_sample + utt.repair_to
        self.ledger.dropped(lo, hi, "engine_failure")
        origin = lo / SAMPLE_RATE
        # In time order, each word once: hypotheses that agreed on skipping a stretch commit
        # words from after it, and a later one adds them again in place (issue 30's seed).
        shown = {
            (w.start, normalize(w.text)): w
            for w in utt.words
            if lo <= (w.start + w.end) / 2 * SAMPLE_RATE < hi
        }
        seen = tuple(
            replace(w, start=w.start - origin, end=w.end - origin)
            for w in sorted(shown.values(), key=lambda w: w.start)
        )
        return [
            Emit(self._final_caption(utt, self._mended(utt, Transcript(words=seen, language=self._detected))))
        ]

    def _unheard(self, utt: Utterance, transcript: Transcript) -> tuple[int, int] | None:
        """The longest stretch of the final's audio, between its words, with at least
        ``unheard_repair`` seconds of voice and no word: utterance samples, or None."""
        if not transcript.timed:
            return None
        samples = utt.final_samples or utt.samples
        return self._wordless(
            utt.start_sample, samples, self._guarded(utt, transcript, samples / SAMPLE_RATE)
        )

    def _wordless(self, origin: int, samples: int, words: list[Word]) -> tuple[int, int] | None:
        """A stretch of voice the words skip (pipeline/repair.py), samples from ``origin``."""
        return wordless(self.ledger, origin, samples, words, self.options.unheard_repair * SAMPLE_RATE)

    def _mended(self, utt: Utterance, repair: Transcript) -> Transcript:
        """The final's words with those of its repaired stretch in place (utterance times)."""
        assert utt.head is not None
        found = self._guarded(utt, repair, (utt.repair_to - utt.repair_from) / SAMPLE_RATE)
        return mended(utt.head, found, utt.repair_from, utt.repair_to)

    def _final_caption(self, utt: Utterance, transcript: Transcript | None) -> Caption:
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
            words = words[overlap(self._context.last_final, words) :]
        self._context.remember(words)
        end = words[-1].end if words else utt.start + duration
        return final_of(utt.segment, words, utt.start, end, transcript.language or self.options.language)

    def _partial_caption(self, utt: Utterance) -> Caption:
        words = utt.words
        return Caption(
            segment=utt.segment,
            final=False,
            text=join_words(words),
            start=words[0].start,
            end=words[-1].end,
            lang=self._detected,
            stable=join_words(utt.committed),
            words=tuple(words),
        )
