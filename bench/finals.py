"""Issue 12 benchmark: what a beam buys on finals, what it costs, and how often the fallback runs.

    python -m bench.finals [--out bench/results/finals.md] [--beams 1,5] [--snr 15]

Each utterance of LibriVox (5) and the espeak passage (8), clean and mixed with pink noise, a
fan, keyboard clicks and music at ``--snr`` dB, is decoded as the policy decodes a final: its
audio with 400 ms before and 500 ms after the voice, earlier finals as the prompt, word times
on. Per beam size: pooled WER, process CPU seconds per final, and how many finals Whisper's own
signs call bad (loop or low log-probability: the policy then decodes once more by sampling).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.corpus import Stream, espeak_passage, librivox
from bench.harness import cpu_seconds, write_report
from bench.noise import NOISES, mix
from bench.scoring import wer
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy_options import FINAL_DECODE
from pipeline.types import DecodeOptions, TranscribeRequest

RATE = 16_000


def finals(engine: WhisperEngine, stream: Stream, options: DecodeOptions) -> tuple[str, float, int]:
    """(joined text, CPU seconds, finals that would take the fallback)."""
    texts: list[str] = []
    cpu = 0.0
    bad = 0
    for u in stream.utterances:
        a = max(0, int((u.start - 0.4) * RATE))
        audio = stream.audio[a : int((u.end + 0.5) * RATE)].astype(np.float32) / 32768
        prompt = " ".join(texts)[-200:]
        c0 = cpu_seconds()
        (t,) = engine.run_batch([TranscribeRequest(audio, prompt=prompt, options=options)])
        cpu += cpu_seconds() - c0
        looped = t.compression_ratio > options.compression_ratio_threshold
        unsure = (
            t.avg_logprob < options.log_prob_threshold and t.no_speech_prob <= options.no_speech_threshold
        )
        bad += int(bool(t.words) and (looped or unsure))
        texts.append(t.text)
    return " ".join(texts), cpu, bad


def main(out: Path, beams: list[int], snr: float) -> None:
    engine = WhisperEngine(WhisperConfig(resolve_whisper("tiny.en").path, cpu_threads=os.cpu_count() or 1))
    clean = [librivox(), espeak_passage()]
    conditions = {"clean": clean}
    for name, make in NOISES.items():
        conditions[name] = [
            Stream(s.name, mix(s.audio, make(len(s.audio) / RATE), snr), s.utterances) for s in clean
        ]
    n_finals = sum(len(s.utterances) for s in clean)
    rows = []
    totals: dict[int, list[float]] = {b: [0.0, 0.0, 0.0] for b in beams}
    for name, streams in conditions.items():
        ref = " ".join(s.reference for s in streams)
        for beam in beams:
            options = DecodeOptions(beam_size=beam, word_timestamps=FINAL_DECODE.word_timestamps)
            outs = [finals(engine, s, options) for s in streams]
            w = wer(ref, " ".join(o[0] for o in outs))
            cpu = sum(o[1] for o in outs)
            bad = sum(o[2] for o in outs)
            totals[beam][0] += w
            totals[beam][1] += cpu
            totals[beam][2] += bad
            rows.append(f"| {name} | {beam} | {w:.3f} | {1000 * cpu / n_finals:.0f} | {bad} |")
            print(rows[-1], flush=True)
    k = len(conditions)
    lines = [
        f"# Finals: beam size against WER and CPU (tiny.en int8, CPU), speech clean and at {snr:.0f} dB SNR",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.finals`. {n_finals} finals per condition",
        "(LibriVox 5, espeak 8), each decoded as the policy decodes a final. CPU: process CPU ms per",
        "final (shared machine: compare within the run). Bad: finals that would take the sampling fallback.",
        "",
        "| condition | beam | WER | CPU ms per final | bad |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "| beam | mean WER over conditions | CPU ms per final | bad finals |",
        "|---|---|---|---|",
        *[
            f"| {b} | {t[0] / k:.3f} | {1000 * t[1] / (k * n_finals):.0f} | {int(t[2])} of {k * n_finals} |"
            for b, t in totals.items()
        ],
        "",
    ]
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/finals.md"))
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--snr", type=float, default=15.0)
    args = ap.parse_args()
    main(args.out, [int(b) for b in args.beams.split(",")], args.snr)
