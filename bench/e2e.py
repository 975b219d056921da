"""Issues 2 and 12 benchmark: publishers over real WebRTC to a real `nova-voice serve` process.

    python -m bench.e2e [--variants before,after] [--sessions 1,2,4,8,12,16] [--out bench/results/e2e.md]

For each policy variant (issue 12's ``before`` and ``after``, chosen by server flags, see
``FLAGS``) starts the server as its own process (so its CPU and memory are its own) and, for
each session count in turn, publishes the LibriVox stream from that many aiortc WHIP clients
at real-time pace (one room each, starts spread over two seconds). Reports per count: server
CPU (% of one core) and the client process's, first caption after speech starts, final latency
after each utterance ends (p50, and the worst session's p90), WER of the finals. A variant
stops at the first count where some session's final p90 exceeds 2 s; the most sessions it
carried within that bound is its capacity. The one-session row is the cost of a live session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import Stream, librivox, silence, write_wav
from bench.harness import write_report
from bench.scoring import wer
from tests.support.whip_client import WhipPublisher

# Server flags of each variant: before issue 12, and now (the defaults).
FLAGS = {
    "before": [
        "--vad", "webrtc", "--final-beam-size", "1", "--sentence-wait-ms", "0", "--stale-after", "0",
        "--decode-threads", "0", "--legacy-partials", "--partial-interval", "0.5",
    ],
    "after": [],
    # Diagnostics, not compared by default: partials at most once a minute (what a session
    # costs besides its partials); the after policy with partials every half second of voice.
    "finals-only": ["--partial-interval", "60"],
    "after-0.5s": ["--partial-interval", "0.5"],
}  # fmt: skip
P90_BOUND = 2.0


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(flags: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            tempfile.mkdtemp(prefix="nova-bench-"),  # fresh: rooms resume stream time from old transcripts
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(server, base)
    return server, base


def wait_healthy(
    proc: subprocess.Popen[bytes], base: str, what: str = "the server", tries: int = 600
) -> None:
    """Until ``base`` answers /health (``tries`` tenths of a second at most); a server that
    never does is killed, and this raises."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)  # polling the port under a deadline
    proc.kill()
    raise RuntimeError(f"{what} did not come up")


class Timed(WhipPublisher):
    """A publisher that notes when each message arrived (monotonic seconds)."""

    def __init__(self, base: str, room: str, path: str) -> None:
        super().__init__(base, room, path)
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.t0 = 0.0
        original = self.log.add

        async def timed(raw: str) -> None:
            await original(raw)
            self.arrivals.append((time.monotonic(), self.log.messages[-1]))

        self.log.add = timed  # type: ignore[method-assign]


def scores(stream: Stream, pub: Timed) -> dict[str, Any]:
    caps = [(t - pub.t0, m) for t, m in pub.arrivals if m.get("type") == "caption" and m["text"]]
    finals = [(t, m) for t, m in caps if m["final"]]
    first, latency = [], []
    for utt in stream.utterances:
        mine = [t for t, m in caps if utt.start - 0.5 < m["start"] < utt.end]
        if mine:
            first.append(min(mine) - utt.start)
        done = [t for t, m in finals if m["start"] < utt.end and m["end"] > utt.start - 0.3]
        if done:
            latency.append(max(done) - utt.end)
    text = " ".join(m["text"] for _, m in finals)
    return {"first": first, "latency": latency, "wer": wer(stream.reference, text), "text": text}


