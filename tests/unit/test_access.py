"""Who may watch and publish, decided from a room's record and a request's tokens; and which
listeners a room's captions reach when a publisher's channel may read only its own."""

from __future__ import annotations

import json

from pipeline.types import Caption
from server.edge.auth import hash_token
from server.rooms.access import ViewAccess
from server.rooms.registry import RoomRecord
from server.rooms.room import Room

PRIVATE = RoomRecord(
    "board", known=True, created=True, publish_hash=hash_token("pub"), view_hash=hash_token("see")
)
PUBLIC = RoomRecord("lobby", known=True, created=True, publish_hash=hash_token("pub2"))


def test_a_private_room_opens_to_its_view_token_and_the_servers_only() -> None:
    open_server, guarded = ViewAccess(), ViewAccess("all", "server-pub")
    assert open_server.may_view(PUBLIC, None) and not open_server.required(None)
    assert open_server.required(PRIVATE) and not open_server.may_view(PRIVATE, None)
    assert open_server.may_view(PRIVATE, "see") and not open_server.may_view(PRIVATE, "pub", "wrong")
    assert open_server.may_view(PRIVATE, None, "see")  # any of the tokens offered
    assert guarded.may_view(PRIVATE, "all") and guarded.may_view(PUBLIC, "all")
    assert not guarded.may_view(PUBLIC, None) and not guarded.may_view(PUBLIC, "pub2")
    # Publishing: the room's own publish token or the server's, never a view token.
    assert open_server.may_publish(PRIVATE, "pub") and not open_server.may_publish(PRIVATE, "see")
    assert guarded.may_publish(PUBLIC, "server-pub") and not guarded.may_publish(PUBLIC, "all")
    assert not open_server.may_publish(RoomRecord("new"), "anything")


class Channel:
    def __init__(self) -> None:
        self.got: list[dict[str, object]] = []

    def send(self, message: str) -> None:
        self.got.append(json.loads(message))


def test_a_channel_limited_to_one_publisher_gets_its_captions_and_the_rooms_status_only() -> None:
    room = Room("r")
    own, viewer = Channel(), Channel()
    room.listen("b", own, only="b")
    room.listen("v", viewer)
    for pub in ("a", "b"):
        room.join_publisher(pub)
        room.caption(pub, Caption(segment=0, text=f"from {pub}", start=0, end=1, final=True, lang="en"))
    room.status(0.0)
    assert [m["text"] for m in viewer.got if m["type"] == "caption"] == ["from a", "from b"]
    assert [m["text"] for m in own.got if m["type"] == "caption"] == ["from b"]
    assert any(m["type"] == "status" for m in own.got)
    assert all("origin" not in m for m in viewer.got)  # the publisher's session id is never sent
    room.unlisten("b")
    assert "b" not in room.listener_only
