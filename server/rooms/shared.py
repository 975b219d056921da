"""Rooms, their registry and their transcripts when gateways share them through Redis
(``serve --redis``). Each gateway's ``SharedRoom`` is a mirror kept by the room bus: its own
publishers' events go out to Redis, and every event of the room comes back from there."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.translation import Emit
from pipeline.types import Caption
from server.edge.auth import hash_token
from server.messages import CaptionMessage, StatusMessage
from server.rooms.bus import Failure, RoomBus, RoomEntry, read_caption
from server.rooms.names import check_room_name, room_name_or_new
from server.rooms.registry import NEW_ROOM, RoomRecord, RoomRegistry, RoomSpec, RoomsUnavailable
from server.rooms.room import Room, RoomHistory, SessionMark
from server.rooms.speakers import same_speaker
from server.rooms.transcripts import TranscriptStore
from server.rooms.words import RoomWords


@dataclass
class SharedRoom(Room):
    bus: RoomBus | None = None
    remote_publishers: set[str] = field(default_factory=set)
    remote_speaking: dict[str, bool] = field(default_factory=dict)
    remote_speakers: dict[str, str] = field(default_factory=dict)  # publishers on other gateways
    max_segment: int = -1

    def _bus(self) -> RoomBus:
        assert self.bus is not None, "a shared room needs its bus"
        return self.bus

    def caption(self, publisher: Hashable, caption: Caption) -> CaptionMessage:
        """Sent to Redis, which numbers it; listeners here get it back from the room's stream."""
        message = self._source_line(publisher, caption, seq=0, segment=-1)
        self._bus().send_caption(self, str(publisher), caption.segment, message)
        return message

    def originated(self, message: CaptionMessage) -> None:
        """A caption of this gateway's publisher, read back numbered: its room-level work
        (translation) runs here, once for the room."""
        for hook in self.on_caption:
            hook(message)

    def translated(self, line: Emit, credit: CaptionMessage | None = None) -> CaptionMessage:
        """Sent to Redis under its source's segment; every gateway's viewers of its language get it back."""
        message = self.translated_line(0, line, credit)
        self._bus().send_translated(self, message)
        return message

    def deliver(self, message: CaptionMessage, at: float | None = None, session: int | None = None) -> None:
        self.max_segment = max(self.max_segment, message.segment)
        super().deliver(message, at, session)

    def speech(self, publisher: Hashable, speaking: bool, queue_delay: float) -> None:
        self.speaking[publisher] = speaking
        self._bus().send_speech(self, str(publisher), speaking, queue_delay)
        self.status(queue_delay)

    def remote_speech(self, publisher: str, speaking: bool, queue_delay: float, replaying: bool) -> None:
        self.remote_speaking[publisher] = speaking
        if not replaying:
            self.status(queue_delay)

    def status(self, queue_delay: float) -> None:
        speaking = any(self.speaking.values()) or any(self.remote_speaking.values())
        self.send(
            StatusMessage(self.name, speaking, queue_delay, self.live_publishers(), self.live_speakers())
        )

    def live_publishers(self) -> int:
        return len(self.publishers) + len(self.remote_publishers)

    def live_speakers(self) -> tuple[str, ...]:
        names = set(self.speakers.values()) | set(self.remote_speakers.values())
        return tuple(sorted(names, key=str.casefold))

    def apply(self, entry: RoomEntry, replaying: bool) -> None:
        """An event of the room's stream, read back by the bus (this gateway's own included)."""
        kind, publisher, mine = entry.kind, entry.publisher, entry.mine
        if kind == "caption" and entry.caption is not None:
            message = entry.caption
            self.deliver(message, entry.at, entry.session)
            if mine and not replaying and message.source_lang is None:
                # Numbered now: the gateway of its publisher translates it, once per room.
                self.originated(message)
            if mine and not replaying and message.final and message.text:
                # The gateway that wrote a final (its publisher's, or the translator's) speaks it.
                for hook in self.on_final:
                    hook(message)
        elif kind == "speech" and not mine:
            self.remote_speech(publisher, entry.speaking, entry.queue_delay, replaying)
        elif kind == "join":
            self.session = max(self.session, entry.session)
            if not mine:
                self.remote_publishers.add(publisher)
                if entry.speaker:
                    self.remote_speakers[publisher] = entry.speaker
        elif kind == "leave" and not mine:
            self.remote_publishers.discard(publisher)
            self.remote_speaking.pop(publisher, None)
            self.remote_speakers.pop(publisher, None)
        elif kind == "settings" and entry.words is not None:
            self.set_words(entry.words, () if replaying else entry.changed)
        elif kind == "kick" and not replaying:
            self.kicked(publisher)

    def speaker_of(self, name: str) -> Hashable | None:
        """The live publisher, on this gateway or another, that goes by ``name``, if any."""
        here = super().speaker_of(name)
        if here is not None:
            return here
        return next((k for k, n in self.remote_speakers.items() if same_speaker(n, name)), None)

    def name_of(self, publisher: Hashable) -> str | None:
        return super().name_of(publisher) or self.remote_speakers.get(publisher)

    def leave_publisher(self, key: Hashable) -> None:
        super().leave_publisher(key)
        self._bus().send_leave(self, str(key))

    @property
    def idle(self) -> bool:
        """Nothing of the room lives on this gateway (created rooms live on in Redis)."""
        return not (self.publishers or self.viewers or self.listeners)


