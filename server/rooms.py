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


def _backlog() -> deque[CaptionMessage]:
    return deque(maxlen=BACKLOG_FINALS)


@dataclass
class Room:
    """A room's source captions go to listeners without a language; each target language in
    ``languages`` has its own listeners, backlog and partials, fed by ``translated``."""

    name: str
    token_hash: str | None = None
    created: bool = False
    seq: int = 0
    languages: tuple[str, ...] = ()
    source_language: str | None = None
    listeners: dict[Hashable, Listener] = field(default_factory=dict)
    listener_langs: dict[Hashable, str] = field(default_factory=dict)
    backlog: deque[CaptionMessage] = field(default_factory=_backlog)
    partials: dict[int, CaptionMessage] = field(default_factory=dict)
    lang_backlog: dict[str, deque[CaptionMessage]] = field(default_factory=dict)
    lang_partials: dict[str, dict[int, CaptionMessage]] = field(default_factory=dict)
    on_final: list[Callable[[CaptionMessage], None]] = field(default_factory=list)
    on_caption: list[Callable[[CaptionMessage], None]] = field(default_factory=list)
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
        self.send(message, lang=None)
        if caption.final and caption.text:
            for hook in self.on_final:
                hook(message)
        for hook in self.on_caption:
            hook(message)
        return message

    def translated(
        self,
        segment: int,
        lang: str,
        final: bool,
        text: str,
        source_lang: str,
        start: float,
        end: float,
        stable: str = "",
    ) -> CaptionMessage:
        """Number a translated line into the room and send it to the viewers of ``lang``."""
        self.seq += 1
        message = CaptionMessage(
            room=self.name,
            seq=self.seq,
            segment=segment,
            final=final,
            text=text,
            start=start,
            end=end,
            lang=lang,
            stable=None if final else stable,
            source_lang=source_lang,
        )
        partials = self.lang_partials.setdefault(lang, {})
        if final:
            partials.pop(segment, None)
            if text:
                self.lang_backlog.setdefault(lang, _backlog()).append(message)
        else:
            partials[segment] = message
        self.send(message, lang=lang)
        if final and text:
            for hook in self.on_final:
                hook(message)
        return message

    def status(self, speaking: bool, queue_delay: float) -> None:
        self.send(StatusMessage(self.name, speaking, queue_delay, len(self.publishers)))

    def listen(self, key: Hashable, listener: Listener, lang: str | None = None) -> None:
        """Add a listener of the source captions (``lang`` None) or of one target language."""
        self.listeners[key] = listener
        if lang is None:
            self.listener_langs.pop(key, None)
        else:
            self.listener_langs[key] = lang

    def unlisten(self, key: Hashable) -> None:
        self.listeners.pop(key, None)
        self.listener_langs.pop(key, None)

    def send(self, message: Message, lang: str | None | bool = True) -> None:
        """To every listener (status, errors), or only to those of one language (captions:
        ``lang`` None for the source, else the target)."""
        text = message.to_json()
        for key, listener in list(self.listeners.items()):
            if lang is not True and self.listener_langs.get(key) != lang:
                continue
            try:
                listener.send(text)
            except Exception:  # noqa: BLE001 - one broken listener must not silence the room
                log.info("dropping listener %s of room %s", key, self.name)
                self.unlisten(key)

    def replay(self, lang: str | None = None) -> list[str]:
        """What a listener who joins now is sent first: recent finals, then live partials."""
        if lang is None:
            finals, partials = list(self.backlog), self.partials
        else:
            finals, partials = list(self.lang_backlog.get(lang, ())), self.lang_partials.get(lang, {})
        items = finals + sorted(partials.values(), key=lambda m: m.seq)
        return [m.to_json() for m in items]


class RoomRegistry:
    """All rooms; the created ones (name and token hash) are kept in ``path`` across restarts."""

    def __init__(
        self,
        path: Path | None = None,
        on_final: Callable[[CaptionMessage], None] | None = None,
        history: Callable[[str], list[CaptionMessage]] | None = None,
        default_languages: tuple[str, ...] = (),
        on_room: Callable[[Room], None] | None = None,
    ) -> None:
        """``history(name)`` gives a room's finals kept from before a restart (the transcript),
        so its backlog and sequence carry on where they were. Rooms not created with languages
        of their own get ``default_languages``; ``on_room`` sees every room as it is added."""
        self.rooms: dict[str, Room] = {}
        self._path = path
        self._on_final = on_final
        self._history = history
        self._on_room = on_room
        self.default_languages = default_languages
        if path is not None and path.exists():
            for name, saved in json.loads(path.read_text()).items():
                # Before translation a room was saved as its token hash alone.
                info = saved if isinstance(saved, dict) else {"token_hash": saved}
                room = Room(
                    name,
                    token_hash=info.get("token_hash"),
                    created=True,
                    languages=tuple(info.get("languages", default_languages)),
                    source_language=info.get("source_language"),
                )
                self._add(room)

    def _add(self, room: Room) -> Room:
        if self._on_final is not None:
            room.on_final.append(self._on_final)
        if self._history is not None:
            items = self._history(room.name)
            for item in items:
                room.seq = max(room.seq, item.seq)
                room._next_segment = max(room._next_segment, item.segment + 1)
            for item in [i for i in items if i.source_lang is None][-BACKLOG_FINALS:]:
                room.backlog.append(item)
            for item in items:
                if item.source_lang is not None:
                    room.lang_backlog.setdefault(item.lang, _backlog()).append(item)
        self.rooms[room.name] = room
        if self._on_room is not None:
            self._on_room(room)
        return room

    def _save(self) -> None:
        if self._path is None:
            return
        created = {
            r.name: {
                "token_hash": r.token_hash,
                "languages": list(r.languages),
                "source_language": r.source_language,
            }
            for r in self.rooms.values()
            if r.created
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(created, indent=1))
        tmp.replace(self._path)  # atomic: a crash leaves the old file or the new one

    def get(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def ensure(self, name: str) -> Room:
        check_room_name(name)
        return self.rooms.get(name) or self._add(Room(name, languages=self.default_languages))

    def create(
        self,
        name: str | None = None,
        languages: tuple[str, ...] | None = None,
        source_language: str | None = None,
    ) -> tuple[Room, str]:
        """A new room with its own publish token; the token is returned once and kept hashed."""
        name = check_room_name(name) if name else secrets.token_urlsafe(6).replace("_", "x").replace("-", "y")
        room = self.rooms.get(name)
        if room is not None and room.created:
            raise KeyError(name)
        token = secrets.token_urlsafe(24)
        langs = self.default_languages if languages is None else languages
        if room is None:
            room = self._add(Room(name, languages=langs, source_language=source_language))
        else:
            room.languages, room.source_language = langs, source_language
            if self._on_room is not None:
                self._on_room(room)
        room.token_hash = hash_token(token)
        room.created = True
        self._save()
        return room, token
