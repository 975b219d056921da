"""The streaming policy with a rule-of-thumb VAD and scripted hypotheses: no model, no sleeping.

Time is the stream's sample count, so feeding audio is the fake clock: ``feed(silence(0.3))``
moves the policy 0.3 s on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.actions import Emit, SpeechChange, Submit
from pipeline.backpressure import partial_interval
from pipeline.policy import CaptionPolicy
from pipeline.policy_options import FALLBACK_DECODE, PolicyOptions
from pipeline.types import SAMPLE_RATE, Caption, DecodeOptions, Transcript, Word
from pipeline.vad import VadOptions, VadSegmenter

# The policy as it was before issue 12: every partial timed and greedy, no speculation, no
# waiting for a sentence, no staleness, partials on all audio. The first tests pin down what
# both share; the later ones what issue 12 added.
LEGACY = dict(
    speculate_ms=0, sentence_wait=0.0, stale_after=0.0, max_partial_interval=0.0, partials_on_voice=False
)


def speech(seconds: float) -> np.ndarray:
    return np.full(int(seconds * SAMPLE_RATE), 1000, dtype=np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def hyp(*words: str, step: float = 0.3, start: float = 0.3, **scores: Any) -> Transcript:
    """A timed hypothesis; a closing full stop is a sure one unless ``sentence_end`` says otherwise."""
    ends = bool(words) and words[-1].endswith((".", "?", "!"))
    scores.setdefault("sentence_end", 0.95 if ends else 0.0)
    return Transcript(
        words=tuple(Word(" " + w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words)),
        language="en",
        **scores,
    )


def make(**options: Any) -> CaptionPolicy:
    """A policy on a VAD that calls any non-zero frame speech, with 30 ms frames; partials every
    half second of voice unless said otherwise."""
    vad = VadSegmenter(
        VadOptions(engine="webrtc", end_silence_ms=500, pre_roll_ms=300), voiced=lambda f: bool(f.any())
    )
    return CaptionPolicy(PolicyOptions(**{"partial_interval": 0.5, **options}), vad)


def legacy(**options: Any) -> CaptionPolicy:
    vad = VadSegmenter(
        VadOptions(engine="webrtc", end_silence_ms=500, pre_roll_ms=300), voiced=lambda f: bool(f.any())
    )
    timed = DecodeOptions()
    return CaptionPolicy(
        PolicyOptions(**{**LEGACY, "partial_interval": 0.5, **options}), vad, decode=timed, final_decode=timed
    )


def submits(actions: list) -> list[Submit]:
    return [a for a in actions if isinstance(a, Submit)]


def captions(actions: list) -> list[Caption]:
    return [a.caption for a in actions if isinstance(a, Emit)]


def test_speech_opens_an_utterance_and_asks_for_a_partial() -> None:
    p = make()
    actions = p.feed(silence(1.0)) + p.feed(speech(0.6))
    changes = [a for a in actions if isinstance(a, SpeechChange)]
    # Speech heard at 1.0 s opens the utterance with 0.3 s of pre-roll before the frames that opened it.
    assert changes == [SpeechChange(True, pytest.approx(1.0 - 0.3 + 0.06, abs=0.04))]
    (sub,) = submits(actions)
    assert not sub.final and sub.segment == 0
    assert len(sub.request.audio) >= 0.4 * SAMPLE_RATE


def test_agreed_words_are_committed_and_the_rest_stays_provisional() -> None:
    p = make()
    (first,) = submits(p.feed(speech(0.6)))
    (c1,) = captions(p.on_result(first.ticket, hyp("hello", "world")))
    assert c1.text == "hello world" and c1.stable == "" and not c1.final

    (second,) = submits(p.feed(speech(0.5)))
    (c2,) = captions(p.on_result(second.ticket, hyp("hello", "world", "again")))
    assert c2.stable == "hello world"
    assert c2.text == "hello world again"


def test_a_new_hypothesis_replaces_the_provisional_words_only() -> None:
    p = make()
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("the", "cat"))
    (s2,) = submits(p.feed(speech(0.5)))
    p.on_result(s2.ticket, hyp("the", "cat", "sad"))
    (s3,) = submits(p.feed(speech(0.5)))
    (c3,) = captions(p.on_result(s3.ticket, hyp("the", "cat", "sat", "down")))
    assert c3.stable == "the cat"
    assert c3.text == "the cat sat down"


def test_no_second_partial_while_one_is_in_flight() -> None:
    p = make(partial_interval=0.5)
    assert len(submits(p.feed(speech(0.6)))) == 1
    assert submits(p.feed(speech(2.0))) == []


def test_silence_finalises_the_whole_utterance() -> None:
    p = legacy()
    (s1,) = submits(p.feed(speech(0.6)))
    actions = p.feed(silence(0.6))
    (final,) = submits(actions)
    assert final.final and final.segment == 0
    assert SpeechChange(False, pytest.approx(0.6, abs=0.03)) in actions
    # The partial that was in flight when the utterance ended no longer matters.
    assert p.on_result(s1.ticket, hyp("hel")) == []
    (caption,) = captions(p.on_result(final.ticket, hyp("hello", "there.")))
    assert caption.final and caption.text == "hello there."
    assert caption.start == pytest.approx(0.3) and caption.end == pytest.approx(0.9)


def test_final_times_are_stream_times() -> None:
    p = make()
    p.feed(silence(2.0))
    p.feed(speech(1.0))
    (final,) = submits(p.feed(silence(0.6)))
    (caption,) = captions(p.on_result(final.ticket, hyp("hi", start=0.35)))
    # VAD opens the utterance 90 ms into speech at 2.0 s, with 0.3 s of pre-roll before that.
    assert caption.start == pytest.approx(2.0 + 0.09 - 0.3 + 0.35, abs=0.03)


def test_the_previous_finals_become_the_prompt_bounded() -> None:
    p = legacy(context_chars=20)
    p.feed(speech(0.6))
    (f1,) = submits(p.feed(silence(0.6)))
    p.on_result(f1.ticket, hyp("one", "two", "three", "four", "five", "six", "seven"))
    (s2,) = submits(p.feed(speech(0.6)))
    assert s2.request.prompt.endswith("six seven")
    assert len(s2.request.prompt) <= 20
    assert not s2.request.prompt.startswith(" ")


def test_doubtful_words_stay_out_of_the_prompt() -> None:
    p = legacy()
    p.feed(speech(0.6))
    (f1,) = submits(p.feed(silence(0.6)))
    p.on_result(
        f1.ticket,
        Transcript(words=(*hyp("he", "was").words, Word(" old-sposed", 1.0, 1.3, 0.2)), language="en"),
    )
    (s2,) = submits(p.feed(speech(0.6)))
    assert s2.request.prompt == "he was"


def test_length_cap_cuts_after_a_committed_word_and_loses_nothing() -> None:
    p = legacy(max_utterance=3.0)
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("alpha", "beta"))
    (s2,) = submits(p.feed(speech(0.5)))
    p.on_result(s2.ticket, hyp("alpha", "beta", "gamma"))  # commits alpha beta (ends 0.9 s)
    actions = p.feed(speech(2.0))
    finals = [c for c in captions(actions) if c.final]
    assert [c.text for c in finals] == ["alpha beta"]
    # The rest of the audio carries on as a new segment, cut between words.
    (s3,) = [s for s in submits(actions) if s.segment == 1]
    assert s3.segment == 1
    # The rest, after 0.2 s of silence of its own: Whisper skips a start that comes abruptly.
    assert len(s3.request.audio) == pytest.approx((3.1 - 1.05 + 0.2) * SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)
    assert not s3.request.audio[: int(0.2 * SAMPLE_RATE)].any()
    assert "alpha beta" in s3.request.prompt
    # If Whisper hears the boundary word again at the start of the next piece, it is dropped.
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (caption,) = captions(p.on_result(f.ticket, hyp("beta", "gamma", "delta")))
    assert caption.text == "gamma delta"


def test_length_cap_without_agreement_finalises_everything() -> None:
    p = legacy(max_utterance=2.0)
    (s1,) = submits(p.feed(speech(0.6)))
    actions = p.feed(speech(1.5))
    assert [s.final for s in submits(actions)] == [True]


def test_text_invented_on_silence_is_dropped() -> None:
    p = make()
    p.feed(speech(0.6))
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (caption,) = captions(p.on_result(f.ticket, hyp("Thank", "you.", no_speech_prob=0.7, avg_logprob=-1.2)))
    assert caption.final and caption.text == ""


def test_low_confidence_noise_is_dropped_but_clear_speech_is_kept() -> None:
    p = make()
    p.feed(speech(0.6))
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (caption,) = captions(p.on_result(f.ticket, hyp("thank", "you", avg_logprob=-0.1)))
    assert caption.text == "thank you"


def test_repeated_loops_are_collapsed() -> None:
    p = make()
    p.feed(speech(0.6))
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (caption,) = captions(p.on_result(f.ticket, hyp("we", "go", "go", "go", "go", "home")))
    assert caption.text == "we go home"


def test_flush_finalises_an_unfinished_utterance() -> None:
    p = make()
    p.feed(speech(0.8))
    actions = p.flush()
    (f,) = submits(actions)
    assert f.final
    assert SpeechChange(False, pytest.approx(p.stream_time)) in actions
    assert p.flush() == []


def test_a_failed_final_is_asked_again_then_closes_with_the_words_shown_and_is_reported() -> None:
    p = make()
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("keep", "this"))
    (s2,) = submits(p.feed(speech(0.5)))
    p.on_result(s2.ticket, hyp("keep", "this", "too"))
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (again,) = submits(p.on_failure(f.ticket))  # once more: a failure may be passing
    assert again.final and np.array_equal(again.request.audio[: len(f.request.audio)], f.request.audio)
    (caption,) = captions(p.on_failure(again.ticket))
    assert caption.final and caption.text == "keep this too"  # every word the speaker saw
    (gap,) = p.ledger.take_gaps()
    assert gap.reason == "engine_failure" and gap.voiced == pytest.approx(1.1, abs=0.1)
    assert p.ledger.unfinalised_samples == 0


def test_backpressure_slows_partials() -> None:
    opts = PolicyOptions(partial_interval=0.5, backpressure_delay=1.0)
    assert partial_interval(opts, 0.2) == 0.5
    assert partial_interval(opts, 2.0) == pytest.approx(1.5)
    p = make(partial_interval=0.5, backpressure_delay=1.0, max_partial_interval=0.0)
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("a"))
    p.queue_delay = 3.0  # interval becomes 2.0 s of new audio
    assert submits(p.feed(speech(1.0))) == []
    assert len(submits(p.feed(speech(1.1)))) == 1


# -- issue 12: cheap partials, finals decoded ahead, sentences, staleness ---------------------


def test_partials_are_greedy_and_untimed_finals_get_a_beam_and_times() -> None:
    p = make()
    (partial,) = submits(p.feed(speech(0.6)))
    assert partial.request.options.beam_size == 1
    assert not partial.request.options.word_timestamps
    assert partial.request.options.min_window_frames < 1000
    (final,) = submits(p.feed(silence(0.6)))
    assert final.final
    assert final.request.options.beam_size == 5 and final.request.options.word_timestamps


def test_the_final_is_decoded_during_the_pause_and_reused_when_the_vad_ends() -> None:
    p = make(speculate_ms=200)
    p.feed(speech(0.6))
    (early,) = submits(p.feed(silence(0.25)))
    assert early.final  # decoded ahead, at 200 ms of pause
    (caption,) = captions(p.on_result(early.ticket, hyp("hello", "there.")))
    assert not caption.final  # the VAD has not ended the utterance yet: shown as a partial
    actions = p.feed(silence(0.35))
    assert submits(actions) == []  # no voice since: no second decode
    (final,) = captions(actions)
    assert final.final and final.text == "hello there." and final.segment == 0


def test_voice_after_an_early_final_makes_it_a_partial_and_asks_again() -> None:
    p = make(speculate_ms=200)
    p.feed(speech(0.6))
    (early,) = submits(p.feed(silence(0.25)))
    p.feed(speech(0.6))
    (c,) = captions(p.on_result(early.ticket, hyp("hello", "there")))
    assert not c.final and c.text == "hello there"
    finals = [s for s in submits(p.feed(silence(0.6))) if s.final]
    assert len(finals) == 1 and finals[0].ticket != early.ticket
    # The newer final covers both stretches of voice.
    assert len(finals[0].request.audio) > len(early.request.audio) + 0.5 * SAMPLE_RATE


def test_a_final_that_ends_mid_sentence_waits_and_the_voice_continues_it() -> None:
    p = make(speculate_ms=200, sentence_wait=0.7)
    p.feed(speech(1.0))
    (early,) = submits(p.feed(silence(0.25)))
    p.feed(silence(0.3))  # the VAD ends the utterance
    (held,) = captions(
        p.on_result(early.ticket, hyp("and", "so", "my", "fellow", "americans.", sentence_end=0.4))
    )
    assert not held.final  # unsure of that full stop: shown, not closed
    actions = p.feed(speech(0.6))  # 0.45 s later the speaker goes on
    assert SpeechChange(True, pytest.approx(p.stream_time - 0.6, abs=0.1)) in actions
    final = [s for s in submits(p.feed(silence(0.6))) if s.final][-1]
    assert final.segment == held.segment  # one utterance, not a fragment
    (caption,) = captions(
        p.on_result(final.ticket, hyp("and", "so", "my", "fellow", "americans,", "ask", "not."))
    )
    assert caption.final and caption.text == "and so my fellow americans, ask not."


def test_a_held_final_is_released_when_the_wait_is_over() -> None:
    p = make(speculate_ms=200, sentence_wait=0.7)
    p.feed(speech(1.0))
    (early,) = submits(p.feed(silence(0.25)))
    p.feed(silence(0.3))
    p.on_result(early.ticket, hyp("he", "might", "even", "have"))
    assert [c for c in captions(p.feed(silence(0.5))) if c.final] == []
    (final,) = captions(p.feed(silence(0.3)))
    assert final.final and final.text == "he might even have"
    # New voice after the wait is a new segment.
    p.feed(speech(0.6))
    assert [s.segment for s in submits(p.feed(silence(0.6)))] == [1]


def test_a_sure_sentence_end_is_not_held_and_a_likely_one_waits_half() -> None:
    p = make(speculate_ms=0, sentence_wait=0.7)
    p.feed(speech(1.0))
    (final,) = submits(p.feed(silence(0.6)))
    (caption,) = captions(p.on_result(final.ticket, hyp("that", "is", "all.", sentence_end=0.9)))
    assert caption.final
    p.feed(speech(1.0))
    (final,) = submits(p.feed(silence(0.6)))
    (held,) = captions(p.on_result(final.ticket, hyp("that", "is", "it.", sentence_end=0.8)))
    assert not held.final
    assert captions(p.feed(silence(0.2))) == []
    (caption,) = captions(p.feed(silence(0.2)))  # 0.5 s after the VAD's end: past half the wait
    assert caption.final and caption.text == "that is it."


def test_steady_noise_with_words_is_closed_when_the_hypothesis_stops_changing() -> None:
    p = make(stale_after=2.0, max_partial_interval=0.0, speculate_ms=0)
    (s,) = submits(p.feed(speech(0.6)))
    p.on_result(s.ticket, hyp("hello", "world"))
    closed: list[Submit] = []
    for _ in range(10):  # the VAD hears "speech" all along; the words never change
        actions = p.feed(speech(0.5))
        closed += [a for a in submits(actions) if a.final]
        for sub in submits(actions):
            if not sub.final:
                closed += [a for a in submits(p.on_result(sub.ticket, hyp("hello", "world"))) if a.final]
        if closed:
            break
    (final,) = closed
    assert final.segment == 0
    # Seconds of "voice" without a word after "world": that stretch is decoded once more alone.
    (repair,) = submits(p.on_result(final.ticket, hyp("hello", "world.")))
    assert repair.repair and repair.final and repair.request.prompt == ""
    assert len(repair.request.audio) < len(final.request.audio) - 0.5 * SAMPLE_RATE
    (caption,) = captions(p.on_result(repair.ticket, hyp()))
    assert caption.final and caption.text == "hello world."
    # What follows is a new utterance, though the VAD never heard the speech end.
    (nxt,) = submits(p.feed(speech(0.6)))
    assert nxt.segment == 1 and not nxt.final


def answer_all(p: CaptionPolicy, actions: list, transcript: Transcript) -> list[Submit]:
    """Answer every request, and those the answers lead to, with ``transcript``; all requests."""
    asked = []
    todo = submits(actions)
    while todo:
        sub = todo.pop(0)
        asked.append(sub)
        todo += submits(p.on_result(sub.ticket, transcript))
    return asked


def test_noise_that_never_makes_words_is_dropped_without_a_final() -> None:
    p = make(stale_after=2.0, max_partial_interval=0.0, speculate_ms=0)
    asked: list[Submit] = []
    for _ in range(16):
        asked += answer_all(p, p.feed(speech(0.5)), hyp())
    assert [s for s in asked if s.final] == []
    assert len(asked) >= 4
    # The audio kept for the next request never grows past the staleness bound.
    assert max(len(s.request.audio) for s in asked) <= (2.0 + 1.2) * SAMPLE_RATE


def test_partials_back_off_while_nothing_new_is_heard() -> None:
    p = make(partial_interval=0.5, max_partial_interval=2.0, stale_after=0.0, speculate_ms=0)
    times = []
    t = 0.0
    for _ in range(80):
        t += 0.1
        for sub in submits(p.feed(speech(0.1))):
            times.append(t)
            p.on_result(sub.ticket, hyp("same", "words"))
    gaps = np.diff(times)
    assert gaps[0] == pytest.approx(0.5, abs=0.11)
    assert gaps[-1] == pytest.approx(2.0, abs=0.11)


def test_partials_count_voice_not_pauses() -> None:
    p = make(partial_interval=0.5, speculate_ms=0, max_partial_interval=0.0)
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("a"))
    # 0.45 s of pause (the VAD's end is 0.5 s) brings no new partial; 0.5 s of voice does.
    assert submits(p.feed(silence(0.45))) == []
    assert len(submits(p.feed(speech(0.55)))) == 1


def test_a_final_that_loops_is_decoded_again_by_sampling() -> None:
    p = make(speculate_ms=0, sentence_wait=0.0)
    p.feed(speech(1.0))
    (final,) = submits(p.feed(silence(0.6)))
    (retry,) = submits(p.on_result(final.ticket, hyp("la", "la", "la.", compression_ratio=3.0)))
    assert retry.final and retry.request.options == FALLBACK_DECODE
    (caption,) = captions(p.on_result(retry.ticket, hyp("la", "di", "da.")))
    assert caption.final and caption.text == "la di da."
    # A second bad answer is not retried: the guard drops it and committed words stand in.
    p.feed(speech(1.0))
    (f2,) = submits(p.feed(silence(0.6)))
    (r2,) = submits(p.on_result(f2.ticket, hyp("x", "x", compression_ratio=3.0)))
    (c2,) = captions(p.on_result(r2.ticket, hyp("y", "y", compression_ratio=3.0)))
    assert c2.final and c2.text == ""


def test_untimed_partials_still_cut_between_words_at_the_length_cap() -> None:
    p = make(max_utterance=3.0, speculate_ms=0, stale_after=0.0, max_partial_interval=0.0)
    timed_flags = []
    cut_caption = None
    words = [f"w{i}" for i in range(12)]
    for i in range(12):
        actions = p.feed(speech(0.3))
        cut_caption = cut_caption or next((c for c in captions(actions) if c.final), None)
        for sub in submits(actions):
            timed_flags.append(sub.request.options.word_timestamps)
            n = 2 + i // 2
            h = hyp(*words[:n], step=0.25)
            if not sub.request.options.word_timestamps:
                h = Transcript(words=h.words, language="en", timed=False)
            cut_caption = cut_caption or next(
                (c for c in captions(p.on_result(sub.ticket, h)) if c.final), None
            )
    assert timed_flags[0] is False and timed_flags[-1] is True
    assert cut_caption is not None and cut_caption.text.startswith("w0 w1")


def test_finals_go_greedy_when_the_device_falls_behind() -> None:
    p = make(speculate_ms=0, backpressure_delay=1.0)
    p.feed(speech(1.0))
    (final,) = submits(p.feed(silence(0.6)))
    assert final.request.options.beam_size == 5
    p.on_result(final.ticket, hyp("one."))
    p.queue_delay = 1.5
    p.feed(speech(1.0))
    (late,) = submits(p.feed(silence(0.6)))
    assert late.final and late.request.options.beam_size == 1


def test_until_a_partial_has_words_the_next_comes_after_half_the_interval() -> None:
    p = make(partial_interval=1.0, speculate_ms=0, max_partial_interval=0.0)
    (first,) = submits(p.feed(speech(0.6)))
    p.on_result(first.ticket, hyp())  # too little speech yet: no words
    assert len(submits(p.feed(speech(0.55)))) == 1
    (s2,) = [s for s in submits(p.feed(speech(0.1)))] or [None]
    assert s2 is None
