"""The voice-over end to end: an English speaker over WHIP, Apertium into Spanish, the Spanish
finals spoken (espeak-ng) and taken by a real WHEP player, and the recording transcribed back by
the multilingual Whisper base; WHEP's refusals; a viewer's peer connection with the voice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.corpus import ESPEAK_SENTENCES, espeak, silence, write_wav
from bench.scoring import wer
from server.inference import LoadedModels
from server.state import STATE
from tests.support.redis_server import RedisServer
from tests.support.scaleout import WorkerProcess, eventually, worker_in_process
from tests.support.whep_client import WhepPlayer
from tests.support.whip_client import CaptionLog, WhipPublisher

SENTENCES = ESPEAK_SENTENCES[:4]


def speech(tmp_path: Path, sentences: list[str], gap: float = 1.5) -> Path:
    parts = [silence(0.5)]
    for i, text in enumerate(sentences):
        parts += [espeak(text, tmp_path / f"s{i}.wav"), silence(gap)]
    return write_wav(tmp_path / "speech.wav", np.concatenate([*parts, silence(1.0)]))


class ArrivalLog(CaptionLog):
    """A caption log that notes the wall time each final arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[int, float] = {}

    async def add(self, raw: str) -> None:
        await super().add(raw)
        m = self.messages[-1]
        if m.get("type") == "caption" and m["final"] and m["text"]:
            self.arrived.setdefault(m["seq"], time.time())


async def viewer(
    base: str, room: str, lang: str, http: aiohttp.ClientSession
) -> tuple[RTCPeerConnection, ArrivalLog]:
    pc = RTCPeerConnection()
    log = ArrivalLog()
    channel = pc.createDataChannel("captions")

    @channel.on("message")
    async def on_message(message: str) -> None:
        await log.add(message)

    await pc.setLocalDescription(await pc.createOffer())
    resp = await http.post(f"{base}/rooms/{room}/viewers?lang={lang}", json={"sdp": pc.localDescription.sdp})
    assert resp.status == 200, await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=(await resp.json())["sdp"], type="answer"))
    return pc, log


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def base_whisper():  # noqa: ANN201
    """The multilingual Whisper base (installed by ./install.sh --dev), to hear Spanish back."""
    from faster_whisper import WhisperModel

    from pipeline.models import resolve_whisper

    return WhisperModel(resolve_whisper("base").path, device="cpu", compute_type="int8", cpu_threads=2)


async def test_a_whep_player_on_another_gateway_hears_the_spanish_finals_in_step_with_the_captions(
    nova, redis_server: RedisServer, inference: LoadedModels, tmp_path: Path, base_whisper
) -> None:
    """The held-out check: an English speaker on gateway A, a room with Spanish and ``voice:
    ["es"]``; on gateway B a viewer reads the Spanish finals and a WHEP player records the
    voice, made once on A by a ``nova-voice worker --engines piper`` process. Whisper base hears
    the recording back within WER 0.35 of the finals; every final is spoken or counted as
    dropped; each sentence's voice starts within 1.5 s (p90) of its caption reaching B."""
    from pipeline.engines.apertium import ApertiumEngine

    wav = speech(tmp_path, SENTENCES)
    apertium = ApertiumEngine()
    voices = WorkerProcess(redis_server.url, "--engines", "piper")
    try:
        engines = {**inference.devices[0][1], "apertium": apertium}
        async with worker_in_process(redis_server.url, engines):
            a_server = await nova(redis=redis_server.url, translate_engine="apertium")
            b_server = await nova(redis=redis_server.url, translate_engine="apertium")
            a, b = (str(s.make_url("")).rstrip("/") for s in (a_server, b_server))
            await voices.ready()
            backend = a_server.app[STATE].backend
            await eventually(lambda: backend.offered("piper"), 15, "gateway A sees the voice worker")  # type: ignore[attr-defined]
            await eventually(lambda: backend.offered("apertium"), 15, "gateway A sees the translator")  # type: ignore[attr-defined]
            async with aiohttp.ClientSession() as http:
                body = {"name": "talk", "languages": ["es"], "voice": ["es"]}
                made = await http.post(f"{a}/rooms", json=body)
                assert made.status == 201, await made.text()
                room = await made.json()
                assert room["voice"] == ["es"]
                assert (await (await http.get(f"{b}/rooms/talk")).json())["voice"] == ["es"]
                pc, spanish = await viewer(b, "talk", "es", http)
                player = WhepPlayer(b, "talk", "es")
                answer = await player.start(http)
                assert "a=sendonly" in answer and "opus" in answer.lower()
                pub = WhipPublisher(a, "talk", str(wav), token=room["publish_token"])
                await pub.start(http)
                await pub.ended()
                await pub.stop(http)
                await spanish.wait_for(lambda log: len(log.finals()) >= 2, 20)
                finals = spanish.finals()

                def accounted(text: str) -> float:
                    outcomes = ("spoken", "late", "failed")
                    return sum(
                        metric(text, "nova_voice_sentences_total", lang="es", outcome=o) for o in outcomes
                    )

                deadline = time.monotonic() + 30
                while accounted(text := await (await http.get(f"{b}/metrics")).text()) < len(finals):
                    assert time.monotonic() < deadline, "some finals were neither spoken nor dropped"
                    await asyncio.sleep(0.5)  # polling a metric under a deadline
                spoken = metric(text, "nova_voice_sentences_total", lang="es", outcome="spoken")
                # Let the last sentence play out (about 12 characters a second), with a margin.
                await asyncio.sleep(len(finals[-1]["text"]) / 10 + 1)  # real-time playback
                recording = player.recorded()
                onsets = player.onsets(pause=0.18)
                assert await player.stop(http) == 200
                await pc.close()
    finally:
        voices.stop()
        apertium.close()

    assert spoken == len(finals), "a room that keeps up drops nothing"
    reference = " ".join(m["text"] for m in finals)
    segments, _ = base_whisper.transcribe(recording.astype(np.float32) / 32768, language="es", beam_size=5)
    heard = " ".join(s.text for s in segments)
    assert wer(reference, heard) <= 0.35, (reference, heard)
    # Each final's voice starts soon after the final reached the viewer: p90 within 1.5 s.
    delays = []
    for seq, at in sorted(spanish.arrived.items()):
        after = [o for o in onsets if o >= at - 0.05]
        assert after, f"no sound began after final {seq}"
        delays.append(after[0] - at)
    assert sorted(delays)[int(0.9 * (len(delays) - 1))] <= 1.5, delays
    assert metric(text, "nova_voice_start_delay_seconds_count", lang="es") == spoken


