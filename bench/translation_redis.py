"""Issue 19 benchmark: translated finals through translation workers over Redis vs embedded.

    python -m bench.translation_redis [--sessions 1,4] [--engines apertium,nllb] [--nllb-langs es,fr,de]
                                      [--out bench/results/translation-redis.md]

For each engine and session count, twice: the embedded server (`serve --translate-to es`,
the translator on its own scheduler) and the scaled-out set (a real redis-server, one Whisper
worker process, one `--engines <engine>` translation worker process, one gateway `serve
--redis --translate-to es`), each its own process. N aiortc publishers speak the LibriVox
stream at real-time pace into N rooms; in each room a source viewer and a `?lang=es` viewer
(this process) note when each final arrives. Extra latency: the Spanish final's arrival minus
its source final's, per segment. The Redis hop is the scaled-out p50 minus the embedded p50.
NLLB is the tiny random model (tests/support/tiny_nllb.py): its cost shape, not NLLB-200's.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import librivox, silence, write_wav
from bench.e2e import start_server
from bench.gateway import start_worker
from bench.harness import pct, write_report
from tests.support.redis_server import RedisServer
from tests.support.tiny_nllb import tiny_nllb
from tests.support.whip_client import TimedViewer, WhipPublisher


async def sessions(base: str, n: int, langs: list[str], wav: Path, seconds: float) -> dict[str, Any]:
    """N rooms, one speaker each; a source viewer and a viewer per language in each room."""
    rng = random.Random(n)
    async with aiohttp.ClientSession() as http:
        rooms = [f"t{n}x{len(langs)}x{i}x{int(time.time())}" for i in range(n)]
        viewers = [(TimedViewer(base, r), [TimedViewer(base, r, lang=lang) for lang in langs]) for r in rooms]
        for source, translated in viewers:
            for viewer in (source, *translated):
                await viewer.connect(http)
        pubs = [WhipPublisher(base, r, str(wav)) for r in rooms]

        async def one(pub: WhipPublisher) -> None:
            await asyncio.sleep(rng.uniform(0, 2))  # starts spread, as in the other benchmarks
            await pub.start(http)
            await pub.ended(seconds + 60)

        await asyncio.gather(*(one(p) for p in pubs))
        for pub in pubs:
            await pub.stop(http)
        for source, translated in viewers:
            wanted = set(source.final_at)
            for viewer in translated:
                try:
                    await viewer.log.wait_for(
                        lambda log, w=wanted: {m["segment"] for m in log.finals()} >= w, 15
                    )
                except TimeoutError:
                    pass  # counted as missing
        extra = [
            tv.final_at[s] - so.final_at[s]
            for so, translated in viewers
            for tv in translated
            for s in so.final_at
            if s in tv.final_at
        ]
        expected = sum(len(so.final_at) * len(langs) for so, _ in viewers)
        for source, translated in viewers:
            for viewer in (source, *translated):
                await viewer.close()
    return {
        "n": n,
        "k": len(langs),
        "p50": statistics.median(extra) if extra else float("nan"),
        "p90": pct(extra, 90) if extra else float("nan"),
        "max": max(extra) if extra else float("nan"),
        "translated": len(extra),
        "expected": expected,
    }


async def main(args: argparse.Namespace) -> None:
    stream = librivox()
    wav = write_wav(Path("/tmp/nova-bench-translation.wav"), np.concatenate([stream.audio, silence(1.5)]))
    seconds = len(stream.audio) / 16_000
    counts = [int(x) for x in args.sessions.split(",")]
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for engine in args.engines.split(","):
        # Apertium here knows only English<->Spanish: one language; NLLB takes several.
        langs = ["es"] if engine == "apertium" else args.nllb_langs.split(",")
        targets = ",".join(langs)
        # Every viewer and publisher comes from this one address: no per-address limits.
        limits = ["--offers-per-minute", "0", "--max-pending", "0"]
        flags = ["--translate-to", targets, "--translate-engine", engine, *limits]
        extra_worker: list[str] = []
        if engine == "nllb":
            folder = str(tiny_nllb(Path(tempfile.mkdtemp(prefix="nova-bench-nllb-"))))
            flags += ["--translate-model", folder]
            extra_worker = ["--translate-model", folder]
        embedded, base = start_server(flags)
        try:
            for n in counts:
                rows.append((engine, "embedded", await sessions(base, n, langs, wav, seconds)))
                print(rows[-1], flush=True)
        finally:
            embedded.terminate()
            embedded.wait(timeout=30)
        redis = RedisServer(Path(tempfile.mkdtemp(prefix="nova-redis-")))
        redis.start()
        procs = [start_worker(redis.url), start_worker(redis.url, "cpu", "--engines", engine, *extra_worker)]
        gateway_flags = [
            "--redis",
            redis.url,
            "--translate-to",
            targets,
            "--translate-engine",
            engine,
            *limits,
        ]
        gateway, base = start_server(gateway_flags)
        try:
            await asyncio.sleep(3.0)  # the gateway's monitor reads the workers' first heartbeats
            for n in counts:
                rows.append((engine, "gateway + workers", await sessions(base, n, langs, wav, seconds)))
                print(rows[-1], flush=True)
        finally:
            for proc in (gateway, *procs):
                proc.terminate()
                proc.wait(timeout=60)
            redis.stop()

    lines = [
        "# Translated finals over Redis: translation workers vs the embedded server (CPU)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.translation_redis --sessions {args.sessions} "
        f"--engines {args.engines} --nllb-langs {args.nllb_langs}` on this 2-core machine: LibriVox "
        f"({seconds:.0f} s) spoken by N aiortc publishers over WebRTC at real-time pace, one room each, "
        "translated into Spanish (Apertium) or K languages (NLLB); a source viewer and a viewer per language "
        "in each room. Extra: seconds from a source final's arrival to its "
        "translated final's, per segment and language. "
        "Scaled out: a gateway, one Whisper worker and one translation worker, each a process, over a real "
        "redis-server. NLLB is the tiny random model (its cost shape, not NLLB-200's).",
        "",
        "| engine | set-up | sessions | languages | extra p50 | extra p90 | max | translated / expected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine, setup, r in rows:
        lines.append(
            f"| {engine} | {setup} | {r['n']} | {r['k']} | {r['p50']:.3f} | {r['p90']:.3f} | {r['max']:.3f} | "
            f"{r['translated']} / {r['expected']} |"
        )
    hops = []
    for engine in args.engines.split(","):
        for n in counts:
            got = {s: r for e, s, r in rows if e == engine and r["n"] == n}
            if len(got) == 2:
                hop = got["gateway + workers"]["p50"] - got["embedded"]["p50"]
                hops.append(f"{engine}, {n} session(s): {1000 * hop:+.0f} ms")
    lines += ["", "Redis hop at p50 (scaled out minus embedded): " + "; ".join(hops) + "."]
    write_report(args.out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1,4")
    ap.add_argument("--engines", default="apertium,nllb")
    ap.add_argument("--nllb-langs", default="es,fr,de", help="NLLB's target languages (K)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/translation-redis.md"))
    asyncio.run(main(ap.parse_args()))
