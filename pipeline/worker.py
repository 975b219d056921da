"""A worker: reads requests from Redis Streams, runs them on the existing ``Scheduler``, answers.

A worker takes work a batch at a time: the waiting finals (up to a batch), or if there are none
the waiting partials (up to the partial batch), or if there are none of those either a file
job's chunk (``nova:whisper:file``), when its device is free; and one batch more of live work
while a batch of its own runs and nothing else of its own waits (so the device does not wait for
Redis between batches), never more than ``max_inflight`` entries at once. What arrives meanwhile
stays in Redis, where an idle worker takes it at once, instead of queueing behind a busy one;
under load it piles up and the next read makes a full batch. An entry is
acknowledged and deleted in the same transaction that writes its result to the asking
gateway's stream. An entry whose worker died stays pending: about every second each worker
claims (``XAUTOCLAIM``) entries idle longer than a few times its p99 batch time. Its own
entries in flight it keeps fresh (``XCLAIM ... JUSTID``, which does not count a delivery), so
a slow batch is not mistaken for a dead worker. An entry delivered more than
``max_deliveries`` times goes to the dead-letter stream and its gateway is told, so the final
closes with the words it has. Partials past their deadline are answered "dropped", unrun.

A Whisper request of wire version 2 names its audio instead of carrying it: the worker keeps
what it has read of each utterance (``AudioCache``, shared by the devices of one process) and
reads from Redis only the chunks it lacks; audio it cannot find or check is answered ``miss``,
unrun, and the gateway sends the request again whole (pipeline/audio_refs.py).

``drain()`` (SIGTERM): stop reading, finish what was read, answer, acknowledge, leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from pipeline.audio_refs import AudioCache
from pipeline.backend import SchedulerClosed, Superseded
from pipeline.batching import BatchOptions
from pipeline.engines import Engine
from pipeline.scheduler import NullObserver, Scheduler, SchedulerObserver
from pipeline.streams import (
    Keys,
    StreamStats,
    cancel_all,
    counters,
    ensure_groups,
    id_ms,
    queue_stats,
    redis_now_ms,
)
from pipeline.wire import (
    CODECS,
    Codec,
    Status,
    WireError,
    WireRequest,
    WireResult,
    decode_request,
    encode_result,
    with_audio,
)

log = logging.getLogger(__name__)

Failure = (RedisError, OSError)
Verdict = Literal["run", "late", "dead"]


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker reads, reclaims and gives up.

    consumer: this worker's name in the group (default host-pid-random).
    block_ms: XREADGROUP BLOCK; kept under the client's socket timeout.
    max_inflight: entries held at once (0: twice the scheduler's max_batch: a batch on the
        device and one read ahead).
    max_partials_inflight: partials taken at once (0: the scheduler's partial batch).
    reclaim_interval: seconds between XAUTOCLAIM passes (and refreshes of entries in flight).
    min_idle_floor, idle_factor: an entry is reclaimed once idle for max(floor, factor x p99
        batch seconds).
    max_deliveries: deliveries after which an entry is dead-lettered instead of run again.
    heartbeat_ttl: a worker whose heartbeat is older than this is gone for gateways.
    audio_cache_mb, audio_cache_ttl: the utterance audio kept between requests (its bound, and
        how long an utterance nobody asks about is kept).
    """

    prefix: str = "nova"
    group: str = "workers"
    consumer: str = ""
    model: str = ""
    block_ms: int = 1000
    max_inflight: int = 0
    max_partials_inflight: int = 0
    reclaim_interval: float = 1.0
    min_idle_floor: float = 2.0
    idle_factor: float = 3.0
    max_deliveries: int = 3
    heartbeat_interval: float = 1.0
    heartbeat_ttl: float = 5.0
    result_maxlen: int = 10_000
    dead_maxlen: int = 10_000
    drain_timeout: float = 60.0
    # ~130 KB for an utterance of 4 s: 256 MB holds 2,000 utterances in progress.
    audio_cache_mb: int = 256
    audio_cache_ttl: float = 60.0


# -- the pure decisions ------------------------------------------------------------------------


