"""Issue 18 benchmark: what one live WebRTC session costs a gateway process, to size GPU hosts.

    python -m bench.gateway [--sessions 1,4,8,16] [--out bench/results/gateway.md]

A real redis-server, one ``nova-voice worker`` process and one ``nova-voice serve --redis``
gateway process, each on its own; aiortc WHIP publishers (in this process) publish the LibriVox
stream at real-time pace, one room each. The gateway terminates WebRTC (DTLS, SRTP, Opus decode),
resamples, runs the VAD and the caption policy, and sends requests to the worker through Redis;
the worker's inference cost is not the gateway's. Reported per count: the gateway's CPU (% of one
core over the publishing time) and resident memory, and both per session. The worker here is a
two-core CPU and falls behind past ~8 sessions; the gateway then sends fewer partials, so its
per-session cost at the larger counts is a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import librivox, silence, write_wav
from bench.e2e import free_port, proc_rss_mb, run_sessions, start_server
from bench.harness import write_report
from tests.support.redis_server import RedisServer


def start_worker(redis_url: str, device: str = "cpu", *extra: str) -> subprocess.Popen[bytes]:
    """A `nova-voice worker` process, its output to a file (a pipe nobody reads would block it)."""
    log = Path(tempfile.mkdtemp(prefix="nova-worker-")) / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "worker",
                "--redis",
                redis_url,
                "--device",
                device,
                "--port",
                str(free_port()),
                *extra,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    for _ in range(1200):
        if b"Nova Voice worker " in log.read_bytes():
            return worker
        if worker.poll() is not None:
            break
        time.sleep(0.1)  # polling the startup line under a deadline
    worker.kill()
    raise RuntimeError("the worker did not start:\n" + log.read_text(errors="replace"))


async def main(out: Path, sessions: list[int]) -> None:
    stream = librivox()
    wav = write_wav(Path("/tmp/nova-bench.wav"), np.concatenate([stream.audio, silence(1.5)]))
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="nova-redis-")))
    redis.start()
    worker = start_worker(redis.url)
    gateway, base = start_server(["--redis", redis.url])
    rows: list[dict[str, Any]] = []
    try:
        idle = proc_rss_mb(gateway.pid)
        for n in sessions:
            r = await run_sessions(base, gateway.pid, n, stream, wav)
            r["idle_rss"] = idle
            rows.append(r)
            print({k: v for k, v in r.items() if k != "text"}, flush=True)
    finally:
        for proc in (gateway, worker):
            proc.terminate()
            proc.wait(timeout=30)
        redis.stop()
    lines = [
        "# Gateway cost of a live WebRTC session (gateway + worker over Redis, CPU)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.gateway --sessions "
        f"{','.join(map(str, sessions))}` on this 2-core machine: LibriVox, {len(stream.audio) / 16000:.0f} s "
        "per session, aiortc publishers on loopback in the bench process; one `nova-voice worker` (CPU) "
        "does the inference. Gateway CPU in % of one core over the publishing time; memory is the "
        "gateway's resident set after the sessions, above its idle size.",
        "",
        "| sessions | gateway CPU % | per session | gateway RSS MB | per session MB | final p50 | WER |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        extra = max(0.0, r["rss"] - r["idle_rss"])
        lines.append(
            f"| {r['n']} | {r['server_cpu']:.0f} | {r['server_cpu'] / r['n']:.1f} | {r['rss']:.0f} | "
            f"{extra / r['n']:.1f} | {r['final_p50']:.2f} | {r['wer']:.3f} |"
        )
    lines += ["", f"Idle gateway: {rows[0]['idle_rss']:.0f} MB resident." if rows else ""]
    write_report(out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/gateway.md"))
    ap.add_argument("--sessions", default="1,4,8,16")
    args = ap.parse_args()
    asyncio.run(main(args.out, [int(n) for n in args.sessions.split(",")]))
