"""Issue 18 benchmark: what one Whisper request costs the host and the device, stage by stage.

    python -m bench.engine --device cpu|cuda --batch 16 --window 10 [--model tiny.en] [--out F]

``--batch`` utterances (LibriVox, each from its own place in the stream) grow one second per
update up to ``--window`` seconds, as partials see them: one engine call of the whole batch per
update. Then each is asked once as a final (beam 5, word times). Milliseconds per request:

- ``features``: the log-mel spectrogram (host);
- ``encode``, ``generate``, ``align``: the model calls (the device's work, and on CUDA the
  host's wait for it);
- ``host``: everything but the model calls (features, prompts, tokens, word splitting).

Run three times in one process, so all see the same machine at the same time: before
(faster-whisper's extractor over the whole padded window every update, numpy's BLAS with the
threads it starts by itself), before with BLAS capped at one thread (pipeline/threads.py), and
after (that cap, and pipeline/features.py: each frame once per utterance). The last line is one JSON object of milliseconds per
partial request, after: ``features``, ``encode``, ``generate``, ``align``, ``host``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.harness import write_report
from pipeline.engines.whisper import StageTimes, WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy_options import FINAL_DECODE, PARTIAL_DECODE
from pipeline.threads import limit_blas
from pipeline.types import TranscribeRequest

RATE = 16_000


def corpus(path: str | None) -> np.ndarray:
    """The LibriVox stream as float32: from a .npz (the GPU kit, no PyAV), else decoded here."""
    if path:
        return np.load(path)["audio"].astype(np.float32) / 32768
    from bench.corpus import librivox  # decodes the clips with PyAV

    return librivox().audio.astype(np.float32) / 32768


def utterances(audio: np.ndarray, batch: int, window: int) -> list[np.ndarray]:
    """``batch`` stretches of ``window`` seconds, spread over the stream (wrapping around)."""
    span = window * RATE
    looped = np.concatenate([audio] * (1 + (batch * span) // max(1, len(audio) - span)))
    step = max(RATE, (len(audio) - span) // max(1, batch))
    return [looped[i * step : i * step + span] for i in range(batch)]


def run(engine: WhisperEngine, utts: list[np.ndarray], window: int) -> tuple[StageTimes, StageTimes, float]:
    """Partials growing a second per update, then one final each: (partial, final) stage times."""
    engine.run_batch([TranscribeRequest(u[:RATE], options=PARTIAL_DECODE) for u in utts])  # warm
    engine.times = StageTimes()
    started = time.perf_counter()
    for second in range(1, window + 1):
        engine.run_batch([TranscribeRequest(u[: second * RATE], options=PARTIAL_DECODE) for u in utts])
    wall = time.perf_counter() - started
    partials, engine.times = engine.times, StageTimes()
    engine.run_batch([TranscribeRequest(u, options=FINAL_DECODE) for u in utts])
    return partials, engine.times, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--compute-type", default="")
    parser.add_argument("--corpus", default="", help="a .npz with the stream's int16 audio (no PyAV needed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = resolve_whisper(args.model).path if not os.path.isdir(args.model) else args.model
    ctype = args.compute_type or ("int8" if args.device == "cpu" else "float16")
    threads = (os.cpu_count() or 1) if args.device == "cpu" else 0
    utts = utterances(corpus(args.corpus or None), args.batch, args.window)
    rows: dict[str, dict[str, float]] = {}
    configs = (("before", False, False), ("before, 1 BLAS thread", False, True), ("after", True, True))
    for label, incremental, capped in configs:
        if capped:
            limit_blas()  # for the rest of the process, as the server and the worker do
        config = WhisperConfig(path, args.device, 0, ctype, threads, incremental_features=incremental)
        engine = WhisperEngine(config)
        partials, finals, wall = run(engine, utts, args.window)
        rows[f"partial, {label}"] = partials.per_request_ms()
        rows[f"final, {label}"] = finals.per_request_ms()
        print(
            f"{label}: partials {partials.per_request_ms()} ({wall:.1f} s), finals {finals.per_request_ms()}"
        )
    out = args.out or Path(f"bench/results/engine-{args.device}.md")
    stages = ("features", "encode", "generate", "align", "host")
    lines = [
        f"# Whisper engine cost by stage ({args.device}, {args.model} {ctype})",
        "",
        f"`python -m bench.engine --device {args.device} --batch {args.batch} --window {args.window}` on "
        f"{os.cpu_count()} CPU cores{'' if args.device == 'cpu' else ' and one GPU'}: {args.batch} LibriVox "
        f"utterances growing one second per update to {args.window} s (one batched call per update, "
        "greedy, no word times, as partials), then each once as a final (beam 5, word times). Milliseconds "
        "per request. Before: faster-whisper's extractor over the whole padded window each update, with "
        "numpy's BLAS threads as it starts them, then capped at one (pipeline/threads.py); after: that cap "
        "and each log-mel frame once per utterance (pipeline/features.py). `host` is everything but the "
        "model calls (encode, generate, align).",
        "",
        "| requests | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{row[s]:.2f}" for s in stages) + " |" for name, row in rows.items()
    ]
    write_report(out, lines)
    print(json.dumps(rows["partial, after"]))


if __name__ == "__main__":
    main()
