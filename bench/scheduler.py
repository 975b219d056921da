"""Issue 4 benchmark: many sessions sharing one device, batched and unbatched, side by side.

    python -m bench.scheduler [--sessions 1,2,4,6,8,12] [--out bench/results/scheduler.md]

Each simulated session replays the LibriVox stream at real-time pace through the real pipeline
(VAD, streaming policy, scheduler, Whisper tiny.en int8), starting at a random offset within
two seconds so that sessions do not speak in lockstep. No WebRTC: this measures inference
sharing. Batched uses the CPU defaults (max batch 8, 10 ms gather); unbatched runs one request
per engine call with the same scheduler and priorities.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import threading
import time
from pathlib import Path

from bench.corpus import librivox
from bench.harness import cpu_seconds, pct, replay_one, rss_mb, write_report
from pipeline.batching import BatchOptions
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy_options import PolicyOptions
from pipeline.scheduler import NullObserver, Scheduler


class BatchSizes(NullObserver):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        self.sizes.append(size)


class RssSampler:
    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def warm_up(engine: WhisperEngine) -> None:
    """Touch every window size at the widest batch once, so allocator growth is not billed to sessions."""
    import numpy as np

    from pipeline.engines.whisper import FRAME_BUCKETS, HOP
    from pipeline.types import TranscribeRequest

    for frames in FRAME_BUCKETS:
        audio = np.zeros((frames - 60) * HOP, dtype=np.float32)
        engine.run_batch([TranscribeRequest(audio)] * 8)


async def run(engine: WhisperEngine, n: int, options: BatchOptions, seed: int) -> dict[str, float]:
    stream = librivox()
    sizes = BatchSizes()
    scheduler = Scheduler({"whisper": engine}, options, observer=sizes)
    rng = random.Random(seed)
    before_rss = rss_mb()
    sampler = RssSampler()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    results = await asyncio.gather(
        *(replay_one(stream, scheduler, f"s{i}", PolicyOptions(), delay=rng.uniform(0, 2)) for i in range(n))
    )
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    peak = sampler.stop()
    scheduler.close()
    lat = [x for r in results for x in r.final_latencies()]
    return {
        "n": n,
        "max_batch": options.max_batch,
        "max_partial_batch": options.max_partial_batch or options.max_batch,
        "final_p50": pct(lat, 50),
        "final_p90": pct(lat, 90),
        "wer": statistics.mean(r.wer() for r in results),
        "missed": sum(len(stream.utterances) - len(r.final_latencies()) for r in results),
        "cpu_pct": 100 * cpu / wall,
        "rss_peak": peak,
        "rss_growth": peak - before_rss,
        "mean_batch": statistics.mean(sizes.sizes) if sizes.sizes else 0.0,
        "calls": len(sizes.sizes),
    }


async def main(ns: list[int], partial_batch: int, out: Path) -> None:
    threads = os.cpu_count() or 1
    engine = WhisperEngine(WhisperConfig(resolve_whisper("tiny.en").path, cpu_threads=threads))
    warm_up(engine)
    batched = BatchOptions(max_batch=8, max_wait=0.01, max_partial_batch=partial_batch)
    unbatched = BatchOptions(max_batch=1, max_wait=0.0)
    rows = []
    for n in ns:
        for options in (batched, unbatched):
            row = await run(engine, n, options, seed=n)
            rows.append(row)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)

    lines = [
        f"# Scheduler: sessions sharing one CPU device (tiny.en int8, {threads} threads)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.scheduler`. Each session replays "
        f"{len(librivox().audio) / 16000:.0f} s of LibriVox speech",
        "(5 utterances) at real-time pace. Final latency: seconds from the true end of an utterance's voice",
        "to its final caption. CPU: % of one core for the whole process. RSS growth: peak RSS during the",
        "run minus RSS before it (model already loaded).",
        "",
        "| sessions | batching | final p50 | final p90 | WER | missed | CPU % | RSS peak MB | RSS growth MB | mean batch | engine calls |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mode = (
            f"batched (finals {r['max_batch']}, partials {r['max_partial_batch']})"
            if r["max_batch"] > 1
            else "unbatched"
        )
        lines.append(
            f"| {r['n']} | {mode} | {r['final_p50']:.2f} | {r['final_p90']:.2f} | {r['wer']:.3f} | "
            f"{r['missed']} | {r['cpu_pct']:.0f} | {r['rss_peak']:.0f} | {r['rss_growth']:.1f} | "
            f"{r['mean_batch']:.2f} | {r['calls']} |"
        )
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1,2,4,6,8,12,16")
    ap.add_argument("--partial-batch", type=int, default=3, help="largest batch of partials")
    ap.add_argument("--out", type=Path, default=Path("bench/results/scheduler.md"))
    args = ap.parse_args()
    asyncio.run(main([int(x) for x in args.sessions.split(",")], args.partial_batch, args.out))
