"""The pure helpers of the batched Whisper engine (the model itself is tested in integration)."""

from __future__ import annotations

from pipeline.engines.whisper import (
    bucket_frames,
    max_length,
    merge_punctuation,
    prompt_groups,
    sentence_end_probability,
    split_by_frames,
)
from pipeline.types import Word


def test_prompt_groups_align_start_of_transcript_with_small_cuts() -> None:
    assert prompt_groups([40, 38, 40]) == [([0, 1, 2], 38)]
    assert prompt_groups([40, 0, 39, 0]) == [([0, 2], 39), ([1, 3], 0)]
    groups = prompt_groups([45, 10, 44, 9])
    assert groups == [([0, 2], 44), ([1, 3], 9)]
    for idx, keep in groups:
        assert all(keep >= 0.75 * [45, 10, 44, 9][i] for i in idx)


def test_engine_calls_are_split_by_window_budget() -> None:
    assert split_by_frames([1000] * 6, 6000) == [[0, 1, 2, 3, 4, 5]]
    assert split_by_frames([1000] * 7, 6000) == [[0, 1, 2, 3, 4, 5], [6]]
    assert split_by_frames([3000, 1000, 3000], 6000) == [[0, 1], [2]]
    assert split_by_frames([], 6000) == []


def test_windows_come_in_a_few_sizes_with_room_for_the_tail() -> None:
    assert bucket_frames(16_000) == 1000
    assert bucket_frames(int(9.8 * 16_000)) == 1500
    assert bucket_frames(40 * 16_000) == 3000


def test_punctuation_pieces_join_their_word() -> None:
    words = merge_punctuation([Word(" Mr", 0.0, 0.2), Word(".", 0.2, 0.3), Word(" John", 0.3, 0.6)])
    assert [(w.text, w.start, w.end) for w in words] == [(" Mr.", 0.0, 0.3), (" John", 0.3, 0.6)]


def test_partials_may_ask_for_a_smaller_window() -> None:
    assert bucket_frames(3 * 16_000, min_frames=800) == 800
    assert bucket_frames(3 * 16_000) == 1000
    assert bucket_frames(8 * 16_000, min_frames=800) == 1000
    assert bucket_frames(2 * 16_000, min_frames=700) == 700


def test_generation_stops_where_speech_would_and_the_sentence_end_is_read_off_the_last_mark() -> None:
    # About 8 tokens a second of audio, plus the prompt: room for speech, not for a loop.
    assert max_length(3, 16_000) < max_length(3, 5 * 16_000) < 448
    assert max_length(220, 30 * 16_000) == 448
    assert sentence_end_probability([" he", " was", "."], [0.9, 0.9, 0.8]) == 0.8
    assert sentence_end_probability([" he", " was"], [0.9, 0.9]) == 0.0
    assert sentence_end_probability([" so", "..."], [0.9, 0.9]) == 0.0
    assert sentence_end_probability([" go", "?", '"'], [0.9, 0.6, 0.9]) == 0.6
