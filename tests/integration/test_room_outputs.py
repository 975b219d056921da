"""Room outputs (issue 20): captions where the audience already is.

YouTube: a room with a YouTube output POSTs each final to the caption ingestion URL in YouTube's
format. The receiver is a real HTTP server on loopback that checks every request, fails some
(500s and a request that hangs past the timeout) and must still get every final's words in
order, while the room's viewers are not held up.

OBS: the same room sends each final to OBS's obs-websocket 5 server as ``SendStreamCaption``
(CEA-608 in the outgoing stream, YouTube's and Twitch's CC button). OBS itself is not on this
machine nor on CI's (no ``obs``, ``xvfb-run`` or ``ffmpeg`` binary; the suite installs nothing
by hand), so its peer is an obs-websocket 5 protocol peer: it checks the handshake (Hello,
Identify with the salted SHA-256 authentication, Identified) and every request's fields,
refuses a wrong password with 4009 as OBS does, and drops the connection once as OBS does when
it restarts. One room and one speaker serve both, to spend the suite's time once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from bench.corpus import LIBRIVOX, silence, write_wav
from pipeline.audio import read_audio
from pipeline.types import Caption
from server.state import STATE
from tests.support.probes import wait_until
from tests.support.server_process import free_port
from tests.support.whip_client import Viewer, WhipPublisher

KEY = "SECRETSTREAMKEY42"
PASSWORD = "correct horse battery"


def expected_auth(password: str, salt: str, challenge: str) -> str:
    # Written out from obs-websocket's protocol document, not taken from the server's code.
    secret = base64.b64encode(hashlib.sha256(password.encode() + salt.encode()).digest())
    return base64.b64encode(hashlib.sha256(secret + challenge.encode()).digest()).decode()


class ObsPeer:
    def __init__(self) -> None:
        self.captions: list[str] = []
        self.identified = 0
        self.refused = 0
        self.problems: list[str] = []
        self.ended = asyncio.Event()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("obswebsocket.json",))
        await ws.prepare(request)
        if ws.ws_protocol != "obswebsocket.json":
            self.problems.append(f"subprotocol {ws.ws_protocol!r}")
        salt, challenge = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        hello = {
            "obsWebSocketVersion": "5.5.2",
            "rpcVersion": 1,
            "authentication": {"challenge": challenge, "salt": salt},
        }
        await ws.send_json({"op": 0, "d": hello})
        identify = await ws.receive_json()
        if identify.get("op") != 1 or identify["d"].get("rpcVersion") != 1:
            self.problems.append(f"identify {identify}")
        if identify["d"].get("authentication") != expected_auth(PASSWORD, salt, challenge):
            self.refused += 1
            await ws.close(code=4009, message=b"Authentication failed.")
            return ws
        await ws.send_json({"op": 2, "d": {"negotiatedRpcVersion": 1}})
        self.identified += 1
        async for msg in ws:
            data = msg.json()
            d = data.get("d", {})
            text = d.get("requestData", {}).get("captionText")
            if (
                data.get("op") != 6
                or d.get("requestType") != "SendStreamCaption"
                or not isinstance(text, str)
            ):
                self.problems.append(f"request {data}")
                continue
            self.captions.append(text)
            status = {"result": True, "code": 100}
            await ws.send_json(
                {
                    "op": 7,
                    "d": {
                        "requestType": "SendStreamCaption",
                        "requestId": d["requestId"],
                        "requestStatus": status,
                    },
                }
            )
            if len(self.captions) == 2 and self.identified == 1:
                await ws.close()  # OBS restarts: the output must reconnect and carry on
        self.ended.set()  # the output's connection is gone
        return ws


STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$")


class Receiver:
    """YouTube's ingestion endpoint as a test sees it: every request kept, some failed."""

    def __init__(self, fail: int = 2, hang_on: int = 3) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail, self.hang_on = fail, hang_on
        self.accepted: list[list[str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append(
            {
                "method": request.method,
                "type": request.content_type,
                "query": dict(request.query),
                "body": body,
                "at": datetime.now(UTC),
            }
        )
        n = len(self.requests)
        if n <= self.fail:
            return web.Response(status=500, text="try later")
        if n == self.hang_on:
            await asyncio.sleep(8)  # past the poster's timeout: it gives up and retries
        self.accepted.append(body.rstrip("\n").split("\n")[1:])
        return web.Response(text="ok")


async def test_youtube_and_obs_outputs_get_every_final_in_order_through_failures(
    nova, aiohttp_server: Any, tmp_path: Path, caplog: Any
) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/closedcaption", receiver.handle)
    peer = ObsPeer()
    app.router.add_get("/obs", peer.handle)
    youtube = await aiohttp_server(app, host="127.0.0.1")
    url = f"{str(youtube.make_url('/closedcaption'))}?cid={KEY}"
    ws_url = f"ws://127.0.0.1:{youtube.port}/obs"
    server = await nova(outputs_allow="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    clips = [read_audio(str(c.path)) for c in LIBRIVOX[:3]]
    audio = np.concatenate([silence(0.5), *[part for clip in clips for part in (clip, silence(1.2))]])
    wav = write_wav(tmp_path / "live.wav", audio)
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        outputs = [
            {"type": "youtube", "url": url},
            {"type": "obs", "url": ws_url, "password": PASSWORD},
            {"type": "obs", "url": ws_url, "password": "wrong"},  # refused: costs only that output
        ]
        made = await http.post(f"{base}/rooms", json={"name": "live", "outputs": outputs})
        assert made.status == 201, await made.text()
        shown = [{k: o[k] for k in ("type", "url")} for o in (await made.json())["outputs"]]
        assert shown[0] == {"type": "youtube", "url": f"http://127.0.0.1:{youtube.port}/***"}
        assert shown[1] == {"type": "obs", "url": f"ws://127.0.0.1:{youtube.port}/***"}
        assert PASSWORD not in str(shown) and KEY not in str(shown)
        bad = await http.post(f"{base}/rooms", json={"outputs": [{"type": "youtube", "url": "ftp://x"}]})
        assert bad.status == 400 and (await bad.json())["error"] == "bad_output"
        viewer = Viewer(base, "live")
        await viewer.connect(http)
        speaker = WhipPublisher(base, "live", str(wav), token=(await made.json())["publish_token"])
        await speaker.start(http)
        await speaker.ended()
        assert await speaker.stop(http) == 200
        finals = [m["text"] for m in viewer.log.finals()]
        # The viewer had every final while the receiver was failing and hanging.
        assert len(finals) >= 3
        words = " ".join(finals).split()
        for _ in range(400):
            posted = " ".join(" ".join(lines) for lines in receiver.accepted).split()
            if posted == words and " ".join(peer.captions).split() == words:
                break
            await asyncio.sleep(0.1)  # the poster retries with backoff: polling under a bound
        vtt = await (await http.get(f"{base}/rooms/live/transcript.vtt")).text()
        metrics = await (await http.get(f"{base}/metrics")).text()
        await viewer.close()

    assert " ".join(" ".join(lines) for lines in receiver.accepted).split() == words
    seqs = [int(r["query"]["seq"]) for r in receiver.requests]
    assert seqs == list(range(1, len(seqs) + 1))  # one more per request, from 1
    for r in receiver.requests:
        assert r["method"] == "POST" and r["type"] == "text/plain" and r["query"]["cid"] == KEY
        stamp, *lines = r["body"].rstrip("\n").split("\n")
        assert STAMP.match(stamp), r["body"]
        said = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        assert abs((r["at"] - said).total_seconds()) < 60
        assert 1 <= len(lines) <= 2 and all(0 < len(line) <= 42 for line in lines)
    assert 'nova_output_posts_total{outcome="retry",type="youtube"} 3.0' in metrics
    assert 'outcome="dropped",type="youtube"' not in metrics
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("server", "pipeline"))]
    assert any("YouTube caption post" in line for line in ours)
    assert not any(
        KEY in line for line in ours
    )  # the stream key is never logged (the receiver's own log may)
    # The room's subtitles meet the guidelines too.
    blocks = [b.splitlines() for b in vtt.split("\n\n") if "-->" in b]
    assert blocks and all(len(b) - 1 <= 2 and all(len(x) <= 42 for x in b[1:]) for b in blocks)
    assert server.app[STATE].settings.youtube_caption_url == ""
    # OBS got every final as 608 captions, reconnected after its restart, refused the wrong password.
    assert " ".join(peer.captions).split() == words
    assert not peer.problems, peer.problems
    assert peer.identified >= 2 and peer.refused >= 1
    for text in peer.captions:
        lines = text.split("\n")
        assert 1 <= len(lines) <= 2 and all(0 < len(line) <= 32 for line in lines), text


async def test_a_live_room_moves_its_youtube_output_with_a_patch(nova, aiohttp_server: Any) -> None:
    """A new stream key mid-event: PATCH the room's outputs; the next final goes to the new URL
    only. The final is numbered into the server's own room as a publisher's would be: the
    speech path to outputs is the test above, this one is about where finals go after a PATCH."""
    old, new = Receiver(fail=0, hang_on=0), Receiver(fail=0, hang_on=0)
    app = web.Application()
    app.router.add_post("/old", old.handle)
    app.router.add_post("/new", new.handle)
    youtube = await aiohttp_server(app, host="127.0.0.1")
    server = await nova(outputs_allow="127.0.0.1")
    async with aiohttp.ClientSession(server.make_url("")) as http:
        first = [{"type": "youtube", "url": f"{youtube.make_url('/old')}?cid={KEY}"}]
        async with http.post("/rooms", json={"name": "event", "outputs": first}) as resp:
            token = (await resp.json())["publish_token"]
        moved = {"outputs": [{"type": "youtube", "url": f"{youtube.make_url('/new')}?cid=NEWKEY"}]}
        async with http.patch("/rooms/event", json=moved, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 403
        async with http.patch(
            "/rooms/event", json=moved, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            (output,) = (await resp.json())["outputs"]
            assert (output["type"], output["url"]) == ("youtube", f"http://127.0.0.1:{youtube.port}/***")
        room = server.app[STATE].rooms.get("event")
        room.join_publisher("pub")
        room.caption(
            "pub", Caption(segment=0, final=True, text="After the move.", start=0.0, end=1.2, lang="en")
        )
        for _ in range(100):
            if new.accepted:
                break
            await asyncio.sleep(0.05)  # polling the receiver, which has no event of its own
        assert new.accepted == [["After the move."]] and old.requests == []
        assert new.requests[0]["query"]["cid"] == "NEWKEY"
        async with http.get("/rooms/event") as resp:
            assert "NEWKEY" not in await resp.text()


async def test_an_obs_output_patched_away_sends_what_it_holds_and_closes_its_connection(
    nova, aiohttp_server: Any
) -> None:
    peer = ObsPeer()
    app = web.Application()
    app.router.add_get("/obs", peer.handle)
    obs = await aiohttp_server(app, host="127.0.0.1")
    server = await nova(outputs_allow="127.0.0.1")
    async with aiohttp.ClientSession(server.make_url("")) as http:
        first = [{"type": "obs", "url": f"ws://127.0.0.1:{obs.port}/obs", "password": PASSWORD}]
        async with http.post("/rooms", json={"name": "stage", "outputs": first}) as resp:
            token = (await resp.json())["publish_token"]
        room = server.app[STATE].rooms.get("stage")
        room.join_publisher("pub")
        room.caption("pub", Caption(segment=0, final=True, text="Last words.", start=0.0, end=1.0, lang="en"))
        async with http.patch(
            "/rooms/stage", json={"outputs": []}, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        # The final queued before the PATCH still reaches OBS; then the connection is closed,
        # not left open until the server stops.
        await asyncio.wait_for(peer.ended.wait(), 10)
        assert peer.captions == ["Last words."] and peer.problems == []


class Heard:
    """A room listener that keeps what it is sent (a publisher's channel, or a viewer's)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: str) -> None:
        self.messages.append(json.loads(message))

    def last(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in reversed(self.messages) if m["type"] == kind), None)


async def test_outputs_report_their_health_take_a_test_caption_and_are_edited_by_id(
    nova, aiohttp_server: Any
) -> None:
    """What the capture page's outputs panel stands on: each output's state in GET /rooms/{room},
    in the publishers' status messages and in the metrics (a dead OBS address is "retrying"
    within seconds, with the reason in words), a publisher told once when an output fails for
    longer than the alert time (shortened here from 30 s), a test caption sent on demand, and
    an output edited or kept by its id without its stream key ever being sent back."""
    receiver, peer = Receiver(fail=0, hang_on=0), ObsPeer()
    app = web.Application()
    app.router.add_post("/closedcaption", receiver.handle)
    app.router.add_get("/obs", peer.handle)
    ends = await aiohttp_server(app, host="127.0.0.1")
    server = await nova(outputs_allow="127.0.0.1")
    server.app[STATE].outputs.alert_after = 1.0
    dead = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    outputs = [
        {"type": "youtube", "url": f"{ends.make_url('/closedcaption')}?cid={KEY}"},
        {"type": "obs", "url": dead, "password": PASSWORD},
    ]
    async with aiohttp.ClientSession(server.make_url("")) as http:
        async with http.post("/rooms", json={"name": "show", "outputs": outputs}) as resp:
            made = await resp.json()
        auth = {"Authorization": f"Bearer {made['publish_token']}"}
        youtube, obs = (o["id"] for o in made["outputs"])
        room = server.app[STATE].rooms.get("show")
        publisher, viewer = Heard(), Heard()
        room.join_publisher("pub")
        room.listen("pub", publisher)
        room.listen("viewer", viewer)

        async def shown() -> dict[str, dict[str, Any]]:
            async with http.get("/rooms/show") as resp:
                return {o["id"]: o for o in (await resp.json())["outputs"]}

        got: dict[str, dict[str, Any]] = {}
        for _ in range(200):
            got = await shown()
            if got[obs]["state"] == "retrying":
                break
            await asyncio.sleep(0.05)  # polling the API as the page does
        assert got[obs]["state"] == "retrying" and "nothing answers" in got[obs]["last_error"], got
        assert got[youtube]["state"] == "idle" and got[youtube]["sent"] == 0
        assert KEY not in str(got) and PASSWORD not in str(got)
        await wait_until(lambda: publisher.last("error") is not None, 10, "the publisher told of the failure")
        alert = publisher.last("error")
        assert alert is not None and alert["code"] == "output_failing" and "OBS output" in alert["message"]
        status = publisher.last("status")
        assert status is not None and {o["id"] for o in status["outputs"]} == {youtube, obs}
        assert viewer.last("status") is not None and "outputs" not in viewer.last("status")  # type: ignore[operator]
        assert viewer.last("error") is None  # the room's viewers are not told
        async with http.get("/metrics") as resp:
            assert 'nova_outputs{state="retrying",type="obs"} 1.0' in await resp.text()

        async with http.post(f"/rooms/show/outputs/{youtube}/test", headers=auth) as resp:
            assert resp.status == 200 and (await resp.json())["ok"] is True
        assert [lines for lines in receiver.accepted] == [["Nova Voice test caption"]]
        assert receiver.requests[0]["query"]["cid"] == KEY
        async with http.post(f"/rooms/show/outputs/{obs}/test", headers=auth) as resp:
            answer = await resp.json()
            assert answer["ok"] is False and "nothing answers" in answer["message"]
        async with http.post(f"/rooms/show/outputs/{youtube}/test") as resp:
            assert resp.status == 401
        async with http.post("/rooms/show/outputs/nope/test", headers=auth) as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "unknown_output"
        got = await shown()
        assert got[youtube]["state"] == "connected" and got[youtube]["sent"] == 1 and got[youtube]["last_ok"]

        # OBS's address fixed by id; YouTube kept by id: its key stays the server's to know.
        edit = [{"id": youtube}, {"id": obs, "url": f"ws://127.0.0.1:{ends.port}/obs"}]
        async with http.patch("/rooms/show", json={"outputs": edit}, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
        for _ in range(200):
            got = await shown()
            if got[obs]["state"] == "connected":
                break
            await asyncio.sleep(0.05)
        assert got[obs]["state"] == "connected" and peer.identified == 1, got  # its password was kept
        async with http.post(f"/rooms/show/outputs/{youtube}/test", headers=auth) as resp:
            assert (await resp.json())["ok"] is True
        assert receiver.requests[-1]["query"]["cid"] == KEY
        async with http.patch("/rooms/show", json={"outputs": [{"id": "nope"}]}, headers=auth) as resp:
            assert resp.status == 400 and "no output with id" in (await resp.json())["message"]
        async with http.patch("/rooms/show", json={"outputs": [{"id": youtube}]}, headers=auth) as resp:
            assert [o["id"] for o in (await resp.json())["outputs"]] == [youtube]
        await asyncio.wait_for(peer.ended.wait(), 10)  # the removed OBS output let go of OBS


def test_outputs_kept_with_a_room_connect_when_the_server_starts(tmp_path: Path, inference: Any) -> None:
    """A restart: the room's OBS output, kept in rooms.json (from before outputs had ids), is
    given an id and connects as the app starts, not at the first final. The app is made outside
    any event loop, as ``nova-voice serve`` makes it."""
    from aiohttp.test_utils import TestServer

    from server.app import create_app
    from server.settings import Settings

    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    kept = {
        "stage": {
            "token_hash": "0" * 64,
            "outputs": [{"type": "obs", "url": f"ws://127.0.0.1:{port}/obs", "password": PASSWORD}],
        }
    }
    (data / "rooms.json").write_text(json.dumps(kept))
    app = create_app(Settings(data_dir=str(data), outputs_allow="127.0.0.1"), inference)

    async def run() -> dict[str, Any]:
        peer = ObsPeer()
        obs_app = web.Application()
        obs_app.router.add_get("/obs", peer.handle)
        async with (
            TestServer(obs_app, host="127.0.0.1", port=port),
            TestServer(app, host="127.0.0.1") as server,
        ):
            async with aiohttp.ClientSession(server.make_url("")) as http:
                for _ in range(200):
                    async with http.get("/rooms/stage") as resp:
                        (output,) = (await resp.json())["outputs"]
                    if output["state"] == "connected":
                        break
                    await asyncio.sleep(0.05)  # polling the API, as the page does
            assert peer.identified == 1
            return output

    output = asyncio.run(run())
    assert output["state"] == "connected" and len(output["id"]) == 8, output