class SharedRoomRegistry(RoomRegistry):
    """Rooms mirrored from Redis; tokens in Redis, not in rooms.json."""

    def __init__(
        self,
        bus: RoomBus,
        default_languages: tuple[str, ...] = (),
        on_room: Callable[[Room], None] | None = None,
        on_forget: Callable[[Room], None] | None = None,
    ) -> None:
        super().__init__(path=None, default_languages=default_languages, on_room=on_room, on_forget=on_forget)
        self.bus = bus

    def _add(self, room: Room) -> Room:
        self.rooms[room.name] = room
        if self._on_room is not None:
            self._on_room(room)
        return room

    def ensure(self, name: str) -> Room:
        check_room_name(name)
        return self.rooms.get(name) or self._add(
            SharedRoom(name, bus=self.bus, languages=self.default_languages, voice=self.default_voice)
        )

    def adopt(self, room: Room, record: RoomRecord) -> None:
        """The local mirror takes what the room was created with (on any gateway): its
        languages and spoken language; translation follows."""
        if not record.created:
            return
        room.created, room.token_hash, room.view_hash = True, record.publish_hash, record.view_hash
        room.languages, room.source_language = record.languages or (), record.source_language
        room.max_speakers = record.max_speakers
        room.voice = record.voice or ()
        if room.words != record.words:
            room.set_words(record.words, ())
        if self._on_room is not None:
            self._on_room(room)

    def forget_if_idle(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None and room.idle:
            del self.rooms[name]
            self.bus.unwatch(name)
            if self._on_forget is not None:
                self._on_forget(room)

    async def record(self, name: str) -> RoomRecord:
        """The room as Redis keeps it, read for every request: what another gateway created or
        made private holds here at once, and Redis unreachable refuses (RoomsUnavailable)."""
        known, info = await self.bus.room_info(name)
        if info is None:
            return RoomRecord(name, known=known or name in self.rooms)
        record = RoomRecord(
            name,
            known=True,
            created=True,
            publish_hash=info.get("token_hash"),
            view_hash=info.get("view_hash"),
            languages=tuple(info.get("languages", ())),
            source_language=info.get("source_language"),
            words=RoomWords.from_record(info),
            max_speakers=info.get("max_speakers"),
            voice=tuple(info.get("voice", ())),
        )
        # The local mirror follows (its spoken language and languages drive this gateway's work).
        room = self.rooms.get(name)
        if room is not None:
            self.adopt(room, record)
        return record

    async def create_room(
        self,
        name: str | None = None,
        spec: RoomSpec = NEW_ROOM,
    ) -> tuple[Room, str]:
        name = room_name_or_new(name)
        token = secrets.token_urlsafe(24)
        langs = self.default_languages if spec.languages is None else spec.languages
        spoken = self.default_voice if spec.voice is None else spec.voice
        # One write: a private room is never, even for a moment, a public one in Redis.
        info = {
            "token_hash": hash_token(token),
            "view_hash": spec.view_hash,
            "languages": list(langs),
            "source_language": spec.source_language,
            "max_speakers": spec.max_speakers,
            "voice": list(spoken),
            **spec.words.to_record(),
        }
        if not await self.bus.create(name, info):
            raise KeyError(name)
        room = self.ensure(name)
        record = RoomRecord(
            name,
            True,
            True,
            hash_token(token),
            spec.view_hash,
            langs,
            spec.source_language,
            spec.words,
            spec.max_speakers,
            tuple(spoken),
        )
        self.adopt(room, record)
        return room, token

    def create(
        self,
        name: str | None = None,
        spec: RoomSpec = NEW_ROOM,
    ) -> tuple[Room, str]:
        raise NotImplementedError("shared rooms are created with create_room (in Redis)")

    async def join(self, room: Room, publisher: Hashable, speaker: str | None = None) -> None:
        """Refused (SpeakerRefused) by Redis, atomically across gateways, when the name is live
        or the room is full."""
        assert isinstance(room, SharedRoom)
        offset, session, _opened = await self.bus.join(room, str(publisher), speaker, room.max_speakers)
        room._offsets[publisher] = round(offset, 3)  # noqa: SLF001 - the room's own bookkeeping
        room.session = max(room.session, session)
        room.publishers.add(publisher)
        if speaker:
            room.speakers[publisher] = speaker

    async def set_words(self, room: Room, words: RoomWords, changed: tuple[str, ...]) -> None:
        """Into the room's record in Redis; every gateway's mirror applies it as it reads it."""
        await self.bus.set_words(room.name, words, changed)

    async def take_over(self, room: Room, holder: Hashable) -> None:
        if holder in room.enders:
            await super().take_over(room, holder)
        else:
            await self.bus.take_over(room.name, str(holder))

    async def watch(self, room: Room) -> None:
        assert isinstance(room, SharedRoom)
        await self.bus.watch(room)

    async def settle(self, room: Room) -> None:
        assert isinstance(room, SharedRoom)
        await self.bus.settle(room)


class SharedTranscripts(TranscriptStore):
    """Transcripts read from the rooms' Redis streams, where the room bus writes each final once."""

    def __init__(self, data_dir: Path, bus: RoomBus) -> None:
        super().__init__(data_dir)
        self.bus = bus

    def append(self, message: CaptionMessage) -> None:
        """Written by the room bus's caption script, once per room."""

    def mark_session(self, room: str, mark: SessionMark) -> None:
        """Written by the room bus's join script."""

    def history(self, room: str) -> RoomHistory:
        raise NotImplementedError("shared transcripts are read with read()")

    async def has(self, room: str) -> bool:
        try:
            return bool(await self.bus.client.exists(self.bus.keys.transcript(room)))
        except Failure as exc:
            raise RoomsUnavailable(str(exc)) from exc

    async def read(self, room: str) -> RoomHistory:
        try:
            entries = await self.bus.client.xrange(self.bus.keys.transcript(room))
        except Failure as exc:
            raise RoomsUnavailable(str(exc)) from exc
        history = RoomHistory()
        for _entry_id, fields in entries:
            try:
                if b"session" in fields:
                    history.sessions.append(_mark(fields))
                else:
                    history.finals.append(read_caption(room, fields))
            except (KeyError, ValueError):
                continue
        return history


def _mark(fields: dict[bytes, Any]) -> SessionMark:
    at_ms = int(fields[b"at_ms"])
    at = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return SessionMark(
        int(fields[b"session"]), round(float(fields[b"start"]), 3), at, float(fields[b"epoch"])
    )
