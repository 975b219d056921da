"""Several named speakers in one room (issue 22), through the real server and model.

Ana and Ben publish into one room at the same time, each a microphone of their own (a
LibriVox clip each), overlapping. A viewer gets each one's finals with their name; the room's
transcripts mark who spoke (WebVTT voice spans, "Ana:" in SRT and text, "speaker" in JSON),
with overlapping cues where the speech overlapped. A third publisher asking for a name that is
live is refused with 409, or takes it over when it asks to; a room limited to two speakers
refuses a third one.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import LIBRIVOX, silence, write_wav
from bench.scoring import wer
from pipeline.audio import read_audio
from server.inference import LoadedModels
from tests.support.probes import ghost_offer
from tests.support.redis_server import RedisServer
from tests.support.scaleout import worker_in_process
from tests.support.whip_client import Viewer, WhipPublisher

VOICE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n<v ([^>]+)>(.*?)(?:\n\n|\n?\Z)", re.M | re.S
)


def seconds(clock: str) -> float:
    h, m, s = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def clip_wav(tmp_path: Path, name: str, clips: list[int], lead: float) -> tuple[Path, str]:
    parts = [silence(lead)]
    for i in clips:
        parts += [read_audio(str(LIBRIVOX[i].path)), silence(0.8)]
    parts.append(silence(1.5))
    return write_wav(tmp_path / f"{name}.wav", np.concatenate(parts)), " ".join(
        LIBRIVOX[i].text for i in clips
    )


async def whip(http: aiohttp.ClientSession, room: str, token: str, **params: str) -> tuple[int, dict]:
    offer = await ghost_offer(publisher=True)
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with http.post(f"/whip/{room}", data=offer, headers=headers, params=params) as resp:
        body = (
            await resp.json()
            if resp.content_type == "application/json"
            else {"location": resp.headers.get("Location")}
        )
        return resp.status, body


async def test_named_speakers_in_one_room_each_keep_their_words(nova, tmp_path: Path) -> None:
    ana_wav, ana_said = clip_wav(tmp_path, "ana", [0, 1], lead=0.5)
    ben_wav, ben_said = clip_wav(tmp_path, "ben", [3, 4], lead=2.0)  # starts while Ana speaks
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/rooms", json={"name": "panel", "max_speakers": 2}) as resp:
            assert resp.status == 201, await resp.text()
            room = await resp.json()
        token = room["publish_token"]
        assert room["max_speakers"] == 2 and room["speakers"] == []
        status, body = await whip(http, "panel", token, speaker="<b>Ana</b>")
        assert status == 400 and body["error"] == "invalid_speaker", body

        viewer = Viewer(base, "panel")
        await viewer.connect(http)
        ana = WhipPublisher(base, "panel", str(ana_wav), token=token, params={"speaker": "Ana"})
        ben = WhipPublisher(base, "panel", str(ben_wav), token=token, params={"speaker": " Ben "})
        await ana.start(http)
        await ben.start(http)

        # A name that is live (any case) is refused with a message saying so; so is a third
        # speaker in a room of two.
        status, body = await whip(http, "panel", token, speaker="ana")
        assert status == 409 and body["error"] == "speaker_taken" and "already speaking" in body["message"], (
            body
        )
        status, body = await whip(http, "panel", token, speaker="Cy")
        assert status == 409 and body["error"] == "too_many_speakers", body
        async with http.get("/rooms/panel") as resp:
            assert (await resp.json())["speakers"] == ["Ana", "Ben"]

        await ana.ended()
        await ben.ended()
        await viewer.log.wait_for(
            lambda log: (
                {m.get("speaker") for m in log.finals()} == {"Ana", "Ben"}
                and any(m["type"] == "status" and m["speakers"] == ["Ana", "Ben"] for m in log.messages)
            ),
            30,
        )
        await ana.stop(http)
        await ben.stop(http)
        await viewer.log.wait_for(
            lambda log: (
                wer(ana_said, " ".join(m["text"] for m in log.finals() if m["speaker"] == "Ana")) <= 0.1
                and wer(ben_said, " ".join(m["text"] for m in log.finals() if m["speaker"] == "Ben")) <= 0.1
            ),
            20,
        )
        publishers = {m["speaker"]: m["publisher"] for m in viewer.log.finals()}
        assert len(set(publishers.values())) == 2 and all(len(p) == 12 for p in publishers.values())
        assert ana.location and publishers["Ana"] not in ana.location  # never the DELETE capability

        async with http.get("/rooms/panel/transcript.vtt") as resp:
            vtt = await resp.text()
        async with http.get("/rooms/panel/transcript.srt") as resp:
            srt = await resp.text()
        async with http.get("/rooms/panel/transcript.txt") as resp:
            txt = await resp.text()
        async with http.get("/rooms/panel/transcript.json") as resp:
            data = await resp.json()
        async with http.get("/rooms/panel/transcript.txt?lang=de") as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "language_not_carried"

        # Take-over: Ana, from a second device, ends her first session and takes the name.
        again = WhipPublisher(
            base, "panel", str(ana_wav), token=token, params={"speaker": "Ana", "takeover": "1"}
        )
        first = WhipPublisher(base, "panel", str(ben_wav), token=token, params={"speaker": "Ana"})
        await first.start(http)
        await first.channel_open.wait()
        await again.start(http)
        await first.log.wait_for(lambda log: any(m.get("code") == "taken_over" for m in log.messages), 10)
        assert await first.stop(http) == 200  # already ended by the server: its DELETE is still answered
        await again.stop(http)

    cues = [(seconds(a), seconds(b), who, text) for a, b, who, text in VOICE.findall(vtt)]
    for who, said in (("Ana", ana_said), ("Ben", ben_said)):
        assert wer(said, " ".join(t for _, _, w, t in cues if w == who)) <= 0.1, (who, vtt)
    # One clock for the room: Ben's first cue begins while one of Ana's is on screen.
    assert any(a0 < b0 < a1 for a0, a1, w, _ in cues if w == "Ana" for b0, _, v, _ in cues if v == "Ben"), vtt
    assert re.search(r"^Ana: ", srt, re.M) and re.search(r"^Ben: ", srt, re.M), srt
    assert re.search(r"^Ana: ", txt, re.M) and re.search(r"^Ben: ", txt, re.M), txt
    assert {c["speaker"] for c in data["captions"]} == {"Ana", "Ben"}


async def test_names_and_room_words_hold_across_gateways(
    nova, redis_server: RedisServer, inference: LoadedModels
) -> None:
    """Two gateways over one redis-server: a name live on A is refused on B (one Redis script
    decides, whichever gateway asks), a room full on A is full on B, B takes a name over from A,
    and words PATCHed on A reach B's listeners and B's answers."""
    async with worker_in_process(redis_server.url, dict(inference.devices[0][1])):
        a = str((await nova(redis=redis_server.url)).make_url("")).rstrip("/")
        b = str((await nova(redis=redis_server.url)).make_url("")).rstrip("/")
        async with aiohttp.ClientSession(a) as on_a, aiohttp.ClientSession(b) as on_b:
            async with on_a.post("/rooms", json={"name": "duo", "max_speakers": 2}) as resp:
                token = (await resp.json())["publish_token"]
            listener = Viewer(b, "duo")
            await listener.connect(on_b)
            status, _ = await whip(on_a, "duo", token, speaker="Ana")
            assert status == 201
            # Names that look like a live one are that name: any case, Cyrillic letters, fullwidth.
            for look_alike in ("ANA", "\u0410na", "\uff21\uff4e\uff41"):
                status, body = await whip(on_b, "duo", token, speaker=look_alike)
                assert status == 409 and body["error"] == "speaker_taken", (look_alike, body)
            status, body = await whip(on_b, "duo", token, speaker="Ana\u034f")  # an invisible joiner
            assert status == 400 and body["error"] == "invalid_speaker", body
            status, _ = await whip(on_b, "duo", token, speaker="Ben")
            assert status == 201
            status, body = await whip(on_a, "duo", token, speaker="\u0412en")  # Cyrillic capital Ve
            assert status == 409 and body["error"] == "speaker_taken", body
            status, body = await whip(on_a, "duo", token, speaker="Cy")
            assert status == 409 and body["error"] == "too_many_speakers", body
            await listener.log.wait_for(
                lambda log: any(
                    m["type"] == "status" and m["speakers"] == ["Ana", "Ben"] for m in log.messages
                ),
                10,
            )
            # Ana, now on gateway B, takes her name over from gateway A.
            status, _ = await whip(on_b, "duo", token, speaker="Ana", takeover="1")
            assert status == 201

            words = {"vocabulary": ["Niamh Okonkwo"], "replacements": {"elastic search": "Elasticsearch"}}
            async with on_a.patch(
                "/rooms/duo", json=words, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 200, await resp.text()
            await listener.log.wait_for(lambda log: any(m["type"] == "settings" for m in log.messages), 10)
            async with on_b.get("/rooms/duo") as resp:
                info = await resp.json()
            assert info["vocabulary"] == words["vocabulary"] and info["replacements"] == words["replacements"]
            await listener.close()
