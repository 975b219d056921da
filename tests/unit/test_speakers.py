"""Who may speak in a room: names never shared by two live publishers, never more than the
room's ``max_speakers`` live, whatever the order of joins, leaves and take-overs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.rooms import Room, SpeakerRefused, check_room_space

NAMES = st.sampled_from(["Ana", "ana", "ANA", "Ben", "Cy", None])
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
        live = [n.casefold() for n in room.speakers.values()]
        assert len(live) == len(set(live))
        assert most is None or len(room.publishers) <= most
        assert room.live_speakers() == tuple(sorted(set(room.speakers.values()), key=str.casefold))
