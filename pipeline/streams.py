"""The Redis layout shared by gateways and workers, and how its queues are measured.

Keys (``prefix`` is ``nova`` unless configured):

- ``nova:{engine}:final`` and ``nova:{engine}:partial``: request streams, one consumer group
  (``workers``); ``nova:whisper:file``: chunks of file jobs, read only when the live streams
  are empty. Workers acknowledge *and delete* an entry once its result is written, so a
  stream holds only outstanding work: its length is the backlog plus what is in flight.
- ``nova:results:{gateway}``: each gateway's result stream, read by that gateway alone.
- ``nova:audio:{gateway}:{n}``: the audio of one utterance as a gateway sent it, a hash of
  chunks (pipeline/audio_refs.py); requests of version 2 name it. Each expires a while after
  its last chunk and is deleted once the gateway no longer needs it.
- ``nova:dead``: dead letters, requests that failed on every delivery.
- ``nova:workers`` (set) and ``nova:worker:{id}`` (a JSON heartbeat that expires): live workers.
- ``nova:counters`` (hash): cluster-wide counts of reclaimed, dead-lettered and late entries.

Only Redis 7.0 commands are used (Debian 12's redis-server, and Valkey).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)

PRIORITIES = ("final", "partial", "file")
FILE_ENGINES = ("whisper",)  # the engines whose requests may come from file jobs


@dataclass(frozen=True)
class Keys:
    prefix: str = "nova"
    group: str = "workers"

    def requests(self, engine: str, final: bool, background: bool = False) -> str:
        if background:
            return f"{self.prefix}:{engine}:file"
        return f"{self.prefix}:{engine}:{'final' if final else 'partial'}"

    def files(self, engines: Iterable[str]) -> list[str]:
        return [self.requests(e, True, background=True) for e in engines if e in FILE_ENGINES]

    def all_requests(self, engines: Iterable[str]) -> list[str]:
        """Finals of every engine first, then partials, then file chunks: the order workers read in."""
        engines = list(engines)
        live = [self.requests(e, True) for e in engines] + [self.requests(e, False) for e in engines]
        return live + self.files(engines)

    def is_file(self, stream: str) -> bool:
        return stream.endswith(":file")

    def audio(self, gateway: str = "") -> str:
        """The start of every utterance-audio hash name (of one gateway, given ``gateway``)."""
        return f"{self.prefix}:audio:{gateway}:" if gateway else f"{self.prefix}:audio:"

    def results(self, gateway: str) -> str:
        return f"{self.prefix}:results:{gateway}"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def counters(self) -> str:
        return f"{self.prefix}:counters"


# Connections one client opens at most. Commands beyond them wait for one to come free: redis-py
# 8's own pool raises "Too many connections" past 100 at once instead, which a gateway of 128
# sessions reached in a burst of requests (bench.scale) and took for Redis being down.
MAX_CONNECTIONS = 64


def connect(url: str, socket_timeout: float = 5.0) -> aioredis.Redis:
    """A client that fails fast: no silent retries, so an outage is seen within a timeout; a
    burst of commands queues for the client's connections instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=socket_timeout,
        decode_responses=False,
        protocol=2,  # RESP2: the reply shapes every Redis 7 and Valkey release gives alike
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(2.0, socket_timeout),
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis.from_pool(pool)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], timeout: float = 10.0) -> None:
    """Cancel tasks and wait until they end, cancelling again if one swallowed it.

    redis-py (8.1) can lose a cancellation that lands while a command finishes, and the task
    then carries on as if nothing happened; its loops also check a flag, and this repeats the
    cancel until every task is done or ``timeout`` passes.
    """
    pending = {t for t in tasks if not t.done()}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending and asyncio.get_running_loop().time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)
    if pending:
        log.warning("%d tasks did not stop: %s", len(pending), pending)


def id_ms(entry_id: bytes | str) -> int:
    """The Redis-clock milliseconds an entry was added at (the first part of its id)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


async def redis_now_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def ensure_groups(client: aioredis.Redis, streams: Iterable[str], group: str) -> None:
    """Create each stream's consumer group (and the stream) if missing.

    From id 0, not ``$``: requests a gateway added before any worker existed must still be read.
    """
    for stream in streams:
        try:
            await client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


@dataclass(frozen=True)
class StreamStats:
    """One request stream as a queue: ``waiting`` not yet read by any worker, ``pending`` read
    and not yet answered; ages in seconds of the oldest of each (Redis's clock)."""

    stream: str
    waiting: int
    pending: int
    waiting_age: float
    pending_age: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["waiting_age"] = round(self.waiting_age, 3)
        out["pending_age"] = round(self.pending_age, 3)
        return out


async def stream_stats(client: aioredis.Redis, stream: str, group: str, now_ms: int) -> StreamStats:
    length = int(await client.xlen(stream))
    pending = 0
    pending_age = 0.0
    last = b"0-0"
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no such stream yet
        groups = []
    for g in groups:
        if g.get("name") in (group, group.encode()):
            pending = int(g.get("pending") or 0)
            last = g.get("last-delivered-id") or last
    if pending:
        summary = await client.xpending(stream, group)
        oldest = summary.get("min")
        if oldest:
            pending_age = max(0.0, (now_ms - id_ms(oldest)) / 1000)
    waiting = max(0, length - pending)
    waiting_age = 0.0
    if waiting:
        first = await client.xrange(
            stream, min=b"(" + (last if isinstance(last, bytes) else last.encode()), count=1
        )
        if first:
            waiting_age = max(0.0, (now_ms - id_ms(first[0][0])) / 1000)
    return StreamStats(stream, waiting, pending, waiting_age, pending_age)


async def queue_stats(client: aioredis.Redis, keys: Keys, engines: Iterable[str]) -> list[StreamStats]:
    now = await redis_now_ms(client)
    return [await stream_stats(client, s, keys.group, now) for s in keys.all_requests(engines)]


async def counters(client: aioredis.Redis, keys: Keys) -> dict[str, int]:
    raw = await client.hgetall(keys.counters)
    out = dict.fromkeys(("reclaimed", "dead_letters", "late", "dropped"), 0)
    out.update({k.decode(): int(v) for k, v in raw.items()})
    out["dead_letters_stored"] = int(await client.xlen(keys.dead))
    return out


async def live_workers(client: aioredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Heartbeats of the workers alive now; forgets those whose heartbeat expired."""
    ids = sorted(await client.smembers(keys.workers))
    if not ids:
        return []
    beats = await client.mget([keys.worker(i.decode()) for i in ids])
    alive, gone = [], []
    for worker_id, beat in zip(ids, beats, strict=True):
        if beat is None:
            gone.append(worker_id)
            continue
        try:
            alive.append(json.loads(beat))
        except ValueError:
            gone.append(worker_id)
    if gone:
        await client.srem(keys.workers, *gone)
    return alive
