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
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import Stream, Utterance, librivox
from bench.harness import DECODE_THREADS, VARIANTS, cpu_seconds, replay_one, write_report
from pipeline.engines.whisper import FRAME_BUCKETS, HOP, WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.scheduler import NullObserver, Scheduler
from pipeline.threads import limit_blas
from pipeline.types import TranscribeRequest
from server.inference import batch_options, compute_type, parse_devices
from server.settings import Settings

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


def load_stream(corpus: str | None) -> Stream:
    """The LibriVox stream: from a .npz (``bench/results``' GPU kit: no PyAV), else decoded here."""
    if not corpus:
        return librivox()
    saved = np.load(corpus)
    utts = [Utterance(text, float(start), float(end)) for text, start, end in json.loads(str(saved["utt"]))]
    return Stream("librivox", saved["audio"], utts)


STREAM: list[Stream] = []


async def run(engine: WhisperEngine, settings: Settings, device: str, n: int, variant: str) -> dict[str, Any]:
    stream = STREAM[0] if STREAM else librivox()
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


# -- through Redis, as production runs: a `nova-voice worker` process, sessions in other processes


async def client(url: str, sessions: int, seed: int, variant: str) -> None:
    """One gateway-like process: ``sessions`` simulated sessions whose requests go to the workers
    through Redis; prints one JSON line of what each session saw."""
    from pipeline.redis_backend import RedisBackend, RedisOptions

    stream = STREAM[0] if STREAM else librivox()
    backend = RedisBackend(url, RedisOptions())
    await backend.start()
    rng = random.Random(seed)
    try:
        results = await asyncio.gather(
            *(
                replay_one(stream, backend, f"p{seed}s{i}", VARIANTS[variant], delay=rng.uniform(0, 2))
                for i in range(sessions)
            )
        )
    finally:
        await backend.aclose()
    print(
        json.dumps(
            {
                "latencies": [r.final_latencies() for r in results],
                "wer": [r.wer() for r in results],
                "missed": sum(len(r.stream.utterances) - len(r.final_latencies()) for r in results),
            }
        ),
        flush=True,
    )


async def run_redis(
    url: str, worker_pid: int, n: int, procs: int, variant: str, corpus: str
) -> dict[str, Any]:
    """``n`` sessions spread over ``procs`` client processes; CPU is the worker process's."""
    from bench.e2e import proc_cpu_seconds

    counts = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    extra = ["--corpus", corpus] if corpus else []
    cpu0, wall0 = proc_cpu_seconds(worker_pid), time.monotonic()
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.capacity", "--client", "--redis", url, "--sessions", str(k),
            "--seed", str(n * 100 + i), "--variant", variant, *extra,
            stdout=asyncio.subprocess.PIPE,
        )
        for i, k in enumerate(counts)
        if k
    ]  # fmt: skip
    outputs = await asyncio.gather(*(c.communicate() for c in children))
    cpu, wall = proc_cpu_seconds(worker_pid) - cpu0, time.monotonic() - wall0
    seen = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    per_session = [lat for s in seen for lat in s["latencies"]]
    latencies = [x for lat in per_session for x in lat]
    return {
        "n": n,
        "final_p50": statistics.median(latencies) if latencies else float("nan"),
        "final_p90": float(np.percentile(latencies, 90)) if latencies else float("nan"),
        "worst_p90": max(float(np.percentile(lat, 90)) if lat else float("inf") for lat in per_session),
        "wer": statistics.mean(w for s in seen for w in s["wer"]),
        "missed": sum(s["missed"] for s in seen),
        "cpu": 100 * cpu / wall,
        "mean_batch": float("nan"),
    }


async def main_redis(
    device: str, start: int, most: int, variant: str, procs: int, corpus: str, out: Path
) -> None:
    """Sessions per worker as production runs it: a real redis-server, one `nova-voice worker`
    process on ``device``, and the sessions in ``procs`` other processes (as gateways would be)."""
    import tempfile

    from bench.gateway import start_worker
    from tests.support.redis_server import RedisServer

    redis = RedisServer(Path(tempfile.mkdtemp(prefix="nova-redis-")))
    redis.start()
    worker = start_worker(redis.url, device)
    rows: list[dict[str, Any]] = []
    capacity, n = 0, start
    try:
        while n <= most:
            r = await run_redis(redis.url, worker.pid, n, procs, variant, corpus)
            rows.append(r)
            print(r, flush=True)
            if r["worst_p90"] > BOUND or r["missed"]:
                break
            capacity, n = n, n * 2
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        redis.stop()
    lines = [
        f"# Capacity through Redis: sessions per `nova-voice worker` with every final p90 <= {BOUND:.0f} s "
        f"({device}, tiny.en)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.capacity --device {device} --redis auto "
        f"--procs {procs}`: a real redis-server, one worker process, the sessions (simulated, no WebRTC, "
        f"replaying LibriVox at real-time pace) in {procs} client processes talking to it through Redis "
        "Streams, as gateways do. CPU is the worker process's, % of one core.",
        "",
        "| sessions | final p50 | final p90 | worst session p90 | WER | missed | worker CPU % |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['n']} | {r['final_p50']:.2f} | {r['final_p90']:.2f} | {r['worst_p90']:.2f} | {r['wer']:.3f} | "
            f"{r['missed']} | {r['cpu']:.0f} |"
            for r in rows
        ],
        "",
        f"Sessions per worker: **{capacity}**.",
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
    ap.add_argument("--corpus", default="", help="a .npz of the stream (audio, utt) instead of decoding it")
    ap.add_argument(
        "--redis", default="", help="auto: sessions reach a worker process through a redis-server"
    )
    ap.add_argument(
        "--procs", type=int, default=2, help="with --redis: client processes holding the sessions"
    )
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sessions", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    limit_blas()  # as the server and the worker do (pipeline/threads.py)
    STREAM.append(load_stream(args.corpus or None))
    device_name = args.device.split(":")[0]
    if args.client:
        asyncio.run(client(args.redis, args.sessions, args.seed, args.variant))
    elif args.redis:
        out = args.out or Path(f"bench/results/capacity-redis-{device_name}.md")
        corpus = os.path.abspath(args.corpus) if args.corpus else ""
        asyncio.run(main_redis(args.device, args.start, args.max, args.variant, args.procs, corpus, out))
    else:
        out = args.out or Path(f"bench/results/capacity-{device_name}.md")
        asyncio.run(main(args.device, args.start, args.max, args.variant, out))
