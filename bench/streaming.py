"""Issue 3 benchmark: the streaming policy against offline transcription on long-form speech.

    python -m bench.streaming [--out bench/results/streaming.md]

Replays LibriVox clips and an espeak-ng passage at real-time pace through the real pipeline
(VAD, policy, scheduler, Whisper tiny.en int8 on this CPU) and reports WER, final latency from
the true end of each utterance, first partial after speech starts, and partial rewrites.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from faster_whisper import WhisperModel

from bench.harness import replay_one, summary
from pipeline.batching import BatchOptions
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy import PolicyOptions
from pipeline.scheduler import Scheduler
from tests.support.corpus import espeak_passage, librivox
from tests.support.speech import wer


def offline(model: WhisperModel, audio) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    segments, _ = model.transcribe(
        audio.astype("float32") / 32768, language="en", beam_size=5, condition_on_previous_text=True
    )
    return " ".join(s.text.strip() for s in segments), time.perf_counter() - started


async def main(out: Path) -> None:
    path = resolve_whisper("tiny.en").path
    threads = os.cpu_count() or 1
    engine = WhisperEngine(WhisperConfig(path, cpu_threads=threads))
    scheduler = Scheduler({"whisper": engine}, BatchOptions(max_batch=8, max_wait=0.01))
    offline_model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)
    rows = []
    for stream in (librivox(), espeak_passage()):
        text, secs = offline(offline_model, stream.audio)
        off_wer = wer(stream.reference, text)
        result = await replay_one(stream, scheduler, stream.name, PolicyOptions())
        s = summary([result])
        rows.append((stream, off_wer, secs, s, result.text()))
        print(stream.name, f"offline WER {off_wer:.3f}", s, flush=True)
    scheduler.close()

    lines = [
        f"# Streaming policy vs offline (tiny.en int8, CPU, {threads} threads)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.streaming`. Latencies in seconds, from the",
        "true end (or start) of each utterance's voice; audio replayed at real-time pace.",
        "",
        "| stream | length s | offline WER | streaming WER | target WER | final p50 | final p90 | first partial p50 | p90 | partials/final | rewrites/final |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stream, off_wer, _, s, _ in rows:
        lines.append(
            f"| {stream.name} | {len(stream.audio) / 16000:.1f} | {off_wer:.3f} | {s['wer']:.3f} | "
            f"<= {1.3 * off_wer + 0.01:.3f} | {s['final_p50']:.2f} | {s['final_p90']:.2f} | "
            f"{s['first_partial_p50']:.2f} | {s['first_partial_p90']:.2f} | "
            f"{s['partials_per_final']:.1f} | {s['rewrites_per_final']:.2f} |"
        )
    lines += ["", "Streaming finals:", ""]
    for stream, _, _, _, text in rows:
        lines.append(f"- {stream.name}: {text}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/streaming.md"))
    asyncio.run(main(ap.parse_args().out))
