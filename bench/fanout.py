"""Issue 29: a keynote's captions read by 1,000 people through the SSE feed of one gateway.

    python -m bench.fanout [--readers 1000] [--slow 20] [--out bench/results/fanout.md]

A real redis-server, a worker with the modelled device, and two gateway processes (A and B)
sharing the room through Redis, behind a TCP load balancer that sends each connection to A while
A accepts it. One aiortc publisher speaks into the room on B (the LibriVox stream, twice: ten
sentences); ``--readers`` readers in client processes read ``GET /rooms/keynote/events`` through
the balancer, so all of them are on A, each as a browser's EventSource would: on a disconnect
it waits the ``retry`` the server gave it (1-4 s, drawn per feed) and reconnects with
``Last-Event-ID``. ``--slow`` more readers connect to B and never read.

Measured: every reader's set of finals (each must have every final the room made), the delay of
each final at each reader after the first reader had it (p50/p99/max), gateway A's memory per
reader, whether the readers that never read were cut off by the end (after 512 messages queued,
or 10 s without taking one). Then A is SIGKILLed after the fourth final: every reader must come back
on B within 30 s and, through ``Last-Event-ID``, have every final of the keynote, none twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import librivox, silence, write_wav
from bench.e2e import proc_rss_mb
from bench.gateway import start_gateway, start_worker
from bench.harness import pct, write_report
from tests.support.balancer import Balancer
from tests.support.redis_server import RedisServer
from tests.support.whip_client import WhipPublisher

ROOM = "keynote"
PER_CLIENT = 250
FINAL = re.compile(rb'"seq":(\d+),"segment":\d+,"final":true')


# -- a client process: readers as EventSource reads ------------------------------------------


async def reader(http: aiohttp.ClientSession, url: str, stop: asyncio.Event, log: dict[str, Any]) -> None:
    last: int | None = None
    retry = 1.0
    finals: dict[int, float] = {}
    log["finals"], log["connects"], log["gaps"], log["twice"] = finals, 0, [], 0
    lost_at: float | None = None
    while not stop.is_set():
        headers = {"Last-Event-ID": str(last)} if last is not None else {}
        try:
            async with http.get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise aiohttp.ClientError(f"status {resp.status}")
                log["connects"] += 1
                if lost_at is not None:
                    log["gaps"].append(time.time() - lost_at)
                    lost_at = None
                async for line in resp.content:
                    if line.startswith(b"retry:"):
                        retry = int(line[6:]) / 1000
                    elif line.startswith(b"id:"):
                        last = int(line[3:])
                    elif line.startswith(b"data:"):
                        found = FINAL.search(line)
                        if found:
                            seq = int(found.group(1))
                            log["twice"] += seq in finals
                            finals.setdefault(seq, time.time())
                    if stop.is_set():
                        break
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            pass
        if stop.is_set():
            break
        if lost_at is None:
            lost_at = time.time()
        try:
            async with asyncio.timeout(retry):
                await stop.wait()
        except TimeoutError:
            pass  # the wait the server asked for, then the reconnect


async def slow(host: str, port: int, stop: asyncio.Event, log: dict[str, Any]) -> None:
    """A reader that sends its request and then never reads (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    request = f"GET /rooms/{ROOM}/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    await asyncio.get_running_loop().sock_sendall(sock, request)
    await stop.wait()
    # Was it cut off? Read what is buffered: a closed connection ends in b"".
    sock.setblocking(True)
    sock.settimeout(0.5)
    closed = False
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                closed = True
                break
    except (TimeoutError, OSError):
        pass
    log["cut_off"] = closed
    sock.close()


async def client(url: str, count: int, slow_count: int, slow_url: str) -> None:
    stop = asyncio.Event()
    logs: list[dict[str, Any]] = [{} for _ in range(count)]
    slow_logs: list[dict[str, Any]] = [{} for _ in range(slow_count)]
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=15)
    host, port = slow_url.split("//")[1].split("/")[0].split(":")
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.create_task(reader(http, f"{url}/rooms/{ROOM}/events", stop, log)) for log in logs]
        tasks += [asyncio.create_task(slow(host, int(port), stop, log)) for log in slow_logs]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"readers": logs, "slow": slow_logs}), flush=True)


# -- the run ----------------------------------------------------------------------------------


async def connected(base: str, n: int, timeout: float = 120) -> float:
    """Seconds until the room on ``base`` has ``n`` viewers and feeds."""
    start = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - start < timeout:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            count = sum(
                float(line.split()[-1]) for line in text.splitlines() if line.startswith("nova_viewers ")
            )
            if count >= n:
                return time.monotonic() - start
            await asyncio.sleep(0.5)  # polling the gateway's metrics under a deadline
    raise RuntimeError(f"{n} readers did not connect to {base} within {timeout:.0f} s")


