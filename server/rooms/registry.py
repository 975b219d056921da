"""The room registry: every room of this process, the record each room's access and
languages are decided from, and (for the embedded server) the created rooms kept in
``rooms.json`` across restarts."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from server.edge.auth import hash_token
from server.edge.http import ServiceUnavailable
from server.messages import CaptionMessage
from server.rooms.names import check_room_name, room_name_or_new
from server.rooms.outputs import with_ids
from server.rooms.room import Room, RoomHistory, SessionMark, check_room_space
from server.rooms.words import NO_WORDS, RoomWords


class RoomsUnavailable(ServiceUnavailable):
    """Shared room state (Redis) cannot be reached; the request should be retried later."""

    code = "rooms_unavailable"
    message = "room state is unavailable right now; try again shortly"


@dataclass(frozen=True)
class RoomSpec:
    """What a room is created with; None: the server's default. ``view_hash`` (the hash of a
    view token) makes it private; ``outputs`` are where else its finals go (embedded server
    only); ``words`` its vocabulary and replacements; ``voice`` the languages it speaks."""

    languages: tuple[str, ...] | None = None
    source_language: str | None = None
    view_hash: str | None = None
    outputs: tuple[dict[str, str], ...] = ()
    words: RoomWords = NO_WORDS
    max_speakers: int | None = None
    voice: tuple[str, ...] | None = None


NEW_ROOM = RoomSpec()


@dataclass(frozen=True)
class RoomRecord:
    """A room as its authority keeps it (this process's registry, or Redis shared by every
    gateway): what access and languages are decided from, read fresh for each request."""

    name: str
    known: bool = False  # created, or live (or once live) somewhere
    created: bool = False
    publish_hash: str | None = None
    view_hash: str | None = None  # set: a private room, watched with its view token
    languages: tuple[str, ...] | None = None  # None: the server's default languages
    source_language: str | None = None
    words: RoomWords = NO_WORDS
    max_speakers: int | None = None  # None: as many as come
    voice: tuple[str, ...] | None = None  # None: the server's default voice languages

    @property
    def private(self) -> bool:
        return self.view_hash is not None


class RoomRegistry:
    """All rooms; the created ones (name and token hash) are kept in ``path`` across restarts."""

    def __init__(
        self,
        path: Path | None = None,
        on_final: Callable[[CaptionMessage], None] | None = None,
        history: Callable[[str], RoomHistory] | None = None,
        on_session: Callable[[str, SessionMark], None] | None = None,
        default_languages: tuple[str, ...] = (),
        on_room: Callable[[Room], None] | None = None,
        on_forget: Callable[[Room], None] | None = None,
    ) -> None:
        """``history(name)`` gives what a room kept from before a restart (its transcript), so
        its numbering and time carry on where they were. Rooms not created with languages of
        their own get ``default_languages``; ``on_room`` sees every room as it is added, and
        ``on_forget`` as an idle one is dropped."""
        self.rooms: dict[str, Room] = {}
        self._path = path
        self._on_final = on_final
        self._on_session = on_session
        self._history = history
        self._on_room = on_room
        self._on_forget = on_forget
        self.default_languages = default_languages
        self.default_outputs: tuple[dict[str, str], ...] = ()  # rooms not created first
        self.default_voice: tuple[str, ...] = ()  # voice languages of rooms not created with their own
        if path is not None and path.exists():
            # Private rooms' view hashes were once kept beside rooms.json, in view_tokens.json.
            legacy = path.with_name("view_tokens.json")
            views = json.loads(legacy.read_text()) if legacy.exists() else {}
            for name, saved in json.loads(path.read_text()).items():
                # Before translation a room was saved as its token hash alone.
                info = saved if isinstance(saved, dict) else {"token_hash": saved}
                room = Room(
                    name,
                    token_hash=info.get("token_hash"),
                    created=True,
                    view_hash=info.get("view_hash") or views.get(name),
                    outputs=with_ids(tuple(info.get("outputs", ()))),
                    languages=tuple(info.get("languages", default_languages)),
                    source_language=info.get("source_language"),
                    words=RoomWords.from_record(info),
                    max_speakers=info.get("max_speakers"),
                    voice=tuple(info.get("voice", ())),
                )
                self._add(room)

    def _add(self, room: Room) -> Room:
        if self._on_final is not None:
            room.on_final.append(self._on_final)
        if self._on_session is not None:
            room.on_session.append(self._on_session)
        if self._history is not None:
            room.resume(self._history(room.name))
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
                "view_hash": r.view_hash,
                "outputs": list(r.outputs),
                "languages": list(r.languages),
                "source_language": r.source_language,
                "max_speakers": r.max_speakers,
                "voice": list(r.voice),
                **r.words.to_record(),
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
        room = self.rooms.get(name)
        return room or self._add(
            Room(
                name, languages=self.default_languages, outputs=self.default_outputs, voice=self.default_voice
            )
        )

    def forget_if_idle(self, name: str) -> None:
        """Drop a room nobody created, publishes to or watches: names are free to invent, and
        each would otherwise stay in memory. Its transcript brings it back when needed."""
        room = self.rooms.get(name)
        if room is not None and room.idle:
            del self.rooms[name]
            if self._on_forget is not None:
                self._on_forget(room)

    # What request handlers await: here answered from memory, by a shared registry from Redis.

    async def record(self, name: str) -> RoomRecord:
        """The room as this process keeps it: here the registry is the one authority."""
        room = self.rooms.get(name)
        if room is None:
            return RoomRecord(name)
        return RoomRecord(
            name,
            known=True,
            created=room.created,
            publish_hash=room.token_hash,
            view_hash=room.view_hash,
            languages=room.languages,
            source_language=room.source_language,
            words=room.words,
            max_speakers=room.max_speakers,
            voice=room.voice,
        )

    def adopt(self, room: Room, record: RoomRecord) -> None:
        """Take what the room's record says into the room object; here the registry is the
        record, so there is nothing to take (a shared registry mirrors Redis's)."""

    async def create_room(
        self,
        name: str | None = None,
        spec: RoomSpec = NEW_ROOM,
    ) -> tuple[Room, str]:
        return self.create(name, spec)

    async def join(self, room: Room, publisher: Hashable, speaker: str | None = None) -> None:
        """Raises SpeakerRefused when the room cannot take the publisher now."""
        check_room_space(room, speaker)
        room.join_publisher(publisher, speaker)

    async def take_over(self, room: Room, holder: Hashable) -> None:
        """End the live publisher ``holder`` (another takes its name): here, until it has left."""
        ender = room.enders.get(holder)
        if ender is not None:
            await ender()

    async def set_words(self, room: Room, words: RoomWords, changed: tuple[str, ...]) -> None:
        """The room's new vocabulary or replacements, kept with the room and applied now."""
        room.set_words(words, changed)
        self._save()

    def set_outputs(self, room: Room, outputs: tuple[dict[str, str], ...]) -> None:
        """Where else the room's finals go, from the next final on (``on_room`` attaches them)."""
        room.outputs = outputs
        self._save()
        if self._on_room is not None:
            self._on_room(room)

    async def watch(self, room: Room) -> None:
        """Before a listener joins: the room's state must be at hand for its replay."""

    async def settle(self, room: Room) -> None:
        """Before a publisher's channel leaves: its captions must have reached the listeners."""

    def create(
        self,
        name: str | None = None,
        spec: RoomSpec = NEW_ROOM,
    ) -> tuple[Room, str]:
        """A new room with its own publish token; the token is returned once and kept hashed."""
        name = room_name_or_new(name)
        room = self.rooms.get(name)
        if room is not None and room.created:
            raise KeyError(name)
        token = secrets.token_urlsafe(24)
        langs = self.default_languages if spec.languages is None else spec.languages
        spoken = self.default_voice if spec.voice is None else spec.voice
        source, outputs = spec.source_language, spec.outputs
        if room is None:
            room = self._add(
                Room(name, languages=langs, source_language=source, outputs=outputs, voice=spoken)
            )
        else:
            room.languages, room.source_language, room.outputs = langs, source, outputs
            room.voice = spoken
            if self._on_room is not None:
                self._on_room(room)
        room.token_hash = hash_token(token)
        room.view_hash = spec.view_hash
        room.max_speakers = spec.max_speakers
        room.set_words(spec.words, ())
        room.created = True
        self._save()
        return room, token
