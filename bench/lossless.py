"""Issue 16 benchmark: does anything said go missing (or come out twice) under load?

    python -m bench.lossless [--sessions 12] [--rounds spread,spread,together] [--tree PATH]
                             [--out bench/results/lossless.md]

Twelve publishers over real WebRTC to a real `nova-voice serve` process, each the same ~80 s
stream: LibriVox readings, an espeak phone menu ("To hear the next message press six. ...", said
with short pauses, so the sentence wait joins it into long utterances) and espeak sentences.
A round starts the publishers spread over 8 s (``spread``) or all at once (``together``, the
server then runs with ``--max-pending 0``: every peer comes from one address); every round
gets a fresh server. Per session: WER of the finals; runs of four reference words or more
that the finals lost (a gap, in the alignment of reference and finals); a phrase of four words or more said once but captioned twice in
a row (a double). From the server's /metrics: voiced seconds, and how many reached no final
(``nova_voiced_seconds_unfinalised_total``, must be 0), were dropped on purpose, or doubled.
``--tree`` runs the server of another checkout (e.g. a worktree of the previous commit), for a
before/after on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import ESPEAK_SENTENCES, LIBRIVOX_DIR, Stream, build, silence, write_wav
from bench.e2e import free_port, proc_cpu_seconds, wait_healthy
from bench.harness import write_report
from bench.scoring import lost_runs, normalize, wer
from pipeline.audio import read_audio
from pipeline.text import collapse_loops
from pipeline.types import Word
from tests.support.whip_client import WhipPublisher

MENU = [
    "To hear the next message press six.",
    "To repeat this message press five.",
    "To hear the previous message press four.",
    "To delete or undelete this message press zero.",
    "For more information visit the asterisk website.",
]
WER_BOUND = 0.04


def espeak(text: str, tmp: Path, i: int) -> np.ndarray:
    path = tmp / f"{i}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return read_audio(str(path))


def stream() -> Stream:
    """~80 s: LibriVox, the phone menu with 0.4 s pauses (one long utterance), espeak sentences."""
    clips: list[tuple[np.ndarray, str]] = []
    for line in (LIBRIVOX_DIR / "transcription").read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.*)\)", line.strip())
        if m:
            clips.append((read_audio(str(LIBRIVOX_DIR / f"{m.group(2)}.wav")), m.group(1).strip()))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        menu = [espeak(t, tmp, i) for i, t in enumerate(MENU)]
        pause = np.zeros(int(0.4 * 16_000), np.int16)
        joined = np.concatenate([x for a in menu for x in (a, pause)])
        clips.append((joined, " ".join(MENU)))
        clips += [(espeak(t, tmp, 100 + i), t) for i, t in enumerate(ESPEAK_SENTENCES)]
    return build("mixed", clips, gap=1.2)


def sentences(s: Stream) -> list[str]:
    return [x for u in s.utterances for x in re.split(r"(?<=[.?!])\s+", u.text) if x]


def doubled(text: str) -> list[str]:
    """Phrases of four words or more that come twice in a row in ``text``."""
    words = [Word(" " + w, i, i + 1) for i, w in enumerate(normalize(text).split())]
    kept = collapse_loops(words, min_repeats=99, phrase_n=4)  # only the phrase rule
    return [] if len(kept) == len(words) else [" ".join(w.text.strip() for w in words)]


def gaps(s: Stream, text: str, run: int = 4) -> list[str]:
    """Runs of ``run`` or more reference words that the finals lost: deleted in the alignment
    of reference and finals, or replaced by fewer words (what a skipped sentence looks like;
    a misheard word is one substitution, not a run)."""
    ref = normalize(s.reference).split()
    hyp = normalize(text).split() or ["<empty>"]
    return lost_runs(ref, hyp, run)


def start(tree: Path, flags: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="nova-lossless-", suffix=".log")[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)]
        + ["--data-dir", tempfile.mkdtemp(prefix="nova-bench-"), *flags],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(server, base)
    return server, base, log


def voice_metrics(base: str) -> dict[str, float]:
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"nova_voiced_seconds_(\w+?)_total(?:\{reason=\"(\w+)\"\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (f":{m.group(2)}" if m.group(2) else "")] = float(m.group(3))
        elif line.startswith("nova_voiced_seconds_total "):
            out["voiced"] = float(line.split()[1])
        elif line.startswith("nova_final_repairs_total "):
            out["repairs"] = float(line.split()[1])
    return out


async def round_(
    base: str, pid: int, n: int, spread: float, s: Stream, wav: Path, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    async with aiohttp.ClientSession() as http:
        pubs = [WhipPublisher(base, f"lossless{seed}x{i}", str(wav)) for i in range(n)]
        cpu0, wall0 = proc_cpu_seconds(pid), time.monotonic()

        async def one(pub: WhipPublisher) -> None:
            await asyncio.sleep(rng.uniform(0, spread))
            await pub.start(http)
            await pub.ended()

        await asyncio.gather(*(one(p) for p in pubs))
        last = s.utterances[-1].end
        for p in pubs:
            try:
                await p.log.wait_for(lambda log: any(m["end"] >= last - 1 for m in log.finals()), 60)
            except TimeoutError:
                pass  # scored by what arrived
        await asyncio.gather(*(p.stop(http) for p in pubs), return_exceptions=True)
        cpu = 100 * (proc_cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
    texts = [p.log.final_text() for p in pubs]
    return {
        "wers": [wer(s.reference, t) for t in texts],
        "gaps": [gaps(s, t) for t in texts],
        "doubles": [doubled(t) for t in texts],
        "cpu": cpu,
        "texts": texts,
    }


async def main(out: Path, n: int, rounds: list[str], tree: Path) -> None:
    s = stream()
    wav = write_wav(Path("/tmp/nova-lossless.wav"), np.concatenate([s.audio, silence(2.0)]))
    rows: list[tuple[str, dict[str, Any], dict[str, float]]] = []
    for i, kind in enumerate(rounds):
        flags = ["--max-pending", "0"] if kind == "together" else []
        server, base, log = start(tree, flags)
        try:
            r = await round_(base, server.pid, n, 8.0 if kind == "spread" else 0.0, s, wav, i)
            try:
                metrics = voice_metrics(base)
            except OSError:
                metrics = {}
        finally:
            server.terminate()
            server.wait(timeout=30)
        r["log"] = [x for x in log.read_text().splitlines() if "voiced audio" in x][:10]
        rows.append((kind, r, metrics))
        print(kind, [round(w, 3) for w in r["wers"]], metrics, "server log:", log, flush=True)

    lines = [
        "# Nothing said is lost: 12 WebRTC publishers under load (issue 16)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.lossless --sessions {n} "
        f"--rounds {','.join(rounds)}`{' --tree ' + str(tree) if tree != Path.cwd() else ''} on this "
        f"2-core machine (server and aiortc clients share it). Stream: {len(s.audio) / 16000:.0f} s, "
        f"{len(sentences(s))} sentences (LibriVox, an espeak phone menu with 0.4 s pauses, espeak "
        "sentences); `spread`: starts spread over 8 s; `together`: all at once, `--max-pending 0`. "
        "A fresh server per round.",
        "",
        "| round | sessions | WER mean | WER max | sessions over 0.04 | gaps | doubles | voiced s | "
        "unfinalised s | dropped s | doubled s | repairs (voiced s) | server CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r, m in rows:
        dropped = sum(v for k, v in m.items() if k.startswith("dropped"))
        lines.append(
            f"| {kind} | {n} | {np.mean(r['wers']):.3f} | {max(r['wers']):.3f} | "
            f"{sum(w > WER_BOUND for w in r['wers'])} | {sum(map(len, r['gaps']))} | "
            f"{sum(map(len, r['doubles']))} | {m.get('voiced', float('nan')):.0f} | "
            f"{m.get('unfinalised', float('nan')):.2f} | {dropped:.2f} | {m.get('doubled', float('nan')):.2f} | "
            f"{m.get('repairs', float('nan')):.0f} ({m.get('repaired', float('nan')):.1f}) | {r['cpu']:.0f} |"
        )
    lines.append("")
    for kind, r, _ in rows:
        for i, (w, g, d) in enumerate(zip(r["wers"], r["gaps"], r["doubles"], strict=True)):
            if w > WER_BOUND or g or d:
                lines.append(f"- {kind}, session {i}: WER {w:.3f}; missing: {g}; doubled: {d}")
                lines.append(f"  - finals: {r['texts'][i]}")
        for x in r["log"]:
            lines.append(f"- {kind}, server log: `{x.strip()}`")
    write_report(out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/lossless.md"))
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--rounds", default="spread,spread,together")
    ap.add_argument("--tree", type=Path, default=Path.cwd())
    args = ap.parse_args()
    asyncio.run(main(args.out, args.sessions, args.rounds.split(","), args.tree.resolve()))
