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
    assert " ".join(normalize(w.text) for w in collapse_loops(words("thank you thank you thank you"))) == "thank you"
    assert len(collapse_loops(words("very very good"))) == 3
    assert len(collapse_loops(words("no no no no"))) == 1


def test_hallucination_rules() -> None:
    opts = DecodeOptions()
    assert is_hallucination(Transcript(tuple(words("la " * 40)), "en", compression_ratio=3.0), 5.0, opts)
    assert is_hallucination(Transcript(tuple(words("so")), "en", no_speech_prob=0.9, avg_logprob=-1.5), 1.0, opts)
    assert is_hallucination(Transcript(tuple(words("you")), "en"), 0.5, opts)
    assert not is_hallucination(Transcript(tuple(words("thank you")), "en", avg_logprob=-0.1), 2.0, opts)
    assert not is_hallucination(Transcript(tuple(words("the meeting starts now")), "en"), 2.0, opts)


def test_prompt_groups_align_start_of_transcript_with_small_cuts() -> None:
    from pipeline.engines.whisper import prompt_groups

    assert prompt_groups([40, 38, 40]) == [([0, 1, 2], 38)]
    assert prompt_groups([40, 0, 39, 0]) == [([0, 2], 39), ([1, 3], 0)]
    groups = prompt_groups([45, 10, 44, 9])
    assert groups == [([0, 2], 44), ([1, 3], 9)]
    for idx, keep in groups:
        assert all(keep >= 0.75 * [45, 10, 44, 9][i] for i in idx)


def test_engine_calls_are_split_by_window_budget() -> None:
    from pipeline.engines.whisper import split_by_frames

    assert split_by_frames([1000] * 6, 6000) == [[0, 1, 2, 3, 4, 5]]
    assert split_by_frames([1000] * 7, 6000) == [[0, 1, 2, 3, 4, 5], [6]]
    assert split_by_frames([3000, 1000, 3000], 6000) == [[0, 1], [2]]
    assert split_by_frames([], 6000) == []