def reclaim_idle_ms(batch_seconds: Sequence[float], options: WorkerOptions) -> int:
    """How long an entry must sit untouched before another worker may take it."""
    p99 = float(np.percentile(batch_seconds, 99)) if len(batch_seconds) else 0.0
    return int(1000 * max(options.min_idle_floor, options.idle_factor * p99))


def triage(
    final: bool, ttl_ms: int, age_ms: float, deliveries: int, max_deliveries: int, run_ms: float = 0.0
) -> Verdict:
    """Run it, drop it as late (partials only: finals never expire), or dead-letter it.

    A partial that would only be answered after its deadline (its age plus ``run_ms``, what a
    batch takes here) is dropped before it runs: its gateway has stopped waiting by then.
    """
    if deliveries > max_deliveries:
        return "dead"
    if not final and ttl_ms and age_ms + run_ms > ttl_ms:
        return "late"
    return "run"


# -- the shell ---------------------------------------------------------------------------------


class _Tee:
    """Batch timings go to the worker (reclaim bound, load) and to the caller's observer."""

    def __init__(self, worker: Worker, observer: SchedulerObserver) -> None:
        self._worker = worker
        self._observer = observer

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        self._worker._batch_seconds.append(seconds)  # noqa: SLF001 - the worker's own helper
        self._worker._busy += seconds  # noqa: SLF001
        self._observer.on_batch(engine, device, size, seconds, waited)

    def on_coalesced(self, engine: str) -> None:
        self._observer.on_coalesced(engine)

    def on_cancelled(self, engine: str, count: int) -> None:
        self._observer.on_cancelled(engine, count)


@dataclass(frozen=True)
class WorkerStats:
    id: str
    device: str
    connected: bool
    draining: bool
    inflight: int
    max_inflight: int
    load: float
    reclaim_idle_ms: int
    counts: Mapping[str, int]
    streams: tuple[StreamStats, ...]
    cluster: Mapping[str, int]


