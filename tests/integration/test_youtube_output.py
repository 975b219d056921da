"""Captions on YouTube (issue 20): a room with a YouTube output POSTs each final to the caption
ingestion URL in YouTube's format. The receiver is a real HTTP server on loopback that checks
every request, fails some (500s and a request that hangs past the timeout) and must still get
every final's words in order, while the room's viewers are not held up."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from pipeline.audio import read_audio
from server.state import STATE
from tests.support.speech import LIBRIVOX, silence, write_wav
from tests.support.whip_client import Viewer, WhipPublisher

KEY = "SECRETSTREAMKEY42"
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


async def test_a_youtube_output_gets_every_final_in_order_through_failures(
    nova, aiohttp_server: Any, tmp_path: Path, caplog: Any
) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/closedcaption", receiver.handle)
    youtube = await aiohttp_server(app, host="127.0.0.1")
    url = f"{str(youtube.make_url('/closedcaption'))}?cid={KEY}"
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    clips = [read_audio(str(c.path)) for c in LIBRIVOX[:3]]
    audio = np.concatenate([silence(0.5), *[part for clip in clips for part in (clip, silence(1.2))]])
    wav = write_wav(tmp_path / "live.wav", audio)
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        made = await http.post(
            f"{base}/rooms", json={"name": "live", "outputs": [{"type": "youtube", "url": url}]}
        )
        assert made.status == 201, await made.text()
        shown = (await made.json())["outputs"]
        assert shown == [{"type": "youtube", "url": str(youtube.make_url("/closedcaption")) + "?***"}]
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
            if " ".join(" ".join(lines) for lines in receiver.accepted).split() == words:
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
    assert 'outcome="dropped"' not in metrics
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("server", "pipeline"))]
    assert any("YouTube caption post" in line for line in ours)
    assert not any(
        KEY in line for line in ours
    )  # the stream key is never logged (the receiver's own log may)
    # The room's subtitles meet the guidelines too.
    blocks = [b.splitlines() for b in vtt.split("\n\n") if "-->" in b]
    assert blocks and all(len(b) - 1 <= 2 and all(len(x) <= 42 for x in b[1:]) for b in blocks)
    assert server.app[STATE].settings.youtube_caption_url == ""
