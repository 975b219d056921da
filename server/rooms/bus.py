"""The room bus: rooms shared by gateways through Redis, so a viewer on one gateway sees a
publisher on another.

Every room event (caption, speech change, publisher joining or leaving) is added to the room's
stream ``nova:room:{name}:captions`` by the gateway where it happens, and read back by every
gateway with a publisher or viewer in the room, which hands it to its own listeners (the
origin's included: one path for all). A gateway that starts watching a room first reads the
stream's recent entries, which is the backlog a late viewer is replayed.

Numbering and time are the room's, not a gateway's: small Lua scripts (Redis 7.0) give each
caption its room ``seq`` and ``segment``, each publisher its offset on room time (Redis's clock)
and each idle room's first publisher a new session, atomically. The same script appends every
non-empty final once to ``nova:room:{name}:transcript``, the room's transcript. Rooms created
with ``POST /rooms`` and their hashed tokens are kept in the ``nova:rooms`` hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from redis.exceptions import RedisError

from pipeline.streams import cancel_all, connect, id_ms, redis_now_ms
from server.messages import CaptionMessage
from server.rooms.registry import RoomsUnavailable
from server.rooms.room import SpeakerRefused
from server.rooms.speakers import speaker_keys
from server.rooms.words import RoomWords

log = logging.getLogger(__name__)

Failure = (RedisError, OSError)

# Entries a gateway reads back when it starts watching a room: enough for the replay's finals.
HISTORY = 400
# A publisher whose gateway stops refreshing it (a crash) no longer counts after this.
PUBLISHER_TTL_MS = 10_000
REFRESH_S = 2.0
# How long a final caption may wait for Redis to come back before it is given up.
FINAL_RETRY_S = 30.0
SETTLE_S = 5.0

CAPTION_LUA = """
local meta = KEYS[2]
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local floor_seq = tonumber(ARGV[7])
if seq <= floor_seq then seq = floor_seq + 1; redis.call('HSET', meta, 'seq', seq) end
local field = 'seg:' .. ARGV[2]
local seg = tonumber(redis.call('HGET', meta, field) or '-1')
if seg < 0 then
  seg = redis.call('HINCRBY', meta, 'next_segment', 1) - 1
  local floor_seg = tonumber(ARGV[8])
  if seg < floor_seg then seg = floor_seg; redis.call('HSET', meta, 'next_segment', seg + 1) end
end
local session = redis.call('HGET', meta, 'session') or '0'
if ARGV[3] == '1' then
  redis.call('HDEL', meta, field)
  local last = tonumber(redis.call('HGET', meta, 'last_end') or '0')
  if tonumber(ARGV[5]) > last then redis.call('HSET', meta, 'last_end', ARGV[5]) end
  if ARGV[4] == '1' then
    redis.call('XADD', KEYS[3], '*', 'seq', seq, 'segment', seg, 'm', ARGV[6])
  end
else
  redis.call('HSET', meta, field, seg)
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', 'caption', 'seq', seq,
  'segment', seg, 'session', session, 'gw', ARGV[9], 'pub', ARGV[10], 'm', ARGV[6])
"""

JOIN_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now = now_ms / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local live = redis.call('ZCARD', KEYS[2])
if ARGV[7] ~= '' then
  -- A name's two keys (server/rooms/speakers.py), tab-separated: one equal, and it is the same name.
  local shape, case = string.match(ARGV[7], '^([^\t]*)\t(.*)$')
  local names = redis.call('HGETALL', KEYS[5])
  for i = 1, #names, 2 do
    if not redis.call('ZSCORE', KEYS[2], names[i]) then
      redis.call('HDEL', KEYS[5], names[i])
    else
      local their_shape, their_case = string.match(names[i + 1], '^([^\t]*)\t(.*)$')
      if names[i + 1] == ARGV[7] or their_shape == shape or their_case == case then
        return {'refused', 'speaker_taken', names[i]}
      end
    end
  end
end
local most = tonumber(ARGV[9])
if most > 0 and live >= most then return {'refused', 'too_many_speakers', ''} end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[5], ARGV[1], ARGV[7]) end
local last_end = math.max(tonumber(redis.call('HGET', KEYS[1], 'last_end') or '0'), tonumber(ARGV[3]))
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '-1')
if epoch < 0 then epoch = now - last_end; redis.call('HSET', KEYS[1], 'epoch', epoch) end
local offset = math.max(now - epoch, last_end)
local session = math.max(tonumber(redis.call('HGET', KEYS[1], 'session') or '0'), tonumber(ARGV[4]))
local opened = 0
if live == 0 then
  session = session + 1
  opened = 1
  redis.call('XADD', KEYS[4], '*', 'session', session, 'start', offset, 'epoch', epoch, 'at_ms', now_ms)
end
redis.call('HSET', KEYS[1], 'session', session)
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'k', 'join', 'pub', ARGV[1], 'gw', ARGV[5],
  'session', session, 'speaker', ARGV[8])
return {tostring(offset), session, opened, tostring(epoch), now_ms}
"""

