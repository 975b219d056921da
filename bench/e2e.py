"""Issue 2 benchmark: one publisher over real WebRTC to a real `nova-voice serve` process.

    python -m bench.e2e [--out bench/results/e2e.md]

Starts the server as its own process (so its CPU and memory are its own), publishes the
LibriVox stream with an aiortc WHIP client at real-time pace, and reports first-caption time,
final latency after each utterance ends, WER, the server's CPU (% of one core) while the session
runs, and its RSS with one session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np

from tests.support.corpus import librivox
from tests.support.speech import silence, wer, write_wav
from tests.support.whip_client import WhipPublisher


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


async def main(out: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port), "--data-dir", "/tmp/nova-bench-data"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        idle_rss = proc_rss_mb(server.pid)
        stream = librivox()
        wav = write_wav(Path("/tmp/nova-bench.wav"), np.concatenate([stream.audio, silence(1.5)]))
        async with aiohttp.ClientSession() as http:
            pub = WhipPublisher(base, "bench", str(wav))
            arrivals: list[tuple[float, dict]] = []
            original = pub.log.add

            async def timed(raw: str) -> None:
                await original(raw)
                arrivals.append((time.monotonic(), pub.log.messages[-1]))

            pub.log.add = timed  # type: ignore[method-assign]
            cpu0 = proc_cpu_seconds(server.pid)
            await pub.start(http)
            t0 = time.monotonic()  # audio starts flowing once ICE connects, within milliseconds here
            await pub.ended()
            wall = time.monotonic() - t0
            cpu = proc_cpu_seconds(server.pid) - cpu0
            await pub.log.wait_for(
                lambda log: any(m["end"] >= stream.utterances[-1].end - 1 for m in log.finals()), 20
            )
            busy_rss = proc_rss_mb(server.pid)
            await pub.stop(http)

        finals = [(t - t0, m) for t, m in arrivals if m.get("type") == "caption" and m["final"] and m["text"]]
        captions = [(t - t0, m) for t, m in arrivals if m.get("type") == "caption" and m["text"]]
        first, latency = [], []
        for utt in stream.utterances:
            mine = [t for t, m in captions if utt.start - 0.5 < m["start"] < utt.end]
            if mine:
                first.append(min(mine) - utt.start)
            done = [t for t, m in finals if m["start"] < utt.end and m["end"] > utt.start - 0.3]
            if done:
                latency.append(max(done) - utt.end)
        text = " ".join(m["text"] for _, m in finals)
        w = wer(stream.reference, text)
    finally:
        server.terminate()
        server.wait(timeout=20)

    lines = [
        "# End to end: one WebRTC publisher, real server process (tiny.en int8, CPU)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.e2e`: LibriVox, {len(stream.audio) / 16000:.0f} s, "
        f"{len(stream.utterances)} utterances, aiortc WHIP client on loopback.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| first caption after speech starts, median (s) | {statistics.median(first):.2f} |",
        f"| first caption, worst (s) | {max(first):.2f} |",
        f"| final after the utterance ends, median (s) | {statistics.median(latency):.2f} |",
        f"| final after the utterance ends, worst (s) | {max(latency):.2f} |",
        f"| WER of the finals | {w:.3f} |",
        f"| server CPU while publishing (% of one core) | {100 * cpu / wall:.0f} |",
        f"| server RSS idle, model loaded (MB) | {idle_rss:.0f} |",
        f"| server RSS with one session (MB) | {busy_rss:.0f} |",
        "",
        f"Finals: {text}",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/e2e.md"))
    asyncio.run(main(ap.parse_args().out))