async def test_whep_refuses_what_it_cannot_play_and_a_viewer_may_take_the_voice(nova) -> None:
    server = await nova(translate_engine="apertium", view_token="seen")
    base = str(server.make_url("")).rstrip("/")
    auth = {"Authorization": "Bearer seen"}
    async with aiohttp.ClientSession(base) as http:
        resp = await http.post("/rooms", json={"name": "quiet", "languages": ["es"], "voice": ["es"]})
        assert resp.status == 201
        bad = await http.post("/rooms", json={"name": "x", "languages": ["es"], "voice": ["fr"]})
        assert bad.status == 400 and (await bad.json())["error"] == "voice_not_spoken"
        # No view token: 401 before anything is said about the room's voices.
        assert (await WhepPlayer(base, "quiet", "es").start(http, expect=401)).count("view_token_required")
        assert "it speaks: es" in await WhepPlayer(base, "quiet", "fr", token="seen").start(http, expect=400)
        plain = await http.post("/whep/quiet?lang=es", data="hello", headers=auth)
        assert plain.status == 415
        empty = await http.post(
            "/whep/quiet?lang=es", data="", headers={**auth, "Content-Type": "application/sdp"}
        )
        assert (await empty.json())["error"] == "empty_sdp"
        # An offer that receives no audio (a data channel only) has nothing to take.
        only_data = RTCPeerConnection()
        only_data.createDataChannel("x")
        await only_data.setLocalDescription(await only_data.createOffer())
        no_audio = await http.post(
            "/whep/quiet?lang=es",
            data=only_data.localDescription.sdp,
            headers={**auth, "Content-Type": "application/sdp"},
        )
        assert (await no_audio.json())["error"] == "no_audio"
        await only_data.close()
        gone = await http.delete("/whep/quiet/nosuchsession", headers=auth)
        assert gone.status == 404
        # A viewer whose offer also receives audio gets the room's voice on the same connection.
        pc = RTCPeerConnection()
        pc.createDataChannel("captions")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        resp = await http.post(
            "/rooms/quiet/viewers?lang=es", json={"sdp": pc.localDescription.sdp}, headers=auth
        )
        assert resp.status == 200, await resp.text()
        answer = (await resp.json())["sdp"]
        assert "m=audio" in answer and "a=sendonly" in answer
        assert metric(await (await http.get("/metrics", headers=auth)).text(), "nova_voice_listeners") == 1
        await pc.close()
