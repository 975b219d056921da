"""Worker processes (``nova-voice worker``) that die or are told to stop while sessions talk."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import LIBRIVOX, Stream, librivox
from bench.scoring import wer
from pipeline.audio import pcm16_to_float, read_audio
from pipeline.batching import BatchOptions
from pipeline.engines.simulated import DeviceProfile, Reference, SimulatedEngine
from pipeline.policy import CaptionPolicy
from pipeline.session import CaptionSession
from pipeline.streams import Keys
from pipeline.types import Caption, DecodeOptions, TranscribeRequest, Word
from server.inference import LoadedModels
from tests.support.redis_server import RedisServer
from tests.support.scaleout import WorkerProcess, eventually, gateway_backend, speak, worker_in_process

KEYS = Keys()
FINALS = KEYS.requests("whisper", True)
# Beyond the idle time after which the survivor reclaims (it reports it): its reclaim pass comes
# within a second, then the final waits its turn and runs, on a machine shared with other tests.
SLACK = 6.0


def covered(stream: Stream, finals: list[tuple[float, Caption]]) -> list[float]:
    """For each true utterance, seconds from its end to the last final that covers it."""
    out = []
    for utt in stream.utterances:
        mine = [at for at, c in finals if c.start < utt.end and c.end > utt.start - 0.3]
        if mine:
            out.append(max(mine) - utt.end)
    return out


async def test_sigkill_of_a_worker_mid_batch_loses_no_final_and_doubles_none(
    redis_server: RedisServer,
) -> None:
    # The first three utterances (20 s): the kill comes at the first final, and what follows
    # must still be whole, once each.
    stream = librivox().head(3)
    workers = [WorkerProcess(redis_server.url) for _ in range(2)]
    r = redis_server.client()
    try:
        await asyncio.gather(*(w.ready() for w in workers))
        async with gateway_backend(redis_server.url) as backend:
            await eventually(lambda: len(backend.stats().devices) == 2, 30, "the gateway sees both workers")
            heard: dict[str, list[tuple[float, Caption]]] = {f"talker{i}": [] for i in range(3)}
            lost: list[Any] = []  # voiced audio the sessions' ledgers report missing or dropped
            t0 = time.monotonic()

            async def talk(name: str, offset: float) -> None:
                def on_event(event: object) -> None:
                    if isinstance(event, Caption):
                        heard[name].append((time.monotonic() - t0 - offset, event))

                backend.open_session(name)
                session = CaptionSession(
                    name, CaptionPolicy(), backend, on_event, lambda report: lost.extend(report.gaps)
                )
                await speak(session, np.concatenate([np.zeros(int(offset * 16_000), np.int16), stream.audio]))
                await session.close(timeout=60)

            talking = [asyncio.create_task(talk(name, 0.3 * i)) for i, name in enumerate(heard)]

            def holder() -> WorkerProcess | None:
                """A worker that took a final less than 150 ms ago: it is in that final's batch."""
                for w in workers:
                    for p in r.xpending_range(FINALS, KEYS.group, "-", "+", 10, consumername=w.id):
                        if p["time_since_delivered"] < 150:
                            return w
                return None

            victim = await eventually(holder, 60, "a worker holds a final mid-batch")
            victim.kill()
            orphaned = r.xpending_range(FINALS, KEYS.group, "-", "+", 10, consumername=victim.id)
            assert orphaned, "the worker died holding a final"
            await asyncio.gather(*talking)
            counters = {k.decode(): int(v) for k, v in r.hgetall(KEYS.counters).items()}
        (survivor,) = [w for w in workers if w is not victim]
        status, body = await asyncio.to_thread(survivor.get, "/health/full")
        assert status == 200
        (me,) = json.loads(body)["workers"]
        assert me["counts"]["reclaimed"] >= len(orphaned)
        bound = me["reclaim_idle_ms"] / 1000 + 1.0 + SLACK
        assert await asyncio.to_thread(survivor.terminate) == 0  # SIGTERM drains and exits cleanly
    finally:
        for w in workers:
            w.stop()
        r.close()

    assert counters.get("reclaimed", 0) >= len(orphaned)
    assert lost == [], "the kill cost voiced audio"
    for name, events in heard.items():
        finals = [(at, c) for at, c in events if c.final]
        per_segment = Counter(c.segment for _, c in finals)
        assert max(per_segment.values()) == 1, f"{name}: a segment got two finals: {per_segment}"
        latencies = covered(stream, [(at, c) for at, c in finals if c.text])
        assert len(latencies) == len(stream.utterances), f"{name}: an utterance got no final"
        assert max(latencies) <= bound, (name, latencies, bound)
        # A reclaimed final may arrive after the next one: read them in stream order.
        text = " ".join(c.text for _, c in sorted(finals, key=lambda f: f[1].start) if c.text)
        assert wer(stream.reference, text) <= 0.15, (name, text)


