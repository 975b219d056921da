"""Issue 12 benchmark: how small an encoder window tiny.en still reads (partials use the smallest).

    python -m bench.windows [--out bench/results/windows.md] [--windows 500,700,800,1000]

Prefixes of every LibriVox and espeak utterance (1 s, 1.5 s, ... of speech after 400 ms of
lead-in, as a growing partial sees them) are decoded greedily in each encoder window (mel
frames, 100 per second) and compared word by word with the same prefix decoded in Whisper's own
30 s window. CPU: process CPU seconds for all prefixes that fit the window (shared machine:
compare within the run).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.corpus import espeak_passage, librivox
from bench.harness import cpu_seconds, write_report
from bench.scoring import normalize, pooled_wer
from pipeline.engines.whisper import HOP, WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.types import DecodeOptions, TranscribeRequest

RATE = 16_000


def decode(engine: WhisperEngine, audio: np.ndarray, frames: int) -> str:
    options = DecodeOptions(word_timestamps=False, min_window_frames=frames)
    (t,) = engine.run_batch([TranscribeRequest(audio, options=options)])
    return normalize(t.text) or "<empty>"


def main(out: Path, windows: list[int]) -> None:
    engine = WhisperEngine(WhisperConfig(resolve_whisper("tiny.en").path, cpu_threads=os.cpu_count() or 1))
    prefixes = []
    for s in (librivox(), espeak_passage()):
        for u in s.utterances:
            a = int((u.start - 0.4) * RATE)
            for length in np.arange(1.0, u.end - u.start + 0.3, 0.5):
                prefixes.append(s.audio[a : a + int((length + 0.4) * RATE)].astype(np.float32) / 32768)
    reference = [decode(engine, p, 3000) for p in prefixes]
    rows = []
    for frames in windows:
        fits = [i for i, p in enumerate(prefixes) if len(p) // HOP + 50 <= frames]
        c0 = cpu_seconds()
        hyps = [decode(engine, prefixes[i], frames) for i in fits]
        cpu = cpu_seconds() - c0
        same_at_1000 = [decode(engine, prefixes[i], 1000) for i in fits] if frames != 1000 else hyps
        w = pooled_wer([reference[i] for i in fits], hyps)
        w1000 = pooled_wer([reference[i] for i in fits], same_at_1000)
        rows.append(
            f"| {frames} | {len(fits)} | {w:.3f} | {w1000:.3f} | {1000 * cpu / max(1, len(fits)):.0f} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "# Encoder windows: how small tiny.en still reads (int8, CPU)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.windows`. {len(prefixes)} growing prefixes of",
        "LibriVox and espeak utterances, greedy; WER against the same prefix in a 30 s window, for the",
        "prefixes that fit each window, and for those same prefixes in a 1000-frame window.",
        "",
        "| window (mel frames) | prefixes that fit | WER vs 30 s window | same prefixes at 1000 | CPU ms per decode |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Partials use 800 frames at least, finals 1000 (`DecodeOptions.min_window_frames`).",
        "",
    ]
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/windows.md"))
    ap.add_argument("--windows", default="500,700,800,1000")
    args = ap.parse_args()
    main(args.out, [int(w) for w in args.windows.split(",")])
