"""Private means private on every gateway and every path (issue 17): each probe of the report
as a regression test, over two real gateways and a real redis-server where it was found there,
with real aiortc peers and real speech."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import LIBRIVOX, silence, write_wav
from bench.scoring import wer
from pipeline.audio import read_audio
from server import logs
from server.inference import LoadedModels
from server.state import STATE
from tests.support.probes import ghost_offer
from tests.support.redis_server import RedisServer
from tests.support.scaleout import worker_in_process
from tests.support.whip_client import Viewer, WhipPublisher

FORMATS = ("vtt", "srt", "json", "txt")


def base_url(server: Any) -> str:
    return str(server.make_url("")).rstrip("/")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Refusals(logging.Handler):
    """The access refusals the server logs, each with the request id bound when it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("refused"):
            self.lines.append((record.getMessage(), logs.current().get("request", "")))


def speech_wav(tmp_path: Path) -> tuple[Path, str]:
    clip = LIBRIVOX[0]
    audio = np.concatenate([read_audio(str(clip.path)), silence(1.5)])
    return write_wav(tmp_path / "speech.wav", audio), clip.text


async def refused_everywhere(http: aiohttp.ClientSession, base: str, room: str, token: str | None) -> None:
    """Every way to read the room, without its view token (None) or with a wrong one."""
    headers = bearer(token) if token else {}
    expected = 403 if token else 401
    for fmt in FORMATS:
        async with http.get(f"{base}/rooms/{room}/transcript.{fmt}", headers=headers) as resp:
            assert resp.status == expected, (fmt, resp.status, await resp.text())
    async with http.get(f"{base}/rooms/{room}", headers=headers) as resp:
        # Room info answers as for a room that does not exist: no room names to enumerate.
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_room", await resp.text()
    async with http.get(f"{base}/ice?room={room}", headers=headers) as resp:
        assert resp.status == 401, await resp.text()
    said = await Viewer(base, room, token=token).refused(http)
    assert f"answered {expected}" in said, said


async def test_a_private_room_made_on_gateway_a_is_private_on_gateway_b(
    nova, redis_server: RedisServer, inference: LoadedModels, tmp_path: Path
) -> None:
    wav, text = speech_wav(tmp_path)
    silent = write_wav(tmp_path / "silence.wav", silence(6.0))
    refusals = Refusals()
    logging.getLogger("server").addHandler(refusals)
    try:
        async with worker_in_process(redis_server.url, dict(inference.devices[0][1])):
            a = base_url(await nova(redis=redis_server.url))
            b = base_url(await nova(redis=redis_server.url))
            async with aiohttp.ClientSession() as http:
                made = await http.post(f"{a}/rooms", json={"name": "secret", "private": True})
                assert made.status == 201
                room = await made.json()
                view, publish = room["view_token"], room["publish_token"]

                # Before anyone speaks, and after: refused on B without the token or with a wrong one.
                await refused_everywhere(http, b, "secret", None)
                await refused_everywhere(http, b, "secret", "not-the-token")
                watcher = Viewer(b, "secret", token=view)
                await watcher.connect(http)
                # A second speaker on B holds the publish token, not the view token: its channel
                # carries its own captions only, never the room's.
                quiet = WhipPublisher(b, "secret", str(silent), token=publish)
                await quiet.start(http)
                await quiet.channel_open.wait()

                speaker = WhipPublisher(a, "secret", str(wav), token=publish)
                await speaker.start(http)
                await speaker.ended()
                assert await speaker.stop(http) == 200  # its last final is out when DELETE returns

                async with http.get(f"{a}/rooms/secret/transcript.json", headers=bearer(view)) as resp:
                    said = [c["text"] for c in (await resp.json())["captions"]]
                assert said and wer(text, " ".join(said)) <= 0.35, said
                await watcher.log.wait_for(lambda log: [m["text"] for m in log.finals()] == said, 30)
                assert speaker.log.final_text() == " ".join(said)  # its own, on its own channel

                await refused_everywhere(http, b, "secret", None)
                await refused_everywhere(http, b, "secret", "not-the-token")
                for fmt in FORMATS:
                    resp = await http.get(f"{b}/rooms/secret/transcript.{fmt}?token={view}")
                    assert resp.status == 200 and said[0].split()[0] in await resp.text()
                info = await (await http.get(f"{b}/rooms/secret", headers=bearer(publish))).json()
                assert info["private"] is True
                assert quiet.log.captions() == []
                assert any(m["type"] == "status" for m in quiet.log.messages)  # it was listening
                assert await quiet.stop(http) == 200
                await watcher.close()

                # Redis gone: B cannot read the room's record, so it refuses (503), never opens.
                redis_server.stop()
                try:
                    resp = await http.get(f"{b}/rooms/secret/transcript.txt")
                    assert resp.status == 503, await resp.text()
                    body = await resp.json()
                    assert str(redis_server.port) not in body["message"]  # no hosts to the public
                    resp = await http.post(
                        f"{b}/rooms/secret/viewers", json={"sdp": await ghost_offer(False)}
                    )
                    assert resp.status == 503
                finally:
                    redis_server.start()
    finally:
        logging.getLogger("server").removeHandler(refusals)
    # Every refusal was logged, each with the id of its request.
    assert len(refusals.lines) >= 2 * (len(FORMATS) + 3)
    assert all(len(request) == 12 for _, request in refusals.lines), refusals.lines[:3]
    assert len({request for _, request in refusals.lines}) == len(refusals.lines)


