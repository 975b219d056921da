"""A device profile measured, not derived: what encode, a decoder step and word alignment cost
on this device, by batch width, written as the JSON ``--engine simulated`` reads (issue 29).

    python -m bench.profile --device cpu|cuda [--model tiny.en] [--widths 1,4,16] [--seconds 6]
        [--corpus librivox.npz] [--name cpu-tiny] [--out pipeline/engines/profiles/cpu-tiny.json]

Each width W runs W real LibriVox utterances of ``--seconds`` (from their own places in the
stream) through the real engine twice, as the caption policy asks: greedy without word times
(a partial), then beam 5 with word times (a final). The engine's own stage timers
(``WhisperEngine.times``) give each model call apart from the host's work, so the log-mel
features, prompts and word splitting, which a simulated worker does for real, are not counted
again as the device's (issue 18's figures were whole ``run_batch`` calls on silent windows,
features included: see bench/results/scale.md). Per width:

- ``encode_ms[W]``: the encoder over W windows, scaled to windows of 1000 mel frames;
- ``step_ms[W]``: one greedy decoder step over W items, and ``beam_step_ms[W]`` one step of
  beam 5 over W items: the generate call over its steps (the longest item's tokens plus
  ``fixed_steps``, as the simulated engine counts them);
- ``align_ms[W]``: word alignment of W items, each with its own number of frames as finals have.

``tokens_per_word`` is the tokenizer's count over the words heard. The median of ``--repeat``
runs is kept; the last line is the profile as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from tokenizers import Tokenizer

from bench.engine import corpus, utterances
from pipeline.engines.simulated import bucket_frames
from pipeline.engines.whisper import StageTimes, WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy_options import FINAL_DECODE, PARTIAL_DECODE
from pipeline.threads import limit_blas
from pipeline.types import TranscribeRequest, Transcript

FIXED_STEPS = 4  # the start-of-transcript step, the end, and slack: as h200-tiny.json counts


def steps_of(transcripts: list[Transcript], tokenizer: Tokenizer) -> tuple[int, int, int]:
    """(tokens of the longest item, all tokens, all words) of a batch's answers."""
    counts = [len(tokenizer.encode(" " + t.text.strip(), add_special_tokens=False).ids) for t in transcripts]
    words = sum(len(t.words) for t in transcripts)
    return max(counts, default=0), sum(counts), words


def measure(
    engine: WhisperEngine, tokenizer: Tokenizer, utts: list[np.ndarray], repeat: int
) -> dict[str, Any]:
    """One width: the median of ``repeat`` runs of each stage, in milliseconds."""
    frames = max(bucket_frames(len(u), PARTIAL_DECODE.min_window_frames) for u in utts)
    greedy = [TranscribeRequest(u.astype(np.float32), options=PARTIAL_DECODE) for u in utts]
    final = [TranscribeRequest(u.astype(np.float32), options=FINAL_DECODE) for u in utts]
    engine.run_batch(greedy)  # warm: first calls allocate
    rows: dict[str, list[float]] = {"encode": [], "greedy_step": [], "beam_step": [], "align": []}
    tokens = words = 0
    for _ in range(repeat):
        engine.times = StageTimes()
        heard = engine.run_batch(greedy)
        longest, tokens, words = steps_of(heard, tokenizer)
        rows["encode"].append(1000 * engine.times.encode * 1000 / frames)
        rows["greedy_step"].append(1000 * engine.times.generate / (longest + FIXED_STEPS))
        engine.times = StageTimes()
        heard = engine.run_batch(final)
        longest, _, _ = steps_of(heard, tokenizer)
        rows["beam_step"].append(1000 * engine.times.generate / (longest + FIXED_STEPS))
        rows["align"].append(1000 * engine.times.align)
    out: dict[str, Any] = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    out["frames"], out["tokens"], out["words"] = frames, tokens, words
    return out


def device_name(device: str) -> str:
    if device == "cuda":
        try:
            name = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except OSError:
            name = ""
        return name or "a CUDA device"
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"


def profile(
    rows: dict[int, dict[str, Any]], name: str, model: str, device: str, ctype: str
) -> dict[str, Any]:
    """The JSON ``DeviceProfile.load`` reads, from the measured widths."""
    tokens = sum(r["tokens"] for r in rows.values())
    words = sum(r["words"] for r in rows.values())
    return {
        "name": name,
        "model": model,
        "device": f"{device_name(device)}, {ctype}, CTranslate2 {ctranslate2.__version__}",
        "notes": (
            f"Measured {time.strftime('%Y-%m-%d')} by python -m bench.profile --device {device}: real "
            "LibriVox utterances through the real engine, its stage timers per model call (features "
            "and the host's word splitting excluded: a simulated worker does those for real). "
            "step_ms: a greedy step over W items; beam_step_ms: a beam-5 step over W items."
        ),
        "encode_ms": {str(w): r["encode"] for w, r in sorted(rows.items())},
        "step_ms": {str(w): r["greedy_step"] for w, r in sorted(rows.items())},
        "beam_step_ms": {str(w): r["beam_step"] for w, r in sorted(rows.items())},
        "align_ms": {str(w): r["align"] for w, r in sorted(rows.items())},
        "fixed_steps": FIXED_STEPS,
        "tokens_per_word": round(tokens / max(1, words), 3),
    }


def measured(
    engine: WhisperEngine,
    model_path: str,
    audio: np.ndarray,
    widths: list[int],
    seconds: int = 6,
    repeat: int = 3,
    name: str = "",
) -> dict[str, Any]:
    """The profile of ``engine`` (also the GPU kit's first step, bench/gpu/drive.py)."""
    tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
    rows: dict[int, dict[str, Any]] = {}
    for width in widths:
        rows[width] = measure(engine, tokenizer, utterances(audio, width, seconds), repeat)
        print(json.dumps({"width": width, **rows[width]}), flush=True)
    device = engine.config.device
    model = Path(model_path).name
    return profile(rows, name or f"{device}-{model}", model, device, engine.config.compute_type)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--compute-type", default="")
    parser.add_argument(
        "--widths", default="", help="batch widths (default 1,4,16 on CPU, 1,16,64,128 on CUDA)"
    )
    parser.add_argument(
        "--seconds", type=int, default=6, help="utterance length (the recording's finals: 3-7 s)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--corpus", default="", help="a .npz with the stream's int16 audio (no PyAV needed)")
    parser.add_argument("--name", default="")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    limit_blas()  # as the worker runs
    path = args.model if os.path.isdir(args.model) else resolve_whisper(args.model).path
    ctype = args.compute_type or ("int8" if args.device == "cpu" else "float16")
    threads = (os.cpu_count() or 1) if args.device == "cpu" else 0
    engine = WhisperEngine(WhisperConfig(path, args.device, 0, ctype, threads))
    widths = [
        int(w) for w in (args.widths or ("1,4,16" if args.device == "cpu" else "1,16,64,128")).split(",")
    ]
    result = measured(engine, path, corpus(args.corpus or None), widths, args.seconds, args.repeat, args.name)
    out = args.out or Path(f"bench/results/profile-{result['name']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
