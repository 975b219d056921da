"""A gateway's mirror of a shared room, fed as the room bus feeds it: no Redis, no server."""

from __future__ import annotations

import json

from pipeline.clock import FakeClock
from server.messages import CaptionMessage, parse
from server.rooms.bus import message_body, read_caption
from server.rooms.shared import SharedRoom


class Inbox:
    def __init__(self) -> None:
        self.got: list[str] = []

    def send(self, message: str) -> None:
        self.got.append(message)


def entry(message: CaptionMessage, seq: int, segment: int) -> dict[bytes, bytes]:
    return {
        b"seq": str(seq).encode(),
        b"segment": str(segment).encode(),
        b"m": message_body(message).encode(),
    }


def test_a_caption_travels_without_what_the_room_assigns_and_comes_back_numbered() -> None:
    sent = CaptionMessage("hall", 0, -1, False, "live cap", 1.25, 2.5, "en", stable="live")
    body = json.loads(message_body(sent))
    assert {"seq", "segment", "room", "type"}.isdisjoint(body)
    back = read_caption("hall", entry(sent, 17, 4))
    assert back == CaptionMessage("hall", 17, 4, False, "live cap", 1.25, 2.5, "en", stable="live")


def test_the_mirror_replays_and_counts_what_other_gateways_publish() -> None:
    mono = FakeClock(100.0)
    room = SharedRoom("hall", monotonic=mono.now)
    partial = read_caption(
        "hall", entry(CaptionMessage("hall", 0, -1, False, "hello wor", 0.5, 1.0, "en"), 3, 0)
    )
    final = read_caption(
        "hall", entry(CaptionMessage("hall", 0, -1, True, "hello world", 0.5, 1.4, "en"), 4, 0)
    )
    room.session = 2
    room.deliver(partial, at=99.0, session=2)
    assert [parse(m).text for m in room.replay()] == ["hello wor"]  # type: ignore[union-attr]
    room.deliver(final, at=99.5, session=2)
    assert [parse(m).text for m in room.replay()] == ["hello world"]  # type: ignore[union-attr]
    assert room.seq == 4 and room.max_segment == 0 and room.last_end == 1.4

    inbox = Inbox()
    room.listeners["viewer"] = inbox
    room.remote_publishers.add("pub-on-a")
    room.remote_speech("pub-on-a", True, 0.25, replaying=False)
    status = parse(inbox.got[-1])
    assert status.speech is True and status.publishers == 1 and status.queue_delay == 0.25  # type: ignore[union-attr]
    assert room.idle is False  # a listener here
    del room.listeners["viewer"]
    assert room.idle is True  # the remote publisher keeps the room alive in Redis, not here