async def test_sigterm_finishes_what_the_worker_holds_and_leaves_the_rest_for_others(
    redis_server: RedisServer, inference: LoadedModels
) -> None:
    worker = WorkerProcess(redis_server.url, "--max-inflight", "2")
    r = redis_server.client()
    try:
        await worker.ready()
        async with gateway_backend(redis_server.url) as backend:
            await eventually(lambda: backend.stats().ready, 30, "the gateway sees the worker")
            audio = [pcm16_to_float(read_audio(str(c.path))) for c in LIBRIVOX]
            finals = [
                asyncio.create_task(
                    backend.submit(
                        "whisper", f"s{i}", TranscribeRequest(audio=audio[i % len(audio)]), final=True
                    )
                )
                for i in range(8)
            ]
            held = await eventually(
                lambda: r.xpending_range(FINALS, KEYS.group, "-", "+", 10, consumername=worker.id),
                30,
                "the worker holds finals",
            )
            assert await asyncio.to_thread(worker.terminate) == 0
            # What it held was answered and acknowledged before it left; the rest still waits.
            assert r.xpending(FINALS, KEYS.group)["pending"] == 0
            assert 1 <= len(held) <= 2
            left = r.xlen(FINALS)
            assert 0 < left <= len(finals) - len(held)
            await eventually(
                lambda: sum(t.done() for t in finals) == len(finals) - left, 30, "answers arrive"
            )
            assert all(t.exception() is None for t in finals if t.done())
            async with worker_in_process(redis_server.url, dict(inference.devices[0][1])):
                results = await asyncio.wait_for(asyncio.gather(*finals), 120)
            texts = [t.text for t in results]
            errors = [wer(LIBRIVOX[i % len(LIBRIVOX)].text, t) for i, t in enumerate(texts)]
            assert sum(errors) / len(errors) <= 0.2, texts
            assert backend.counts["duplicates"] == 0
            beat = r.get(KEYS.worker(worker.id))
            assert beat is None, json.loads(beat)  # a drained worker leaves no heartbeat behind
    finally:
        worker.stop()
        r.close()


async def test_a_worker_with_a_modelled_device_answers_the_references_words_in_the_modelled_time(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """``nova-voice worker --engine simulated``: what bench.scale runs, as an operator starts it."""
    clip = LIBRIVOX[2]
    audio = read_audio(str(clip.path))
    text = clip.text.split()
    span = len(audio) / 16_000 / len(text)  # the words spread evenly: times need not be real here
    words = tuple(Word(f" {w}", i * span, (i + 1) * span) for i, w in enumerate(text))
    Reference(audio, words).save(tmp_path / "ref.npz")
    worker = WorkerProcess(
        redis_server.url, "--engine", "simulated", "--device-profile", "h200-tiny",
        "--reference", str(tmp_path / "ref.npz"),
    )  # fmt: skip
    try:
        await worker.ready()
        async with gateway_backend(redis_server.url) as backend:
            await eventually(lambda: backend.audio_refs, 30, "the gateway sees the modelled worker")
            backend.open_session("s")
            request = TranscribeRequest(audio=pcm16_to_float(audio), options=DecodeOptions(beam_size=5))
            started = time.monotonic()
            heard = await backend.submit("whisper", "s", request, final=True)
            took = time.monotonic() - started
            status, body = await asyncio.to_thread(worker.get, "/health/full")
    finally:
        worker.stop()
    assert heard.text.split() == text and heard.timed
    profile = DeviceProfile.load("h200-tiny")
    tokens = int(np.ceil(len(text) * profile.tokens_per_word)) + profile.fixed_steps
    modelled = sum(profile.batch_ms(1000, 1, 5, tokens, 1).values()) / 1000
    assert took >= modelled, (took, modelled)
    assert status == 200 and json.loads(body)["workers"][0]["device"] == "sim:0"


async def test_a_worker_reads_its_next_batch_while_one_runs_and_holds_no_more_than_that(
    redis_server: RedisServer,
) -> None:
    """While a batch of its own is on the device and nothing else of its own waits, a worker
    reads the next batch, so the device does not wait for Redis between batches (bench.scale:
    63 requests a second instead of 44 at 128 modelled sessions); one batch ahead at most (its
    ``max_inflight``, twice the batch), the rest left in Redis for idle workers."""
    gate = threading.Event()  # the modelled device's first batch runs until the test opens it
    engine = SimulatedEngine(DeviceProfile.load("h200-tiny"), sleep=lambda _: gate.wait(60))
    r = redis_server.client()
    audio = pcm16_to_float(read_audio(str(LIBRIVOX[2].path)))[: 3 * 16_000]
    pairs = BatchOptions(max_batch=2)
    try:
        async with (
            worker_in_process(redis_server.url, {"whisper": engine}, batch=pairs) as worker,
            gateway_backend(redis_server.url) as backend,
        ):
            await eventually(lambda: backend.stats().ready, 30, "the gateway sees the worker")
            finals = []
            for i in range(6):
                backend.open_session(f"s{i}")
                request = TranscribeRequest(audio=audio, options=DecodeOptions(beam_size=1))
                finals.append(asyncio.create_task(backend.submit("whisper", f"s{i}", request, final=True)))

            def held() -> int:
                return int(r.xpending(FINALS, KEYS.group)["pending"])

            await eventually(lambda: r.xlen(FINALS) == 6, 30, "the finals sent")  # none answered yet
            # The first batch is on the (stopped) device; the next waits behind it in the worker.
            await eventually(lambda: worker.scheduler.depth() > 0, 30, "the next batch read ahead")
            assert held() <= worker.max_inflight == 4
            assert held() < 6  # the rest still waits in Redis, for idle workers
            gate.set()
            results = await asyncio.wait_for(asyncio.gather(*finals), 60)
            assert len(results) == 6 and held() == 0
    finally:
        gate.set()
        r.close()
