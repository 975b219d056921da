"""What one live WebRTC session costs a gateway process, to size hosts (issues 18 and 29).

    python -m bench.gateway [--sessions 16,32] [--before /tmp/main] [--out bench/results/gateway.md]

A real redis-server, one ``nova-voice worker`` process with the modelled device and one
``nova-voice serve --redis`` gateway process per measurement; aiortc WHIP publishers (in this
process) publish the LibriVox stream at real-time pace, one room each. The gateway terminates
WebRTC (DTLS, SRTP, Opus decode), runs the VAD and the caption policy, and sends requests to the
worker through Redis. ``--before DIR`` runs the gateway of another source tree (``git worktree
add /tmp/main main``) at each count too, alternating with this one, so both are measured on the
same machine in the same minutes. Reported: the gateway's CPU from the first offer until the
last final, per second of one session's audio, and its resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import librivox, silence, write_wav
from bench.e2e import free_port, proc_cpu_seconds, proc_rss_mb, run_sessions, wait_healthy
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


def start_gateway(source: Path, redis_url: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """``nova-voice serve --redis`` from the source tree ``source`` (this one, or another
    release's to compare), with no limit on peers still connecting (the publishers start within
    two seconds of each other)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port), "--redis", redis_url,
         "--max-pending", "0", "--offers-per-minute", "0", "--data-dir", tempfile.mkdtemp(prefix="nova-gateway-"), *extra],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_healthy(proc, base, f"the gateway from {source}")
    return proc, base


async def measure(source: Path, redis_url: str, n: int, stream: Any, wav: Path, tag: str) -> dict[str, Any]:
    gateway, base = start_gateway(source, redis_url)
    try:
        idle = proc_rss_mb(gateway.pid)
        cpu0 = proc_cpu_seconds(gateway.pid)
        # Rooms of their own: gateways on one Redis share rooms, and a room another (stopped)
        # gateway published in is not this one's to caption.
        r = await run_sessions(base, gateway.pid, n, stream, wav, prefix=f"bench{tag}")
        # Until every final is in, not only while publishing: a gateway that falls behind does
        # its work late, and that work is still its cost.
        cpu = proc_cpu_seconds(gateway.pid) - cpu0
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    audio = n * len(stream.audio) / 16_000
    return {**r, "idle_rss": idle, "cpu_per_session": 100 * cpu / audio}


async def main(out: Path, sessions: list[int], before: Path | None) -> None:
    stream = librivox()
    wav = write_wav(Path(tempfile.mkdtemp()) / "nova-bench.wav", np.concatenate([stream.audio, silence(1.5)]))
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="nova-redis-")))
    redis.start()
    # The modelled device (pipeline/engines/simulated.py): inference costs this machine next to
    # nothing, so the gateway has the cores; it answers placeholder words (the Opus-decoded
    # audio is not in its reference), which is all a gateway's cost depends on.
    worker = start_worker(redis.url, "cpu", "--engine", "simulated", "--device-profile", "h200-tiny")
    variants = [("before", before)] if before else []
    variants.append(("after", Path.cwd()))
    rows: list[dict[str, Any]] = []
    try:
        for step, n in enumerate(sessions):  # a count may repeat (16,16,32): more pairs, less noise
            for name, source in variants:  # alternating, so both see the same machine
                r = await measure(source, redis.url, n, stream, wav, f"{name}{step}")
                r["variant"] = name
                rows.append(r)
                print(name, {k: v for k, v in r.items() if k != "text"}, flush=True)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.stop()
    lines = [
        "# Gateway cost of a live WebRTC session (gateway + modelled worker over Redis)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.gateway --sessions "
        f"{','.join(map(str, sessions))}{' --before ' + str(before) if before else ''}` on this 2-core "
        f"machine, shared with other work: LibriVox, {len(stream.audio) / 16000:.0f} s per session, aiortc "
        "publishers on loopback in the bench process, one room each; a worker with the modelled device "
        "(`--engine simulated --device-profile h200-tiny`) answers. Before and after alternate at each "
        "count on the same Redis and worker. CPU is the gateway process's, from the first offer until "
        "the last final is in, per second of one session's audio (% of one core per live session); "
        "memory is its resident set after the sessions, above its idle size.",
        "",
        "| variant | sessions | CPU per live session | gateway RSS MB | per session MB | final p50 | final p90 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        extra = max(0.0, r["rss"] - r["idle_rss"])
        lines.append(
            f"| {r['variant']} | {r['n']} | {r['cpu_per_session']:.2f} % | {r['rss']:.0f} | "
            f"{extra / r['n']:.1f} | {r['final_p50']:.2f} | {r['final_p90']:.2f} |"
        )
    write_report(out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/gateway.md"))
    ap.add_argument("--sessions", default="16,32")
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a source tree of the release to compare (git worktree of main)",
    )
    args = ap.parse_args()
    asyncio.run(main(args.out, [int(n) for n in args.sessions.split(",")], args.before))