async def run_sessions(
    base: str, server_pid: int, n: int, stream: Stream, wav: Path, prefix: str = "bench"
) -> dict[str, Any]:
    """``prefix``: the rooms' names (a room's stream time goes on across sessions: a round that
    scores against the stream's own times needs rooms of its own)."""
    rng = random.Random(n)
    async with aiohttp.ClientSession() as http:
        pubs = [Timed(base, f"{prefix}{n}x{i}", str(wav)) for i in range(n)]
        cpu0, me0, wall0 = proc_cpu_seconds(server_pid), proc_cpu_seconds(os.getpid()), time.monotonic()

        async def one(pub: Timed) -> None:
            await asyncio.sleep(rng.uniform(0, 2))
            await pub.start(http)
            pub.t0 = time.monotonic()  # audio flows once ICE connects, within milliseconds here
            await pub.ended()

        await asyncio.gather(*(one(p) for p in pubs))
        wall = time.monotonic() - wall0
        cpu = proc_cpu_seconds(server_pid) - cpu0
        me = proc_cpu_seconds(os.getpid()) - me0
        last = stream.utterances[-1].end
        for p in pubs:
            try:
                await p.log.wait_for(lambda log: any(m["end"] >= last - 1 for m in log.finals()), 30)
            except TimeoutError:
                pass  # scored as missing
        rss = proc_rss_mb(server_pid)
        await asyncio.gather(*(p.stop(http) for p in pubs), return_exceptions=True)
    per = [scores(stream, p) for p in pubs]
    lat = [x for s in per for x in s["latency"]]
    first = [x for s in per for x in s["first"]]
    worst_p90 = max(float(np.percentile(s["latency"], 90)) if s["latency"] else float("inf") for s in per)
    return {
        "n": n,
        "server_cpu": 100 * cpu / wall,
        "client_cpu": 100 * me / wall,
        "first_p50": statistics.median(first) if first else float("nan"),
        "final_p50": statistics.median(lat) if lat else float("nan"),
        "final_p90": float(np.percentile(lat, 90)) if lat else float("nan"),
        "worst_p90": worst_p90,
        "wer": statistics.mean(s["wer"] for s in per),
        "missed": sum(len(stream.utterances) - len(s["latency"]) for s in per),
        "latencies": lat,
        "rss": rss,
        "text": per[0]["text"],
    }


async def main(out: Path, variants: list[str], sessions: list[int]) -> None:
    stream = librivox()
    wav = write_wav(Path("/tmp/nova-bench.wav"), np.concatenate([stream.audio, silence(1.5)]))
    rows: list[tuple[str, dict[str, Any]]] = []
    capacity: dict[str, int] = {}
    for variant in variants:
        server, base = start_server(FLAGS[variant])
        try:
            idle_rss = proc_rss_mb(server.pid)
            capacity[variant] = 0
            for n in sessions:
                r = await run_sessions(base, server.pid, n, stream, wav)
                r["idle_rss"] = idle_rss
                rows.append((variant, r))
                print(variant, {k: v for k, v in r.items() if k != "text"}, flush=True)
                if r["worst_p90"] > P90_BOUND or r["missed"]:
                    break
                capacity[variant] = n
        finally:
            server.terminate()
            server.wait(timeout=20)

    lines = [
        "# End to end: WebRTC publishers, real server process (tiny.en int8, CPU), before and after issue 12",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.e2e --sessions {','.join(map(str, sessions))}`: "
        f"LibriVox, {len(stream.audio) / 16000:.0f} s, {len(stream.utterances)} utterances per session, aiortc WHIP "
        "clients on loopback in the bench process (their CPU is the client column).",
        "Variants are server flags: "
        + "; ".join(f"{v}: `{' '.join(FLAGS[v]) or '(defaults)'}`" for v in variants)
        + ". Latencies in seconds; CPU in % of one core over the publishing time.",
        "",
        "| variant | sessions | server CPU % | per session | client CPU % | first caption p50 | final p50 | final p90 | worst session p90 | WER | missed finals | server RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, r in rows:
        lines.append(
            f"| {variant} | {r['n']} | {r['server_cpu']:.0f} | {r['server_cpu'] / r['n']:.1f} | {r['client_cpu']:.0f} | "
            f"{r['first_p50']:.2f} | {r['final_p50']:.2f} | {r['final_p90']:.2f} | {r['worst_p90']:.2f} | "
            f"{r['wer']:.3f} | {r['missed']} | {r['rss']:.0f} |"
        )
    lines += [
        "",
        f"Most sessions with every session's final p90 <= {P90_BOUND:.0f} s: "
        + ", ".join(f"{v} {capacity[v]}" for v in variants)
        + " (of the counts tried).",
        "",
        *[f"- {v}, one session's finals: {r['text']}" for v, r in rows if r["n"] == sessions[0]],
    ]
    write_report(out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/e2e.md"))
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--sessions", default="1,2,4,8,12,16")
    args = ap.parse_args()
    asyncio.run(main(args.out, args.variants.split(","), [int(n) for n in args.sessions.split(",")]))
