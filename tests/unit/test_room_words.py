"""What a room's owner and its publishers may send: words, replacements, speaker names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.rooms.speakers import InvalidSpeaker, check_speaker, public_id
from server.rooms.words import RoomWords, WordsError, check_replacements, check_vocabulary


def test_replacements_are_whole_words_in_any_case_longest_first() -> None:
    words = RoomWords(
        replacements=(("elastic search", "Elasticsearch"), ("elastic", "stretchy"), ("damn", ""))
    )
    assert words.apply("Elastic Search and elastic bands, damn.") == "Elasticsearch and stretchy bands, ."
    assert words.apply("elasticity") == "elasticity"
    assert RoomWords().apply("unchanged") == "unchanged"


def test_words_are_bounded_and_checked() -> None:
    assert check_vocabulary(["  Niamh   Okonkwo ", "Niamh Okonkwo", "Kafka"]) == ("Niamh Okonkwo", "Kafka")
    for bad in ("Kafka", ["x" * 51], [""], ["a\x00b"], ["t"] * 101, [3]):
        with pytest.raises(WordsError):
            check_vocabulary(bad)
    with pytest.raises(WordsError):
        check_replacements(["a", "b"])
    with pytest.raises(WordsError):
        check_replacements({"": "x"})
    assert RoomWords.from_body({"replacements": {"a": "b"}}, RoomWords(("Kafka",))) == RoomWords(
        ("Kafka",), (("a", "b"),)
    )
    assert RoomWords.from_record({"vocabulary": "not a list"}) == RoomWords()  # a bad record opens nothing


@given(st.text(max_size=80))
def test_text_without_a_replaced_phrase_comes_through_untouched(text: str) -> None:
    words = RoomWords(replacements=(("secret plan", "plan"), ("(", "[")))
    if "secret" not in text.casefold() and "(" not in text:
        assert words.apply(text) == text


def test_speaker_names() -> None:
    assert check_speaker("  Mary-Jane   O'Neil Jr. ") == "Mary-Jane O'Neil Jr."
    assert check_speaker("José (host)") == "José (host)"
    for bad in ("", "   ", "<b>Ana</b>", "x" * 33, "Ana; DROP", "a&b"):
        with pytest.raises(InvalidSpeaker):
            check_speaker(bad)
    assert public_id("abc") == public_id("abc") != public_id("abd") and len(public_id("abc")) == 12
