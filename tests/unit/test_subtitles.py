"""Subtitle cues within the guidelines: lines, lines a cue, time on screen; cut at sentences and
phrases, never inside a word; every word kept, in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.rooms.subtitles import CueRules, cues_of, split_final, wrap

LONG = (
    "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his "
    "power to do for them. He was not an ill-disposed young man, unless to be rather cold-hearted "
    "and rather selfish is to be ill-disposed; but he was, in general, well respected."
)

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=14).map(
    lambda w: w + ("" if len(w) % 5 else ".") + ("," if len(w) % 7 == 3 else "")
)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    text=st.lists(words, min_size=1, max_size=80).map(" ".join),
    start=st.floats(0, 1000),
    seconds=st.floats(0.2, 60),
    max_chars=st.integers(16, 60),
    max_lines=st.integers(1, 3),
)
def test_every_cue_keeps_the_limits_and_every_word_in_order(
    text: str, start: float, seconds: float, max_chars: int, max_lines: int
) -> None:
    rules = CueRules(max_chars=max_chars, max_lines=max_lines)
    cues = split_final(text, start, start + seconds, rules)
    assert " ".join(" ".join(c.lines) for c in cues).split() == text.split()  # no word cut or lost
    for cue in cues:
        assert len(cue.lines) <= max_lines
        assert all(len(line) <= max_chars or " " not in line for line in cue.lines)
        assert cue.end > cue.start
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert cues[0].start == start and cues[-1].end >= start + seconds - 1e-6


def test_a_long_final_becomes_cues_of_two_lines_of_42_cut_at_sentences_and_phrases() -> None:
    cues = split_final(LONG, 10.0, 28.0)
    assert len(cues) >= 4
    for cue in cues:
        assert len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)
        assert cue.end - cue.start <= 7.0 + 1e-6
    ends = [cue.lines[-1] for cue in cues[:-1]]
    # Most cues end where the text pauses: at a full stop, a comma or a semicolon.
    assert sum(e.endswith((".", ",", ";")) for e in ends) >= len(ends) // 2, [c.lines for c in cues]
    assert any(e.endswith("them.") for e in ends)  # the first sentence ends a cue


def test_limits_are_parameters_and_short_cues_stay_up_a_second() -> None:
    cues = split_final(LONG, 0.0, 18.0, CueRules(max_chars=32, max_lines=1, max_duration=4.0))
    assert all(len(c.lines) == 1 and len(c.lines[0]) <= 32 for c in cues)
    short = cues_of([(5.0, 5.3, "Yes.", None), (9.0, 10.0, "Right.", None)])
    assert short[0].end - short[0].start >= 1.0 and short[0].end <= short[1].start
    squeezed = cues_of([(5.0, 5.3, "Yes.", None), (5.5, 6.5, "Right.", None)])
    assert squeezed[0].end <= squeezed[1].start  # never over the next final's cue


def test_two_lines_are_balanced_and_prefer_a_phrase_break() -> None:
    lines = wrap("He was not an ill-disposed young man, unless to be rather cold".split(), 42)
    assert len(lines) == 2 and lines[0].endswith("man,")


def test_cues_of_two_speakers_overlap_where_their_speech_did() -> None:
    cues = cues_of(
        [(5.0, 8.0, "Ana says this.", "Ana"), (6.0, 9.0, "Ben says that.", "Ben"), (8.5, 9.5, "More.", "Ana")]
    )
    ana, ben, more = cues
    assert (ana.speaker, ben.speaker, more.speaker) == ("Ana", "Ben", "Ana")
    assert ana.end > ben.start  # another speaker's cue does not cut hers
    assert ana.end <= more.start  # her own next cue does
