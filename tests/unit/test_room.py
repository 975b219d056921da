"""A room's numbering, time and replay, with fake clocks: no server, no sleeping."""

from __future__ import annotations

import json

from pipeline.clock import FakeClock
from pipeline.types import Caption
from server.messages import CaptionMessage, parse
from server.rooms.room import Room, RoomHistory, SessionMark


class Inbox:
    def __init__(self) -> None:
        self.got: list[str] = []

    def send(self, message: str) -> None:
        self.got.append(message)


def room(mono: FakeClock, wall: FakeClock, name: str = "r") -> Room:
    return Room(name, monotonic=mono.now, wall=wall.now)


def final(segment: int, start: float, end: float, text: str = "words") -> Caption:
    return Caption(segment=segment, final=True, text=text, start=start, end=end, lang="en")


def texts(replayed: list[str]) -> list[str]:
    return [json.loads(m)["text"] for m in replayed]


def test_replay_holds_only_the_current_session_and_nothing_older_than_asked() -> None:
    mono, wall = FakeClock(100.0), FakeClock(1_700_000_000.0)
    r = room(mono, wall)
    r.join_publisher("a")
    r.caption("a", final(0, 0.5, 1.5, "first"))
    mono.advance(10)
    r.caption("a", final(1, 2.0, 3.0, "second"))
    assert texts(r.replay()) == ["first", "second"]
    assert texts(r.replay(max_age=8)) == ["second"]  # an overlay that fades after 8 s
    r.leave_publisher("a")
    assert texts(r.replay()) == ["first", "second"]  # the session just ended: still its lines
    wall.advance(60)
    r.join_publisher("b")  # a new session: yesterday's talk is not live
    assert r.replay() == []


def test_time_only_moves_forward_across_sessions_and_restarts() -> None:
    mono, wall = FakeClock(), FakeClock(1_700_000_000.0)
    marks: list[SessionMark] = []
    r = room(mono, wall)
    r.on_session.append(lambda name, mark: marks.append(mark))
    r.join_publisher("a")
    wall.advance(5)
    sent = r.caption("a", final(0, 1.0, 2.5))
    r.leave_publisher("a")
    wall.advance(100)
    r.join_publisher("b")
    later = r.caption("b", final(0, 0.2, 1.0))
    assert sent.start == 1.0 and later.start == 100 + 5 + 0.2
    assert [m.session for m in marks] == [1, 2] and marks[1].start == 105.0

    # A restart: a fresh room resumes from what the transcript kept.
    wall.advance(3600)
    again = room(mono, wall)
    again.resume(RoomHistory(finals=[sent, later], sessions=marks))
    assert again.replay() == []  # kept for numbering, not replayed
    again.join_publisher("c")
    third = again.caption("c", final(0, 0.0, 0.5))
    assert third.start == 3600 + 105 and third.seq > later.seq and third.segment > later.segment


def test_a_room_without_session_marks_continues_after_its_last_final() -> None:
    mono, wall = FakeClock(), FakeClock(50.0)
    old = CaptionMessage(
        room="r", seq=7, segment=3, final=True, text="old", start=150.0, end=158.99, lang="en"
    )
    r = room(mono, wall)
    r.resume(RoomHistory(finals=[old]))
    r.join_publisher("a")
    assert r.caption("a", final(0, 0.06, 1.0)).start >= 158.99


def test_listeners_get_typed_messages_and_status() -> None:
    mono, wall = FakeClock(), FakeClock()
    r = room(mono, wall)
    inbox = Inbox()
    r.listeners["x"] = inbox
    r.join_publisher("a")
    r.caption("a", Caption(segment=0, final=False, text="live cap", start=0, end=1, lang="en", stable="live"))
    r.speech("a", True, 0.25)
    partial, status = (parse(m) for m in inbox.got)
    assert isinstance(partial, CaptionMessage) and partial.stable == "live" and not partial.final
    assert status.to_dict() == {
        "type": "status",
        "room": "r",
        "speech": True,
        "queue_delay": 0.25,
        "publishers": 1,
        "speakers": [],
    }
