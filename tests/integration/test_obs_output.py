"""Native stream captions through OBS (issue 20): a room output that sends each final to OBS's
obs-websocket 5 server as ``SendStreamCaption`` (CEA-608 in the outgoing stream, YouTube's and
Twitch's CC button). OBS itself is not on this machine nor on CI's (no ``obs``, ``xvfb-run``
or ``ffmpeg`` binary; the suite installs nothing by hand), so the test's peer is an
obs-websocket 5 protocol peer: it checks the handshake (Hello, Identify with the salted SHA-256
authentication, Identified) and every request's fields, refuses a wrong password with 4009 as
OBS does, and drops the connection once as OBS does when it restarts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from pipeline.audio import read_audio
from tests.support.speech import LIBRIVOX, silence, write_wav
from tests.support.whip_client import Viewer, WhipPublisher

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
        return ws


async def test_an_obs_output_sends_each_final_as_608_captions_and_survives_obs_restarting(
    nova, aiohttp_server: Any, tmp_path: Path
) -> None:
    peer = ObsPeer()
    app = web.Application()
    app.router.add_get("/", peer.handle)
    obs = await aiohttp_server(app, host="127.0.0.1")
    ws_url = f"ws://127.0.0.1:{obs.port}/"
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    clips = [read_audio(str(c.path)) for c in LIBRIVOX[:3]]
    wav = write_wav(
        tmp_path / "s.wav", np.concatenate([silence(0.5), *[p for c in clips for p in (c, silence(1.2))]])
    )
    outputs = [
        {"type": "obs", "url": ws_url, "password": PASSWORD},
        {"type": "obs", "url": ws_url, "password": "wrong"},  # refused: costs only that output
    ]
    async with aiohttp.ClientSession() as http:
        made = await http.post(f"{base}/rooms", json={"name": "stream", "outputs": outputs})
        assert made.status == 201, await made.text()
        room = await made.json()
        assert PASSWORD not in str(room) and room["outputs"][0] == {"type": "obs", "url": ws_url}
        viewer = Viewer(base, "stream")
        await viewer.connect(http)
        speaker = WhipPublisher(base, "stream", str(wav), token=room["publish_token"])
        await speaker.start(http)
        await speaker.ended()
        assert await speaker.stop(http) == 200
        words = " ".join(m["text"] for m in viewer.log.finals()).split()
        assert len(viewer.log.finals()) >= 3  # the viewer had its captions, whatever OBS did
        for _ in range(300):
            if " ".join(peer.captions).split() == words:
                break
            await asyncio.sleep(0.1)  # the output reconnects with backoff: polling under a bound
        await viewer.close()
    assert " ".join(peer.captions).split() == words
    assert not peer.problems, peer.problems
    assert peer.identified >= 2 and peer.refused >= 1  # reconnected after the restart; wrong password refused
    for text in peer.captions:
        lines = text.split("\n")
        assert 1 <= len(lines) <= 2 and all(0 < len(line) <= 32 for line in lines), text
