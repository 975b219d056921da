"""Issue 5 benchmark: one publisher fanned out to many WebRTC viewers on loopback.

    python -m bench.viewers [--viewers 0,50,100,200] [--out bench/results/viewers.md]

A real `nova-voice serve` process; the publisher and all viewers are aiortc peers in this
process. For each caption `seq`, the delay of a viewer is measured from the first moment any
peer (the publisher's own data channel or a viewer) received it: the fan-out spread a viewer
sees on top of the publisher's own delivery. Server CPU and RSS come from /proc; per-viewer
figures are the difference to a run without viewers.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import librivox, silence, write_wav
from bench.e2e import free_port, proc_cpu_seconds, proc_rss_mb, wait_healthy
from bench.harness import pct, write_report
from tests.support.whip_client import Viewer, WhipPublisher


async def run(base: str, pid: int, n: int, wav: Path, room: str) -> dict[str, float]:
    received: dict[int, list[float]] = {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/rooms", json={"name": room}) as resp:
            token = (await resp.json())["publish_token"]
        rss0 = proc_rss_mb(pid)
        viewers = []
        started = time.monotonic()
        for i in range(0, n, 25):  # connect in waves, as an audience arrives
            wave = [Viewer(base, room) for _ in range(min(25, n - i))]
            await asyncio.gather(*(v.connect(http) for v in wave))
            viewers += wave
        connect_s = time.monotonic() - started
        for v in viewers:
            v.channel.remove_all_listeners("message")

            def on_message(raw: str) -> None:
                import json

                m = json.loads(raw)
                if m.get("type") == "caption":
                    received.setdefault(m["seq"], []).append(time.monotonic())

            v.channel.on("message", on_message)
        rss1 = proc_rss_mb(pid)

        pub = WhipPublisher(base, room, str(wav), token=token)
        published: dict[int, float] = {}
        original = pub.log.add

        async def timed(raw: str) -> None:
            at = time.monotonic()  # before any awaiting, so the log's own work is not counted
            await original(raw)
            m = pub.log.messages[-1]
            if m.get("type") == "caption":
                published[m["seq"]] = at

        pub.log.add = timed  # type: ignore[method-assign]
        cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
        await pub.start(http)
        await pub.ended()
        cpu, wall = proc_cpu_seconds(pid) - cpu0, time.monotonic() - t0
        await pub.log.wait_for(lambda log: len(log.finals()) >= 5, 20)
        await pub.stop(http)
        await asyncio.gather(*(v.close() for v in viewers))

    first = {seq: min([at, *received.get(seq, [])]) for seq, at in published.items()}
    delays = [(t - first[seq]) * 1000 for seq, times in received.items() if seq in first for t in times]
    expected = len(published) * n
    return {
        "viewers": n,
        "messages": len(published),
        "delivered": len(delays) / expected if expected else 1.0,
        "p50_ms": pct(delays, 50),
        "p95_ms": pct(delays, 95),
        "max_ms": max(delays) if delays else float("nan"),
        "cpu_pct": 100 * cpu / wall,
        "rss_mb": rss1,
        "rss_per_viewer_mb": (rss1 - rss0) / n if n else 0.0,
        "connect_s": connect_s,
    }


async def main(counts: list[int], out: Path) -> None:
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--port",
            str(port),
            "--max-viewers",
            "1000",
            # Every viewer comes from this one address: lift the per-address limits.
            "--offers-per-minute",
            "0",
            "--max-pending",
            "0",
            "--data-dir",
            "/tmp/nova-bench-viewers",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    stream = librivox()
    wav = write_wav(Path("/tmp/nova-bench-viewers.wav"), np.concatenate([stream.audio, silence(1.5)]))
    rows = []
    try:
        wait_healthy(server, base, tries=300)
        for n in counts:
            row = await run(base, server.pid, n, wav, f"fan{n}-{int(time.time())}")
            rows.append(row)
            print({k: round(v, 3) for k, v in row.items()}, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    base_cpu = next((r["cpu_pct"] for r in rows if r["viewers"] == 0), 0.0)
    lines = [
        "# Fan-out: one publisher, many WebRTC viewers on loopback (2 cores)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.viewers`. Delay: from the first peer (the",
        "publisher's data channel or any viewer) receiving a caption to each viewer receiving the same",
        "`seq`, i.e. the fan-out spread. Server CPU is % of one core while the 32 s of speech is",
        "published (Whisper included); per viewer is the difference to",
        "the run without viewers. All peers of the clients share one Python process, so the client",
        "side is part of the delay.",
        "",
        "| viewers | captions | delivered | p50 ms | p95 ms | max ms | server CPU % | CPU % per viewer | server RSS MB | RSS per viewer MB | connect s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_cpu = (r["cpu_pct"] - base_cpu) / r["viewers"] if r["viewers"] else 0.0
        lines.append(
            f"| {r['viewers']} | {r['messages']:.0f} | {100 * r['delivered']:.1f}% | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['max_ms']:.1f} | {r['cpu_pct']:.0f} | {per_cpu:.3f} | {r['rss_mb']:.0f} | "
            f"{r['rss_per_viewer_mb']:.2f} | {r['connect_s']:.1f} |"
        )
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", default="0,50,100,200")
    ap.add_argument("--out", type=Path, default=Path("bench/results/viewers.md"))
    args = ap.parse_args()
    asyncio.run(main([int(x) for x in args.viewers.split(",")], args.out))
