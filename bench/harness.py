"""Replay streams through the real pipeline at real-time pace and measure what users feel."""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import Stream
from bench.scoring import wer
from pipeline.backend import InferenceBackend, LocalBackend
from pipeline.batching import BatchOptions
from pipeline.policy import CaptionPolicy
from pipeline.policy_options import PolicyOptions
from pipeline.scheduler import Scheduler
from pipeline.session import CaptionSession, caption_policy
from pipeline.types import Caption

CHUNK = 320  # 20 ms, as WebRTC delivers it

# Issue 12 compares the caption policy before and after it, in the same run. ``caption_policy``
# arguments; the server flags of the same names give the same two (README, bench/e2e.py).
BEFORE: dict[str, Any] = dict(
    vad="webrtc",
    final_beam_size=1,
    sentence_wait=0.0,
    stale_after=0.0,
    legacy_partials=True,
    partial_interval=0.5,
)
AFTER: dict[str, Any] = {}
VARIANTS = {"before": BEFORE, "after": AFTER}
# Engine setting that belongs to each: before issue 12 one model did everything on every core.
DECODE_THREADS = {"before": 0, "after": 1}

PolicyFactory = Callable[[], CaptionPolicy]


def policy_factory(policy: PolicyOptions | PolicyFactory | dict[str, Any]) -> PolicyFactory:
    if isinstance(policy, PolicyOptions):
        return lambda: CaptionPolicy(policy)
    if isinstance(policy, dict):
        return lambda: caption_policy(**policy)
    return policy


@dataclass
class Seen:
    at: float  # wall seconds since the stream's first sample was sent
    caption: Caption
    stream_at: float = 0.0  # seconds of the stream the policy had heard when it came


@dataclass
class SessionResult:
    stream: Stream
    seen: list[Seen] = field(default_factory=list)

    def finals(self) -> list[Seen]:
        return [s for s in self.seen if s.caption.final and s.caption.text]

    def text(self) -> str:
        return " ".join(s.caption.text for s in self.finals())

    def wer(self) -> float:
        return wer(self.stream.reference, self.text())

    def final_latencies(self) -> list[float]:
        """For each true utterance, when its last final arrived after the speaker stopped."""
        out = []
        for utt in self.stream.utterances:
            mine = [s for s in self.finals() if s.caption.start < utt.end and s.caption.end > utt.start - 0.3]
            if mine:
                out.append(max(s.at for s in mine) - utt.end)
        return out

    def first_partials(self) -> list[float]:
        out = []
        for utt in self.stream.utterances:
            mine = [s for s in self.seen if s.caption.text and utt.start - 0.5 < s.caption.start < utt.end]
            if mine:
                out.append(min(s.at for s in mine) - utt.start)
        return out

    def rewrites_per_final(self) -> tuple[float, float]:
        """(partials per final, partials whose text did not just extend the one before)."""
        partials = rewrites = 0
        last: dict[int, str] = {}
        for s in self.seen:
            c = s.caption
            if c.final:
                last.pop(c.segment, None)
                continue
            partials += 1
            prev = last.get(c.segment, "")
            if prev and not c.text.startswith(prev.rstrip(".?!,")):
                rewrites += 1
            last[c.segment] = c.text
        n = max(1, len(self.finals()))
        return partials / n, rewrites / n


async def replay_one(
    stream: Stream,
    inference: Scheduler | InferenceBackend,
    key: str,
    policy: PolicyOptions | PolicyFactory | dict[str, Any],
    delay: float = 0.0,
    paced: bool = True,
) -> SessionResult:
    """Replay ``stream`` through a caption session. Paced: at real-time pace (latencies mean
    something). Unpaced: each chunk waits until the VAD and every request it caused are done,
    so the number of requests, the CPU they cost and the text do not depend on the machine's
    load (latencies then mean nothing)."""
    result = SessionResult(stream)
    await asyncio.sleep(delay)
    t0 = time.monotonic()

    caption_policy_ = policy_factory(policy)()

    def on_event(event: object) -> None:
        if isinstance(event, Caption):
            result.seen.append(Seen(time.monotonic() - t0, event, caption_policy_.stream_time))

    backend = LocalBackend([inference]) if isinstance(inference, Scheduler) else inference
    backend.open_session(key)
    session = CaptionSession(key, caption_policy_, backend, on_event)
    audio = stream.audio
    for i in range(0, len(audio), CHUNK):
        session.push(audio[i : i + CHUNK])
        if not paced:
            await session.settled()
            continue
        ahead = t0 + (i + CHUNK) / 16_000 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)  # real-time pacing of the replay, not synchronisation
    await session.close()
    return result


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def summary(results: list[SessionResult]) -> dict[str, float]:
    lat = [x for r in results for x in r.final_latencies()]
    first = [x for r in results for x in r.first_partials()]
    rw = [r.rewrites_per_final() for r in results]
    return {
        "wer": statistics.mean(r.wer() for r in results),
        "final_p50": pct(lat, 50),
        "final_p90": pct(lat, 90),
        "first_partial_p50": pct(first, 50),
        "first_partial_p90": pct(first, 90),
        "partials_per_final": statistics.mean(p for p, _ in rw),
        "rewrites_per_final": statistics.mean(r for _, r in rw),
        "utterances_missed": sum(len(r.stream.utterances) - len(r.final_latencies()) for r in results),
    }


def batch_options(max_batch: int) -> BatchOptions:
    return BatchOptions(max_batch=max_batch, max_wait=0.01)


def write_report(out: Path, lines: list[str], show: bool = False) -> None:
    """Write a benchmark's Markdown report (and print it, or where it went)."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text if show else f"wrote {out}")
