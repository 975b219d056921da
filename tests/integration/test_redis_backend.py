"""The Redis backend and a worker against a real redis-server and the real tiny.en model."""

from __future__ import annotations

import asyncio
import json
import statistics
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import redis

from bench.corpus import LIBRIVOX
from bench.scoring import wer
from pipeline.audio import pcm16_to_float, read_audio
from pipeline.backend import BackendUnavailable, SchedulerClosed, Superseded
from pipeline.redis_backend import Dropped, RedisBackend
from pipeline.streams import Keys
from pipeline.types import DecodeOptions, Embeddings, EmbedRequest, TranscribeRequest, Transcript
from pipeline.wire import WireResult, decode_request, encode_result
from pipeline.worker import WorkerOptions
from server.inference import LoadedModels
from tests.support.redis_server import RedisServer
from tests.support.scaleout import eventually, gateway_backend, speak, worker_in_process

KEYS = Keys()
FINALS = KEYS.requests("whisper", True)
PARTIALS = KEYS.requests("whisper", False)


def clip_request(i: int, **options: Any) -> TranscribeRequest:
    audio = pcm16_to_float(read_audio(str(LIBRIVOX[i].path)))
    return TranscribeRequest(audio=audio, options=DecodeOptions(**options))


def engines(inference: LoadedModels) -> dict[str, Any]:
    return dict(inference.devices[0][1])


