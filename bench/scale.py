"""Issue 29: hundreds of sessions through Redis and one worker, the device's time modelled.

    python -m bench.scale --device-profile h200-tiny [--sessions 64,128,256,512,1024]
                          [--out bench/results/scale.md]
    python -m bench.scale --device-profile h200-tiny --sessions 512   # one step

One redis-server, one ``nova-voice worker --engine simulated`` process (the device's time from
the profile, pipeline/engines/simulated.py; features, batching, Redis and the worker for real),
and the sessions in client processes (128 a process) that talk to it through the gateway's own
backend (``RedisBackend``: audio references, shedding, deadlines, deduplication), as gateways do.

The driver is a *recorded real request stream, replayed*: the real caption policy (Silero VAD,
the default settings) runs once over the LibriVox stream (32 s, 5 utterances) with the modelled
device answering, and every request it makes is recorded with its time, audio span, options
and prompt. Each session replays that recording at real-time pace, twice, starting at a random
point of the first 32 s (a steady load, not a chorus), with its own audio: the stream with a
random lowest bit (so no two sessions share a cache), and as the policy would: no partial
while one of its partials is in flight, partials spaced out and finals greedy while the queue
runs over a second behind (pipeline/backpressure.py). What it skips, shed or supersedes is
counted. The words the device "hears" are what real tiny.en aligned in each utterance
(computed at the start of the run).

Reported per step: final p50/p90 and the worst session's p90 (the true end of the voice to
the final's answer, device time included), finals missing, the worker's CPU (cores and ms a
request), Redis's bytes in and out and its CPU per request, the lengths of the request streams
(``XLEN``, what KEDA's redis-streams scaler reads), the modelled device's busy fraction, and
every process's CPU (to tell the device's knee from this 2-core machine's). The last line is one
JSON object for the largest step run.

Before the steps, the wire is compared on one real session (the caption policy over the same
stream into the same worker): whole audio in every request (``audio_refs`` off, today's wire)
and new audio only, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.corpus import Stream, librivox
from bench.e2e import free_port, proc_cpu_seconds
from bench.harness import pct, write_report
from pipeline.actions import Submit
from pipeline.backend import BackendUnavailable
from pipeline.backpressure import final_options, partial_interval
from pipeline.engines.simulated import DeviceProfile, Reference, SimulatedEngine
from pipeline.policy_options import FINAL_DECODE, PolicyOptions
from pipeline.redis_backend import RedisBackend, RedisOptions
from pipeline.session import caption_policy
from pipeline.types import DecodeOptions, TranscribeRequest, Word

BOUND = 2.0
PER_CLIENT = 128
ROUNDS = 2
RATE = 16_000


# -- the reference: what real tiny.en hears in each utterance, with its word times ------------


def make_reference(stream: Stream) -> Reference:
    """The stream's words as real tiny.en aligns them, utterance by utterance (beam 5)."""
    from pipeline.engines.whisper import WhisperConfig, WhisperEngine
    from pipeline.models import resolve_whisper

    engine = WhisperEngine(WhisperConfig(resolve_whisper("tiny.en").path, cpu_threads=2))
    words: list[Word] = []
    for utt in stream.utterances:
        a, b = int((utt.start - 0.3) * RATE), int((utt.end + 0.3) * RATE)
        audio = stream.audio[a:b].astype(np.float32) / 32768.0
        (heard,) = engine.run_batch([TranscribeRequest(audio=audio, options=FINAL_DECODE)])
        words += [Word(w.text, w.start + a / RATE, w.end + a / RATE) for w in heard.words]
    return Reference(stream.audio, tuple(words))


# -- the recording: one session's requests as the real policy makes them ----------------------


@dataclass(frozen=True)
class Asked:
    """One request of the recording: when (stream seconds), what audio (stream samples
    ``[origin + lead, origin + samples)``, zeros before), how, and which true utterances it
    covers (finals: the ones its answer finalises)."""

    t: float
    final: bool
    origin: int
    samples: int
    lead: int
    options: dict[str, Any]
    prompt: str
    utterances: tuple[int, ...] = ()


