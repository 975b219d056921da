"""Translation on its own workers (issue 19): gateways started with ``--translate-to es`` send
lines to ``nova-voice worker --engines apertium`` processes through Redis; a viewer on any
gateway reads the Spanish. Real redis-server, real worker processes, real WebRTC, real speech."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import librivox, silence, write_wav
from server.inference import LoadedModels
from server.state import STATE
from tests.support.redis_server import RedisServer
from tests.support.scaleout import WorkerProcess, eventually, gateway_backend, worker_in_process
from tests.support.whip_client import TimedViewer, Viewer, WhipPublisher


def base_url(server: Any) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_a_spanish_viewer_on_gateway_b_reads_every_final_through_a_translation_worker_that_is_killed(
    nova, redis_server: RedisServer, inference: LoadedModels, tmp_path: Path
) -> None:
    stream = librivox()
    wav = write_wav(tmp_path / "book.wav", np.concatenate([stream.audio, silence(1.5)]))
    translator = WorkerProcess(redis_server.url, "--engines", "apertium")
    replacement: WorkerProcess | None = None
    try:
        async with worker_in_process(redis_server.url, dict(inference.devices[0][1])):
            a_server = await nova(redis=redis_server.url, translate_to="es")
            b_server = await nova(redis=redis_server.url, translate_to="es")
            a, b = base_url(a_server), base_url(b_server)
            async with aiohttp.ClientSession() as http:
                # No translation worker yet: a room cannot promise Spanish, and says why.
                refused = await http.post(f"{a}/rooms", json={"name": "early", "languages": ["es"]})
                assert refused.status == 400 and "translation worker" in (await refused.json())["message"]

                await translator.ready()
                backend = a_server.app[STATE].backend
                await eventually(lambda: backend.offered("apertium"), 15, "gateway A sees the translator")  # type: ignore[attr-defined]
                made = await http.post(f"{a}/rooms", json={"name": "talk", "languages": ["es"]})
                assert made.status == 201, await made.text()
                assert (await http.post(f"{a}/rooms", json={"name": "x", "languages": ["de"]})).status == 400

                source = TimedViewer(b, "talk")
                spanish = TimedViewer(b, "talk", lang="es")
                await source.connect(http)
                await spanish.connect(http)
                token = (await made.json())["publish_token"]
                speaker = WhipPublisher(a, "talk", str(wav), token=token)
                await speaker.start(http)

                # Mid-speech, once Spanish flows: SIGKILL the translator, a new one 2 s later.
                await spanish.log.wait_for(lambda log: bool(log.finals()), 60)
                translator.kill()
                await asyncio.sleep(2.0)  # the outage the issue asks for, not a synchronisation
                replacement = WorkerProcess(redis_server.url, "--engines", "apertium")
                await replacement.ready()

                await speaker.ended()
                assert await speaker.stop(http) == 200
                said = [m for m in source.log.finals()]
                segments = {m["segment"] for m in said}
                await spanish.log.wait_for(
                    lambda log: len({m["segment"] for m in log.finals()} & segments) >= len(segments) - 1, 30
                )
                transcript = await (await http.get(f"{b}/rooms/talk/transcript.json?lang=es")).json()
                english = await (await http.get(f"{b}/rooms/talk/transcript.json")).json()
                await source.close()
                await spanish.close()
    finally:
        translator.stop()
        if replacement is not None:
            replacement.stop()

    translated = {m["segment"]: m for m in spanish.log.finals()}
    assert len(said) >= 4 and len(set(translated) & segments) >= len(segments) - 1, (said, translated)
    assert all(m["lang"] == "es" and m["source_lang"] == "en" for m in translated.values())
    # The last line too: gateway A forgets the room as its publisher leaves, while that line's
    # translation is on its way; it still lands.
    assert max(segments) in translated
    lags = [spanish.final_at[s] - source.final_at[s] for s in segments if s in spanish.final_at]
    assert float(np.percentile(lags, 90)) <= 1.5, sorted(lags)
    # Spanish, not English passed through: Apertium's words for the book's.
    text = " ".join(m["text"] for m in translated.values()).lower()
    assert any(w in text.split() for w in ("el", "la", "de", "que", "y")), text
    # The per-language transcript holds each translated final once; the source one is English.
    segs = [c["segment"] for c in transcript["captions"]]
    assert len(segs) == len(set(segs)) >= len(segments) - 1
    assert [c["text"] for c in english["captions"]] == [m["text"] for m in said]
    assert statistics.median(lags) < 1.0


async def test_a_private_rooms_translations_are_refused_without_its_token_on_another_gateway(
    nova, redis_server: RedisServer
) -> None:
    a = base_url(await nova(redis=redis_server.url, translate_to="es"))
    b = base_url(await nova(redis=redis_server.url, translate_to="es"))
    translator = WorkerProcess(redis_server.url, "--engines", "apertium")
    try:
        await translator.ready()
        async with aiohttp.ClientSession() as http:
            made = None
            body = {"name": "board", "languages": ["es"], "private": True}
            for _ in range(100):  # until gateway A's monitor has read the translator's heartbeat
                made = await http.post(f"{a}/rooms", json=body)
                if made.status == 201:
                    break
                await asyncio.sleep(0.1)  # polling a heartbeat under a bound
            assert made is not None and made.status == 201, await made.text()  # type: ignore[union-attr]
            view = (await made.json())["view_token"]
            assert (await http.get(f"{b}/rooms/board/transcript.txt?lang=es")).status == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await http.get(f"{b}/rooms/board/transcript.txt?lang=es", headers=wrong)).status == 403
            said = await Viewer(b, "board", lang="es").refused(http)
            assert "answered 401" in said
            ok = await http.get(f"{b}/rooms/board/transcript.txt?lang=es&token={view}")
            assert ok.status == 200
    finally:
        translator.stop()


async def test_finals_sent_while_no_translator_runs_are_translated_when_one_starts(
    redis_server: RedisServer,
) -> None:
    """A translator that is down costs only time: the lines wait in their stream, none is lost,
    and the first translation worker to start answers them (Whisper's streams are untouched)."""
    from pipeline.types import TranslateRequest

    lines = ["Good morning.", "The meeting starts now.", "Thank you all for coming."]
    async with gateway_backend(
        redis_server.url, engines=("whisper", "apertium"), require_workers=False
    ) as gateway:
        asked = [
            asyncio.create_task(
                gateway.submit("apertium", f"line{i}", TranslateRequest(text, "en", "es"), final=True)
            )
            for i, text in enumerate(lines)
        ]
        r = redis_server.client()
        await eventually(lambda: r.xlen("nova:apertium:final") == len(lines), 10, "the lines are queued")
        assert not any(t.done() for t in asked)  # waiting, not failed
        translator = WorkerProcess(redis_server.url, "--engines", "apertium")
        try:
            await translator.ready()
            answers = await asyncio.wait_for(asyncio.gather(*asked), 30)
        finally:
            translator.stop()
            r.close()
    assert [a.target for a in answers] == ["es"] * 3
    assert [a.text for a in answers] != lines and all(a.text for a in answers)
    assert "Buenos" in answers[0].text or "buen" in answers[0].text.lower(), answers[0]
