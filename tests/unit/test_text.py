from __future__ import annotations

from pipeline.text import collapse_loops, common_prefix, is_hallucination, normalize, overlap
from pipeline.types import DecodeOptions, Transcript, Word


def words(text: str) -> list[Word]:
    return [Word(" " + w, i, i + 1) for i, w in enumerate(text.split())]


def test_normalize_ignores_case_and_punctuation() -> None:
    assert normalize(" Hello,") == "hello"
    assert normalize("don't.") == "don't"


def test_common_prefix_and_overlap() -> None:
    assert common_prefix(words("the cat sat"), words("The cat, stood")) == 2
    assert overlap(words("and then he said"), words("he said hello")) == 2
    assert overlap(words("a b"), words("c d")) == 0


def test_loops_keep_one_copy_but_doubles_stay() -> None:
    assert (
        " ".join(normalize(w.text) for w in collapse_loops(words("thank you thank you thank you")))
        == "thank you"
    )
    assert len(collapse_loops(words("very very good"))) == 3
    assert len(collapse_loops(words("no no no no"))) == 1


def test_a_sentence_doubled_in_one_decode_is_kept_once_but_short_repeats_stay() -> None:
    doubled = "welcome to the weekly team meeting. welcome to the weekly team meeting. Today we"
    kept = "".join(w.text for w in collapse_loops(words(doubled))).strip()
    assert kept == "welcome to the weekly team meeting. Today we"
    # Said twice by a speaker, short phrases are speech, not a loop.
    assert len(collapse_loops(words("I said no, I said no to them"))) == 8
    assert len(collapse_loops(words("the cat and the dog"))) == 5


def test_a_doubled_sentence_is_kept_once_however_its_punctuation_was_split() -> None:
    # Issue 16: the two copies differ only in how Whisper spaced "www." and ".org".
    pieces = [" For", " more", " information", " visit", " www.", " asterisk", " .org."]
    again = [" For", " more", " information", " visit", " www", " .", " asterisk", " .org", "."]
    doubled = [Word(t, i, i + 1) for i, t in enumerate(pieces + again)]
    kept = "".join(w.text for w in collapse_loops(doubled)).strip()
    assert kept == "For more information visit www. asterisk .org."
    # In the middle of a text the copy's own punctuation goes with it, the rest stays.
    middle = [Word(t, i, i + 1) for i, t in enumerate([*pieces, *again, " Goodbye", "."])]
    assert "".join(w.text for w in collapse_loops(middle)).strip() == (
        "For more information visit www. asterisk .org. Goodbye."
    )


def test_hallucination_rules() -> None:
    opts = DecodeOptions()
    assert is_hallucination(Transcript(tuple(words("la " * 40)), "en", compression_ratio=3.0), 5.0, opts)
    assert is_hallucination(
        Transcript(tuple(words("so")), "en", no_speech_prob=0.9, avg_logprob=-1.5), 1.0, opts
    )
    assert is_hallucination(Transcript(tuple(words("you")), "en"), 0.5, opts)
    assert not is_hallucination(Transcript(tuple(words("thank you")), "en", avg_logprob=-0.1), 2.0, opts)
    assert not is_hallucination(Transcript(tuple(words("the meeting starts now")), "en"), 2.0, opts)
