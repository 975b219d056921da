"""Issue 10 benchmark: N sessions x K target languages, each session's room translated live.

    python -m bench.translation [--sessions 1,4,8] [--langs 1,3] [--engines apertium,nllb]
                                [--seconds 32] [--nllb-model PATH] [--out bench/results/translation.md]

Each session replays the LibriVox stream at real-time pace through the real pipeline (VAD,
streaming policy, Whisper tiny.en int8 on the device scheduler) into a real room
(server/rooms/room.py) whose translations run through server/rooms/translations.py on the same
backend as the app builds it: NLLB (the tiny random model, built offline) beside Whisper on
the device scheduler, Apertium on a worker of its own. Extra latency: seconds from a source
final reaching the room's listeners to its translated final reaching them, per (segment,
language). "batched" is the app's configuration; "unbatched" runs one translation per
engine call (Whisper stays batched in both). Apertium here has only English->Spanish, so
K=3 uses Spanish under three regional tags (es, es-MX, es-AR): three translations per
line, the same work as three pairs. No WebRTC: this measures translation on shared inference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.corpus import librivox
from bench.harness import CHUNK, cpu_seconds, pct, write_report
from pipeline.backend import LocalBackend
from pipeline.batching import BatchOptions
from pipeline.engines.apertium import ApertiumEngine
from pipeline.engines.nllb import NllbConfig, NllbEngine
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy import CaptionPolicy
from pipeline.policy_options import PolicyOptions
from pipeline.scheduler import NullObserver, Scheduler
from pipeline.session import CaptionSession
from pipeline.translation import TranslationOptions
from pipeline.types import Caption, TranslateRequest
from server.messages import parse
from server.rooms.room import Room
from server.rooms.translations import TranslationService
from tests.support.tiny_nllb import tiny_nllb

TARGETS = {"apertium": ["es", "es-MX", "es-AR"], "nllb": ["es", "fr", "de"]}
BATCHED = BatchOptions(max_batch=8, max_wait=0.01, max_partial_batch=3)  # the CPU default for Whisper


class Calls(NullObserver):
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.sizes: list[int] = []

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        if engine == self.engine:
            self.sizes.append(size)


class Errors:
    def __init__(self) -> None:
        self.count = 0

    def translation_error(self, engine: str, reason: str) -> None:
        self.count += 1


@dataclass
class Arrivals:
    """A listener of every language of one room: when each final arrived."""

    source: dict[int, float] = field(default_factory=dict)
    translated: dict[tuple[int, str], float] = field(default_factory=dict)

    def listener(self, lang: str | None) -> Any:
        arrivals = self

        class Listener:
            def send(self, message: str) -> None:
                m = parse(message)
                if getattr(m, "type", "") != "caption" or not m.final or not m.text:  # type: ignore[union-attr]
                    return
                now = time.monotonic()
                if lang is None:
                    arrivals.source[m.segment] = now  # type: ignore[union-attr]
                else:
                    arrivals.translated[(m.segment, lang)] = now  # type: ignore[union-attr]

        return Listener()

    def extra(self) -> list[float]:
        return [t - self.source[seg] for (seg, _), t in self.translated.items() if seg in self.source]


async def replay_room(
    stream: Any,
    backend: LocalBackend,
    service: TranslationService,
    key: str,
    langs: list[str],
    delay: float,
    seconds: float,
) -> Arrivals:
    arrivals = Arrivals()
    room = Room(key, languages=tuple(langs))
    room.listen("source", arrivals.listener(None))
    for lang in langs:
        room.listen(lang, arrivals.listener(lang), lang)
    service.attach(room)
    room.join_publisher(key)
    await asyncio.sleep(delay)
    t0 = time.monotonic()

    def on_event(event: object) -> None:
        if isinstance(event, Caption):
            room.caption(key, event)

    backend.open_session(key)
    session = CaptionSession(key, CaptionPolicy(PolicyOptions()), backend, on_event)
    audio = stream.audio[: int(seconds * 16_000)]
    for i in range(0, len(audio), CHUNK):
        session.push(audio[i : i + CHUNK])
        ahead = t0 + (i + CHUNK) / 16_000 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)  # real-time pacing of the replay, not synchronisation
    await session.close()
    # The last translations are still on their way: give them a bounded moment.
    for _ in range(200):
        if len(arrivals.translated) >= len(arrivals.source) * len(langs):
            break
        await asyncio.sleep(0.05)
    return arrivals


async def run(
    engine: str, translator: Any, whisper: WhisperEngine, n: int, k: int, batched: bool, seconds: float
) -> dict[str, Any]:
    calls = Calls(engine)
    tr_options = (
        BatchOptions(max_batch=16, max_wait=0.01) if batched else BatchOptions(max_batch=1, max_wait=0.0)
    )
    own = {}
    if engine == "apertium":
        if batched:
            tr_options = BatchOptions(max_batch=32, max_wait=0.005)
        own[engine] = Scheduler({engine: translator}, tr_options, observer=calls)
        device = Scheduler({"whisper": whisper}, BATCHED, observer=calls)
    else:
        device = Scheduler(
            {"whisper": whisper, engine: translator},
            BATCHED,
            observer=calls,
            engine_options={engine: tr_options},
        )
    backend = LocalBackend([device], engine_schedulers=own)
    errors = Errors()
    service = TranslationService(translator, backend, errors, TranslationOptions(), timeout=30.0)
    stream = librivox()
    rng = random.Random(n * 10 + k)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    rooms = await asyncio.gather(
        *(
            replay_room(stream, backend, service, f"s{i}", TARGETS[engine][:k], rng.uniform(0, 2), seconds)
            for i in range(n)
        )
    )
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    await service.aclose()
    await backend.aclose()
    extra = [x for r in rooms for x in r.extra()]
    expected = sum(len(r.source) for r in rooms) * k
    return {
        "engine": engine,
        "n": n,
        "k": k,
        "mode": "batched" if batched else "unbatched",
        "p50": pct(extra, 50),
        "p90": pct(extra, 90),
        "max": max(extra) if extra else float("nan"),
        "translated": len(extra),
        "expected": expected,
        "errors": errors.count,
        "calls": len(calls.sizes),
        "mean_batch": statistics.mean(calls.sizes) if calls.sizes else 0.0,
        "cpu_pct": 100 * cpu / wall,
    }


async def main(args: argparse.Namespace) -> None:
    threads = os.cpu_count() or 1
    whisper = WhisperEngine(WhisperConfig(resolve_whisper("tiny.en").path, cpu_threads=threads))
    engines: dict[str, Any] = {}
    for name in args.engines.split(","):
        if name == "apertium":
            engines[name] = ApertiumEngine()
        elif name == "nllb":
            folder = args.nllb_model or tiny_nllb(Path(tempfile.mkdtemp(prefix="nova-bench-nllb-")))
            engines[name] = NllbEngine(NllbConfig(str(folder), cpu_threads=threads))
    for name, translator in engines.items():
        # Start Apertium's pipelines and touch NLLB once, so the first row pays no start-up.
        translator.run_batch([TranslateRequest("Warm up.", "en", t) for t in TARGETS[name]])
    rows = []
    for name, translator in engines.items():
        for n in [int(x) for x in args.sessions.split(",")]:
            for k in [int(x) for x in args.langs.split(",")]:
                for batched in (True, False):
                    row = await run(name, translator, whisper, n, k, batched, args.seconds)
                    rows.append(row)
                    print(
                        {key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()},
                        flush=True,
                    )
    for translator in engines.values():
        if hasattr(translator, "close"):
            translator.close()

    lines = [
        f"# Translation: N sessions x K languages on one CPU device ({threads} threads)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.translation --sessions {args.sessions} "
        f"--langs {args.langs} --engines {args.engines} --seconds {args.seconds:g}`.",
        f"Each session replays {args.seconds:g} s of LibriVox speech at real-time pace through Whisper tiny.en",
        "int8 into a room with K target languages. Extra latency: seconds from a source final reaching the",
        "room's listeners to its translated final reaching them. NLLB is the tiny random model (a stand-in",
        "for NLLB-200's cost shape, not its cost); Apertium K=3 is Spanish under three regional tags. Calls",
        "and mean batch: translation engine calls only. CPU: % of one core for the whole process.",
        "",
        "| engine | sessions | languages | batching | extra p50 | extra p90 | max | translated / expected | errors | engine calls | mean batch | CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['n']} | {r['k']} | {r['mode']} | {r['p50']:.3f} | {r['p90']:.3f} | "
            f"{r['max']:.3f} | {r['translated']} / {r['expected']} | {r['errors']} | {r['calls']} | "
            f"{r['mean_batch']:.2f} | {r['cpu_pct']:.0f} |"
        )
    write_report(args.out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1,4,8")
    ap.add_argument("--langs", default="1,3")
    ap.add_argument("--engines", default="apertium,nllb")
    ap.add_argument("--seconds", type=float, default=32.0, help="seconds of each stream to replay")
    ap.add_argument(
        "--nllb-model", type=Path, default=None, help="a real NLLB folder instead of the tiny one"
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/translation.md"))
    asyncio.run(main(ap.parse_args()))