async def test_requests_round_trip_through_a_worker_and_leave_nothing_queued(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    async with (
        worker_in_process(redis_server.url, engines(inference)) as worker,
        gateway_backend(redis_server.url) as backend,
    ):
        await eventually(lambda: backend.stats().ready, 15, "gateway sees a live worker")
        for i in range(3):
            backend.open_session(f"s{i}")
        results = await asyncio.gather(
            *(backend.submit("whisper", f"s{i}", clip_request(i), final=True) for i in range(3))
        )
        # What the same engine says in this process, one request at a time.
        engine = engines(inference)["whisper"]
        local = [(await asyncio.to_thread(engine.run_batch, [clip_request(i)]))[0] for i in range(3)]
        drift = [wer(a.text, b.text) for a, b in zip(local, results, strict=True)]
        assert statistics.mean(drift) <= 0.02, (drift, [t.text for t in results])
        errors = [wer(LIBRIVOX[i].text, t.text) for i, t in enumerate(results)]
        assert statistics.mean(errors) <= 0.2, errors
        assert all(isinstance(t, Transcript) and t.words and t.language == "en" for t in results)
        assert worker.counts["ok"] == 3

        # Answered entries are acknowledged and deleted: the request streams hold only open work.
        r = redis_server.client()
        assert r.xlen(FINALS) == 0 and r.xpending(FINALS, KEYS.group)["pending"] == 0
        stats = backend.stats()
        assert stats.kind == "redis" and stats.sessions == 3 and stats.detail["redis"]["workers"] == 1
        assert stats.devices[0].device == f"{worker.id}/cpu" and stats.detail["model"]["name"] == "tiny.en"
        r.close()


async def test_a_growing_utterance_sends_only_new_audio_and_audio_redis_lost_goes_again_whole(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    clip = pcm16_to_float(read_audio(str(LIBRIVOX[1].path)))
    whole = TranscribeRequest(audio=clip, options=DecodeOptions(beam_size=5))
    engine = engines(inference)["whisper"]
    (alone,) = await asyncio.to_thread(engine.run_batch, [whole])
    r = redis_server.client()
    async with (
        worker_in_process(redis_server.url, engines(inference)) as worker,
        gateway_backend(redis_server.url) as backend,
    ):
        await eventually(lambda: backend.audio_refs, 15, "the gateway sees a worker that reads references")
        backend.open_session("s")
        sent = []
        for seconds in (2, 4):  # partials of an utterance as it grows
            request = TranscribeRequest(audio=clip[: seconds * 16_000], options=DecodeOptions(beam_size=1))
            await backend.submit("whisper", "s", request, final=False)
            sent.append(backend.counts["audio_bytes"])
        # The second request put only its new two seconds into Redis (deflated, never more).
        assert 0 < sent[1] - sent[0] <= 2 * 16_000 * 2 + 1, sent
        assert worker.counts["audio_cached"] == 1 and worker.counts["audio_read_whole"] == 1
        final = await backend.submit("whisper", "s", whole, final=True)
        assert wer(alone.text, final.text) <= 0.02, (alone.text, final.text)

        # Redis lost the utterance's audio, and the worker never read it (another worker, or
        # this one restarted): the worker answers "miss", and the request goes again whole.
        (key,) = [k.decode() for k in r.keys(KEYS.audio() + "*")]
        r.delete(key)
        worker.audio.drop(key)
        longer = replace(whole, audio=np.concatenate([clip, np.zeros(8000, np.float32)]))
        again = await backend.submit("whisper", "s", longer, final=True)
        assert wer(alone.text, again.text) <= 0.02, (alone.text, again.text)
        assert backend.counts["misses"] == worker.counts["misses"] == 1

        backend.close_session("s")  # what it put into Redis goes with it
        await eventually(lambda: not r.keys(KEYS.audio() + "*"), 10, "the session's audio is deleted")

        # A worker of an older release joins (its heartbeat says nothing of references): the
        # gateway sends whole audio again, which every release reads.
        r.set(KEYS.worker("old"), json.dumps({"id": "old", "engines": ["whisper"]}), px=10_000)
        r.sadd(KEYS.workers, "old")
        await eventually(lambda: not backend.audio_refs, 10, "the gateway turns references off")
        backend.open_session("t")
        before = backend.counts["audio_bytes"], backend.counts["bytes_sent"]
        await backend.submit("whisper", "t", whole, final=True)
        assert backend.counts["audio_bytes"] == before[0]
        assert backend.counts["bytes_sent"] - before[1] >= 2 * len(clip)
    assert r.xlen(FINALS) == 0
    r.close()


async def test_results_are_deduplicated_and_a_newer_partial_supersedes_the_older(
    redis_server: RedisServer,
) -> None:
    """No worker runs here: the test answers as a worker would, twice, from what Redis holds."""
    async with gateway_backend(redis_server.url, require_workers=False) as backend:
        r = redis_server.client()
        final = asyncio.create_task(backend.submit("whisper", "s", clip_request(0), final=True))
        await eventually(lambda: r.xlen(FINALS) == 1, 10, "the final is queued")
        ((entry_id, fields),) = r.xrange(FINALS)
        req = decode_request(fields)
        assert req.reply == backend.results_stream and req.final and req.ttl_ms == 0
        answer = encode_result(
            WireResult(
                rid=req.rid,
                session=req.session,
                ticket=req.ticket,
                status="ok",
                engine="whisper",
                payload=Transcript(words=(), language="en"),
            )
        )
        r.xadd(backend.results_stream, answer)
        r.xadd(backend.results_stream, answer)  # at-least-once delivery: the same answer again
        assert (await asyncio.wait_for(final, 10)).language == "en"
        await eventually(lambda: backend.counts["duplicates"] == 1, 10, "the second answer is dropped")

        older = asyncio.create_task(backend.submit("whisper", "s", clip_request(1), final=False))
        await eventually(lambda: r.xlen(PARTIALS) == 1, 10, "the partial is queued")
        newer = asyncio.create_task(backend.submit("whisper", "s", clip_request(1), final=False))
        with pytest.raises(Superseded):
            await asyncio.wait_for(older, 10)
        # The replaced partial leaves the queue too, so no worker spends time on it.
        await eventually(lambda: r.xlen(PARTIALS) == 1, 10, "only the newer partial stays queued")
        (partial,) = (decode_request(f) for _, f in r.xrange(PARTIALS))
        assert partial.ttl_ms > 0 and not partial.final
        with pytest.raises(Dropped):  # nobody answers: its deadline passes, bounded
            await asyncio.wait_for(newer, 10)
        r.close()


async def test_partials_are_shed_while_the_queue_is_deep_and_finals_never(redis_server: RedisServer) -> None:
    async with gateway_backend(redis_server.url, require_workers=False, shed_waiting=3) as backend:
        r = redis_server.client()
        waiting = [
            asyncio.create_task(backend.submit("whisper", f"other{i}", clip_request(0), final=False))
            for i in range(3)
        ]
        await eventually(
            lambda: backend.stats().detail["redis"]["streams"][PARTIALS]["waiting"] >= 3, 10, "deep"
        )
        with pytest.raises(Dropped):
            await asyncio.wait_for(backend.submit("whisper", "s", clip_request(0), final=False), 1)
        assert backend.counts["shed"] == 1
        final = asyncio.create_task(backend.submit("whisper", "s", clip_request(0), final=True))
        await eventually(lambda: r.xlen(FINALS) == 1, 10, "a final is queued even when partials are shed")
        final.cancel()
        await asyncio.gather(final, *waiting, return_exceptions=True)
        await eventually(lambda: r.xlen(FINALS) == 0, 10, "a final nobody waits for leaves the queue")
        r.close()


class PoisonFinals:
    """Sends finals with beam size 0, which the real engine refuses every time (ValueError)."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def submit(self, engine: str, session: Any, request: Any, final: bool) -> Any:
        if final:
            request = replace(request, options=replace(request.options, beam_size=0))
        return await self.backend.submit(engine, session, request, final)


async def test_a_final_that_always_fails_is_dead_lettered_twice_and_closes_with_the_words_shown(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    from pipeline.policy import CaptionPolicy
    from pipeline.session import CaptionSession
    from pipeline.types import Caption

    options = WorkerOptions(model="tiny.en", min_idle_floor=0.5, reclaim_interval=0.2, max_deliveries=3)
    async with (
        worker_in_process(redis_server.url, engines(inference), options) as worker,
        gateway_backend(redis_server.url) as backend,
    ):
        await eventually(lambda: backend.stats().ready, 15, "gateway sees a live worker")
        captions: list[Caption] = []
        backend.open_session("pub")
        gaps: list[Any] = []
        session = CaptionSession(
            "pub",
            CaptionPolicy(),
            PoisonFinals(backend),  # type: ignore[arg-type]
            lambda e: captions.append(e),  # type: ignore[arg-type]
            lambda report: gaps.extend(report.gaps),
        )
        await speak(session, read_audio(str(LIBRIVOX[0].path)))
        await session.close(timeout=60)

        finals = [c for c in captions if isinstance(c, Caption) and c.final]
        partials = [c for c in captions if isinstance(c, Caption) and not c.final]
        assert finals and partials
        last = [p for p in partials if p.segment == finals[-1].segment][-1]
        assert last.stable, "partials committed words before the final failed"
        # Asked twice, the final closes with every word the speaker saw, and says it lost audio.
        assert finals[-1].text == last.text
        assert gaps and {g.reason for g in gaps} == {"engine_failure"}
        assert sum(g.voiced for g in gaps) >= 1.0

        r = redis_server.client()
        letters = r.xrange(KEYS.dead)
        assert len(letters) >= 2 * len(finals) >= 2  # each final asked once more before giving up
        assert letters[0][1][b"stream"] == FINALS.encode() and int(letters[0][1][b"deliveries"]) == 4
        assert decode_request(letters[0][1]).session == "pub"  # the dead letter keeps the request
        # The worker counts a dead letter once Redis has it, and the session may close first.
        await eventually(lambda: worker.counts["dead_letters"] == len(letters), 10, "the worker counts both")
        assert worker.counts["failures"] == 3 * len(letters)
        assert int(r.hget(KEYS.counters, "dead_letters")) == len(letters)
        assert r.xlen(FINALS) == 0
        r.close()


async def test_redis_restarted_under_a_backend_says_unavailable_then_finals_flow_again(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    async with gateway_backend(redis_server.url, final_timeout=8.0, require_workers=False) as backend:
        r = redis_server.client()
        # A final queued, and then Redis dies and comes back empty: the request is sent again.
        lost = asyncio.create_task(backend.submit("whisper", "s", clip_request(2), final=True))
        await eventually(lambda: r.xlen(FINALS) == 1, 10, "the final is queued")
        redis_server.stop()
        await eventually(lambda: not backend.available, 10, "the backend notices Redis is gone")
        with pytest.raises(BackendUnavailable):
            backend.open_session("new")
        assert backend.stats().ready is False and backend.stats().detail["redis"]["problem"]
        with pytest.raises(Dropped):
            await asyncio.wait_for(backend.submit("whisper", "s", clip_request(0), final=False), 1)

        redis_server.start()  # same port, nothing in it
        await eventually(lambda: backend.available, 15, "the backend reconnects")
        async with worker_in_process(redis_server.url, engines(inference)):
            transcript = await asyncio.wait_for(lost, 30)
            assert wer(LIBRIVOX[2].text, transcript.text) <= 0.25
            assert backend.counts["resent"] == 1
            backend.open_session("new")
            again = await asyncio.wait_for(backend.submit("whisper", "new", clip_request(3), final=True), 30)
            assert wer(LIBRIVOX[3].text, again.text) <= 0.25

        # Down for good: a waiting final fails within its bound instead of hanging.
        redis_server.stop()
        await eventually(lambda: not backend.available, 10, "the backend notices Redis is gone")
        with pytest.raises(SchedulerClosed):
            await asyncio.wait_for(backend.submit("whisper", "new", clip_request(0), final=True), 20)
        with pytest.raises(redis.ConnectionError):
            r.ping()
        r.close()


async def test_speaker_windows_travel_to_a_worker_that_runs_the_speaker_engine(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    """Gateways send speaker-turn windows as int16 PCM (pipeline/wire.py's speaker codec); the
    embeddings that come back are the ones the engine makes in this process (to a cosine of
    0.999: the int8 model quantizes its activations per call, so batch-mates move a vector by
    ~3e-4 of cosine)."""
    local = engines(inference)
    async with (
        worker_in_process(redis_server.url, local),
        gateway_backend(redis_server.url, engines=("whisper", "speaker")) as backend,
    ):
        await eventually(lambda: backend.runs("speaker"), 15, "a live worker runs the speaker engine")
        audio = read_audio(str(LIBRIVOX[1].path))
        windows = [EmbedRequest(audio[i : i + 13_040]) for i in (0, 16_000, 32_000)]
        remote = await asyncio.gather(*(backend.submit("speaker", "s", w, final=True) for w in windows))
        here = local["speaker"].run_batch(windows)
        for a, b in zip(remote, here, strict=True):
            assert isinstance(a, Embeddings) and a.vectors.shape == b.vectors.shape
            cosine = np.sum(a.vectors * b.vectors, axis=1)
            assert np.all(cosine > 0.999) and (a.step, a.span) == (b.step, b.span), cosine


async def test_file_chunks_travel_their_own_stream_below_live_requests(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    """A gateway's file job sends its chunks to ``nova:whisper:file``; a worker reads that stream
    only when the live streams are empty. Waiting before any worker runs, a live final and file
    chunks: the final is answered first. The chunks' wait is no live queue delay."""
    from bench.corpus import librivox
    from pipeline.filejob import FileJob, FileOptions

    files = KEYS.requests("whisper", True, background=True)
    async with gateway_backend(redis_server.url, require_workers=False) as backend:
        backend.open_session("live")
        job = FileJob(backend, FileOptions(max_chunk=8.0))
        stream = librivox()
        segments = asyncio.ensure_future(_collect(job.run(stream.audio)))
        client = redis.Redis.from_url(redis_server.url)
        await eventually(lambda: client.xlen(files) >= 1, 20, "a file chunk waits in its stream")
        final = asyncio.ensure_future(backend.submit("whisper", "live", clip_request(1), final=True))
        await eventually(lambda: client.xlen(FINALS) == 1, 10, "the final waits in its stream")

        def both_ages_read() -> bool:
            ages = {s.stream: s.waiting for s in backend.snapshot.streams}
            return ages.get(files, 0) >= 1 and ages.get(FINALS, 0) == 1

        await eventually(both_ages_read, 10, "the monitor has read both waiting streams")
        assert backend.queue_delay() < 1.0  # the file chunk's wait is not counted against live work
        chunks_done_when_final: list[int] = []
        final.add_done_callback(lambda _: chunks_done_when_final.append(job.done_chunks))
        async with worker_in_process(redis_server.url, engines(inference)):
            done = await asyncio.wait_for(segments, 120)
            await asyncio.wait_for(final, 30)
        assert chunks_done_when_final == [0] and job.done_chunks == job.chunks >= 3
        assert wer(stream.reference, " ".join(s.text for s in done)) <= 0.05
        assert client.xlen(files) == 0 and client.xlen(FINALS) == 0


async def _collect(segments: Any) -> list[Any]:
    return [s async for s in segments]