async def main(readers: int, slow_readers: int, out: Path) -> dict[str, Any]:
    stream = librivox()
    speech = np.concatenate([silence(0.5), stream.audio, stream.audio, silence(1.5)])
    wav = write_wav(Path(tempfile.mkdtemp()) / "keynote.wav", speech)
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="nova-redis-")))
    redis.start()
    worker = start_worker(redis.url, "cpu", "--engine", "simulated", "--device-profile", "h200-tiny")
    most = str(2 * (readers + slow_readers))
    flags = ["--max-viewers", most, "--max-viewers-per-address", most]  # every reader from 127.0.0.1
    a, a_base = start_gateway(Path.cwd(), redis.url, *flags)
    b, b_base = start_gateway(Path.cwd(), redis.url, *flags)
    balancer = Balancer([int(a_base.rsplit(":", 1)[1]), int(b_base.rsplit(":", 1)[1])])
    front = await balancer.start()
    counts = [min(PER_CLIENT, readers - i) for i in range(0, readers, PER_CLIENT)]
    slows = [
        slow_readers // len(counts) + (1 if i < slow_readers % len(counts) else 0) for i in range(len(counts))
    ]
    idle_rss = proc_rss_mb(a.pid)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fanout", "--client", "--url", front, "--count", str(k), "--slow", str(s),
            "--slow-url", b_base,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for k, s in zip(counts, slows, strict=True)
    ]  # fmt: skip
    killed_at = 0.0
    try:
        took = await connected(a_base, readers)
        connected_rss = proc_rss_mb(a.pid)
        print(f"{readers} readers on A in {took:.1f} s", flush=True)
        async with aiohttp.ClientSession() as http:
            pub = WhipPublisher(b_base, ROOM, str(wav))
            await pub.start(http)
            # A until the fourth final, then it dies: its readers go to B through the balancer.
            await pub.log.wait_for(lambda log: len(log.finals()) >= 4, 120)
            loaded_rss = proc_rss_mb(a.pid)
            a.kill()
            a.wait(10)
            killed_at = time.time()
            await pub.ended(180)
            utterances = 2 * len(stream.utterances)
            try:
                await pub.log.wait_for(lambda log: len(log.finals()) >= utterances, 60)
            except TimeoutError:
                pass  # a sentence split or joined differently: the readers are held to what was said
            await asyncio.sleep(6)  # the last readers' reconnects: at most 4 s of retry and a replay
            await pub.stop(http)
        said = sorted({m["seq"] for m in pub.log.finals()})
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
        outputs = await asyncio.gather(*(c.communicate() for c in children))
        await balancer.close()
        for proc in (a, b, worker):
            proc.kill()
            proc.wait(10)
        redis.stop()
    logs = [r for out, _ in outputs for r in json.loads(out.decode().strip().splitlines()[-1])["readers"]]
    slow_logs = [r for out, _ in outputs for r in json.loads(out.decode().strip().splitlines()[-1])["slow"]]
    # The finals made while A lived (what every reader got on A) and all of them (after B).
    finals = {int(k): t for r in logs for k, t in r["finals"].items()}
    made = sorted(finals)
    first = {s: min(float(r["finals"][str(s)]) for r in logs if str(s) in r["finals"]) for s in made}
    before_kill = [s for s in made if first[s] < killed_at]
    delays = [
        float(r["finals"][str(s)]) - first[s] for r in logs for s in before_kill if str(s) in r["finals"]
    ]
    complete = sum(1 for r in logs if set(map(int, r["finals"])) >= set(said) and not r["twice"])
    back = [max(r["gaps"]) if r["gaps"] else float("inf") for r in logs]
    row = {
        "readers": readers,
        "slow_readers": slow_readers,
        "finals": len(said),
        "finals_on_a": len(before_kill),
        "readers_with_every_final": complete,
        "delivery_p50_s": pct(delays, 50),
        "delivery_p99_s": pct(delays, 99),
        "delivery_max_s": max(delays, default=float("nan")),
        "connect_all_s": took,
        "rss_idle_mb": idle_rss,
        "rss_connected_mb": connected_rss,
        "rss_loaded_mb": loaded_rss,
        "kb_per_reader": 1024 * (loaded_rss - idle_rss) / readers,
        "slow_cut_off": sum(1 for r in slow_logs if r.get("cut_off")),
        "back_on_b_p50_s": pct([x for x in back if x != float("inf")], 50),
        "back_on_b_max_s": max(back),
        "reconnects": sum(r["connects"] for r in logs) - readers,
        "finals_twice": sum(r["twice"] for r in logs),
    }
    print(json.dumps(row), flush=True)
    lines = [
        "# Fan-out: a keynote's captions to 1,000 SSE readers of one gateway, and that gateway dying",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.fanout --readers {readers} --slow "
        f"{slow_readers}` on this 2-core machine, shared with other work (module docstring: gateways A "
        "and B over one Redis behind a TCP balancer, the publisher on B, every reader on A until A is "
        f"SIGKILLed after the fourth final; {len(counts)} reader processes).",
        "",
        "| what | measured |",
        "|---|---|",
        f"| readers (and readers that never read) | {readers} ({slow_readers}) |",
        f"| all connected to A in | {took:.1f} s |",
        f"| finals of the keynote (on A before it died) | {len(said)} ({len(before_kill)}) |",
        f"| readers with every final, none twice | {complete} of {readers} |",
        f"| delivery after the first reader had it, p50 / p99 / max | {row['delivery_p50_s']:.3f} / "
        f"{row['delivery_p99_s']:.3f} / {row['delivery_max_s']:.3f} s |",
        f"| gateway A resident memory: idle / {readers} connected / after 4 finals | "
        f"{idle_rss:.0f} / {connected_rss:.0f} / {loaded_rss:.0f} MB |",
        f"| memory per reader | {row['kb_per_reader']:.0f} KB |",
        f"| readers that never read (on B, 1 KB receive buffers), cut off by the end | "
        f"{row['slow_cut_off']} of {slow_readers} |",
        f"| back on B after A died, p50 / max | {row['back_on_b_p50_s']:.1f} / {row['back_on_b_max_s']:.1f} s |",
        f"| reconnects | {row['reconnects']} |",
    ]
    write_report(out, lines, show=True)
    return row


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/results/fanout.md"))
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--slow-url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        asyncio.run(client(args.url, args.count, args.slow, args.slow_url))
    else:
        asyncio.run(main(args.readers, args.slow, args.out))
