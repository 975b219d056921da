"""Issue 12 benchmark: how many live speakers one device carries with every final p90 <= 2 s.

    python -m bench.capacity --device cpu|cuda [--start 1] [--max 512] [--variant after]
                             [--out bench/results/capacity-<device>.md]

Simulated sessions (no WebRTC: the caption pipeline from 16 kHz audio on, in this process)
replay the LibriVox stream at real-time pace, starting at random offsets within two seconds.
N doubles from ``--start`` until some session's final p90 exceeds 2 s; the last N within the
bound is printed as sessions per device. Device settings are the server's defaults for the
device (``server.inference``): int8 with every core and partial batches of 3 on CPU, float16
with batches of 16 on CUDA. The policy variant is issue 12's ``after`` (or ``before``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import DECODE_THREADS, VARIANTS, cpu_seconds, replay_one, write_report
from pipeline.engines.whisper import FRAME_BUCKETS, HOP, WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.scheduler import NullObserver, Scheduler
from pipeline.types import TranscribeRequest
from server.inference import batch_options, compute_type, parse_devices
from server.settings import Settings
from tests.support.corpus import librivox

BOUND = 2.0


class Batches(NullObserver):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        self.sizes.append(size)


def warm_up(engine: WhisperEngine, width: int) -> None:
    """Every window at the widest batch once, so first-use allocation is not billed to a run."""
    for frames in FRAME_BUCKETS:
        engine.run_batch([TranscribeRequest(np.zeros((frames - 60) * HOP, dtype=np.float32))] * width)


async def run(engine: WhisperEngine, settings: Settings, device: str, n: int, variant: str) -> dict[str, Any]:
    stream = librivox()
    batches = Batches()
    (spec,) = parse_devices(device)
    scheduler = Scheduler(
        {"whisper": engine}, batch_options(settings, spec), device=str(spec), observer=batches
    )
    rng = random.Random(n)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    results = await asyncio.gather(
        *(
            replay_one(stream, scheduler, f"s{i}", VARIANTS[variant], delay=rng.uniform(0, 2))
            for i in range(n)
        )
    )
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    scheduler.close()
    per_session = [
        float(np.percentile(r.final_latencies(), 90)) if r.final_latencies() else float("inf")
        for r in results
    ]
    latencies = [x for r in results for x in r.final_latencies()]
    return {
        "n": n,
        "final_p50": statistics.median(latencies) if latencies else float("nan"),
        "final_p90": float(np.percentile(latencies, 90)) if latencies else float("nan"),
        "worst_p90": max(per_session),
        "wer": statistics.mean(r.wer() for r in results),
        "missed": sum(len(r.stream.utterances) - len(r.final_latencies()) for r in results),
        "cpu": 100 * cpu / wall,
        "mean_batch": statistics.mean(batches.sizes) if batches.sizes else 0.0,
    }


async def main(device: str, start: int, most: int, variant: str, out: Path | None) -> None:
    settings = Settings(device=device)
    (spec,) = parse_devices(device)
    ctype = compute_type(settings, spec)
    threads = os.cpu_count() or 1
    config = WhisperConfig(
        resolve_whisper("tiny.en").path,
        device=spec.device,
        device_index=spec.index,
        compute_type=ctype,
        cpu_threads=threads if spec.device == "cpu" else 0,
        decode_threads=DECODE_THREADS[variant],
    )
    engine = WhisperEngine(config)
    warm_up(engine, batch_options(settings, spec).max_batch)
    rows = []
    capacity = 0
    n = start
    while n <= most:
        r = await run(engine, settings, device, n, variant)
        rows.append(r)
        print(r, flush=True)
        if r["worst_p90"] > BOUND or r["missed"]:
            break
        capacity = n
        n *= 2
    print(
        f"sessions per {spec} ({ctype}, {variant}): {capacity} with every session's final p90 <= {BOUND:.0f} s"
    )
    if out is None:
        return
    lines = [
        f"# Capacity: live sessions per device with every final p90 <= {BOUND:.0f} s ({spec}, {ctype}, tiny.en)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.capacity --device {device} --variant {variant}`:",
        "simulated sessions (no WebRTC) replaying LibriVox at real-time pace; N doubles until a",
        "session's final p90 passes the bound. CPU is the whole process, % of one core.",
        "",
        "| sessions | final p50 | final p90 | worst session p90 | WER | missed | CPU % | mean batch |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['n']} | {r['final_p50']:.2f} | {r['final_p90']:.2f} | {r['worst_p90']:.2f} | {r['wer']:.3f} | "
            f"{r['missed']} | {r['cpu']:.0f} | {r['mean_batch']:.2f} |"
            for r in rows
        ],
        "",
        f"Sessions per device: **{capacity}**.",
        "",
    ]
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--start", type=int, default=1)
    ap.add_argument("--max", type=int, default=512)
    ap.add_argument("--variant", default="after", choices=sorted(VARIANTS))
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/capacity-<device>.md")
    args = ap.parse_args()
    out = args.out or Path(f"bench/results/capacity-{args.device.split(':')[0]}.md")
    asyncio.run(main(args.device, args.start, args.max, args.variant, out))
