"""The pure decisions of issue 33: how a file is cut into chunks and segments, API keys and
per-key limits on a fake clock, Deepgram's UtteranceEnd, the Realtime deltas after a final that
does not extend them, and the webhook's signature."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clock import FakeClock
from pipeline.filejob import ends_sentence, plan_chunks, segments_of
from pipeline.types import Transcript, Word
from server.api.deepgram import UtteranceEnds
from server.api.keys import ApiKeys, ApiRefused, Caller, KeyLimitOptions, KeyLimits
from server.api.realtime import after
from server.rooms.webhook import sign, verify
from server.settings import ConfigError, Settings


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2_000_000), st.integers(1, 900_000)), max_size=40),
    st.integers(16_000, 480_000),
    st.integers(0, 64_000),
)
def test_chunks_cover_the_speech_in_order_within_their_length(
    raw: list[tuple[int, int]], max_samples: int, max_gap: int
) -> None:
    spans, at = [], 0
    for gap, length in raw:  # spans as the VAD gives them: in order, apart
        start = at + gap
        spans.append((start, start + length))
        at = start + length
    chunks = plan_chunks(spans, max_samples, max_gap)
    assert all(b - a <= max_samples for a, b in chunks)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(chunks, chunks[1:], strict=False))
    covered = sum(b - a for a, b in chunks)
    speech = sum(b - a for a, b in spans)
    assert covered >= speech  # every voiced sample is in a chunk
    for first, end in spans:  # ... and in chunks that lie within the span's neighbourhood
        inside = sum(min(b, end) - max(a, first) for a, b in chunks if a < end and b > first)
        assert inside == end - first


def test_segments_end_at_sentences_not_at_abbreviations_nor_initials() -> None:
    assert ends_sentence("them.") and ends_sentence("Really?") and ends_sentence('"Go!"')
    assert not ends_sentence("Mr.") and not ends_sentence("J.") and not ends_sentence("so")
    words = [
        Word(" And", 0.0, 0.3),
        Word(" Mr.", 0.3, 0.5),
        Word(" Dashwood", 0.5, 1.0),
        Word(" left.", 1.0, 1.4),
    ]
    words += [Word(" Then", 3.0, 3.2), Word(" he", 3.2, 3.4)]  # a pause over a second: a new segment
    segments = segments_of(words, 7, "en", Transcript(words=tuple(words), language="en"), 0.0)
    assert [(s.id, s.text) for s in segments] == [(7, "And Mr. Dashwood left."), (8, "Then he")]
    assert segments[1].start == 3.0 and segments[1].end == 3.4


def test_api_keys_open_only_on_loopback_and_compare_every_key(tmp_path) -> None:
    assert ApiKeys.from_settings(Settings(host="127.0.0.1")).open
    assert not ApiKeys.from_settings(Settings(host="0.0.0.0")).open  # noqa: S104 - the case tested
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nsk-team-a-0123456789abcdef team-a\nsk-team-b-0123456789abcdef\n")
    keys = ApiKeys.from_settings(Settings(api_key="sk-flag-0123456789abcdef", api_keys_file=str(keys_file)))
    assert not keys.open
    assert keys.identify("sk-team-a-0123456789abcdef") == "team-a"
    assert keys.identify("sk-team-b-0123456789abcdef") == "line3"
    assert keys.identify("sk-flag-0123456789abcdef") == "key1"
    assert keys.identify("sk-team-a-0123456789abcdeX") is None and keys.identify(None) is None
    with pytest.raises(ConfigError):
        ApiKeys.from_settings(Settings(api_key="short"))
    with pytest.raises(ConfigError):
        ApiKeys.from_settings(Settings(api_keys_file=str(tmp_path / "missing")))


def test_per_key_rate_and_concurrency_limits() -> None:
    clock = FakeClock()
    limits = KeyLimits(KeyLimitOptions(requests_per_minute=60, jobs=1, sockets=2), clock)
    ana, ben = Caller("key:ana"), Caller("key:ben")
    for _ in range(15):  # a burst of a quarter of a minute's worth
        limits.request(ana)
    with pytest.raises(ApiRefused) as refused:
        limits.request(ana)
    assert refused.value.status == 429 and refused.value.retry_after == 1
    limits.request(ben)  # another key has its own bucket
    clock.advance(1.0)
    limits.request(ana)  # one a second comes back
    limits.hold(ana, "job")
    with pytest.raises(ApiRefused):
        limits.hold(ana, "job")
    limits.hold(ben, "job")
    limits.release(ana, "job")
    limits.hold(ana, "job")
    limits.hold(ana, "socket")
    limits.hold(ana, "socket")
    with pytest.raises(ApiRefused):
        limits.hold(ana, "socket")
    assert limits.holding(ana, "socket") == 2


def test_utterance_end_comes_once_after_the_gap_and_never_mid_speech() -> None:
    ends = UtteranceEnds(gap=1.0)
    assert ends.due(5.0) is None  # nothing said yet
    ends.words(2.0, final=False)
    assert ends.due(9.0) is None  # a partial: still speaking
    ends.words(2.4, final=True)
    assert ends.due(3.0) is None  # not yet a second after the last word
    assert ends.due(3.5) == 2.4
    assert ends.due(10.0) is None  # once


def test_a_final_that_adds_a_word_before_the_deltas_sends_only_what_follows_them() -> None:
    sent = "Mr. John Dashwood had then"
    assert after(sent, "And Mr. John Dashwood had then leisure.") == " leisure."
    assert after("", "Hello there.") == "Hello there."
    assert after(sent, "Something else entirely.") == ""


def test_webhook_signatures_verify_only_for_the_same_secret_body_and_a_recent_time() -> None:
    body = b'{"text":"hi"}'
    header = sign("secret-0123456789abcdef", 1_800_000_000, body)
    assert header.startswith("t=1800000000,v1=")
    assert verify("secret-0123456789abcdef", header, body, now=1_800_000_010)
    assert not verify("secret-0123456789abcdeX", header, body, now=1_800_000_010)
    assert not verify("secret-0123456789abcdef", header, body + b" ", now=1_800_000_010)
    assert not verify("secret-0123456789abcdef", header, body, now=1_800_001_000)  # a replay
