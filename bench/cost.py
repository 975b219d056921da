"""Issue 12 benchmark: what one engine request costs, before and after, and where it goes.

    python -m bench.cost [--out bench/results/cost.md] [--repeats 8]

One request at a time on this CPU (tiny.en int8, every core), the first LibriVox utterance cut
at 1.5, 3 and 5 s of speech (after 400 ms of lead-in, as a growing partial sees it). Process
CPU milliseconds per request, median of ``--repeats`` runs taken in turn (so a busy neighbour
slows every configuration alike). Configurations:

- partial, before: greedy, word alignment, 1000-frame window, one model on every core;
- partial, after: greedy, no alignment, 800-frame window, generation on a one-thread copy;
- the steps in between (alignment off, then the smaller window), one lever at a time;
- final, before (greedy, one model) and after (beam 5 on the one-thread copy).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.corpus import librivox
from bench.harness import cpu_seconds, write_report
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy_options import FINAL_DECODE, PARTIAL_DECODE
from pipeline.types import DecodeOptions, TranscribeRequest

RATE = 16_000


def main(out: Path, repeats: int) -> None:
    path = resolve_whisper("tiny.en").path
    threads = os.cpu_count() or 1
    one_model = WhisperEngine(WhisperConfig(path, cpu_threads=threads, decode_threads=0))
    two_copies = WhisperEngine(WhisperConfig(path, cpu_threads=threads, decode_threads=1))
    configs = {
        "partial, before": (one_model, DecodeOptions()),
        "partial, no alignment": (one_model, DecodeOptions(word_timestamps=False)),
        "partial, no alignment, 800 frames": (
            one_model,
            DecodeOptions(word_timestamps=False, min_window_frames=800),
        ),
        "partial, after (+ one-thread decoding)": (two_copies, PARTIAL_DECODE),
        "final, before (greedy)": (one_model, DecodeOptions()),
        "final, greedy, one-thread decoding": (two_copies, DecodeOptions()),
        "final, after (beam 5, one-thread decoding)": (two_copies, FINAL_DECODE),
    }
    stream = librivox()
    utt = stream.utterances[0]
    lengths = (1.5, 3.0, 5.0)
    table: dict[str, list[float]] = {name: [] for name in configs}
    for length in lengths:
        a = int((utt.start - 0.4) * RATE)
        audio = stream.audio[a : int((utt.start + length) * RATE)].astype(np.float32) / 32768
        for engine, options in configs.values():
            engine.run_batch([TranscribeRequest(audio, options=options)])  # warm
        runs: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(repeats):
            for name, (engine, options) in configs.items():
                c0 = cpu_seconds()
                engine.run_batch([TranscribeRequest(audio, options=options)])
                runs[name].append(cpu_seconds() - c0)
        for name in configs:
            table[name].append(1000 * float(np.median(runs[name])))
        print(length, {k: round(v[-1]) for k, v in table.items()}, flush=True)
    lines = [
        f"# One request's CPU, before and after issue 12 (tiny.en int8, CPU, {threads} threads)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.cost`: process CPU ms per request, median of",
        f"{repeats} runs taken in turn, on the first LibriVox utterance cut at each length of speech.",
        "",
        "| request | " + " | ".join(f"{x:.1f} s" for x in lengths) + " |",
        "|---|" + "---|" * len(lengths),
        *[f"| {name} | " + " | ".join(f"{v:.0f}" for v in vals) + " |" for name, vals in table.items()],
        "",
    ]
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/cost.md"))
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    main(args.out, args.repeats)
