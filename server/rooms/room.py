"""A room: who listens, the caption sequence, room stream time, and what a late viewer gets first.

Room stream time is seconds since the room first went live, on the wall clock, so it only
moves forward: across publishers, sessions and restarts (the epoch is kept in the transcript's
session marks). A late viewer is replayed only the finals of the room's current session, and
none older than it asks for (an overlay asks for no more than its own fade time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from pipeline.translation import Emit
from pipeline.types import Caption
from server.messages import CaptionMessage, Message, SettingsMessage, StatusMessage
from server.rooms.speakers import public_id, same_speaker
from server.rooms.words import NO_WORDS, RoomWords

log = logging.getLogger(__name__)

BACKLOG_FINALS = 20


class SpeakerRefused(Exception):
    """A publisher the room cannot take: ``code`` says why (``speaker_taken``, a live publisher
    goes by its name; ``too_many_speakers``, the room's ``max_speakers`` are live)."""

    def __init__(self, code: str, message: str, holder: Hashable | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.holder = code, message, holder

    @classmethod
    def taken(cls, speaker: str | None, holder: Hashable | None) -> SpeakerRefused:
        message = (
            f"{speaker!r} is already speaking in this room; choose another name, "
            "or take over that session (?takeover=1)"
        )
        return cls("speaker_taken", message, holder)

    @classmethod
    def full(cls, max_speakers: int | None) -> SpeakerRefused:
        return cls(
            "too_many_speakers", f"this room takes at most {max_speakers} speakers at once, all live now"
        )


def check_room_space(room: Room, speaker: str | None) -> None:
    """Whether one more publisher, named ``speaker``, may join ``room`` now."""
    if speaker:
        holder = room.speaker_of(speaker)
        if holder is not None:
            raise SpeakerRefused.taken(speaker, holder)
    if room.max_speakers is not None and room.live_publishers() >= room.max_speakers:
        raise SpeakerRefused.full(room.max_speakers)


@dataclass(frozen=True)
class SessionMark:
    """Where a room's publishing session begins: its number, its room stream time, and the
    wall-clock epoch of room time (kept so that time carries on after a restart)."""

    session: int
    start: float
    at: str  # ISO 8601, UTC
    epoch: float

    def to_dict(self) -> dict[str, object]:
        return {"session": self.session, "start": round(self.start, 3), "at": self.at, "epoch": self.epoch}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SessionMark:
        return cls(int(data["session"]), float(data["start"]), str(data["at"]), float(data["epoch"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RoomHistory:
    """What a room left behind before a restart: its finals and its session marks."""

    finals: list[CaptionMessage] = field(default_factory=list)
    sessions: list[SessionMark] = field(default_factory=list)


@dataclass(frozen=True)
class _Kept:
    message: CaptionMessage
    at: float  # monotonic seconds when it was sent
    session: int


class Listener(Protocol):
    """A data channel, or anything else that takes caption messages as text."""

    def send(self, message: str) -> None: ...


def _backlog() -> deque[_Kept]:
    return deque(maxlen=BACKLOG_FINALS)


@dataclass
class Room:
    """A room's source captions go to listeners without a language; each target language in
    ``languages`` has its own listeners, backlog and partials, fed by ``translated``."""

    name: str
    token_hash: str | None = None
    created: bool = False
    view_hash: str | None = None
    # Where else the room's finals go (server/rooms/outputs.py): [{"type": "youtube", "url": ...}].
    outputs: tuple[dict[str, str], ...] = ()
    seq: int = 0
    languages: tuple[str, ...] = ()
    source_language: str | None = None
    # Languages whose finals are spoken (the voice-over, server/rooms/voices.py).
    voice: tuple[str, ...] = ()
    words: RoomWords = NO_WORDS
    max_speakers: int | None = None
    listeners: dict[Hashable, Listener] = field(default_factory=dict)
    listener_langs: dict[Hashable, str] = field(default_factory=dict)
    # Listeners that may read only one publisher's captions (a publisher's own channel, in a
    # room it may not view): listener key -> that publisher's id.
    listener_only: dict[Hashable, str] = field(default_factory=dict)
    backlog: deque[_Kept] = field(default_factory=_backlog)
    partials: dict[int, CaptionMessage] = field(default_factory=dict)
    lang_backlog: dict[str, deque[_Kept]] = field(default_factory=dict)
    lang_partials: dict[str, dict[int, CaptionMessage]] = field(default_factory=dict)
    on_final: list[Callable[[CaptionMessage], None]] = field(default_factory=list)
    on_caption: list[Callable[[CaptionMessage], None]] = field(default_factory=list)
    on_session: list[Callable[[str, SessionMark], None]] = field(default_factory=list)
    publishers: set[Hashable] = field(default_factory=set)
    speakers: dict[Hashable, str] = field(default_factory=dict)  # publisher -> the name it gave
    on_words: list[Callable[[RoomWords], None]] = field(default_factory=list)
    # Voices heard on their speakers' own named microphones (name -> unit d-vector), so that a
    # shared microphone of the room knows them by name; enrolled voices are in ``words.voices``.
    heard_voices: dict[str, np.ndarray] = field(default_factory=dict)
    # How to end each live publisher of this process, when another takes its name over.
    enders: dict[Hashable, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    # The room's outputs and their health (server/rooms/outputs.py), for its publishers' status.
    outputs_report: Callable[[], list[dict[str, Any]]] | None = None
    _ending: set[asyncio.Task[None]] = field(default_factory=set)
    viewers: set[Hashable] = field(default_factory=set)
    viewer_clients: dict[Hashable, str] = field(default_factory=dict)  # viewer -> its client address
    speaking: dict[Hashable, bool] = field(default_factory=dict)
    session: int = 0
    # Room stream time: wall-clock epoch, and the latest end seen (time never goes below it).
    epoch: float | None = None
    last_end: float = 0.0
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _segments: dict[tuple[Hashable, int], int] = field(default_factory=dict)
    _next_segment: int = 0
    _offsets: dict[Hashable, float] = field(default_factory=dict)

    def resume(self, history: RoomHistory) -> None:
        """Carry on after a restart: numbering, sessions and time from what was kept. Old finals
        are remembered for numbering only; they belong to an ended session and are not replayed."""
        for item in history.finals:
            if item.source_lang is None:
                self.backlog.append(_Kept(item, float("-inf"), -1))
            else:
                self.lang_backlog.setdefault(item.lang, _backlog()).append(_Kept(item, float("-inf"), -1))
        for item in history.finals:
            self.seq = max(self.seq, item.seq)
            self._next_segment = max(self._next_segment, item.segment + 1)
            self.last_end = max(self.last_end, item.end)
        if history.sessions:
            self.session = max(m.session for m in history.sessions)
            self.epoch = history.sessions[-1].epoch

    def join_publisher(self, key: Hashable, speaker: str | None = None) -> SessionMark | None:
        """Each publisher's stream time starts at 0; its captions are moved onto room time.
        The first publisher of an idle room opens a new session, whose mark is returned."""
        if speaker:
            self.speakers[key] = speaker
        now = self.wall()
        if self.epoch is None:
            self.epoch = now - self.last_end  # a room with finals but no marks continues after them
        offset = round(max(now - self.epoch, self.last_end), 3)
        self._offsets[key] = offset
        mark = None
        if not self.publishers:
            self.session += 1
            at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            mark = SessionMark(self.session, offset, at, self.epoch)
            for hook in self.on_session:
                hook(self.name, mark)
        self.publishers.add(key)
        return mark

    def leave_publisher(self, key: Hashable) -> None:
        self.publishers.discard(key)
        self.speaking.pop(key, None)
        self.speakers.pop(key, None)
        # Partials of a publisher that is gone will never be finalised by it.
        self._offsets.pop(key, None)

    @property
    def idle(self) -> bool:
        return not (self.publishers or self.viewers or self.listeners or self.created)

    def add_viewer(self, key: Hashable, client: str) -> None:
        """A viewer's peer or a feed, counted against the room's and its address's limits."""
        self.viewers.add(key)
        self.viewer_clients[key] = client

    def remove_viewer(self, key: Hashable) -> None:
        self.viewers.discard(key)
        self.viewer_clients.pop(key, None)

    def viewers_from(self, client: str) -> int:
        return sum(1 for c in self.viewer_clients.values() if c == client)

    def live_speakers(self) -> tuple[str, ...]:
        """The names of the room's live publishers, sorted (unnamed ones are not listed)."""
        return tuple(sorted(set(self.speakers.values()), key=str.casefold))

    def live_publishers(self) -> int:
        return len(self.publishers)

    def speaker_of(self, name: str) -> Hashable | None:
        """The live publisher of this process that goes by ``name``, if any."""
        return next((k for k, n in self.speakers.items() if same_speaker(n, name)), None)

    def name_of(self, publisher: Hashable) -> str | None:
        """The name a live publisher goes by, spelled as it gave it."""
        return self.speakers.get(publisher)

    def kicked(self, publisher: Hashable) -> None:
        """Another publisher takes this one's name over: end it, if it is live here."""
        ender = self.enders.get(publisher)
        if ender is not None:
            task = asyncio.get_running_loop().create_task(ender())  # type: ignore[arg-type]
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    def known_voices(self) -> dict[str, np.ndarray]:
        """Every named voice of the room: heard on named microphones, and enrolled (which win)."""
        return {**self.heard_voices, **self.words.voice_vectors}

    def set_words(self, words: RoomWords, changed: tuple[str, ...]) -> None:
        """New vocabulary or replacements: each publisher's next utterance uses them, and every
        listener is told."""
        self.words = words
        for hook in list(self.on_words):
            hook(words)
        if changed:
            self.send(SettingsMessage(self.name, changed, len(words.vocabulary), len(words.replacements)))

    def _source_line(self, publisher: Hashable, caption: Caption, seq: int, segment: int) -> CaptionMessage:
        """A publisher's caption as the room shows it: on room time, with the room's replacements,
        and who said it."""
        offset = self._offsets.get(publisher, 0.0)
        return CaptionMessage(
            room=self.name,
            seq=seq,
            segment=segment,
            final=caption.final,
            text=self.words.apply(caption.text),
            start=caption.start + offset,
            end=caption.end + offset,
            lang=caption.lang,
            stable=None if caption.final else self.words.apply(caption.stable),
            origin=str(publisher),
            # A voice's label on a shared microphone, else the publisher's own name; either
            # shown by the name the room gave it (PATCH speaker_names).
            speaker=self.words.speaker(caption.speaker or self.speakers.get(publisher)),
            publisher=public_id(str(publisher)),
        )

    def caption(self, publisher: Hashable, caption: Caption) -> CaptionMessage:
        """Number a publisher's caption into the room and send it to every listener."""
        key = (publisher, caption.segment)
        if key not in self._segments:
            self._segments[key] = self._next_segment
            self._next_segment += 1
        self.seq += 1
        message = self._source_line(publisher, caption, self.seq, self._segments[key])
        if caption.final:
            del self._segments[key]
        self.deliver(message)
        if caption.final and caption.text:
            for hook in self.on_final:
                hook(message)
        for hook in self.on_caption:
            hook(message)
        return message

    def translated(self, line: Emit, credit: CaptionMessage | None = None) -> CaptionMessage:
        """Number a translated line into the room and send it to the viewers of its language;
        ``credit``: its source line, whose speaker it keeps."""
        self.seq += 1
        message = self.translated_line(self.seq, line, credit)
        self.deliver(message)
        if line.final and line.text:
            for hook in self.on_final:
                hook(message)
        return message

    def translated_line(self, seq: int, line: Emit, credit: CaptionMessage | None = None) -> CaptionMessage:
        """A translated line's message: its source's segment, times and speaker, in its language,
        with the room's replacements applied (a profanity list may well be in that language)."""
        return CaptionMessage(
            room=self.name,
            seq=seq,
            segment=line.segment,
            final=line.final,
            text=self.words.apply(line.text),
            start=line.start,
            end=line.end,
            lang=line.lang,
            stable=None if line.final else self.words.apply(line.stable),
            source_lang=line.source_lang,
            speaker=credit.speaker if credit else None,
            publisher=credit.publisher if credit else None,
        )

    def deliver(self, message: CaptionMessage, at: float | None = None, session: int | None = None) -> None:
        """Keep a numbered caption for late viewers and send it to every listener. ``at``
        (monotonic seconds) and ``session`` say when and in which session it was first sent."""
        self.seq = max(self.seq, message.seq)
        translated = message.source_lang is not None
        backlog = self.lang_backlog.setdefault(message.lang, _backlog()) if translated else self.backlog
        partials = self.lang_partials.setdefault(message.lang, {}) if translated else self.partials
        if message.final:
            partials.pop(message.segment, None)
            if not translated:
                self.last_end = max(self.last_end, message.end)
            if message.text:
                kept_at = self.monotonic() if at is None else at
                backlog.append(_Kept(message, kept_at, self.session if session is None else session))
        else:
            partials[message.segment] = message
        # Source captions go to the listeners without a language, a translation to its own.
        self.send(message, lang=message.lang if translated else None)

    def speech(self, publisher: Hashable, speaking: bool, queue_delay: float) -> None:
        self.speaking[publisher] = speaking
        self.status(queue_delay)

    def status(self, queue_delay: float) -> None:
        """Whether anyone speaks; sent on every change and as the heartbeat listeners watch. The
        publishers' own channels also hear how the room's outputs are doing."""
        speaking = any(self.speaking.values())
        status = StatusMessage(self.name, speaking, queue_delay, self.live_publishers(), self.live_speakers())
        report = self.outputs_report() if self.outputs_report is not None else None
        if report is None:
            self.send(status)
            return
        self.send(status, to=lambda key: key not in self.publishers)
        self.send(replace(status, outputs=tuple(report)), to=lambda key: key in self.publishers)

    def tell_publishers(self, message: Message) -> None:
        """A word for the room's publishers only (an output failing, say)."""
        self.send(message, to=lambda key: key in self.publishers)

    def listen(
        self, key: Hashable, listener: Listener, lang: str | None = None, only: str | None = None
    ) -> None:
        """Add a listener of the source captions (``lang`` None) or of one target language;
        ``only``: of the captions of that one publisher (its own channel, when it may not view)."""
        self.listeners[key] = listener
        if lang is None:
            self.listener_langs.pop(key, None)
        else:
            self.listener_langs[key] = lang
        if only is None:
            self.listener_only.pop(key, None)
        else:
            self.listener_only[key] = only

    def unlisten(self, key: Hashable) -> None:
        self.listeners.pop(key, None)
        self.listener_langs.pop(key, None)
        self.listener_only.pop(key, None)

    def send(
        self, message: Message, lang: str | None | bool = True, to: Callable[[Hashable], bool] | None = None
    ) -> None:
        """To every listener (status, errors), or only to those of one language (captions:
        ``lang`` None for the source, else the target); ``to``: only the listeners it picks."""
        text = message.to_json()
        origin = message.origin if isinstance(message, CaptionMessage) else None
        for key, listener in list(self.listeners.items()):
            if lang is not True and self.listener_langs.get(key) != lang:
                continue
            if to is not None and not to(key):
                continue
            only = self.listener_only.get(key)
            if only is not None and isinstance(message, CaptionMessage) and origin != only:
                continue  # another speaker's caption, to a channel that may not read the room
            try:
                listener.send(text)
            except Exception:  # noqa: BLE001 - one broken listener must not silence the room
                log.info("dropping listener %s of room %s", key, self.name)
                self.unlisten(key)

    def replay(self, max_age: float | None = None, lang: str | None = None) -> list[str]:
        """What a listener who joins now is sent first: the current session's recent finals (none
        older than ``max_age`` seconds), then the live partials; of the source, or of ``lang``."""
        return [m.to_json() for m in self.replay_messages(max_age, lang)]

    def replay_messages(
        self, max_age: float | None = None, lang: str | None = None, after: int | None = None
    ) -> list[CaptionMessage]:
        """``replay``'s messages; ``after`` (a resuming feed's last seq): every kept final and
        live partial numbered after it instead, whatever its age or session."""
        now = self.monotonic()
        backlog = self.backlog if lang is None else self.lang_backlog.get(lang, ())
        partials = self.partials if lang is None else self.lang_partials.get(lang, {})
        if after is not None:
            finals = [k.message for k in backlog if k.message.seq > after]
            live = [m for m in partials.values() if m.seq > after]
        else:
            finals = [
                k.message
                for k in backlog
                if k.session == self.session and (max_age is None or now - k.at <= max_age)
            ]
            live = list(partials.values())
        return finals + sorted(live, key=lambda m: m.seq)