# A translated line keeps its source's segment; the room numbers it (seq) like any caption and
# appends a non-empty final to the transcript, where ?lang= reads it back.
TRANSLATED_LUA = """
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local session = redis.call('HGET', KEYS[2], 'session') or '0'
if ARGV[3] == '1' then
  redis.call('XADD', KEYS[3], '*', 'seq', seq, 'segment', ARGV[2], 'm', ARGV[4])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', 'caption', 'seq', seq,
  'segment', ARGV[2], 'session', session, 'gw', ARGV[5], 'm', ARGV[4])
"""

REFRESH_LUA = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], until_ms, ARGV[i]) end
return #ARGV - 1
"""


@dataclass(frozen=True)
class RoomKeys:
    prefix: str = "nova"

    @property
    def rooms(self) -> str:
        return f"{self.prefix}:rooms"

    def captions(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:captions"

    def meta(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:meta"

    def publishers(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:publishers"

    def speakers(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:speakers"

    def transcript(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:transcript"

    def voice(self, room: str) -> str:
        return f"{self.prefix}:room:{room}:voice"

    def wake(self, gateway: str) -> str:
        return f"{self.prefix}:wake:{gateway}"


@dataclass(frozen=True)
class RoomEntry:
    """One entry of a room's stream, read off the wire: what happened (``kind``: caption,
    speech, join, leave, settings, kick), by which publisher, and whether this gateway wrote it."""

    kind: str
    publisher: str = ""
    mine: bool = False
    caption: CaptionMessage | None = None
    at: float = 0.0  # monotonic seconds when it was added (captions)
    session: int = 0
    speaking: bool = False
    queue_delay: float = 0.0
    speaker: str | None = None
    words: RoomWords | None = None
    changed: tuple[str, ...] = ()


class Mirror(Protocol):
    """A gateway's copy of a room as the bus keeps it (server/rooms/shared.py's ``Mirror``):
    what the bus writes from, and where it applies what it reads."""

    name: str
    seq: int
    max_segment: int
    last_end: float
    session: int
    publishers: set[Hashable]

    def apply(self, entry: RoomEntry, replaying: bool) -> None: ...


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def message_body(message: CaptionMessage) -> str:
    """What travels of a caption: all but what the room assigns (seq, segment) or implies (room)."""
    data = message.to_dict()
    return json.dumps({k: v for k, v in data.items() if k not in ("type", "room", "seq", "segment")})


def read_caption(room: str, fields: dict[bytes, bytes]) -> CaptionMessage:
    data = json.loads(fields[b"m"])
    message = CaptionMessage.from_dict(
        {**data, "room": room, "seq": int(fields[b"seq"]), "segment": int(fields[b"segment"])}
    )
    origin = fields.get(b"pub", b"").decode()
    return replace(message, origin=origin) if origin else message


@dataclass
class _Watch:
    room: Mirror
    stream: str
    last: bytes = b"0-0"


VoiceSink = Callable[[dict[bytes, bytes]], None]
# A room's voice stream keeps only the last sentences: a listener joins the voice as it is now
# (nothing is replayed), and each entry may hold seconds of audio.
VOICE_MAXLEN = 64


@dataclass
class _Op:
    run: Callable[[], Awaitable[Any]]
    room: str
    final: bool = False
    done: asyncio.Future[None] | None = None
    queued: float = field(default_factory=time.monotonic)


class RoomBus:
    """One per gateway: writes this gateway's room events in order, reads the watched rooms'."""

    def __init__(self, url: str, gateway: str, prefix: str = "nova", maxlen: int = 1000) -> None:
        self.gateway = gateway
        self.keys = RoomKeys(prefix)
        self.maxlen = maxlen
        self.client = connect(url)
        self._caption = self.client.register_script(CAPTION_LUA)
        self._join = self.client.register_script(JOIN_LUA)
        self._refresh = self.client.register_script(REFRESH_LUA)
        self._translated = self.client.register_script(TRANSLATED_LUA)
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._watched: dict[str, _Watch] = {}
        self._by_stream: dict[str, _Watch] = {}
        self._voices: dict[str, tuple[str, VoiceSink]] = {}  # room -> its voice stream, its sink
        self._voice_last: dict[str, bytes] = {}
        self._written: dict[str, bytes] = {}
        self._read_more = asyncio.Condition()
        self._wake_last = b"0-0"
        self._offset_ms = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.dropped = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(*Failure):
            await self._sync_clock()
            await self.client.delete(self.keys.wake(self.gateway))
        loop = asyncio.get_running_loop()
        for coro in (self._write_loop(), self._read_loop(), self._refresh_loop()):
            task = loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        self._closed = True
        await cancel_all(self._tasks)
        with contextlib.suppress(*Failure):
            await self.client.delete(self.keys.wake(self.gateway))
        await self.client.aclose()

    async def _sync_clock(self) -> None:
        before = time.time() * 1000
        now = await redis_now_ms(self.client)
        self._offset_ms = now - (before + time.time() * 1000) / 2

    def _monotonic_of(self, entry_id: bytes) -> float:
        """When (this process's monotonic clock) an entry was added, from its id's Redis time."""
        age = max(0.0, (time.time() * 1000 + self._offset_ms - id_ms(entry_id)) / 1000)
        return time.monotonic() - age

    # -- rooms and tokens ------------------------------------------------------------------------

    async def room_info(self, name: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether the room is known anywhere (created, or live once), and what it was created
        with (token hash, languages, source language), if it was."""
        try:
            raw = await self.client.hget(self.keys.rooms, name)
            known = raw is not None or bool(await self.client.exists(self.keys.meta(name)))
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc
        if raw is None:
            return known, None
        try:
            info = json.loads(raw)
        except ValueError:
            info = None
        if not isinstance(info, dict):
            # Access is decided from this record: one that cannot be read refuses, never opens.
            raise RoomsUnavailable(f"room {name!r} has a record in Redis that cannot be read")
        return True, info

    async def create(self, name: str, info: dict[str, Any]) -> bool:
        """False if a room of that name was created already (anywhere)."""
        try:
            return bool(await self.client.hsetnx(self.keys.rooms, name, json.dumps(info)))
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------------

    def send_caption(self, room: Mirror, publisher: str, segment: int, message: CaptionMessage) -> None:
        name = room.name
        args = [
            self.maxlen,
            f"{publisher}:{segment}",
            1 if message.final else 0,
            1 if message.final and message.text else 0,
            message.end,
            message_body(message),
            room.seq,
            room.max_segment + 1,
            self.gateway,
            publisher,
        ]
        keys = [self.keys.captions(name), self.keys.meta(name), self.keys.transcript(name)]
        self._queue.put_nowait(_Op(lambda: self._caption(keys=keys, args=args), name, final=message.final))

    def send_translated(self, room: Mirror, message: CaptionMessage) -> None:
        """A translated line, under its source line's segment (the gateway that translated it)."""
        name = room.name
        args = [
            self.maxlen,
            message.segment,
            1 if message.final and message.text else 0,
            message_body(message),
            self.gateway,
        ]
        keys = [self.keys.captions(name), self.keys.meta(name), self.keys.transcript(name)]
        self._queue.put_nowait(_Op(lambda: self._translated(keys=keys, args=args), name, final=message.final))

    def send_voice(self, name: str, fields: dict[str, Any]) -> None:
        """An event of a room's voice-over (a sentence expected, its audio, its failure), for
        the voice's listeners on every gateway: sent in order with the room's other events."""
        stream = self.keys.voice(name)

        async def add() -> None:  # returns no id: settle() waits for caption entries only
            await self.client.xadd(stream, fields, maxlen=VOICE_MAXLEN)  # type: ignore[arg-type]

        self._queue.put_nowait(_Op(add, name, final=fields.get("k") != "expect"))

    async def watch_voice(self, name: str, sink: VoiceSink) -> None:
        """Follow a room's voice stream from now on (nothing older is replayed)."""
        if name in self._voices:
            return
        stream = self.keys.voice(name)
        try:
            last = await self.client.xrevrange(stream, count=1)
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc
        if name in self._voices:
            return
        self._voices[name] = (stream, sink)
        self._voice_last[stream] = last[0][0] if last else b"0-0"
        await self._wake()

    def unwatch_voice(self, name: str) -> None:
        stream, _ = self._voices.pop(name, ("", None))
        self._voice_last.pop(stream, None)

    def send_speech(self, room: Mirror, publisher: str, speaking: bool, queue_delay: float) -> None:
        fields = {"k": "speech", "pub": publisher, "gw": self.gateway, "speaking": int(speaking)}
        fields["queue_delay"] = round(queue_delay, 3)  # type: ignore[assignment]
        self._send(room.name, fields)

    def send_leave(self, room: Mirror, publisher: str) -> None:
        name = room.name

        async def leave() -> Any:
            await self.client.zrem(self.keys.publishers(name), publisher)
            await self.client.hdel(self.keys.speakers(name), publisher)
            fields = {"k": "leave", "pub": publisher, "gw": self.gateway}
            return await self.client.xadd(self.keys.captions(name), fields, maxlen=self.maxlen)  # type: ignore[arg-type]

        self._queue.put_nowait(_Op(leave, name, final=True))

    def _send(self, name: str, fields: dict[str, Any]) -> None:
        stream = self.keys.captions(name)
        self._queue.put_nowait(_Op(lambda: self.client.xadd(stream, fields, maxlen=self.maxlen), name))

    async def join(
        self, room: Mirror, publisher: str, speaker: str | None = None, max_speakers: int | None = None
    ) -> tuple[float, int, bool]:
        """Place a publisher on room time: (offset, session, whether it opened the session).
        Atomically with it, across gateways: no two live publishers of a room share a name, and
        at most ``max_speakers`` are live (else SpeakerRefused)."""
        name = room.name
        keys = [
            self.keys.meta(name),
            self.keys.publishers(name),
            self.keys.captions(name),
            self.keys.transcript(name),
            self.keys.speakers(name),
        ]
        args = [
            publisher,
            PUBLISHER_TTL_MS,
            room.last_end,
            room.session,
            self.gateway,
            self.maxlen,
            "\t".join(speaker_keys(speaker)) if speaker else "",
            speaker or "",
            max_speakers or 0,
        ]
        try:
            result = await self._join(keys=keys, args=args)
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc
        if result[0] == b"refused":
            if result[1] == b"speaker_taken":
                raise SpeakerRefused.taken(speaker, result[2].decode() or None)
            raise SpeakerRefused.full(max_speakers)
        offset, session, opened, _epoch, _now = result
        return float(offset), int(session), bool(opened)

    async def set_words(self, name: str, words: RoomWords, changed: tuple[str, ...]) -> None:
        """Keep a room's new words in its record, and tell every gateway of the room."""
        try:
            raw = await self.client.hget(self.keys.rooms, name)
            info = json.loads(raw) if raw is not None else None
            if not isinstance(info, dict):
                raise RoomsUnavailable(f"room {name!r} has no record in Redis to change")
            info.update(words.to_record())
            await self.client.hset(self.keys.rooms, name, json.dumps(info))
            fields = {"k": "settings", "words": json.dumps(words.to_record()), "changed": ",".join(changed)}
            await self.client.xadd(self.keys.captions(name), fields, maxlen=self.maxlen)  # type: ignore[arg-type]
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc

    async def take_over(self, name: str, publisher: str) -> None:
        """Ask the gateway of a live publisher to end it (its name is being taken over)."""
        try:
            await self.client.xadd(
                self.keys.captions(name), {"k": "kick", "pub": publisher}, maxlen=self.maxlen
            )  # type: ignore[arg-type]
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc

    async def _write_loop(self) -> None:
        while not self._closed:
            op = await self._queue.get()
            if op.done is not None:
                if not op.done.done():
                    op.done.set_result(None)
                continue
            while not self._closed:
                try:
                    entry_id = await op.run()
                    if isinstance(entry_id, bytes):
                        self._written[op.room] = entry_id
                    break
                except Failure as exc:
                    # Partials and speech changes are stale by the time Redis is back; finals wait.
                    if not op.final or time.monotonic() - op.queued > FINAL_RETRY_S:
                        self.dropped += 1
                        log.warning("room %s: event dropped, Redis unreachable: %s", op.room, exc)
                        break
                    await asyncio.sleep(0.5)  # retry period while Redis is away

    async def settle(self, room: Mirror) -> None:
        """Until what this gateway wrote for the room so far has been read back and delivered."""
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(lambda: asyncio.sleep(0), room.name, done=marker))
        try:
            async with asyncio.timeout(SETTLE_S):
                await marker
                target = self._written.get(room.name)
                watch = self._watched.get(room.name)
                if target is None or watch is None:
                    return
                async with self._read_more:
                    await self._read_more.wait_for(lambda: _id_tuple(watch.last) >= _id_tuple(target))
        except TimeoutError:
            log.warning("room %s: captions not read back within %.0f s", room.name, SETTLE_S)

    async def _refresh_loop(self) -> None:
        """Keep this gateway's publishers counted in their rooms (they expire if it crashes)."""
        while not self._closed:
            await asyncio.sleep(REFRESH_S)  # the refresh period
            for name, watch in list(self._watched.items()):
                live = [str(p) for p in watch.room.publishers]
                if not live:
                    continue
                with contextlib.suppress(*Failure):
                    await self._refresh(keys=[self.keys.publishers(name)], args=[PUBLISHER_TTL_MS, *live])

    # -- reading ---------------------------------------------------------------------------------

    async def watch(self, room: Mirror) -> None:
        """Start reading a room: load its recent entries (the replay), then follow it."""
        if room.name in self._watched:
            return
        stream = self.keys.captions(room.name)
        try:
            await self._sync_clock()
            recent = await self.client.xrevrange(stream, count=HISTORY)
            session = await self.client.hget(self.keys.meta(room.name), "session")
        except Failure as exc:
            raise RoomsUnavailable(f"room state (Redis) is unreachable: {exc}") from exc
        if room.name in self._watched:
            return  # another request loaded it meanwhile
        room.session = max(room.session, int(session or 0))
        watch = _Watch(room, stream, recent[0][0] if recent else b"0-0")
        for entry_id, fields in reversed(recent):
            self._apply(room, entry_id, fields, replaying=True)
        self._watched[room.name] = watch
        self._by_stream[stream] = watch
        await self._wake()

    def unwatch(self, name: str) -> None:
        watch = self._watched.pop(name, None)
        if watch is not None:
            self._by_stream.pop(watch.stream, None)

    async def _wake(self) -> None:
        """The reader blocks on the streams it knew; a new one is read from its next call on."""
        with contextlib.suppress(*Failure):
            await self.client.xadd(self.keys.wake(self.gateway), {"w": 1}, maxlen=10)

    async def _read_loop(self) -> None:
        wake = self.keys.wake(self.gateway)
        while not self._closed:
            streams: dict[str, bytes] = {wake: self._wake_last}
            streams.update({w.stream: w.last for w in self._watched.values()})
            streams.update(self._voice_last)
            try:
                response = await self.client.xread(streams, count=500, block=1000)  # type: ignore[arg-type]
            except Failure as exc:
                log.debug("room bus read failed: %s", exc)
                await asyncio.sleep(0.5)  # retry period while Redis is away
                continue
            for stream_name, entries in response or []:
                key = stream_name.decode()
                if key == wake:
                    self._wake_last = entries[-1][0]
                    continue
                if key in self._voice_last:
                    self._voice_entries(key, entries)
                    continue
                watch = self._by_stream.get(key)
                if watch is None:
                    continue  # unwatched meanwhile
                for entry_id, fields in entries:
                    watch.last = entry_id
                    self._apply(watch.room, entry_id, fields)
            async with self._read_more:
                self._read_more.notify_all()

    def _voice_entries(self, stream: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        self._voice_last[stream] = entries[-1][0]
        sink = next((s for st, s in self._voices.values() if st == stream), None)
        for _entry_id, fields in entries:
            if sink is None:
                return
            try:
                sink(fields)
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("voice stream %s: unreadable entry: %s", stream, exc)

    def _apply(
        self, room: Mirror, entry_id: bytes, fields: dict[bytes, bytes], replaying: bool = False
    ) -> None:
        try:
            entry = self._entry(room.name, entry_id, fields)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            log.warning("room %s: unreadable entry %s: %s", room.name, entry_id, exc)
            return
        room.apply(entry, replaying)

    def _entry(self, room: str, entry_id: bytes, fields: dict[bytes, bytes]) -> RoomEntry:
        """A stream entry as a typed event; raises on one that cannot be read."""
        kind = fields.get(b"k", b"").decode()
        mine = fields.get(b"gw", b"").decode() == self.gateway
        entry = RoomEntry(kind, fields.get(b"pub", b"").decode(), mine)
        if kind == "caption":
            caption, session = read_caption(room, fields), int(fields.get(b"session", b"0"))
            return replace(entry, caption=caption, at=self._monotonic_of(entry_id), session=session)
        if kind == "speech":
            return replace(
                entry, speaking=fields[b"speaking"] == b"1", queue_delay=float(fields[b"queue_delay"])
            )
        if kind == "join":
            speaker = fields[b"speaker"].decode() if fields.get(b"speaker") else None
            return replace(entry, session=int(fields[b"session"]), speaker=speaker)
        if kind == "settings":
            changed = tuple(c for c in fields[b"changed"].decode().split(",") if c)
            return replace(entry, words=RoomWords.from_record(json.loads(fields[b"words"])), changed=changed)
        return entry
