"""Subtitle cues within the guidelines: lines (the speaker's name counted), lines a cue, time on
screen; cut at sentences and phrases, never inside a word nor a phrase the next cue can hold;
no lone word where it can join its neighbour; two speakers at once as one dialogue cue or one
after the other in SRT; every word kept, once, in order."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from server.messages import CaptionMessage
from server.rooms.subtitles import CueRules, cues_of, split_final, wrap
from server.rooms.transcripts import SRT_VOICE, VTT_VOICE, to_srt, to_vtt

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
def test_every_cue_of_a_final_keeps_the_limits_and_every_word_in_order(
    text: str, start: float, seconds: float, max_chars: int, max_lines: int
) -> None:
    rules = CueRules(max_chars=max_chars, max_lines=max_lines)
    cues = split_final(text, start, start + seconds, rules)
    assert " ".join(" ".join(c.lines) for c in cues).split() == text.split()  # no word cut or lost
    for cue in cues:
        assert len(cue.lines) <= max_lines
        assert all(len(line) <= max_chars or " " not in line for line in cue.lines)
        assert rules.max_duration + 1e-6 >= cue.end - cue.start > 0
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert cues[0].start == start


# Finals of a room: each speaker's one after another, the speakers' overlapping at random.
final = st.tuples(
    st.sampled_from(["Ana", "Ben", "Cleo", None]),
    st.floats(0.0, 3.0),  # the pause before it, after the same speaker's previous final
    st.floats(0.1, 14.0),  # how long it was said
    st.lists(words, min_size=1, max_size=30).map(" ".join),
)


def room_finals(
    drawn: list[tuple[str | None, float, float, str]],
) -> list[tuple[float, float, str, str | None]]:
    ends: dict[str | None, float] = {}
    out = []
    for who, pause, seconds, text in drawn:
        start = ends.get(who, 0.0) + pause
        ends[who] = start + seconds
        out.append((start, start + seconds, text, who))
    return out


def shown_lines(cue, voice) -> list[str]:  # noqa: ANN001 - a Cue and a Voice
    """The lines a player shows, each speaker's mark included where it sits."""
    if cue.turns:
        return [voice.turn(who, text) for who, text in cue.turns]
    first = voice.first.format(name=cue.speaker) if cue.speaker else ""
    return [first + cue.lines[0], *cue.lines[1:]]


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    drawn=st.lists(final, min_size=1, max_size=12),
    max_chars=st.integers(24, 60),
    max_lines=st.integers(1, 3),
    min_cue=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    max_cue=st.sampled_from([3.0, 7.0]),
)
def test_cues_of_random_speakers_keep_every_limit_overlap_never_in_srt_and_keep_every_word(
    drawn: list[tuple[str | None, float, float, str]],
    max_chars: int,
    max_lines: int,
    min_cue: float,
    max_cue: float,
) -> None:
    finals = room_finals(drawn)
    rules = CueRules(max_chars=max_chars, max_lines=max_lines, max_duration=max_cue, min_duration=min_cue)
    for voice, dialogue in ((SRT_VOICE, True), (VTT_VOICE, False), (VTT_VOICE, True)):
        cues = cues_of(finals, rules, voice, dialogue)
        heard: dict[str | None, list[str]] = {}
        for cue in cues:
            assert len(cue.lines) <= max_lines
            for line, text in zip(shown_lines(cue, voice), cue.lines, strict=True):
                assert len(line) <= max_chars or " " not in text, (line, max_chars)
            assert min_cue - 1e-6 <= cue.end - cue.start <= max(max_cue, min_cue) + 1e-6
            for who, text in cue.turns or ((cue.speaker, cue.text),):
                heard.setdefault(who, []).extend(text.split())
        said: dict[str | None, list[str]] = {}
        for _start, _end, text, who in finals:
            said.setdefault(who, []).extend(text.split())
        assert heard == said  # every word once, in each speaker's order
        assert [c.start for c in cues] == sorted(c.start for c in cues)
        for who in said:
            own = [c for c in cues if c.speaker == who or who in (t[0] for t in c.turns)]
            assert all(a.end <= b.start + 1e-6 for a, b in zip(own, own[1:], strict=False))
        if dialogue:
            assert all(a.end <= b.start + 1e-6 for a, b in zip(cues, cues[1:], strict=False))


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


def test_the_speakers_name_counts_in_the_first_line() -> None:
    text = "We will now hear from the representatives of every region present here tonight."
    plain = split_final(text, 0.0, 5.0)
    named = split_final(text, 0.0, 5.0, prefix=len("Bartholomew: "))
    assert any(len(c.lines[0]) > 42 - len("Bartholomew: ") for c in plain)
    assert all(len("Bartholomew: " + c.lines[0]) <= 42 for c in named)