async def test_a_tokenless_publisher_hears_only_itself_where_viewing_needs_a_token(
    nova, tmp_path: Path
) -> None:
    server = await nova(view_token="watch")  # on loopback: rooms not created first are open to publish
    base = base_url(server)
    wav, _ = speech_wav(tmp_path)
    silent = write_wav(tmp_path / "silence.wav", silence(8.0))
    async with aiohttp.ClientSession() as http:
        # B publishes without any token; C too, but shows the view token (?token=) as a viewer would.
        intruder = WhipPublisher(base, "r", str(silent))
        reader = WhipPublisher(base, "r?token=watch", str(silent))
        for p in (intruder, reader):
            await p.start(http)
            await p.channel_open.wait()
        speaker = WhipPublisher(base, "r", str(wav))
        await speaker.start(http)
        await speaker.ended()
        assert await speaker.stop(http) == 200
        said = [m["text"] for m in speaker.log.finals()]
        assert said  # its own captions reach the speaker
        # C may view the room: it hears the speaker; B heard nothing of it, though it listened.
        await reader.log.wait_for(lambda log: [m["text"] for m in log.finals()] == said, 30)
        assert intruder.log.captions() == []
        assert any(m["type"] == "status" for m in intruder.log.messages)
        for p in (intruder, reader):
            assert await p.stop(http) == 200


def without(sdp: str, *prefixes: str) -> str:
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith(prefixes)) + "\r\n"


async def test_an_offer_that_could_never_connect_is_a_400_before_any_peer(nova) -> None:
    server = await nova(offers_per_minute=0)
    state = server.app[STATE]
    base = base_url(server)
    publisher, viewer = await ghost_offer(publisher=True), await ghost_offer(publisher=False)
    sha1 = "a=fingerprint:sha-1 " + ":".join(["AB"] * 20)
    cases = {
        "no_fingerprint": lambda sdp: without(sdp, "a=fingerprint"),
        "unsupported_fingerprint": lambda sdp: (
            "\r\n".join(sha1 if line.startswith("a=fingerprint") else line for line in sdp.splitlines())
            + "\r\n"
        ),
        "no_ice_credentials": lambda sdp: without(sdp, "a=ice-pwd"),
        "no_dtls_setup": lambda sdp: without(sdp, "a=setup"),
    }
    async with aiohttp.ClientSession(base) as http:
        for code, edit in cases.items():
            resp = await http.post(
                "/whip/open", data=edit(publisher), headers={"Content-Type": "application/sdp"}
            )
            assert resp.status == 400 and (await resp.json())["error"] == code, await resp.text()
            resp = await http.post("/rooms/open/viewers", json={"sdp": edit(viewer)})
            assert resp.status == 400 and (await resp.json())["error"] == code, await resp.text()
        # The reported probe: a bundle led by a section that is not there (aiortc failed inside).
        no_audio = viewer.replace("a=group:BUNDLE 0", "a=group:BUNDLE 7 0")
        resp = await http.post("/rooms/open/viewers", json={"sdp": no_audio})
        body = await resp.json()
        assert resp.status == 400 and body["error"] == "bad_bundle"
    assert len(state.peers) == 0 and state.backend.stats().sessions == 0
    # Nothing escaped a task: the nova fixture fails the test if one did.


async def test_answers_say_what_not_how(nova, redis_server: RedisServer) -> None:
    server = await nova()
    base = base_url(server)
    async with aiohttp.ClientSession(base) as http:
        await http.post("/rooms", json={"name": "talk"})
        long_lang = "x" * 7000
        resp = await http.post(
            f"/rooms/talk/viewers?lang={long_lang}", json={"sdp": await ghost_offer(False)}
        )
        body = await resp.json()
        assert resp.status == 400 and len(body["message"]) <= 400 and "x" * 40 not in body["message"]
        resp = await http.post("/rooms", data="{nope", headers={"Content-Type": "application/json"})
        body = await resp.json()
        assert resp.status == 400 and body["message"].startswith("the body is not valid JSON")
        assert "Expecting" not in body["message"]  # Python's words are not ours
        resp = await http.get("/" + "y" * 5000)
        assert resp.status == 404 and len((await resp.json())["message"]) <= 400
        public = await (await http.get("/health/full")).text()
        state = server.app[STATE]
        assert state.backend.stats().detail["model"]["path"] not in public
        assert "/" not in json.loads(public)["model"].get("name", "")

    # With a view token /health/full needs it, and still shows no paths; the admin token shows them.
    guarded = await nova(view_token="watch", admin_token="root-of-it")
    path = guarded.app[STATE].backend.stats().detail["model"]["path"]
    async with aiohttp.ClientSession(base_url(guarded)) as http:
        assert (await http.get("/health/full")).status == 401
        assert (await http.get("/health/full", headers=bearer("wrong"))).status == 403
        viewer_view = await (await http.get("/health/full", headers=bearer("watch"))).text()
        assert path not in viewer_view and json.loads(viewer_view)["model"]["name"] == "tiny.en"
        admin_view = await (await http.get("/health/full", headers=bearer("root-of-it"))).json()
        assert admin_view["model"]["path"] == path

    # A gateway shows the public no Redis address, nor the workers' host names.
    gateway = await nova(redis=redis_server.url)
    async with aiohttp.ClientSession(base_url(gateway)) as http:
        text = await (await http.get("/health/full")).text()
    assert str(redis_server.port) not in text and "redis://" not in text
