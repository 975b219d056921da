"""Who may speak in a room: names never shared by two live publishers, never more than the
room's ``max_speakers`` live, whatever the order of joins, leaves and take-overs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.rooms.room import Room, SpeakerRefused, check_room_space
from server.rooms.speakers import InvalidSpeaker, check_speaker, same_speaker

# "Ana" in Cyrillic letters, in fullwidth forms, and in any case: one name to a reader.
NAMES = st.sampled_from(
    ["Ana", "ana", "ANA", "\u0410na", "\uff21\uff4e\uff41", "Ben", "B\u0435n", "Cy", None]
)
OPS = st.lists(
    st.tuples(st.sampled_from(["join", "leave", "takeover"]), st.integers(0, 5), NAMES), max_size=40
)


@given(ops=OPS, most=st.one_of(st.none(), st.integers(1, 4)))
def test_live_names_stay_unique_and_the_room_within_its_limit(
    ops: list[tuple[str, int, str | None]], most: int | None
) -> None:
    room = Room("r", max_speakers=most)
    for op, pub, name in ops:
        if op == "leave":
            room.leave_publisher(pub)
            continue
        if pub in room.publishers:
            continue
        try:
            check_room_space(room, name)
        except SpeakerRefused as refused:
            if op == "takeover" and refused.code == "speaker_taken":
                room.leave_publisher(refused.holder)  # the old session ends, the name is free
                try:
                    check_room_space(room, name)
                except SpeakerRefused:
                    continue
            else:
                assert refused.code in ("speaker_taken", "too_many_speakers")
                continue
        room.join_publisher(pub, name)
        live = list(room.speakers.values())
        assert not any(same_speaker(a, b) for i, a in enumerate(live) for b in live[i + 1 :])
        assert most is None or len(room.publishers) <= most
        assert room.live_speakers() == tuple(sorted(set(room.speakers.values()), key=str.casefold))


# Latin letters and the Cyrillic letters drawn the same (TR #39 maps each to the other).
HOMOGLYPHS = {
    "a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445",
    "y": "\u0443", "A": "\u0410", "B": "\u0412", "E": "\u0415", "K": "\u041a", "M": "\u041c",
    "H": "\u041d", "O": "\u041e", "P": "\u0420", "C": "\u0421", "T": "\u0422", "X": "\u0425",
}  # fmt: skip
LATIN = st.text(alphabet="aeopcxyABEKMHOPCTXnrstu", min_size=1, max_size=12)


@given(LATIN, st.data())
def test_a_name_spelled_with_look_alike_letters_is_the_same_name(name: str, data: st.DataObject) -> None:
    swapped = "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and data.draw(st.booleans()) else c for c in name)
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in name)
    assert same_speaker(swapped, name) and same_speaker(name.upper(), name) and same_speaker(fullwidth, name)
    assert check_speaker(fullwidth) == name  # stored and shown as the letters it shows


INVISIBLE = ["\u034f", "\ufe0f", "\ufe00", "\u3164", "\u115f", "\u200b", "\u200d", "\u2060", "\u202e",
             "\ufeff", "\U000e0041", "\u00ad", "\u180e"]  # fmt: skip


@given(LATIN, st.sampled_from(INVISIBLE), st.integers(min_value=0))
def test_invisible_characters_that_make_two_names_differ_are_refused(name: str, mark: str, at: int) -> None:
    at %= len(name) + 1
    with pytest.raises(InvalidSpeaker):
        check_speaker(name[:at] + mark + name[at:])


def test_different_names_stay_different() -> None:
    for a, b in [("Ana", "Anna"), ("Zoë", "Zoe"), ("José", "Jose"), ("Ben", "Ken"), ("李", "季")]:
        assert not same_speaker(a, b), (a, b)
    assert check_speaker("  Mary-Jane   O'Neil ") == "Mary-Jane O'Neil"