def offered_translations(engines: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per translation engine: its languages, and its pairs where not every pair works (Apertium)."""
    offered: dict[str, dict[str, Any]] = {}
    for name, engine in engines.items():
        languages = getattr(engine, "languages", None)
        if name == "whisper" or languages is None:
            continue
        pairs = getattr(engine, "pairs", None)
        offered[name] = {
            "languages": sorted(languages),
            "pairs": sorted([list(p) for p in pairs]) if pairs is not None else None,
        }
    return offered


class Worker:
    """One device's scheduler fed from Redis. ``await run()`` until ``drain()`` is called."""

    def __init__(
        self,
        client: aioredis.Redis,
        engines: Mapping[str, Engine[Any, Any]],
        batch: BatchOptions | None = None,
        device: str = "cpu",
        options: WorkerOptions | None = None,
        observer: SchedulerObserver | None = None,
        codecs: Mapping[str, Codec] = CODECS,
        bind: Callable[..., AbstractContextManager[None]] | None = None,
        audio: AudioCache | None = None,
    ) -> None:
        """``bind(room=..., session=..., rid=...)`` puts a request's ids on the log lines written
        while it is handled (the ids come with the request from its gateway). ``audio``: the
        utterance audio already read, shared by the workers of one process."""
        self.options = options or WorkerOptions()
        self.audio = audio or AudioCache(self.options.audio_cache_mb << 20, self.options.audio_cache_ttl)
        self._bind = bind or (lambda **ids: contextlib.nullcontext())
        self.client = client
        self.device = device
        self.id = self.options.consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.keys = Keys(self.options.prefix, self.options.group)
        self._codecs = codecs
        served = {name: e for name, e in engines.items() if name in codecs}
        if not served:
            raise ValueError(f"none of the engines {sorted(engines)} can travel over Redis")
        self.engines = tuple(served)
        self.translators = offered_translations(served)
        self._finals = [self.keys.requests(e, True) for e in self.engines]
        self._partials = [self.keys.requests(e, False) for e in self.engines]
        self._files = self.keys.files(self.engines)
        self._streams_read = self._finals + self._partials + self._files
        self._batch_seconds: deque[float] = deque(maxlen=256)
        self._busy = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._taken = 0  # batches the device has taken (counted on its thread)
        self._read_ahead_for = 0  # the batch during which the last read ahead was made
        self.scheduler = Scheduler(
            dict(served),
            batch,
            device,
            observer=_Tee(self, observer or NullObserver()),
            on_taken=self._on_taken,
        )
        batching = self.scheduler.options
        self.max_inflight = self.options.max_inflight or 2 * batching.max_batch
        self.max_finals = min(batching.max_batch, self.max_inflight)
        self.max_partials = (
            self.options.max_partials_inflight or batching.max_partial_batch or batching.max_batch
        )
        self.max_files = batching.max_file_batch or batching.max_batch
        self._inflight: dict[tuple[str, bytes], bool] = {}  # (stream, id) -> final
        self._slot = asyncio.Event()
        self._draining = False
        self._stopped = False
        self._connected = False
        self._offset_ms = 0
        self._load = 0.0
        self._streams: tuple[StreamStats, ...] = ()
        self._cluster: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()

    # -- control ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Stop reading; ``run`` returns once what was read is answered."""
        if not self._draining:
            log.info("worker %s draining: %d requests in flight", self.id, len(self._inflight))
        self._draining = True
        self._slot.set()

    @property
    def draining(self) -> bool:
        return self._draining

    def stats(self) -> WorkerStats:
        return WorkerStats(
            id=self.id,
            device=self.device,
            connected=self._connected,
            draining=self._draining,
            inflight=len(self._inflight),
            max_inflight=self.max_inflight,
            load=self._load,
            reclaim_idle_ms=reclaim_idle_ms(self._batch_seconds, self.options),
            counts=dict(self.counts),
            streams=self._streams,
            cluster=dict(self._cluster),
        )

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        background = [loop.create_task(self._heartbeat()), loop.create_task(self._reclaim_loop())]
        try:
            await self._read_loop()
            await self._finish_inflight()
        finally:
            self._stopped = True
            await cancel_all(background)
            await self._goodbye()
            await asyncio.to_thread(self.scheduler.close)
            log.info("worker %s stopped: %s", self.id, dict(self.counts))

    # -- reading --------------------------------------------------------------------------------

    async def _connect(self) -> None:
        await ensure_groups(self.client, self._streams_read, self.keys.group)
        if not self._connected:
            log.info("worker %s reading %s", self.id, ", ".join(self._streams_read))
        self._connected = True

    def _on_taken(self) -> None:
        """On the device's thread: a batch went onto the device; the read loop may go on."""
        self._taken += 1
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the batch ran
                loop.call_soon_threadsafe(self._slot.set)

    def _may_read_ahead(self) -> bool:
        """Whether to read the next batch while this worker's work is in flight: only while one
        batch runs on the device and nothing else of ours waits for it. The next batch then
        waits for the device here instead of the device waiting for the next read (Redis round
        trips, audio, features): at 128 modelled sessions the device sat idle 48 % of the time
        while partials were shed (bench/results/scale.md). One batch ahead at most, so work is
        still left to idle workers."""
        return (
            self._read_ahead_for != self._taken
            and len(self._inflight) < self.max_inflight
            and self.scheduler.running_alone()
        )

    async def _read_loop(self) -> None:
        while not self._draining:
            if self._inflight:
                if not self._may_read_ahead():
                    # The device has work of ours: new work is left to idle workers until it is done.
                    self._slot.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.options.block_ms / 1000):
                            await self._slot.wait()
                    continue
                self._read_ahead_for = self._taken
            try:
                if not self._connected:
                    await self._connect()
                entries = await self._read()
            except Failure as exc:
                if self._connected or "NOGROUP" not in str(exc):
                    log.warning("worker %s: Redis read failed: %s", self.id, exc)
                self._connected = False
                await asyncio.sleep(0.5)  # back off before reconnecting
                continue
            for stream, entry_id, fields in entries:
                self._start(stream, entry_id, fields, deliveries=1)

    async def _read(self) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
        """One batch's worth: waiting finals, else waiting partials, else the first to come."""
        room = self.max_inflight - len(self._inflight)
        finals = await self._xreadgroup(self._finals, min(self.max_finals, room), block=None)
        if finals:
            return finals
        partials = await self._xreadgroup(self._partials, min(self.max_partials, room), block=None)
        if partials:
            return partials
        if self._inflight:
            # Reading ahead: live work only (a file chunk read now would take the device from
            # a live request that arrives before this batch ends).
            count = min(self.max_finals, self.max_partials, room)
            return await self._xreadgroup(self._finals + self._partials, count, block=self.options.block_ms)
        if self._files:
            # File chunks only when no live request waits anywhere: the device's gaps are theirs.
            files = await self._xreadgroup(self._files, self.max_files, block=None)
            if files:
                return files
        # COUNT is per stream: the smallest budget bounds all.
        count = min(self.max_finals, self.max_partials, self.max_files, room)
        return await self._xreadgroup(self._streams_read, count, block=self.options.block_ms)

    async def _xreadgroup(
        self, streams: list[str], count: int, block: int | None
    ) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
        response = await self.client.xreadgroup(
            self.keys.group, self.id, dict.fromkeys(streams, ">"), count=count, block=block
        )
        out = []
        for stream, entries in response or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            out += [(name, entry_id, fields) for entry_id, fields in entries if fields]
        return out

    def _start(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int) -> None:
        self._inflight[(stream, entry_id)] = stream in self._finals
        task = asyncio.get_running_loop().create_task(self._handle(stream, entry_id, fields, deliveries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one entry -----------------------------------------------------------------------------

    def _age_ms(self, entry_id: bytes) -> float:
        return time.time() * 1000 + self._offset_ms - id_ms(entry_id)

    async def _handle(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        try:
            await self._handle_one(stream, entry_id, fields, deliveries)
        except Failure as exc:
            # Not acknowledged: it stays pending and is reclaimed once Redis answers again.
            log.warning("worker %s could not answer %s: %s", self.id, entry_id, exc)
        finally:
            self._inflight.pop((stream, entry_id), None)
            self._slot.set()

    async def _handle_one(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        try:
            req = decode_request(fields, self._codecs)
        except WireError as exc:
            await self._dead_letter(stream, entry_id, fields, f"unreadable: {exc}", None, deliveries)
            return
        with self._bind(**{**req.context, "rid": req.rid}):
            await self._run_request(stream, entry_id, fields, deliveries, req)

    async def _run_request(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int, req: WireRequest
    ) -> None:
        typical = 1000 * float(np.median(self._batch_seconds)) if self._batch_seconds else 0.0
        verdict = triage(
            req.final, req.ttl_ms, self._age_ms(entry_id), deliveries, self.options.max_deliveries, typical
        )
        if verdict == "dead":
            await self._dead_letter(stream, entry_id, fields, "failed on every delivery", req, deliveries)
            return
        if verdict == "late":
            self.counts["late"] += 1
            await self._answer(stream, entry_id, req, "dropped", error="deadline passed before it ran")
            return
        if req.audio is not None:
            found = await self._with_audio(req)
            if found is None:
                self.counts["misses"] += 1
                await self._answer(stream, entry_id, req, "miss", error="audio not found")
                return
            req = found
        session: Hashable = (req.gateway, req.session)
        waited_ms = self._age_ms(entry_id)
        started = time.perf_counter()
        try:
            payload = await self.scheduler.submit(req.engine, session, req.payload, req.final, req.background)
        except Superseded:
            self.counts["superseded"] += 1
            await self._answer(stream, entry_id, req, "dropped", error="replaced by a newer partial")
            return
        except SchedulerClosed:
            return  # shutting down before it ran: left pending for another worker
        except Exception as exc:  # noqa: BLE001 - left pending: redelivered, then dead-lettered
            self.counts["failures"] += 1
            log.warning("%s failed on delivery %d: %s", req.engine, deliveries, exc)
            return
        run_ms = (time.perf_counter() - started) * 1000
        await self._answer(stream, entry_id, req, "ok", payload=payload, run_ms=run_ms, wait_ms=waited_ms)
        level = logging.INFO if req.final else logging.DEBUG
        log.log(level, "%s %s answered in %.0f ms", "final" if req.final else "partial", req.engine, run_ms)

    async def _with_audio(self, req: WireRequest) -> WireRequest | None:
        """The request with the audio its reference names, from what this process holds and
        the chunks it reads now; None when that audio cannot be found or does not check out."""
        ref = req.audio
        assert ref is not None
        if not ref.key.startswith(self.keys.audio()):
            return None  # only utterance audio is ever named: never any other key
        start = self.audio.wanted(ref.key, ref.chunks)
        read: list[bytes] = []
        if start < ref.chunks:
            try:
                values = await self.client.hmget(ref.key, [str(i) for i in range(start, ref.chunks)])
            except ResponseError:
                return None  # not a hash
            if any(v is None for v in values):
                return None
            read = list(values)
            self.counts["audio_read_bytes"] += sum(len(v) for v in read)
        pcm = self.audio.assemble(ref.key, start, ref.chunks, ref.samples, ref.crc, read)
        if pcm is None:
            return None
        # Whether this worker had read the utterance before (the common case) or read it whole.
        self.counts["audio_cached" if start else "audio_read_whole"] += 1
        return with_audio(req, pcm)

    async def _answer(
        self,
        stream: str,
        entry_id: bytes,
        req: WireRequest,
        status: Status,
        payload: Any = None,
        error: str = "",
        run_ms: float = 0.0,
        wait_ms: float = 0.0,
    ) -> None:
        result = WireResult(
            rid=req.rid,
            session=req.session,
            ticket=req.ticket,
            status=status,
            engine=req.engine,
            payload=payload,
            error=error,
            worker=self.id,
            run_ms=run_ms,
            wait_ms=max(0.0, wait_ms),
        )
        # One transaction: the result is written if and only if the request is acknowledged.
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            req.reply,
            encode_result(result, self._codecs),
            maxlen=self.options.result_maxlen,
            approximate=True,
            nomkstream=True,  # a gateway that is gone has no stream: its answers are not kept
        )
        pipe.xack(stream, self.keys.group, entry_id)
        pipe.xdel(stream, entry_id)
        if status not in ("ok", "miss"):
            pipe.hincrby(self.keys.counters, "late" if error.startswith("deadline") else status, 1)
        await pipe.execute()
        self.counts[status] += 1

    async def _dead_letter(
        self,
        stream: str,
        entry_id: bytes,
        fields: Mapping[bytes, bytes],
        reason: str,
        req: WireRequest | None,
        deliveries: int,
    ) -> None:
        letter = {
            **fields,
            b"stream": stream.encode(),
            b"entry": entry_id,
            b"reason": reason.encode(),
            b"deliveries": str(deliveries).encode(),
            b"worker": self.id.encode(),
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.keys.dead, letter, maxlen=self.options.dead_maxlen, approximate=True)
        if req is not None:
            failed = WireResult(
                rid=req.rid,
                session=req.session,
                ticket=req.ticket,
                status="failed",
                engine=req.engine,
                error=reason,
            )
            pipe.xadd(
                req.reply,
                encode_result(failed, self._codecs),
                maxlen=self.options.result_maxlen,
                nomkstream=True,
            )
        pipe.xack(stream, self.keys.group, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.hincrby(self.keys.counters, "dead_letters", 1)
        await pipe.execute()
        self.counts["dead_letters"] += 1
        rid = req.rid if req else "?"
        log.warning("worker %s dead-lettered %s rid=%s from %s: %s", self.id, entry_id, rid, stream, reason)

    # -- reclaiming ------------------------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.options.reclaim_interval)  # the reclaim period
            try:
                await self._touch()
                if not self._draining:
                    await self._reclaim()
            except Failure as exc:
                log.debug("worker %s: reclaim pass failed: %s", self.id, exc)

    async def _touch(self) -> None:
        """Reset the idle time of entries this worker is still working on (no delivery counted)."""
        mine: dict[str, list[bytes]] = {}
        for stream, entry_id in list(self._inflight):
            mine.setdefault(stream, []).append(entry_id)
        for stream, ids in mine.items():
            await self.client.xclaim(stream, self.keys.group, self.id, 0, ids, justid=True)

    async def _reclaim(self) -> None:
        idle = reclaim_idle_ms(self._batch_seconds, self.options)
        for stream in self._streams_read:
            response = await self.client.xautoclaim(
                stream, self.keys.group, self.id, idle, start_id="0-0", count=self.max_inflight
            )
            claimed = [(entry_id, fields) for entry_id, fields in response[1] if fields]
            if not claimed:
                continue
            ids = [entry_id for entry_id, _ in claimed]
            pending = await self.client.xpending_range(
                stream,
                self.keys.group,
                min=min(ids, key=id_ms),
                max=max(ids, key=id_ms),
                count=10 * len(ids) + 10,
            )
            deliveries = {p["message_id"]: int(p["times_delivered"]) for p in pending}
            self.counts["reclaimed"] += len(claimed)
            await self.client.hincrby(self.keys.counters, "reclaimed", len(claimed))
            log.info(
                "worker %s reclaimed %d entries of %s idle over %d ms", self.id, len(claimed), stream, idle
            )
            for entry_id, fields in claimed:
                if (stream, entry_id) in self._inflight:
                    continue  # ours already (refreshed late): it is running
                self._start(stream, entry_id, fields, deliveries.get(entry_id, 2))

    # -- heartbeat, drain ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        last = time.monotonic()
        while not self._stopped:
            now = time.monotonic()
            self._load = min(1.0, self._busy / max(1e-3, now - last))
            self._busy, last = 0.0, now
            try:
                await self._beat()
            except Failure as exc:
                self._connected = False
                log.debug("worker %s heartbeat failed: %s", self.id, exc)
            await asyncio.sleep(self.options.heartbeat_interval)  # the heartbeat period

    async def _beat(self) -> None:
        beat = {
            "id": self.id,
            "device": self.device,
            "model": self.options.model,
            "engines": list(self.engines),
            # What gateways may promise rooms: each translation engine's languages and pairs.
            "translators": self.translators,
            "inflight": len(self._inflight),
            "max_inflight": self.max_inflight,
            "max_batch": self.scheduler.options.max_batch,
            "queue_delay": round(self.scheduler.queue_delay(), 3),
            "load": round(self._load, 3),
            "draining": self._draining,
            "counts": dict(self.counts),
            # Reads requests that name their audio (wire version 2): gateways send them only
            # while every live Whisper worker says so.
            "audio_refs": True,
        }
        before = time.time() * 1000
        now_ms = await redis_now_ms(self.client)
        self._offset_ms = int(now_ms - (before + time.time() * 1000) / 2)
        ttl = max(1, int(self.options.heartbeat_ttl * 1000))
        await self.client.set(self.keys.worker(self.id), json.dumps(beat), px=ttl)
        await self.client.sadd(self.keys.workers, self.id)
        self._streams = tuple(await queue_stats(self.client, self.keys, self.engines))
        self._cluster = await counters(self.client, self.keys)

    async def _finish_inflight(self) -> None:
        if self._tasks:
            try:
                async with asyncio.timeout(self.options.drain_timeout):
                    await asyncio.gather(*self._tasks, return_exceptions=True)
            except TimeoutError:
                log.warning(
                    "worker %s: %d requests unanswered at exit; they will be reclaimed",
                    self.id,
                    len(self._tasks),
                )

    async def _goodbye(self) -> None:
        """Leave the group tidy: no heartbeat, and no consumer entry unless it still owns entries."""
        try:
            await self.client.delete(self.keys.worker(self.id))
            await self.client.srem(self.keys.workers, self.id)
            for stream in self._streams_read:
                owned = await self.client.xpending_range(
                    stream, self.keys.group, "-", "+", 1, consumername=self.id
                )
                if not owned:
                    await self.client.xgroup_delconsumer(stream, self.keys.group, self.id)
        except Failure as exc:
            log.debug("worker %s: goodbye incomplete: %s", self.id, exc)
