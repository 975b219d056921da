"""The inference backend of a gateway: requests to Redis Streams, results from its own stream.

``submit`` adds a request (``pipeline.wire``) to ``nova:{engine}:final`` or ``...:partial``;
workers anywhere answer on this gateway's result stream, which one reader task turns back into
the awaiting futures. Delivery is at least once, so results are matched by (session, ticket)
and any second answer is dropped.

A Whisper request sends only the audio its utterance has gained since the last request (the
rest is in Redis already, pipeline/audio_refs.py) once every live Whisper worker reads such
requests; a worker that cannot find that audio answers ``miss`` and the request goes again
with its whole audio, so nothing depends on what Redis or a worker still holds.

What never happens is a hang: a final waits at most ``final_timeout`` (across a Redis outage it
is sent again once Redis is back) and then fails, so the caption policy closes the line with the
words already committed; a partial waits at most its deadline. New sessions are refused with
``BackendUnavailable`` while Redis is unreachable or no worker is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from redis.exceptions import RedisError

from pipeline.audio_refs import AudioChains, Planned
from pipeline.backend import (
    BackendStats,
    BackendUnavailable,
    DeviceStats,
    SchedulerClosed,
    SchedulerFull,
    Superseded,
)
from pipeline.clock import Clock, MonotonicClock
from pipeline.streams import (
    Keys,
    StreamStats,
    cancel_all,
    connect,
    counters,
    ensure_groups,
    live_workers,
    queue_stats,
)
from pipeline.wire import CODECS, AudioRef, Codec, WireError, WireRequest, decode_result, encode_request

log = logging.getLogger(__name__)

# A gateway's result stream outlives a gateway that vanished by this long, then Redis drops it;
# workers write with NOMKSTREAM, so answers to a gone gateway are not kept either.
RESULTS_TTL_S = 120
# How much longer than its deadline a partial is awaited: the worker's answer is in flight.
RESULT_GRACE_S = 0.5

Failure = (RedisError, OSError)


class Dropped(SchedulerClosed):
    """A partial that will not run: shed while the queue is deep, past its deadline, or Redis is
    away. The session's next partial replaces it, so nothing is lost but an update."""


class DeadLettered(SchedulerClosed):
    """Workers failed this request on every delivery; it sits in the dead-letter stream."""


class _Missed(Exception):
    """A worker could not read the audio a request named: it goes again, whole."""


@dataclass(frozen=True)
class RedisOptions:
    """How a gateway uses Redis.

    engines: the engines this gateway sends to (one pair of streams each).
    max_sessions: publishers at once on this gateway (0: no limit).
    final_timeout: seconds a final may wait for its result, outages included; then it closes
        with the words already committed. Well above the workers' reclaim bound.
    partial_ttl: seconds after which a partial is not worth running (workers drop it unrun).
    shed_waiting: partials waiting unread beyond which this gateway sheds new partials.
    maxlen: approximate cap per request stream. Workers delete what they answered, so this is a
        guard far above any backlog (trimming would drop requests nobody answered yet).
    require_workers: refuse new sessions while no worker heartbeat is alive.
    file_timeout: seconds a file job's chunk may wait for its result: it waits behind every live
        request of the cluster on purpose, so far longer than a final.
    audio_refs: send Whisper requests as new audio plus a reference to what was sent before,
        while every live Whisper worker reads them (False: the whole utterance every time).
    audio_ttl: seconds an utterance's audio stays in Redis after its last chunk, unless the
        gateway deletes it first; above ``final_timeout``, so a waiting final always finds it.
    """

    prefix: str = "nova"
    group: str = "workers"
    engines: tuple[str, ...] = ("whisper",)
    max_sessions: int = 0
    final_timeout: float = 30.0
    partial_ttl: float = 2.5
    shed_waiting: int = 32
    maxlen: int = 100_000
    results_block_ms: int = 1000
    socket_timeout: float = 5.0
    probe_interval: float = 0.5
    stats_interval: float = 1.0
    require_workers: bool = True
    file_timeout: float = 3600.0
    audio_refs: bool = True
    audio_ttl: float = 120.0


