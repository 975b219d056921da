"""The streaming policy with a rule-of-thumb VAD and scripted hypotheses: no model, no sleeping."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.policy import CaptionPolicy, Emit, PolicyOptions, SpeechChange, Submit, partial_interval
from pipeline.types import SAMPLE_RATE, Caption, Transcript, Word
from pipeline.vad import VadOptions, VadSegmenter


def speech(seconds: float) -> np.ndarray:
    return np.full(int(seconds * SAMPLE_RATE), 1000, dtype=np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def hyp(*words: str, step: float = 0.3, start: float = 0.3, **scores: float) -> Transcript:
    return Transcript(
        words=tuple(Word(" " + w, start + i * step, start + (i + 1) * step) for i, w in enumerate(words)),
        language="en",
        **scores,
    )


def make(**options: float) -> CaptionPolicy:
    vad = VadSegmenter(VadOptions(end_silence_ms=500, pre_roll_ms=300), voiced=lambda f: bool(f.any()))
    return CaptionPolicy(PolicyOptions(**options), vad)


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
    p = make()
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
    p = make(context_chars=20)
    p.feed(speech(0.6))
    (f1,) = submits(p.feed(silence(0.6)))
    p.on_result(f1.ticket, hyp("one", "two", "three", "four", "five", "six", "seven"))
    (s2,) = submits(p.feed(speech(0.6)))
    assert s2.request.prompt.endswith("six seven")
    assert len(s2.request.prompt) <= 20
    assert not s2.request.prompt.startswith(" ")


def test_doubtful_words_stay_out_of_the_prompt() -> None:
    p = make()
    p.feed(speech(0.6))
    (f1,) = submits(p.feed(silence(0.6)))
    p.on_result(
        f1.ticket,
        Transcript(words=(*hyp("he", "was").words, Word(" old-sposed", 1.0, 1.3, 0.2)), language="en"),
    )
    (s2,) = submits(p.feed(speech(0.6)))
    assert s2.request.prompt == "he was"


def test_length_cap_cuts_after_a_committed_word_and_loses_nothing() -> None:
    p = make(max_utterance=3.0)
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
    assert len(s3.request.audio) == pytest.approx((3.1 - 1.05) * SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)
    assert "alpha beta" in s3.request.prompt
    # If Whisper hears the boundary word again at the start of the next piece, it is dropped.
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (caption,) = captions(p.on_result(f.ticket, hyp("beta", "gamma", "delta")))
    assert caption.text == "gamma delta"


def test_length_cap_without_agreement_finalises_everything() -> None:
    p = make(max_utterance=2.0)
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


def test_engine_failure_still_closes_the_segment_with_committed_words() -> None:
    p = make()
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("keep", "this"))
    (s2,) = submits(p.feed(speech(0.5)))
    p.on_result(s2.ticket, hyp("keep", "this", "too"))
    (f,) = [s for s in submits(p.feed(silence(0.6))) if s.final]
    (caption,) = captions(p.on_failure(f.ticket))
    assert caption.final and caption.text == "keep this"


def test_backpressure_slows_partials() -> None:
    opts = PolicyOptions(partial_interval=0.5, backpressure_delay=1.0)
    assert partial_interval(opts, 0.2) == 0.5
    assert partial_interval(opts, 2.0) == pytest.approx(1.5)
    p = make(partial_interval=0.5, backpressure_delay=1.0)
    (s1,) = submits(p.feed(speech(0.6)))
    p.on_result(s1.ticket, hyp("a"))
    p.queue_delay = 3.0  # interval becomes 2.0 s of new audio
    assert submits(p.feed(speech(1.0))) == []
    assert len(submits(p.feed(speech(1.1)))) == 1