def record(stream: Stream, reference: Reference, profile: DeviceProfile) -> list[Asked]:
    """Run the policy over ``stream`` unpaced, each answer coming back a modelled 0.3 s after
    its request (stream time), and keep every request it makes."""
    policy = caption_policy()
    engine = SimulatedEngine(profile, reference, sleep=lambda _: None)
    asked: list[Asked] = []
    due: list[tuple[int, int, Any]] = []  # (sample it is back at, ticket, transcript)
    latency = int(0.3 * RATE)

    def handle(actions: list[Any], now: int) -> None:
        for action in actions:
            if not isinstance(action, Submit):
                continue
            req = action.request
            pcm = np.rint(req.audio * 32768).astype(np.int16)
            span = stream.audio[action.origin : action.origin + len(pcm)]
            # Zeros before audio that carries on after a cut stand in for stream samples.
            leads = (0, int(np.argmax(pcm != 0)) if pcm.any() else len(pcm))
            lead = next((n for n in leads if np.array_equal(pcm[n:], span[n:])), -1)
            if lead < 0 or len(span) < len(pcm):
                raise RuntimeError("a request's audio is not the stream's: the recording cannot replay it")
            end = action.origin + len(pcm)
            covers = tuple(
                i
                for i, u in enumerate(stream.utterances)
                if action.final and u.start * RATE < end and u.end * RATE > action.origin + lead
            )
            asked.append(
                Asked(
                    now / RATE,
                    action.final,
                    action.origin,
                    len(pcm),
                    lead,
                    asdict(req.options),
                    req.prompt,
                    covers,
                )
            )
            (result,) = engine.run_batch([req])
            due.append((now + latency, action.ticket, result))

    chunk = 320
    for i in range(0, len(stream.audio), chunk):
        now = i + chunk
        handle(policy.feed(stream.audio[i:now]), now)
        while any(at <= now for at, _, _ in due):
            ready = [d for d in due if d[0] <= now]
            due[:] = [d for d in due if d[0] > now]
            for _, ticket, result in ready:
                handle(policy.on_result(ticket, result), now)
    now = len(stream.audio)
    handle(policy.flush(), now)
    while due:
        ready, due[:] = list(due), []
        for _, ticket, result in ready:
            handle(policy.on_result(ticket, result), now + latency)
    return asked


# -- a client process: sessions replaying the recording through the gateway's backend --------


@dataclass
class SessionLog:
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    refused: int = 0


def dither(seed: int, n: int) -> np.ndarray:
    """A session's own lowest bits, packed (64 KB for 32 s)."""
    return np.packbits(np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8))