@dataclass(frozen=True)
class Hop:
    """Where one answered request's time went, in milliseconds: ``transport`` is Redis and both
    clients (encode, XADD, read, result, read back), ``waited`` its time queued for a worker."""

    final: bool
    transport: float
    waited: float
    ran: float


@dataclass
class _Waiter:
    rid: str
    session: str
    ticket: int
    final: bool
    stream: str
    future: asyncio.Future[Any]
    sent: float
    request: WireRequest | None = None  # kept to send it again (whole) after a miss or a restart
    fields: dict[bytes, bytes] = field(default_factory=dict)  # what was sent last
    background: bool = False
    entry_id: bytes | None = None
    redis_run: str = ""
    audio_key: str = ""  # the utterance-audio hash the request names, if any


@dataclass(frozen=True)
class RedisSnapshot:
    """What the monitor last read from Redis: queues, cluster counters, live workers."""

    at: float = 0.0
    streams: tuple[StreamStats, ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)
    workers: tuple[Mapping[str, Any], ...] = ()


def _runs(worker: Mapping[str, Any], engine: str) -> bool:
    """Whether a live worker (its heartbeat) runs ``engine``; heartbeats before engines were
    listed came from Whisper workers."""
    return engine in (worker.get("engines") or ["whisper"])


def redacted(url: str) -> str:
    """The URL without its password, for logs and /health/full."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class RedisBackend:
    """``InferenceBackend`` over Redis Streams; ``await start()`` before use, ``aclose()`` after."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        options: RedisOptions | None = None,
        gateway: str | None = None,
        clock: Clock | None = None,
        codecs: Mapping[str, Codec] = CODECS,
        context: Callable[[], Mapping[str, str]] | None = None,
        bind: Callable[..., AbstractContextManager[None]] | None = None,
    ) -> None:
        """``context()`` gives the ids (room, session) carried with each request to the worker's
        logs; ``bind(rid=...)`` adds the request id to this side's log lines while it waits."""
        self.url = url
        self.options = options or RedisOptions()
        self.gateway = gateway or uuid.uuid4().hex[:12]
        self.keys = Keys(self.options.prefix, self.options.group)
        self.results_stream = self.keys.results(self.gateway)
        self._codecs = codecs
        self._context = context
        self._bind = bind or (lambda **ids: contextlib.nullcontext())
        self._clock = clock or MonotonicClock()
        self._client = connect(url, self.options.socket_timeout)
        self._sessions: set[str] = set()
        self._chains = AudioChains(self.keys.audio(self.gateway))
        self._waiting: dict[tuple[str, int], _Waiter] = {}
        self._partials: dict[str, _Waiter] = {}
        self._tickets = itertools.count(1)
        self._available = asyncio.Event()
        self._down_reason = "not connected yet"
        self._run_id = ""
        self._snapshot = RedisSnapshot()
        self._refs_ok = False
        self._last_result = b"0-0"
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.counts: Counter[str] = Counter()
        self.hops: deque[Hop] = deque(maxlen=10_000)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (or note that Redis is away: the monitor keeps trying) and start reading."""
        await self._probe()
        await self._refresh_stats()
        for coro in (self._monitor(), self._read_results()):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        self._closed = True
        await cancel_all(self._tasks)
        for w in list(self._waiting.values()):
            self._settle(w, error=SchedulerClosed("backend closed"))
        with contextlib.suppress(*Failure):
            await self._client.delete(self.results_stream)
        await self._client.aclose()

    @property
    def available(self) -> bool:
        return self._available.is_set()

    @property
    def snapshot(self) -> RedisSnapshot:
        return self._snapshot

    @property
    def audio_refs(self) -> bool:
        """Whether Whisper requests now send only new audio (every live worker reads them)."""
        return self.options.audio_refs and self._refs_ok

    # -- InferenceBackend ---------------------------------------------------------------------

    def open_session(self, session: Hashable) -> None:
        key = str(session)
        if key in self._sessions:
            return
        if self._closed:
            raise BackendUnavailable("the inference backend is shutting down")
        if not self.available:
            raise BackendUnavailable(f"Redis ({redacted(self.url)}) is unreachable: {self._down_reason}")
        snap = self._snapshot
        if self.options.require_workers and snap.at and not any(_runs(w, "whisper") for w in snap.workers):
            raise BackendUnavailable("no inference worker is running")
        if self.options.max_sessions and len(self._sessions) >= self.options.max_sessions:
            raise SchedulerFull(f"all {self.options.max_sessions} session slots are taken")
        self._sessions.add(key)

    def runs(self, engine: str) -> bool:
        """Whether a live worker (by its heartbeat) runs ``engine``."""
        return any(_runs(w, engine) for w in self._snapshot.workers)

    def offered(self, engine: str) -> tuple[frozenset[str], frozenset[tuple[str, str]] | None] | None:
        """What the live workers offer of a translation engine (from their heartbeats): its
        languages, and its pairs (None: every pair of those languages); None when no live
        worker runs it."""
        languages: set[str] = set()
        pairs: set[tuple[str, str]] | None = set()
        found = False
        for w in self._snapshot.workers:
            offer = (w.get("translators") or {}).get(engine)
            if not isinstance(offer, dict):
                continue
            found = True
            languages.update(str(code) for code in offer.get("languages") or ())
            listed = offer.get("pairs")
            if listed is None:
                pairs = None
            elif pairs is not None:
                pairs.update((str(a), str(b)) for a, b in listed)
        if not found:
            return None
        return frozenset(languages), frozenset(pairs) if pairs is not None else None

    async def submit(
        self, engine: str, session: Hashable, request: Any, final: bool, background: bool = False
    ) -> Any:
        """``background``: a file job's chunk, to ``nova:{engine}:file``, which workers read only
        when the live streams are empty; sent again after a Redis restart, as finals are."""
        if self._closed:
            raise SchedulerClosed("backend closed")
        key = str(session)
        final = final or background
        if not final:
            if not self.available:
                self.counts["shed"] += 1
                raise Dropped("inference is unreachable")
            if self._deep(engine):
                self.counts["shed"] += 1
                raise Dropped("the partial queue is deep")
            older = self._partials.get(key)
            if older is not None:
                self.counts["superseded"] += 1
                self._settle(older, error=Superseded())
        loop = asyncio.get_running_loop()
        ticket = next(self._tickets)
        w = _Waiter(
            rid=uuid.uuid4().hex[:16],
            session=key,
            ticket=ticket,
            final=final,
            stream=self.keys.requests(engine, final, background),
            future=loop.create_future(),
            sent=self._clock.now(),
            background=background,
        )
        w.request = WireRequest(
            rid=w.rid,
            gateway=self.gateway,
            session=key,
            ticket=ticket,
            final=final,
            engine=engine,
            payload=request,
            reply=self.results_stream,
            ttl_ms=0 if final else int(self.options.partial_ttl * 1000),
            context=dict(self._context()) if self._context else {},
            background=background,
        )
        fields, planned = self._encode(w)
        self._waiting[(key, ticket)] = w
        if not final:
            self._partials[key] = w
        limit = self.options.final_timeout if final else self.options.partial_ttl + RESULT_GRACE_S
        if background:
            limit = self.options.file_timeout
        try:
            with self._bind(rid=w.rid):
                async with asyncio.timeout(limit):
                    await self._send(w, fields, planned)
                    try:
                        result = await w.future
                    except _Missed:
                        # The worker could not read the audio named: the same request, whole.
                        self.counts["misses"] += 1
                        log.info("a worker missed the audio of ticket %d: sending it whole", ticket)
                        w.future = loop.create_future()
                        await self._send(w, self._whole(w), None)
                        result = await w.future
                if final:
                    log.info("final answered in %.0f ms", 1000 * (self._clock.now() - w.sent))
                return result
        except TimeoutError:
            if final:
                self.counts["final_timeouts"] += 1
                log.warning(
                    "final rid=%s session=%s got no result in %.0f s; it closes with its committed words",
                    w.rid,
                    key,
                    limit,
                )
                raise SchedulerClosed(f"no result within {limit:.0f} s") from None
            self.counts["expired"] += 1
            raise Dropped("the partial's deadline passed") from None
        finally:
            self._forget(w)

    def close_session(self, session: Hashable) -> None:
        key = str(session)
        self._sessions.discard(key)
        for w in [w for w in self._waiting.values() if w.session == key]:
            self._settle(w, error=SchedulerClosed("session left"))
        self._delete_audio(self._chains.close(key))

    def queue_delay(self, session: Hashable | None = None) -> float:
        """How far behind inference runs: the older of this gateway's oldest unanswered request
        (of ``session``) and the oldest request waiting in Redis for a worker. The policy slows
        partials down as it grows, on every gateway at once."""
        now = self._clock.now()
        key = None if session is None else str(session)
        # File chunks wait behind live work on purpose: their age is not how far behind live runs.
        local = max(
            (now - w.sent for w in self._waiting.values() if key in (None, w.session) and not w.background),
            default=0.0,
        )
        return max(
            [local, *(s.waiting_age for s in self._snapshot.streams if not self.keys.is_file(s.stream))]
        )

    def stats(self) -> BackendStats:
        snap = self._snapshot
        devices = tuple(
            DeviceStats(
                device=f"{w.get('id', '?')}/{w.get('device', '?')}",
                sessions=int(w.get("sessions", 0)),
                queue_depth=int(w.get("inflight", 0)),
                queue_delay=float(w.get("queue_delay", 0.0)),
                max_batch=int(w.get("max_batch", 0)),
            )
            for w in snap.workers
        )
        models = sorted({str(w.get("model", "")) for w in snap.workers} - {""})
        whisper = any(_runs(w, "whisper") for w in snap.workers)
        ready = self.available and (whisper or not self.options.require_workers)
        detail = {
            "model": {"name": ",".join(models) or None, "loaded": bool(snap.workers), "where": "workers"},
            "redis": {
                "url": redacted(self.url),
                "connected": self.available,
                "problem": None if self.available else self._down_reason,
                "gateway": self.gateway,
                "streams": {s.stream: s.to_dict() for s in snap.streams},
                "counters": dict(snap.counters),
                "workers": len(snap.workers),
                "waiting_here": len(self._waiting),
                "gateway_counts": dict(self.counts),
            },
        }
        return BackendStats(
            kind=self.kind,
            ready=ready,
            sessions=len(self._sessions),
            max_sessions=self.options.max_sessions,
            queue_depth=sum(s.waiting for s in snap.streams),
            queue_delay=max(
                (s.waiting_age for s in snap.streams if not self.keys.is_file(s.stream)), default=0.0
            ),
            devices=devices,
            detail=detail,
        )

    # -- internals ----------------------------------------------------------------------------

    def _deep(self, engine: str) -> bool:
        stream = self.keys.requests(engine, False)
        for s in self._snapshot.streams:
            if s.stream == stream:
                return s.waiting >= self.options.shed_waiting or s.waiting_age >= self.options.partial_ttl
        return False

    def _encode(self, w: _Waiter) -> tuple[dict[bytes, bytes], Planned | None]:
        """The entry for a request, and for Whisper audio while every worker reads references,
        the chunk of new audio to write before it."""
        req = w.request
        assert req is not None
        if not (req.engine == "whisper" and self.audio_refs):
            return encode_request(req, self._codecs), None
        parts = self._codecs[req.engine].request_body(req.payload)
        pcm = parts[1]
        if not pcm:
            return encode_request(req, self._codecs, parts), None
        planned = self._chains.plan(w.session, pcm)
        w.audio_key = planned.key
        ref = AudioRef(planned.key, planned.chunks, planned.samples, planned.crc)
        return encode_request(replace(req, audio=ref), self._codecs, parts), planned

    def _whole(self, w: _Waiter) -> dict[bytes, bytes]:
        """The request with its audio inline (version 1): after a miss, or Redis lost the audio."""
        assert w.request is not None
        if w.audio_key:
            self._delete_audio([self._chains.forget(w.session, w.audio_key)])
        return encode_request(w.request, self._codecs)

    async def _send(self, w: _Waiter, fields: dict[bytes, bytes], planned: Planned | None) -> None:
        """XADD (after the chunk of new audio, if any), waiting for Redis to come back if it is
        away (finals; the caller bounds the wait)."""
        while True:
            await self._available.wait()
            try:
                w.entry_id = await self._add(w.stream, fields, planned)
                w.fields = fields
                w.redis_run = self._run_id
                self.counts["sent"] += 1
                self.counts["bytes_sent"] += sum(len(v) for v in fields.values())
                if planned is not None and planned.chunk is not None:
                    self.counts["audio_bytes"] += len(planned.chunk.data)
                    self.counts["bytes_sent"] += len(planned.chunk.data)
                log.log(
                    logging.INFO if w.final else logging.DEBUG, "sent to %s (ticket %d)", w.stream, w.ticket
                )
                return
            except Failure as exc:
                self._mark_down(exc)
                if planned is not None:
                    # Whether the chunk was written is unknown: this one and what follows go whole.
                    planned = None
                    fields = self._whole(w)
                if not w.final:
                    raise Dropped(f"Redis is unreachable: {exc}") from exc

    async def _add(self, stream: str, fields: dict[bytes, bytes], planned: Planned | None) -> bytes:
        if planned is None:
            return await self._client.xadd(stream, fields, maxlen=self.options.maxlen, approximate=True)
        # One round trip, in this order on one connection: the audio is there before any worker
        # can read the request that names it.
        pipe = self._client.pipeline(transaction=False)
        if planned.expired:
            pipe.delete(*planned.expired)
        if planned.chunk is not None:
            pipe.hset(planned.key, str(planned.chunk.index), planned.chunk.data)
        pipe.pexpire(planned.key, int(self.options.audio_ttl * 1000))
        pipe.xadd(stream, fields, maxlen=self.options.maxlen, approximate=True)
        replies = await pipe.execute()
        return replies[-1]

    def _delete_audio(self, keys: list[str | None]) -> None:
        names = [k for k in keys if k]
        if names and not self._closed:
            self._spawn(self._delete_keys(names))

    async def _delete_keys(self, names: list[str]) -> None:
        with contextlib.suppress(*Failure):
            await self._client.delete(*names)

    def _settle(self, w: _Waiter, result: Any = None, error: BaseException | None = None) -> None:
        if w.future.done():
            return
        if error is not None:
            w.future.set_exception(error)
        else:
            w.future.set_result(result)

    def _forget(self, w: _Waiter) -> None:
        self._waiting.pop((w.session, w.ticket), None)
        if w.audio_key:
            self._delete_audio([self._chains.release(w.session, w.audio_key)])
        if self._partials.get(w.session) is w:
            del self._partials[w.session]
        answered = w.future.done() and not w.future.cancelled() and w.future.exception() is None
        if not w.future.done():
            w.future.cancel()
        if not answered and w.entry_id is not None and not self._closed:
            # Nobody waits for it any more: take it off the queue if no worker has it yet.
            self._spawn(self._delete(w.stream, w.entry_id))

    async def _delete(self, stream: str, entry_id: bytes) -> None:
        with contextlib.suppress(*Failure):
            await self._client.xdel(stream, entry_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mark_down(self, exc: BaseException) -> None:
        if self.available:
            log.warning("Redis %s unreachable: %s", redacted(self.url), exc)
        self._down_reason = f"{type(exc).__name__}: {exc}"
        self._available.clear()
        # Nothing is known of the workers while Redis is away: none are reported.
        self._snapshot = RedisSnapshot(at=self._snapshot.at, counters=self._snapshot.counters)
        # Partials cannot come back in time; finals wait (bounded) and are sent again if needed.
        for w in [w for w in self._waiting.values() if not w.final]:
            self._settle(w, error=Dropped("Redis is unreachable"))

    async def _probe(self) -> None:
        try:
            info = await self._client.info("server")
            run_id = str(info.get("run_id", ""))
            fresh = run_id != self._run_id
            if fresh or not self.available:
                streams = self.keys.all_requests(self.options.engines)
                await ensure_groups(self._client, streams, self.options.group)
                await ensure_groups(self._client, [self.results_stream], "gateway")
            if not await self._client.expire(self.results_stream, RESULTS_TTL_S):
                await ensure_groups(self._client, [self.results_stream], "gateway")
                await self._client.expire(self.results_stream, RESULTS_TTL_S)
            restarted = fresh and bool(self._run_id)
            self._run_id = run_id
            if restarted:
                self._chains.reset()  # what Redis held of every utterance may be gone
                await self._resend()
        except Failure as exc:
            self._mark_down(exc)
            return
        if not self.available:
            log.info("Redis %s reachable (run %s)", redacted(self.url), self._run_id[:8])
        self._available.set()

    async def _resend(self) -> None:
        """Redis restarted empty: finals it took before are gone, so they go again, with their
        whole audio (same rid and ticket: if the old copy is answered after all, the second
        answer is dropped)."""
        again = [
            w
            for w in self._waiting.values()
            if w.final and w.request and w.entry_id is not None and w.redis_run != self._run_id
        ]
        for w in again:
            w.fields = self._whole(w) if w.audio_key else w.fields
            w.audio_key = ""
            w.entry_id = await self._client.xadd(
                w.stream, w.fields, maxlen=self.options.maxlen, approximate=True
            )
            w.redis_run = self._run_id
        if again:
            self.counts["resent"] += len(again)
            log.info("Redis restarted: %d waiting finals sent again", len(again))

    async def _refresh_stats(self) -> None:
        if not self.available:
            return
        try:
            streams = await queue_stats(self._client, self.keys, self.options.engines)
            self._snapshot = RedisSnapshot(
                at=time.monotonic(),
                streams=tuple(streams),
                counters=await counters(self._client, self.keys),
                workers=tuple(await live_workers(self._client, self.keys)),
            )
            # References only while every Whisper worker reads them: one of an older release
            # would refuse such a request (rolling upgrades, pipeline/wire.py).
            whisper = [w for w in self._snapshot.workers if _runs(w, "whisper")]
            self._refs_ok = bool(whisper) and all(w.get("audio_refs") for w in whisper)
        except Failure as exc:
            self._mark_down(exc)

    async def _monitor(self) -> None:
        next_stats = 0.0
        while not self._closed:
            try:
                await self._probe()
            except Exception:  # noqa: BLE001 - the monitor must outlive any surprise
                log.exception("Redis probe failed")
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + self.options.stats_interval
                await self._refresh_stats()
            await asyncio.sleep(self.options.probe_interval)  # a probe period, not synchronisation

    async def _read_results(self) -> None:
        while not self._closed:
            await self._available.wait()
            try:
                response = await self._client.xread(
                    {self.results_stream: self._last_result}, count=256, block=self.options.results_block_ms
                )
            except Failure as exc:
                self._mark_down(exc)
                await asyncio.sleep(self.options.probe_interval)  # back off; the monitor reconnects
                continue
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    self._last_result = entry_id
                    self._deliver(fields)
            if response:
                with contextlib.suppress(*Failure):
                    await self._client.xtrim(self.results_stream, minid=self._last_result, approximate=False)

    def _deliver(self, fields: Mapping[bytes, bytes]) -> None:
        try:
            res = decode_result(fields, self._codecs)
        except WireError as exc:
            self.counts["unreadable"] += 1
            log.warning("unreadable result on %s: %s", self.results_stream, exc)
            return
        w = self._waiting.get((res.session, res.ticket))
        if w is None or w.rid != res.rid or w.future.done():
            self.counts["duplicates"] += 1
            return
        self.counts["results"] += 1
        if res.status == "ok":
            # The Redis hop: the round trip here, less the time the request waited in Redis for a
            # free worker and the time the worker held it (its batch).
            rtt = 1000 * (self._clock.now() - w.sent)
            self.hops.append(Hop(w.final, rtt - res.run_ms - res.wait_ms, res.wait_ms, res.run_ms))
        log.debug(
            "result rid=%s session=%s status=%s worker=%s", res.rid, res.session, res.status, res.worker
        )
        if res.status == "ok":
            self._settle(w, res.payload)
        elif res.status == "miss":
            self._settle(w, error=_Missed())
        elif res.status == "dropped":
            self._settle(w, error=Dropped(res.error or "dropped by a worker"))
        else:
            self._settle(w, error=DeadLettered(res.error or "dead-lettered"))
