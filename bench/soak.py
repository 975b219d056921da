"""Soak: publish/unpublish cycles and ghost offers (offers that never do ICE) against a real
server; its peers, descriptors and memory must come back to where they started.

    .venv/bin/python -m bench.soak [--cycles 500] [--ghosts 500] [--concurrency 4] [--rounds 3]
    .venv/bin/python -m bench.soak --drive http://127.0.0.1:PORT --room R [--cycles ...]


Starts a `nova-voice serve` process with a short connect deadline and the per-address limits
off (all the load comes from this one address), warms up with a few of each, measures, soaks,
waits for the ghosts' deadline, and measures again. Writes bench/results/soak.md. With
``--drive`` it only drives a server that is already running (one soak, its SoakRun printed as
JSON): tests/integration/test_soak.py runs the server in its own process, to count its objects,
and this driver in another, so the two use both cores.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from bench.harness import write_report
from tests.support.probes import ghost_offer

SDP = {"Content-Type": "application/sdp"}


async def publish_cycle(http: aiohttp.ClientSession, base: str, room: str) -> None:
    """One publisher that connects, sends a little audio (silence), and says goodbye with DELETE."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        pc.createDataChannel("captions")
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                connected.set()

        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{base}/whip/{room}", data=pc.localDescription.sdp, headers=SDP) as resp:
            answer = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHIP answered {resp.status}: {answer}")
            location = resp.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(connected.wait(), 30)
        async with http.delete(base + location) as resp:
            if resp.status != 200:
                raise RuntimeError(f"DELETE answered {resp.status}")
    finally:
        await pc.close()


@dataclass(frozen=True)
class SoakRun:
    cycles: int
    ghosts: int
    seconds: float
    refused: int  # ghost offers not answered 200/201
    failed: int  # cycles that did not connect or end cleanly


async def soak(
    base: str,
    cycles: int,
    ghosts: int,
    concurrency: int = 4,
    ghosts_per_second: float = 12.0,
    room: str = "soak",
) -> SoakRun:
    """``cycles`` publish/unpublish cycles, ``concurrency`` at a time, while ``ghosts`` ghost
    offers (half WHIP, half viewers) arrive at ``ghosts_per_second``, paced so that the pending
    ones (each holds sockets until its deadline) stay bounded."""
    pub_sdp, view_sdp = await ghost_offer(publisher=True), await ghost_offer(publisher=False)
    start = time.monotonic()
    refused = failed = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        # Ghost viewers need a room that exists whatever the ghost publishers do: a created one.
        async with http.post(f"{base}/rooms", json={"name": f"{room}-ghosts"}) as resp:
            if resp.status != 201:
                raise RuntimeError(f"POST /rooms answered {resp.status}: use a new room name per run")
            token = (await resp.json())["publish_token"]
        auth = {**SDP, "Authorization": f"Bearer {token}"}
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(cycles):
            queue.put_nowait(i)

        async def cycler() -> None:
            nonlocal failed
            while not queue.empty():
                queue.get_nowait()
                try:
                    await publish_cycle(http, base, room)
                except (RuntimeError, TimeoutError, aiohttp.ClientError):
                    failed += 1

        async def ghost(i: int) -> None:
            nonlocal refused
            if i % 2:
                post = http.post(f"{base}/rooms/{room}-ghosts/viewers", json={"sdp": view_sdp})
            else:
                post = http.post(f"{base}/whip/{room}-ghosts", data=pub_sdp, headers=auth)
            async with post as resp:
                if resp.status not in (200, 201):
                    refused += 1

        async def ghosts_task() -> None:
            pending: set[asyncio.Task[None]] = set()
            for i in range(ghosts):
                task = asyncio.get_running_loop().create_task(ghost(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(1.0 / ghosts_per_second)  # pacing the attack, not synchronising
            await asyncio.gather(*pending)

        await asyncio.gather(ghosts_task(), *(cycler() for _ in range(concurrency)))
    return SoakRun(cycles, ghosts, time.monotonic() - start, refused, failed)


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def process_levels(pid: int) -> tuple[int, int]:
    """(open descriptors, RSS in KiB) of another process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, rss


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(cycles: int, ghosts: int, concurrency: int, rounds: int, out: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    connect_timeout = 15.0  # the default: a loaded machine's real publishers must make it
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port), "--data-dir", tempfile.mkdtemp()]
        + ["--connect-timeout", str(connect_timeout), "--offers-per-minute", "0", "--max-pending", "0"]
        + ["--max-peers", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    rows = []
    try:
        async with aiohttp.ClientSession() as http:

            async def peers() -> int:
                async with http.get(base + "/health/full") as resp:
                    return int((await resp.json())["peers"])

            async def up() -> bool:
                try:
                    return await peers() >= 0
                except aiohttp.ClientError:
                    return False

            assert await wait_for(up, 120), "the server did not start"
            # Warm up: first-use allocations, and the allocator's high-water mark under as many
            # pending ghosts at once as a round will have (memory freed then is kept for reuse).
            await soak(base, 100, min(ghosts, 250), concurrency, room="warm")
            assert await wait_for(lambda: _zero(peers), 30)
            fds0, rss0 = process_levels(server.pid)
            for r in range(rounds):
                cpu0 = _cpu(server.pid)
                run = await soak(base, cycles, ghosts, concurrency, room=f"soak{r}")
                settled = await wait_for(lambda: _zero(peers), 2 * connect_timeout + 30)
                left = await peers()
                # Descriptors close as peers do; give the last ones their moment.
                await wait_for(lambda: _true(process_levels(server.pid)[0] <= fds0 + 2), 10)
                fds1, rss1 = process_levels(server.pid)
                rows.append(
                    f"| {r + 1} | {run.cycles} | {run.failed} | {run.ghosts} | {run.refused} | {run.seconds:.1f} "
                    f"| {_cpu(server.pid) - cpu0:.1f} | {left} ({'settled' if settled else 'NOT settled'}) "
                    f"| {fds0} -> {fds1} | {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} "
                    f"| {100 * (rss1 - rss0) / rss0:+.1f} % |"
                )
                print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [
        "# Soak: publish/unpublish cycles and ghost offers, real server process (loopback)",
        "",
        f"`python -m bench.soak --cycles {cycles} --ghosts {ghosts} --concurrency {concurrency} "
        f"--rounds {rounds}`; connect deadline {connect_timeout:.0f} s; levels of the server process, "
        f"compared with those after a warm-up of 100 cycles and {min(ghosts, 250)} ghosts. "
        "Ghosts come 12 a second, so about 180 are pending at once.",
        "",
        "| round | cycles | failed | ghosts | refused | seconds | server CPU s | peers after | fds | RSS MB "
        "| RSS vs warm |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_report(out, lines, show=True)


async def _zero(peers: Callable[[], Awaitable[int]]) -> bool:
    return await peers() == 0


async def _true(value: bool) -> bool:
    return value


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=500)
    p.add_argument("--ghosts", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3, help="soaks in a row: a leak grows each round")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.md")
    p.add_argument("--drive", metavar="URL", help="only drive this running server, one soak; print JSON")
    p.add_argument("--room", default="soak", help="with --drive: the room (a new name per run)")
    p.add_argument("--ghosts-per-second", type=float, default=12.0)
    a = p.parse_args()
    if a.drive:
        run = asyncio.run(soak(a.drive, a.cycles, a.ghosts, a.concurrency, a.ghosts_per_second, a.room))
        print(json.dumps(dataclasses.asdict(run)), flush=True)
    else:
        asyncio.run(main(a.cycles, a.ghosts, a.concurrency, a.rounds, a.out))
