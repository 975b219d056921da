"""Rooms: who listens, the caption sequence, and the backlog a late viewer gets first."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.types import Caption
from server.auth import InvalidRoomName, check_room_name, hash_token
from server.messages import CaptionMessage, Message, StatusMessage

log = logging.getLogger(__name__)

__all__ = ["InvalidRoomName", "Listener", "Room", "RoomRegistry", "check_room_name"]

BACKLOG_FINALS = 20


class Listener(Protocol):
    """A data channel, or anything else that takes caption messages as text."""

    def send(self, message: str) -> None: ...


@dataclass
class Room:
    name: str
    token_hash: str | None = None
    created: bool = False
    seq: int = 0
    listeners: dict[Hashable, Listener] = field(default_factory=dict)
    backlog: deque[CaptionMessage] = field(default_factory=lambda: deque(maxlen=BACKLOG_FINALS))
    partials: dict[int, CaptionMessage] = field(default_factory=dict)
    on_final: list[Callable[[CaptionMessage], None]] = field(default_factory=list)
    publishers: set[Hashable] = field(default_factory=set)
    viewers: set[Hashable] = field(default_factory=set)
    _segments: dict[tuple[Hashable, int], int] = field(default_factory=dict)
    _next_segment: int = 0
    _epoch: float | None = None
    _offsets: dict[Hashable, float] = field(default_factory=dict)

    def join_publisher(self, key: Hashable) -> None:
        """Each publisher's stream time starts at 0; the room's starts with its first publisher,
        so that captions of successive publishers line up on one time line."""
        now = time.monotonic()
        if self._epoch is None:
            self._epoch = now
        self._offsets[key] = round(now - self._epoch, 3)
        self.publishers.add(key)

    def leave_publisher(self, key: Hashable) -> None:
        self.publishers.discard(key)

    def caption(self, publisher: Hashable, caption: Caption) -> CaptionMessage:
        """Number a publisher's caption into the room and send it to every listener."""
        key = (publisher, caption.segment)
        if key not in self._segments:
            self._segments[key] = self._next_segment
            self._next_segment += 1
        segment = self._segments[key]
        offset = self._offsets.get(publisher, 0.0)
        self.seq += 1
        message = CaptionMessage(
            room=self.name,
            seq=self.seq,
            segment=segment,
            final=caption.final,
            text=caption.text,
            start=caption.start + offset,
            end=caption.end + offset,
            lang=caption.lang,
            stable=None if caption.final else caption.stable,
        )
        if caption.final:
            del self._segments[key]
            self.partials.pop(segment, None)
            if caption.text:
                self.backlog.append(message)
        else:
            self.partials[segment] = message
        self.send(message)
        if caption.final and caption.text:
            for hook in self.on_final:
                hook(message)
        return message

    def status(self, speaking: bool, queue_delay: float) -> None:
        self.send(StatusMessage(self.name, speaking, queue_delay, len(self.publishers)))

    def send(self, message: Message) -> None:
        text = message.to_json()
        for key, listener in list(self.listeners.items()):
            try:
                listener.send(text)
            except Exception:  # noqa: BLE001 - one broken listener must not silence the room
                log.info("dropping listener %s of room %s", key, self.name)
                self.listeners.pop(key, None)

    def replay(self) -> list[str]:
        """What a listener who joins now is sent first: recent finals, then live partials."""
        items = list(self.backlog) + sorted(self.partials.values(), key=lambda m: m.seq)
        return [m.to_json() for m in items]


class RoomRegistry:
    """All rooms; the created ones (name and token hash) are kept in ``path`` across restarts."""

    def __init__(
        self,
        path: Path | None = None,
        on_final: Callable[[CaptionMessage], None] | None = None,
        history: Callable[[str], list[CaptionMessage]] | None = None,
    ) -> None:
        """``history(name)`` gives a room's finals kept from before a restart (the transcript),
        so its backlog and sequence carry on where they were."""
        self.rooms: dict[str, Room] = {}
        self._path = path
        self._on_final = on_final
        self._history = history
        if path is not None and path.exists():
            for name, token_hash in json.loads(path.read_text()).items():
                self._add(Room(name, token_hash=token_hash, created=True))

    def _add(self, room: Room) -> Room:
        if self._on_final is not None:
            room.on_final.append(self._on_final)
        if self._history is not None:
            for item in self._history(room.name)[-BACKLOG_FINALS:]:
                room.backlog.append(item)
                room.seq = max(room.seq, item.seq)
                room._next_segment = max(room._next_segment, item.segment + 1)
        self.rooms[room.name] = room
        return room

    def _save(self) -> None:
        if self._path is None:
            return
        created = {r.name: r.token_hash for r in self.rooms.values() if r.created}
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(created, indent=1))
        tmp.replace(self._path)  # atomic: a crash leaves the old file or the new one

    def get(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def discard_if_unused(self, name: str) -> None:
        """Forget a room nobody created, publishes to, watches or was ever captioned in: offers
        that never connected, to names of an attacker's choosing, leave nothing behind."""
        room = self.rooms.get(name)
        if room is not None and not (
            room.created or room.publishers or room.viewers or room.listeners or room.seq
        ):
            del self.rooms[name]

    def ensure(self, name: str) -> Room:
        check_room_name(name)
        return self.rooms.get(name) or self._add(Room(name))

    def create(self, name: str | None = None) -> tuple[Room, str]:
        """A new room with its own publish token; the token is returned once and kept hashed."""
        name = check_room_name(name) if name else secrets.token_urlsafe(6).replace("_", "x").replace("-", "y")
        room = self.rooms.get(name)
        if room is not None and room.created:
            raise KeyError(name)
        token = secrets.token_urlsafe(24)
        room = room or self._add(Room(name))
        room.token_hash = hash_token(token)
        room.created = True
        self._save()
        return room, token
