"""The server as a process that crashes, restarts and is told to stop; the pages that watch it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import LIBRIVOX, espeak, silence, write_wav
from bench.scoring import wer
from pipeline.audio import read_audio
from tests.support.browser import chromium
from tests.support.server_process import ENV, ServerProcess, free_port
from tests.support.whip_client import WhipPublisher

OVERLAY_LINES = "document.querySelectorAll('#captions .line').length"
OVERLAY_FINALS = "[...document.querySelectorAll('#captions .line.final')].map(e => e.textContent)"


async def publish(base: str, room: str, wav: Path) -> WhipPublisher:
    async with aiohttp.ClientSession() as http:
        pub = WhipPublisher(base, room, str(wav))
        await pub.start(http)
        await pub.ended()
        await pub.log.wait_for(lambda log: log.finals(), 20)
        await pub.stop(http)
    return pub


def clip_wav(tmp_path: Path, index: int) -> Path:
    audio = read_audio(str(LIBRIVOX[index].path))
    return write_wav(tmp_path / f"clip{index}.wav", np.concatenate([silence(0.5), audio, silence(1.5)]))


async def test_overlay_clears_on_a_crash_and_time_moves_forward_after_restart(
    tmp_path: Path, artifacts: Path
) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 640, "height": 360})
            await page.goto(f"{server.base}/overlay/again?fade=0&lines=3")
            await page.wait_for_function("document.body.dataset.state === 'live'", timeout=15_000)
            before = await publish(server.base, "again", clip_wav(tmp_path, 1))
            await page.wait_for_function(f"{OVERLAY_LINES} === 1", timeout=10_000)

            server.kill()
            # No goodbye from a killed server: the heartbeat's silence is what the page notices.
            await page.wait_for_function(
                f"document.body.dataset.state !== 'live' && {OVERLAY_LINES} === 0", timeout=8_000
            )

            server.start()
            await page.wait_for_function("document.body.dataset.state === 'live'", timeout=30_000)
            after = await publish(server.base, "again", clip_wav(tmp_path, 4))
            # Only the new session's line: the old one was not replayed as if it were live.
            await page.wait_for_function(
                f"{OVERLAY_LINES} === 1 && {OVERLAY_FINALS}.length === 1", timeout=10_000
            )
            assert await page.evaluate(OVERLAY_FINALS) == [after.log.finals()[-1]["text"]]

        async with aiohttp.ClientSession(server.base) as http:
            resp = await http.get("/rooms/again/transcript.json")
            doc = await resp.json()
            assert resp.headers["Content-Disposition"] == 'inline; filename="again.json"'
            vtt = await (await http.get("/rooms/again/transcript.vtt")).text()
    finally:
        server.kill()

    assert [c["text"] for c in doc["captions"]] == [
        m["text"] for m in before.log.finals() + after.log.finals()
    ]
    starts = [c["start"] for c in doc["captions"]]
    assert starts == sorted(starts) and starts[1] > doc["captions"][0]["end"], doc
    assert [s["session"] for s in doc["sessions"]] == [1, 2]
    assert doc["sessions"][1]["start"] >= doc["captions"][0]["end"]
    assert vtt.index("NOTE session 1") < vtt.index("NOTE session 2")


async def test_the_capture_page_says_connection_lost_and_reconnects_by_itself(
    tmp_path: Path, artifacts: Path
) -> None:
    first = "Welcome to the weekly team meeting."
    second = "The design review is scheduled for Thursday afternoon."
    a, b = espeak(first, tmp_path / "a.wav"), espeak(second, tmp_path / "b.wav")
    # A long pause between the sentences: the server is killed and restarted during it.
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([silence(1.0), a, silence(14.0), b, silence(4.0)]))
    server = ServerProcess(tmp_path / "data").start()
    try:
        async with chromium(fake_audio=mic) as browser:
            page = await browser.new_page(viewport={"width": 1000, "height": 700})
            await page.goto(f"{server.base}/?room=lively")
            await page.click("#share")
            await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
            await page.wait_for_function("window.novaCapture.finals().length >= 1", timeout=30_000)

            server.kill()
            killed = time.monotonic()
            await page.wait_for_function("window.novaCapture.state() === 'lost'", timeout=5_000)
            noticed = time.monotonic() - killed
            assert await page.text_content("#state") == "connection lost"
            assert await page.evaluate("window.novaCapture.partial()") == ""
            await page.screenshot(path=str(artifacts / "capture-lost.png"))

            server.start()
            await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=30_000)
            await page.wait_for_function("window.novaCapture.finals().length >= 2", timeout=30_000)
            finals = await page.evaluate("window.novaCapture.finals()")
            assert await page.is_hidden("#error")
    finally:
        server.kill()
    # Within 2 s on a quiet machine (heartbeat 0.5 s, silence limit 1.5 s); a margin for load.
    assert noticed < 3.0, noticed
    assert wer(first, finals[0]) <= 0.35, finals
    assert wer(second, " ".join(finals[1:])) <= 0.35, finals


async def test_sigterm_drains_finalises_the_sentence_and_exits(tmp_path: Path) -> None:
    clip = LIBRIVOX[0]
    server = ServerProcess(tmp_path / "data").start()
    saw_draining = False
    try:
        async with aiohttp.ClientSession() as http:
            pub = WhipPublisher(server.base, "term", str(clip.path))
            await pub.start(http)
            await pub.log.wait_for(lambda log: any(len(m["text"].split()) >= 4 for m in log.captions()), 20)
            server.signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and server.proc.poll() is None:  # type: ignore[union-attr]
                try:
                    async with http.get(f"{server.base}/health") as resp:
                        if resp.status == 503 and (await resp.json())["status"] == "draining":
                            saw_draining = True
                            async with http.post(
                                f"{server.base}/whip/term",
                                data="v=0",
                                headers={"Content-Type": "application/sdp"},
                            ) as late:
                                assert late.status == 503 and late.headers["Retry-After"]
                            break
                except aiohttp.ClientConnectionError:
                    break  # already gone
            code = await asyncio.to_thread(server.wait, 30)
            await pub.log.wait_for(lambda log: log.finals(), 5)
            await pub.close()
    finally:
        server.kill()
    assert code == 0, "".join(server.lines)
    assert saw_draining, "".join(server.lines)
    heard = pub.log.final_text().split()
    assert len(heard) >= 3 and wer(" ".join(clip.text.split()[: len(heard)]), " ".join(heard)) <= 0.4, heard


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "server", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
        )
    assert result.returncode == 2
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert said == [
        f"nova-voice: port {port} on 127.0.0.1 is already in use (another Nova Voice?); pick another "
        "with --port or NOVA_PORT"
    ], said


async def test_json_logs_carry_room_and_session_ids(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", free_port(), "--log-format", "json").start()
    try:
        await publish(server.base, "logged", clip_wav(tmp_path, 1))
    finally:
        server.signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait, 30)
    records = []
    for line in server.lines:
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    mine = [r for r in records if r.get("room") == "logged"]
    assert mine and all(r.get("session") for r in mine), records
    assert {r["session"] for r in mine} == {mine[0]["session"]}