def session_audio(stream: np.ndarray, bits: np.ndarray, asked: Asked) -> np.ndarray:
    a, b = asked.origin + asked.lead, asked.origin + asked.samples
    lo = a - a % 8
    mine = np.unpackbits(bits[lo // 8 : (b + 7) // 8])[a - lo : b - lo].astype(np.int16)
    out = np.zeros(asked.samples, dtype=np.float32)
    out[asked.lead :] = (stream[a:b] ^ mine).astype(np.float32) / 32768.0
    return out


async def replay(
    backend: RedisBackend,
    name: str,
    stream: Stream,
    recording: list[Asked],
    seed: int,
    start: float,
    log: SessionLog,
) -> None:
    options = PolicyOptions()
    length = len(stream.audio) / RATE
    await asyncio.sleep(start)  # the session's start: a random point of the first round
    while True:
        try:
            backend.open_session(name)
            break
        except BackendUnavailable:
            log.refused += 1  # a gateway would answer 503 and the publisher try again
            await asyncio.sleep(0.5)  # a refused publisher's retry
    bits = dither(seed, len(stream.audio))
    t0 = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    answered: dict[tuple[int, int], float] = {}
    in_flight = {"partial": False}
    last_partial = -10.0

    async def ask(asked: Asked, round_: int, request: TranscribeRequest) -> None:
        try:
            await backend.submit("whisper", name, request, asked.final)
        except Exception:  # noqa: BLE001 - shed, superseded, late or failed: counted, as the policy would
            if asked.final:
                log.failed += 1
            return
        finally:
            if not asked.final:
                in_flight["partial"] = False
        now = time.monotonic() - t0
        for u in asked.utterances:
            answered[(round_, u)] = max(answered.get((round_, u), 0.0), now)

    for round_ in range(ROUNDS):
        for asked in recording:
            at = round_ * length + asked.t
            ahead = t0 + at - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # real-time pace of the replay, not synchronisation
            delay = backend.queue_delay(name)
            decode = DecodeOptions(**asked.options)
            if asked.final:
                if decode.beam_size > 1:
                    decode = final_options(options, decode, delay)
            else:
                spacing = partial_interval(options, delay) - options.partial_interval
                if in_flight["partial"] or at - last_partial < spacing:
                    log.skipped += 1
                    continue
                in_flight["partial"], last_partial = True, at
            request = TranscribeRequest(session_audio(stream.audio, bits, asked), asked.prompt, decode)
            log.sent += 1
            task = asyncio.get_running_loop().create_task(ask(asked, round_, request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*list(tasks))
    backend.close_session(name)
    for round_ in range(ROUNDS):
        for u, utt in enumerate(stream.utterances):
            got = answered.get((round_, u))
            if got is None:
                log.missing += 1
            else:
                log.latencies.append(got - (round_ * length + utt.end))


async def client(url: str, sessions: int, first: int, spread: float, data: str) -> None:
    from bench.corpus import Utterance

    saved = np.load(data)
    utts = json.loads(str(saved["utterances"]))
    stream = Stream("librivox", saved["audio"], [Utterance(t, a, b) for t, a, b in utts])
    recording = [
        Asked(**{**r, "utterances": tuple(r["utterances"])}) for r in json.loads(str(saved["recording"]))
    ]
    backend = RedisBackend(url, RedisOptions())
    await backend.start()
    for _ in range(300):
        if backend.audio_refs:
            break
        await asyncio.sleep(0.1)  # waiting for the worker's heartbeat
    rng = random.Random(first)
    logs = [SessionLog() for _ in range(sessions)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # every client ready
    try:
        await asyncio.gather(
            *(
                replay(
                    backend, f"s{first + i}", stream, recording, first + i, rng.uniform(0, spread), logs[i]
                )
                for i in range(sessions)
            )
        )
    finally:
        counts = dict(backend.counts)
        await backend.aclose()
    print(json.dumps({"sessions": [asdict(s) for s in logs], "counts": counts}), flush=True)


# -- the run ----------------------------------------------------------------------------------


class RedisProcess:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            raise SystemExit("redis-server is needed (Debian package redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="nova-scale-redis-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                if self.client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)  # polling a socket that is not listening yet
        raise SystemExit("redis-server did not start")

    def stats(self) -> dict[str, float]:
        s, c = self.client.info("stats"), self.client.info("cpu")
        return {
            "in": float(s["total_net_input_bytes"]),
            "out": float(s["total_net_output_bytes"]),
            "cpu": float(c["used_cpu_user"]) + float(c["used_cpu_sys"]),
        }

    def stop(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(10)


class WorkerProcess:
    def __init__(self, url: str, profile: str, reference: str, real: bool = False) -> None:
        """``real``: the model itself on this machine's CPU instead of the modelled device (to
        check a profile measured here by ``bench.profile`` against what it models)."""
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="nova-scale-worker-")) / "worker.log"
        engine = (
            ["--device", "cpu"]
            if real
            else ["--engine", "simulated", "--device-profile", profile, "--reference", reference]
        )
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "worker", "--redis", url, *engine, "--port", str(self.port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        for _ in range(600):
            if b"Nova Voice worker " in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)  # polling the startup line under a deadline
        raise SystemExit("the worker did not start:\n" + self.log.read_text())

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return resp.read().decode()

    def handled(self) -> int:
        (me,) = json.loads(self.get("/health/full"))["workers"]
        counts = me["counts"]
        return sum(counts.get(k, 0) for k in ("ok", "dropped", "miss", "late", "superseded"))

    def batches(self) -> tuple[float, float]:
        total = count = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith("nova_whisper_batch_size_sum"):
                total = float(line.split()[-1])
            elif line.startswith("nova_whisper_batch_size_count"):
                count = float(line.split()[-1])
        return total, count

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def sample(r: redis.Redis, stop: asyncio.Event, out: dict[str, list[float]]) -> None:
    """Twice a second: the request streams' lengths (what KEDA reads) and the device's load."""
    while not stop.is_set():
        out["final"].append(float(r.xlen("nova:whisper:final")))
        out["partial"].append(float(r.xlen("nova:whisper:partial")))
        for key in r.smembers("nova:workers"):
            beat = r.get(b"nova:worker:" + key)
            if beat:
                out["load"].append(float(json.loads(beat).get("load", 0.0)))
        try:
            async with asyncio.timeout(0.5):
                await stop.wait()
        except TimeoutError:
            pass


async def step(
    n: int, redis_: RedisProcess, worker: WorkerProcess, data: str, spread: float
) -> dict[str, Any]:
    procs = max(1, -(-n // PER_CLIENT))
    counts = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    children = []
    first = 0
    for k in counts:
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.scale", "--client", "--redis", redis_.url, "--count", str(k),
                "--first", str(n * 10_000 + first), "--spread", str(spread), "--data", data,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
        )  # fmt: skip
        first += k
    for c in children:  # started, connected, and seeing the worker: then all go at once
        assert c.stdout is not None and c.stdin is not None
        if (await c.stdout.readline()).strip() != b"ready":
            raise SystemExit("a client process did not start")
    before = redis_.stats()
    wcpu0, handled0, (bsum0, bcount0) = worker.cpu(), worker.handled(), worker.batches()
    cpu_start = {c.pid: proc_cpu_seconds(c.pid) for c in children}
    wall0 = time.monotonic()
    for c in children:
        c.stdin.write(b"go\n")  # type: ignore[union-attr]
        await c.stdin.drain()  # type: ignore[union-attr]
    stop = asyncio.Event()
    samples: dict[str, list[float]] = {"final": [], "partial": [], "load": []}
    sampler = asyncio.get_running_loop().create_task(sample(redis_.client, stop, samples))
    cpu_children = {c.pid: 0.0 for c in children}

    async def watch() -> None:
        while not stop.is_set():
            for c in children:
                try:
                    cpu_children[c.pid] = proc_cpu_seconds(c.pid)
                except (FileNotFoundError, ProcessLookupError):
                    pass
            await asyncio.sleep(0.5)  # sampling the clients' CPU while they run

    watcher = asyncio.get_running_loop().create_task(watch())
    outputs = await asyncio.gather(*(c.communicate() for c in children))
    wall = time.monotonic() - wall0
    stop.set()
    await sampler
    await watcher
    after = redis_.stats()
    wcpu, handled, (bsum, bcount) = worker.cpu() - wcpu0, worker.handled() - handled0, worker.batches()
    seen = []
    for out, _ in outputs:
        lines = out.decode().strip().splitlines()
        if not lines or not lines[-1].startswith("{"):
            raise SystemExit("a client process failed (its traceback is above)")
        seen.append(json.loads(lines[-1]))
    sessions = [s for c in seen for s in c["sessions"]]
    sent = sum(c["counts"].get("sent", 0) for c in seen)
    lat = [x for s in sessions for x in s["latencies"]]
    per_session = [
        float(np.percentile(s["latencies"], 90)) if s["latencies"] else float("inf") for s in sessions
    ]
    gateway = {
        k: sum(c["counts"].get(k, 0) for c in seen) for k in ("shed", "superseded", "expired", "misses")
    }
    return {
        "sessions": n,
        "final_p50_s": pct(lat, 50),
        "final_p90_s": pct(lat, 90),
        "worst_p90_s": max(per_session),
        "missing_finals": sum(s["missing"] for s in sessions),
        "requests": sent,
        "requests_per_s": sent / wall,
        "skipped_partials": sum(s["skipped"] for s in sessions),
        **{f"gateway_{k}": v for k, v in gateway.items()},
        "worker_cpu_cores": wcpu / wall,
        "worker_cpu_ms_per_request": 1000 * wcpu / max(1, handled),
        "worker_handled": handled,
        "mean_batch": (bsum - bsum0) / max(1.0, bcount - bcount0),
        "device_load": statistics.mean(samples["load"]) if samples["load"] else float("nan"),
        "redis_bytes_per_request": (after["in"] - before["in"]) / max(1, sent),
        "redis_bytes_out_per_request": (after["out"] - before["out"]) / max(1, sent),
        "redis_cpu_ms_per_request": 1000 * (after["cpu"] - before["cpu"]) / max(1, sent),
        "redis_cpu_cores": (after["cpu"] - before["cpu"]) / wall,
        "clients_cpu_cores": (sum(cpu_children.values()) - sum(cpu_start.values())) / wall,
        "refused_sessions": sum(s["refused"] for s in sessions),
        "final_stream_mean": statistics.mean(samples["final"]) if samples["final"] else 0.0,
        "final_stream_max": max(samples["final"], default=0.0),
        "partial_stream_mean": statistics.mean(samples["partial"]) if samples["partial"] else 0.0,
        "partial_stream_max": max(samples["partial"], default=0.0),
        "wall_s": wall,
    }


async def wire(url: str, stream: Stream) -> list[dict[str, Any]]:
    """One real session (the caption policy over the stream, paced) into the worker, with whole
    audio in every request and with new audio only: Redis's bytes per Whisper request."""
    from bench.harness import replay_one

    r = redis.Redis.from_url(url)
    rows = []
    for refs in (False, True):
        backend = RedisBackend(url, RedisOptions(audio_refs=refs))
        await backend.start()
        for _ in range(300):
            if backend.stats().ready and backend.audio_refs == refs:
                break
            await asyncio.sleep(0.1)  # waiting for the worker's heartbeat
        s0 = r.info("stats")
        result = await replay_one(stream, backend, f"wire-{refs}", {}, paced=True)
        s1 = r.info("stats")
        sent = backend.counts["sent"]
        rows.append(
            {
                "variant": "new audio only (audio references)" if refs else "whole utterance (today's wire)",
                "requests": sent,
                "in": (s1["total_net_input_bytes"] - s0["total_net_input_bytes"]) / sent,
                "out": (s1["total_net_output_bytes"] - s0["total_net_output_bytes"]) / sent,
                "audio": backend.counts["audio_bytes"] / sent if refs else float("nan"),
                "wer": result.wer(),
            }
        )
        await backend.aclose()
        print(rows[-1], flush=True)
    r.close()
    return rows


def prepare(profile: DeviceProfile, folder: Path) -> tuple[str, str, Stream, list[Asked]]:
    stream = librivox()
    reference = make_reference(stream)
    ref_path = folder / "reference.npz"
    reference.save(ref_path)
    recording = record(stream, reference, profile)
    data = folder / "replay.npz"
    np.savez(
        data,
        audio=stream.audio,
        utterances=np.array(json.dumps([[u.text, u.start, u.end] for u in stream.utterances])),
        recording=np.array(json.dumps([asdict(a) for a in recording])),
    )
    return str(ref_path), str(data), stream, recording


def knee(rows: list[dict[str, Any]]) -> str:
    bad = [r for r in rows if r["worst_p90_s"] > BOUND or r["missing_finals"]]
    if not bad:
        return f"no knee up to {rows[-1]['sessions']} sessions: every step within the bound"
    r = bad[0]
    why = []
    if r["device_load"] >= 0.75:
        why.append(f"the modelled device is busy {100 * r['device_load']:.0f} % of the time")
    if r["final_stream_mean"] >= 16:
        why.append(f"finals wait in Redis ({r['final_stream_mean']:.0f} in the stream on average)")
    if r["worker_cpu_cores"] >= 0.9:
        why.append(f"the worker process uses {r['worker_cpu_cores']:.2f} cores")
    total = r["worker_cpu_cores"] + r["clients_cpu_cores"] + r["redis_cpu_cores"]
    if total >= 1.7:
        why.append(f"this 2-core machine is full ({total:.2f} cores: worker, clients and Redis)")
    return f"the knee is at {r['sessions']} sessions: " + ("; ".join(why) or "see the table")


def report(
    profile: DeviceProfile,
    rows: list[dict[str, Any]],
    wire_rows: list[dict[str, Any]],
    recording: list[Asked],
    argv: str,
) -> list[str]:
    finals = sum(a.final for a in recording)
    lines = [
        f"# Scale: sessions through Redis and one worker, the device modelled ({profile.name})",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.scale {argv}` on this machine "
        f"({os.cpu_count()} cores, shared with other work: CPU figures are noisy). Modelled device: "
        f"{profile.model} on {profile.device}. {profile.notes}",
        "",
        "Driver: a recorded real request stream, replayed (module docstring): the caption policy's "
        f"{len(recording)} requests ({finals} finals) for the 32 s LibriVox stream, each session "
        f"replaying it {ROUNDS} times from a random start, {PER_CLIENT} sessions per client process.",
        "",
        "## Redis bytes per Whisper request: whole utterance vs new audio only (same run)",
        "",
        "One session, the real caption policy over the stream, paced, into the same worker.",
        "",
        "| wire | requests | bytes into Redis per request | bytes out per request | audio chunks per request | WER |",
        "|---|---|---|---|---|---|",
        *[
            f"| {w['variant']} | {w['requests']} | {w['in'] / 1000:.1f} KB | {w['out'] / 1000:.1f} KB | "
            + ("-" if np.isnan(w["audio"]) else f"{w['audio'] / 1000:.1f} KB")
            + f" | {w['wer']:.3f} |"
            for w in wire_rows
        ],
        "",
        "## Steps",
        "",
        "| sessions | final p50 | final p90 | worst session p90 | missing finals | requests/s | skipped / shed / superseded / late partials | worker cores | worker ms/request | mean batch | device busy | Redis KB in / out per request | Redis ms/request | Redis cores | final stream mean / max | partial stream mean / max | clients cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['sessions']} | {r['final_p50_s']:.2f} | {r['final_p90_s']:.2f} | {r['worst_p90_s']:.2f} | "
            f"{r['missing_finals']} | {r['requests_per_s']:.0f} | {r['skipped_partials']} / {r['gateway_shed']} / "
            f"{r['gateway_superseded']} / {r['gateway_expired']} | {r['worker_cpu_cores']:.2f} | "
            f"{r['worker_cpu_ms_per_request']:.2f} | {r['mean_batch']:.1f} | {100 * r['device_load']:.0f} % | "
            f"{r['redis_bytes_per_request'] / 1000:.1f} / {r['redis_bytes_out_per_request'] / 1000:.1f} | "
            f"{r['redis_cpu_ms_per_request']:.3f} | {r['redis_cpu_cores']:.2f} | "
            f"{r['final_stream_mean']:.1f} / {r['final_stream_max']:.0f} | "
            f"{r['partial_stream_mean']:.1f} / {r['partial_stream_max']:.0f} | {r['clients_cpu_cores']:.2f} |"
            for r in rows
        ],
        "",
        f"**{knee(rows)}.**",
    ]
    return lines


async def main(
    profile_name: str, loads: list[int], out: Path | None, argv: str, real: bool = False
) -> dict[str, Any]:
    profile = DeviceProfile.load(profile_name)
    folder = Path(tempfile.mkdtemp(prefix="nova-scale-"))
    ref_path, data, stream, recording = prepare(profile, folder)
    print(f"recorded {len(recording)} requests of one session", flush=True)
    redis_ = RedisProcess()
    worker = WorkerProcess(redis_.url, profile_name, ref_path, real)
    rows: list[dict[str, Any]] = []
    try:
        wire_rows = await wire(redis_.url, stream.head(len(stream.utterances)))
        spread = len(stream.audio) / RATE
        for n in loads:
            row = await step(n, redis_, worker, data, spread)
            rows.append(row)
            print(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )
    finally:
        worker.stop()
        redis_.stop()
    if out is not None:
        write_report(out, report(profile, rows, wire_rows, recording, argv))
    last = rows[-1]
    return {
        "sessions": last["sessions"],
        "worst_p90_s": round(last["worst_p90_s"], 3),
        "worker_cpu_cores": round(last["worker_cpu_cores"], 3),
        "worker_cpu_ms_per_request": round(last["worker_cpu_ms_per_request"], 3),
        "redis_bytes_per_request": round(last["redis_bytes_per_request"]),
        "missing_finals": last["missing_finals"],
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--device-profile", default="h200-tiny", help="a shipped profile's name or a JSON file")
    ap.add_argument("--sessions", default="64,128,256,512,1024", help="comma-separated steps")
    ap.add_argument(
        "--out", type=Path, default=None, help="default bench/results/scale.md for the full steps"
    )
    ap.add_argument(
        "--engine",
        default="simulated",
        choices=("simulated", "ctranslate2"),
        help="ctranslate2: the real model on this CPU answers the same replay (checks a CPU profile)",
    )
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--redis", default="", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--spread", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        asyncio.run(client(args.redis, args.count, args.first, args.spread, args.data))
        sys.exit(0)
    from pipeline.threads import limit_blas

    limit_blas()
    steps = [int(x) for x in args.sessions.split(",")]
    out = args.out or (Path("bench/results/scale.md") if len(steps) > 1 else None)
    argv = " ".join(sys.argv[1:])
    real = args.engine == "ctranslate2"
    print(json.dumps(asyncio.run(main(args.device_profile, steps, out, argv, real))), flush=True)
