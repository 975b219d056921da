"""The plain HTTP feed (issue 20): ``GET /rooms/{room}/events`` streams a room's captions as
Server-Sent Events to a reader with no WebRTC (curl), resumes with ``Last-Event-ID`` without
gaps or repeats, and keeps a private room private. Real server, real WebRTC speaker, real speech."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import LIBRIVOX, silence, write_wav
from pipeline.audio import read_audio
from tests.support.whip_client import WhipPublisher


class Feed:
    """An SSE reader: every event's id and message, as a browser's EventSource keeps them."""

    def __init__(self, url: str, last_id: int | None = None) -> None:
        self.url, self.last_id = url, last_id
        self.events: list[tuple[int | None, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def finals(self) -> list[tuple[int | None, dict[str, Any]]]:
        return [(i, m) for i, m in self.events if m["type"] == "caption" and m["final"] and m["text"]]

    async def read(self, http: aiohttp.ClientSession, until: Any) -> None:
        headers = {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}
        async with http.get(self.url, headers=headers) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            event_id: int | None = None
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    self.events.append((event_id, json.loads(line[6:])))
                    event_id = None
                    if until(self):
                        return


async def test_a_feed_streams_finals_and_resumes_without_gaps_or_repeats(nova, tmp_path: Path) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    clips = [read_audio(str(c.path)) for c in LIBRIVOX[:3]]
    audio = np.concatenate([part for clip in clips for part in (clip, silence(1.2))])
    wav = write_wav(tmp_path / "talk.wav", np.concatenate([silence(0.5), audio]))
    url = f"{base}/rooms/feed/events"
    async with aiohttp.ClientSession() as http:
        said = {"finals": 10**6}  # how many finals the room made: known once the speaker is done
        whole = Feed(url)
        whole_done = asyncio.create_task(whole.read(http, lambda f: len(f.finals()) >= said["finals"]))
        broken = Feed(url)
        # The first reader drops after its first final, as a reader on a bad network would.
        await asyncio.wait_for(
            asyncio.gather(broken.read(http, lambda f: len(f.finals()) >= 1), _speak(http, base, wav)), 120
        )
        doc = await (await http.get(f"{base}/rooms/feed/transcript.json")).json()
        said["finals"] = len(doc["captions"])
        assert said["finals"] >= 3
        await asyncio.wait_for(whole_done, 60)
        last = broken.finals()[-1][0]
        assert last is not None
        resumed = Feed(url, last_id=last)
        expected = said["finals"] - len(broken.finals())
        await asyncio.wait_for(resumed.read(http, lambda f: len(f.finals()) >= expected), 30)

    ids = [i for i, _ in whole.finals()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    got = [m["text"] for _, m in broken.finals() + resumed.finals()]
    assert got == [m["text"] for _, m in whole.finals()] == [c["text"] for c in doc["captions"]]
    assert all(i is not None and i > last for i, _ in resumed.events if i is not None)
    assert any(m["type"] == "status" for _, m in whole.events)  # the heartbeat


async def _speak(http: aiohttp.ClientSession, base: str, wav: Path) -> None:
    speaker = WhipPublisher(base, "feed", str(wav))
    await speaker.start(http)
    await speaker.ended()
    assert await speaker.stop(http) == 200


async def test_plain_curl_reads_the_feed_and_a_private_room_needs_its_token(nova) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        made = await (await http.post("/rooms", json={"name": "board", "private": True})).json()
        assert (await http.get("/rooms/board/events")).status == 401
        assert (await http.get("/rooms/board/events", headers={"Authorization": "Bearer no"})).status == 403
        assert (await http.get("/rooms/board/events?lang=xx")).status == 401  # the token first
        bad = await http.get("/rooms/lobby/events", headers={"Last-Event-ID": "12abc"})
        assert bad.status == 400
    curl = shutil.which("curl")
    assert curl, "curl (Debian curl) is the plain reader"
    done = await asyncio.to_thread(
        subprocess.run,
        [curl, "-sN", "--max-time", "2", f"{base}/rooms/board/events?token={made['view_token']}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # The reconnect wait is drawn per feed, 1-4 s: a dead gateway's readers do not return together.
    assert re.match(r"retry: [1-4][0-9]{3}\n", done.stdout), done.stdout[:200]
    data = [json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("data: ")]
    assert data and all(m["type"] == "status" and m["room"] == "board" for m in data)
