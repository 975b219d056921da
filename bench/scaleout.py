"""Issue 11 benchmark: the embedded server vs a gateway with 1 and with 2 workers over Redis.

    python -m bench.scaleout [--sessions 1,2,4,6,8,10] [--out bench/results/scaleout.md]
    python -m bench.scaleout --quick        # a smoke run: 1 and 2 sessions, short speech

Each session replays the LibriVox stream (32 s, 5 utterances) at real-time pace through the real
caption policy, staggered so that sessions do not speak in lockstep. Three set-ups, each with one
CPU thread per model, so that the comparison is fair on this two-core machine:

- embedded: one scheduler in this process (``LocalBackend``, tiny.en int8, 1 thread);
- gateway + 1 worker: this process is the gateway (``RedisBackend``), ``nova-voice worker
  --cpu-threads 1`` runs in a process of its own;
- gateway + 2 workers: the same with two worker processes.

Reported per set-up and load: final latency p50/p90 (true end of the voice to the final
caption), WER, utterances without a final, the Redis hop (gateway round trip minus the time the
worker held the request: Redis, both clients, and any wait for a free worker), CPU of every
process involved (% of one core), and Redis's own CPU and bytes per session, from which the
closing note estimates what 1,000 sessions need. "Sessions carried" is the largest load whose
final p90 stays within 2 s with no utterance missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.corpus import Stream, librivox
from bench.harness import pct, replay_one, summary
from pipeline.backend import InferenceBackend, LocalBackend
from pipeline.batching import BatchOptions
from pipeline.policy_options import PolicyOptions
from pipeline.redis_backend import RedisBackend, RedisOptions
from pipeline.scheduler import Scheduler
from pipeline.streams import connect
from pipeline.types import TranscribeRequest, Transcript, Word
from pipeline.worker import Worker
from server.inference import DeviceSpec, batch_options, load_models
from server.settings import Settings
from tests.support.redis_server import RedisServer, free_port

P90_BOUND = 2.0
STAGGER = 0.37  # seconds between session starts


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    setup: str
    sessions: int
    figures: dict[str, float]
    hop_p50: float = float("nan")
    hop_p90: float = float("nan")
    waited_p50: float = float("nan")
    cpu_pct: float = 0.0
    redis_cpu_ms_per_session_s: float = float("nan")
    redis_kb_per_session_s: float = float("nan")
    requests_per_session_s: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)


class Workers:
    def __init__(self, url: str, n: int) -> None:
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server",
                    "worker",
                    "--redis",
                    url,
                    "--device",
                    "cpu",
                    "--cpu-threads",
                    "1",
                    "--port",
                    str(free_port()),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            for _ in range(n)
        ]

    def ready(self) -> None:
        for p in self.procs:
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith("Nova Voice worker"):
                    break
            else:
                raise RuntimeError("a worker did not start")

    def cpu(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)
            if p.stdout is not None:
                p.stdout.close()


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run_load(
    backend: InferenceBackend, stream: Stream, n: int, policy: PolicyOptions
) -> tuple[dict[str, float], float]:
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            replay_one(stream, backend, f"s{n}-{i}-{time.monotonic()}", policy, delay=i * STAGGER)
            for i in range(n)
        )
    )
    return summary(list(results)), time.monotonic() - started


async def embedded(stream: Stream, loads: list[int], policy: PolicyOptions) -> list[Row]:
    settings = Settings(device="cpu", cpu_threads=1)
    models = load_models(settings)
    ((dev, engines),) = models.devices
    rows = []
    for n in loads:
        scheduler = Scheduler(engines, batch_options(settings, DeviceSpec("cpu", 0)), device="cpu")
        backend = LocalBackend([scheduler])
        cpu0 = os.times()
        figures, wall = await run_load(backend, stream, n, policy)
        t = os.times()
        cpu = (t.user + t.system) - (cpu0.user + cpu0.system)
        await backend.aclose()
        rows.append(Row("embedded (1 thread)", n, figures, cpu_pct=100 * cpu / wall))
        print(rows[-1], flush=True)
    return rows


async def scaled(
    stream: Stream, loads: list[int], workers: int, policy: PolicyOptions, server: RedisServer
) -> list[Row]:
    client = server.client()
    pool = Workers(server.url, workers)
    rows = []
    try:
        pool.ready()
        for n in loads:
            client.flushall()
            backend = RedisBackend(server.url, RedisOptions(final_timeout=60))
            await backend.start()
            for _ in range(300):
                if len(backend.stats().devices) >= workers:
                    break
                await asyncio.sleep(0.1)  # waiting for the workers' heartbeats
            cpu0, wcpu0, rcpu0 = os.times(), pool.cpu(), redis_cpu(client)
            bytes0 = backend.counts["bytes_sent"]
            figures, wall = await run_load(backend, stream, n, policy)
            t = os.times()
            cpu = (t.user + t.system) - (cpu0.user + cpu0.system) + pool.cpu() - wcpu0
            session_seconds = n * len(stream.audio) / 16_000
            hops = [h.transport for h in backend.hops if h.final]
            waits = [h.waited for h in backend.hops if h.final]
            row = Row(
                f"gateway + {workers} worker{'s' if workers > 1 else ''} (1 thread each)",
                n,
                figures,
                hop_p50=pct(hops, 50),
                hop_p90=pct(hops, 90),
                cpu_pct=100 * cpu / wall,
                redis_cpu_ms_per_session_s=1000 * (redis_cpu(client) - rcpu0) / session_seconds,
                redis_kb_per_session_s=(backend.counts["bytes_sent"] - bytes0) / 1024 / session_seconds,
                requests_per_session_s=backend.counts["sent"] / session_seconds,
                waited_p50=pct(waits, 50),
                extra={"counts": dict(backend.counts)},
            )
            await backend.aclose()
            rows.append(row)
            print(row, flush=True)
    finally:
        pool.stop()
        client.close()
    return rows


class Echo:
    """No model: isolates what the hop itself costs (a fake engine, for this measurement only)."""

    name = "whisper"

    def run_batch(self, requests: list[TranscribeRequest]) -> list[Transcript]:
        return [Transcript(words=(Word(" hello", 0.0, 0.5, 0.9),) * 20, language="en") for _ in requests]


def hop_alone(server: RedisServer, seconds: list[float], n: int) -> list[str]:
    """Sequential finals through a gateway backend and an echo worker (in a thread of its own)."""
    stop = threading.Event()
    ready = threading.Event()

    async def echo_worker() -> None:
        client = connect(server.url)
        worker = Worker(client, {"whisper": Echo()}, BatchOptions(max_batch=8, max_wait=0.0), "cpu")
        task = asyncio.get_running_loop().create_task(worker.run())
        ready.set()
        await asyncio.to_thread(stop.wait)
        worker.drain()
        await task
        await client.aclose()

    thread = threading.Thread(target=asyncio.run, args=(echo_worker(),), daemon=True)
    thread.start()
    ready.wait(30)

    async def measure() -> list[str]:
        backend = RedisBackend(server.url)
        await backend.start()
        out = []
        try:
            for s in seconds:
                audio = np.zeros(int(s * 16_000), dtype=np.float32)
                rtt = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    await backend.submit("whisper", "hop", TranscribeRequest(audio=audio), final=True)
                    rtt.append(1000 * (time.perf_counter() - t0))
                transport = [h.transport for h in list(backend.hops)[-n:]]
                out.append(
                    f"| {s:.0f} s ({len(audio) * 2 // 1024} KB) | {n} | {pct(rtt, 50):.2f} / {pct(rtt, 90):.2f} | "
                    f"{pct(transport, 50):.2f} / {pct(transport, 90):.2f} |"
                )
        finally:
            await backend.aclose()
        return out

    try:
        return asyncio.run(measure())
    finally:
        stop.set()
        thread.join(60)


def carried(rows: list[Row], setup: str) -> int:
    ok = [
        r.sessions
        for r in rows
        if r.setup == setup and r.figures["final_p90"] <= P90_BOUND and not r.figures["utterances_missed"]
    ]
    return max(ok, default=0)


def report(rows: list[Row], loads: list[int], stream: Stream, quick: bool, hop_rows: list[str]) -> str:
    setups = list(dict.fromkeys(r.setup for r in rows))
    lines = [
        "# Scale-out: embedded vs gateway + workers over Redis Streams (tiny.en int8, CPU)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.scaleout{' --quick' if quick else ''}` on "
        f"{os.cpu_count()} cores: {stream.name}, {len(stream.audio) / 16000:.0f} s, {len(stream.utterances)} "
        f"utterances per session, sessions {STAGGER} s apart, real-time pace. One CPU thread per model.",
        "",
        "| set-up | sessions | final p50 (s) | final p90 (s) | WER | missed | Redis hop p50 / p90 (ms, finals) | final waited for a free worker, p50 (ms) | CPU % (all processes) | Redis CPU ms per session-s | KB to Redis per session-s | requests per session-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r.figures
        hop = "-" if np.isnan(r.hop_p50) else f"{r.hop_p50:.1f} / {r.hop_p90:.1f}"
        waited = "-" if np.isnan(r.waited_p50) else f"{r.waited_p50:.0f}"
        rc = "-" if np.isnan(r.redis_cpu_ms_per_session_s) else f"{r.redis_cpu_ms_per_session_s:.2f}"
        kb = "-" if np.isnan(r.redis_kb_per_session_s) else f"{r.redis_kb_per_session_s:.0f}"
        rq = "-" if np.isnan(r.requests_per_session_s) else f"{r.requests_per_session_s:.2f}"
        lines.append(
            f"| {r.setup} | {r.sessions} | {f['final_p50']:.2f} | {f['final_p90']:.2f} | {f['wer']:.3f} | "
            f"{f['utterances_missed']} | {hop} | {waited} | {r.cpu_pct:.0f} | {rc} | {kb} | {rq} |"
        )
    lines += ["", f"Sessions carried at final p90 <= {P90_BOUND:.0f} s (of the loads tried: {loads}):", ""]
    for s in setups:
        lines.append(f"- {s}: {carried(rows, s)}")
    one = [s for s in setups if "1 worker " in s]
    two = [s for s in setups if "2 workers" in s]
    if one and two and carried(rows, one[0]):
        lines.append(
            f"- two workers / one worker: {carried(rows, two[0]) / carried(rows, one[0]):.2f}x (target >= 1.5x)"
        )
    emb = {r.sessions: r.figures["final_p50"] for r in rows if r.setup.startswith("embedded")}
    gw1 = {r.sessions: r.figures["final_p50"] for r in rows if r.setup in one}
    if 1 in emb and 1 in gw1:
        lines.append(
            f"- final p50 at 1 session, gateway + 1 worker minus embedded: {1000 * (gw1[1] - emb[1]):.0f} ms "
            "(target for the Redis hop: <= 30 ms)"
        )
    lines += [
        "",
        "## The hop alone",
        "",
        "A final request through a gateway backend and a worker whose engine answers at once (no",
        "model): encode, XADD, XREADGROUP, decode, result XADD + XACK + XDEL, XREAD, decode.",
        "",
        "| audio | requests | round trip p50 / p90 (ms) | transport p50 / p90 (ms) |",
        "|---|---|---|---|",
        *hop_rows,
    ]
    return "\n".join(lines) + "\n"


async def main(loads: list[int], out: Path, quick: bool) -> None:
    stream = librivox()
    if quick:
        cut = int(stream.utterances[1].end * 16_000) + 24_000
        stream = Stream(stream.name + " (first 2 utterances)", stream.audio[:cut], stream.utterances[:2])
    policy = PolicyOptions()
    rows = await embedded(stream, loads, policy)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            for workers in (1, 2):
                rows += await scaled(stream, loads, workers, policy, server)
            server.client().flushall()
            hop = await asyncio.to_thread(hop_alone, server, [3.0, 10.0], 50 if quick else 300)
        finally:
            server.stop()
    text = report(rows, loads, stream, quick, hop)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1,2,4,6,8,10")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    sessions = [1, 2] if a.quick and a.sessions == "1,2,4,6,8,10" else [int(x) for x in a.sessions.split(",")]
    default_out = Path("bench/results/scaleout-smoke.md" if a.quick else "bench/results/scaleout.md")
    asyncio.run(main(sessions, a.out or default_out, a.quick))