def test_no_word_is_left_alone_where_it_can_join_its_neighbour() -> None:
    # Cut by length, this left "representatives." alone on a cue of its own.
    text = "Thank you all for coming tonight and a special welcome to the regional representatives."
    cues = split_final(text, 0.0, 5.5)
    assert all(len(c.words) > 1 for c in cues), [c.lines for c in cues]
    # A short cue joins its neighbour rather than flash by under a second.
    cues = cues_of([(5.0, 5.3, "Yes.", "Ana"), (5.5, 6.5, "Right, go on.", "Ana")])
    assert [c.text for c in cues] == ["Yes. Right, go on."]


def test_a_length_cut_never_splits_a_phrase_the_next_cue_can_hold() -> None:
    text = (
        "Your call is important to us and we will answer it shortly, please hold the line. "
        "To delete or to keep this message press five."
    )
    cues = split_final(text, 0.0, 8.0, CueRules(max_chars=32))
    texts = [" ".join(c.lines) for c in cues]
    assert any(t.startswith("To delete or to keep") for t in texts), texts
    assert all(c.end - c.start >= 1.0 - 1e-6 for c in cues), [(c.start, c.end, c.lines) for c in cues]


def test_limits_are_parameters_and_short_cues_stay_up_a_second() -> None:
    cues = split_final(LONG, 0.0, 18.0, CueRules(max_chars=32, max_lines=1, max_duration=4.0))
    assert all(len(c.lines) == 1 and len(c.lines[0]) <= 32 for c in cues)
    short = cues_of([(5.0, 5.3, "Yes.", None), (9.0, 10.0, "Right.", None)])
    assert short[0].end - short[0].start >= 1.0 and short[0].end <= short[1].start


def test_two_lines_are_balanced_and_prefer_a_phrase_break() -> None:
    lines = wrap("He was not an ill-disposed young man, unless to be rather cold".split(), 42)
    assert len(lines) == 2 and lines[0].endswith("man,")


TWO = [
    (5.0, 8.0, "Ana says this.", "Ana"),
    (6.0, 9.0, "Ben says that.", "Ben"),
    (10.5, 12.5, "More from me.", "Ana"),
]


def test_overlapping_speakers_overlap_in_vtt_and_share_a_dialogue_cue_in_srt() -> None:
    ana, ben, more = cues_of(TWO, voice=VTT_VOICE)
    assert (ana.speaker, ben.speaker, more.speaker) == ("Ana", "Ben", "Ana")
    assert ana.end > ben.start  # another speaker's cue does not cut hers in WebVTT
    both, more = cues_of(TWO, voice=SRT_VOICE, dialogue=True)
    assert both.turns == (("Ana", "Ana says this."), ("Ben", "Ben says that.")) and both.end <= more.start


def captions(finals: list[tuple[float, float, str, str | None]]) -> list[CaptionMessage]:
    return [
        CaptionMessage("r", i, i, True, text, start, end, "en", speaker=who)
        for i, (start, end, text, who) in enumerate(finals)
    ]


def times(block: str) -> tuple[float, float]:
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)", block)
    start, end = (int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in stamps)
    return start, end


def test_srt_and_vtt_of_two_speakers_write_names_in_the_limits_and_no_srt_cue_overlaps() -> None:
    panel = [
        (0.0, 4.6, "Welcome everyone to the evening panel on public transport.", "Ana"),
        (3.9, 7.5, "Thanks Ana, it is a pleasure to be here with all of you.", "Benedikt"),
        (7.2, 7.5, "Great.", "Ana"),
        (7.8, 12.0, "Let us begin with the budget and then the new timetable.", "Ana"),
    ]
    srt = to_srt(captions(panel))
    blocks = [b.splitlines() for b in srt.strip().split("\n\n")]
    spans = [times(b[1]) for b in blocks]
    assert all(end - start >= 1.0 for start, end in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(len(line) <= 42 for b in blocks for line in b[2:]), srt
    assert any(line.startswith("- Ana: ") for b in blocks for line in b[2:]) or any(
        b[2].startswith("Benedikt: ") for b in blocks
    )
    for vtt in (to_vtt(captions(panel)), to_vtt(captions(panel), dialogue=True)):
        cues = [b.splitlines() for b in vtt.split("\n\n") if "-->" in b]
        assert all(len(line) <= 42 for c in cues for line in c[1:]), vtt
        assert all(times(c[0])[1] - times(c[0])[0] >= 1.0 for c in cues)
    dialogue = [b.splitlines() for b in to_vtt(captions(panel), dialogue=True).split("\n\n") if "-->" in b]
    spans = [times(c[0]) for c in dialogue]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
