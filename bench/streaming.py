"""Issues 3 and 12 benchmark: the streaming policy against offline transcription, before and after.

    python -m bench.streaming [--out bench/results/streaming.md] [--variants before,after]

Replays LibriVox clips, an espeak-ng passage and LibriVox in pink noise at 15 dB SNR through
the real pipeline (VAD, policy, scheduler, Whisper tiny.en int8 on this CPU), once per policy
variant of issue 12 (``bench.harness.BEFORE`` / ``AFTER``), and reports:

- paced at real time: WER, final latency from the true end of each utterance, first partial
  after speech starts, partials and rewrites per final;
- unpaced (each chunk waits for its requests): engine requests and process CPU seconds per
  second of audio, which do not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from faster_whisper import WhisperModel

from bench.corpus import Stream, espeak_passage, librivox
from bench.harness import (
    DECODE_THREADS,
    VARIANTS,
    SessionResult,
    cpu_seconds,
    replay_one,
    summary,
    write_report,
)
from bench.noise import mix, pink
from bench.scoring import wer
from pipeline.batching import BatchOptions
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.scheduler import NullObserver, Scheduler


class Calls(NullObserver):
    def __init__(self) -> None:
        self.requests = 0

    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        self.requests += size


def offline(model: WhisperModel, audio) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    segments, _ = model.transcribe(
        audio.astype("float32") / 32768, language="en", beam_size=5, condition_on_previous_text=True
    )
    return " ".join(s.text.strip() for s in segments), time.perf_counter() - started


def streams() -> list[Stream]:
    book = librivox()
    noisy = Stream("librivox+pink15", mix(book.audio, pink(len(book.audio) / 16_000), 15), book.utterances)
    return [book, espeak_passage(), noisy]


async def cost(engine: WhisperEngine, stream: Stream, variant: str) -> tuple[float, float, SessionResult]:
    """(engine requests, CPU seconds) per second of audio, unpaced, and the result."""
    calls = Calls()
    scheduler = Scheduler({"whisper": engine}, BatchOptions(max_batch=8, max_wait=0.01), observer=calls)
    cpu0 = cpu_seconds()
    result = await replay_one(stream, scheduler, f"{stream.name}-{variant}", VARIANTS[variant], paced=False)
    cpu = cpu_seconds() - cpu0
    scheduler.close()
    seconds = len(stream.audio) / 16_000
    return calls.requests / seconds, cpu / seconds, result


async def main(out: Path, variants: list[str]) -> None:
    path = resolve_whisper("tiny.en").path
    threads = os.cpu_count() or 1
    engines = {
        n: WhisperEngine(WhisperConfig(path, cpu_threads=threads, decode_threads=n))
        for n in {DECODE_THREADS[v] for v in variants}
    }
    offline_model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)
    rows = []
    texts = []
    for stream in streams():
        text, _ = offline(offline_model, stream.audio)
        off_wer = wer(stream.reference, text)
        for variant in variants:
            engine = engines[DECODE_THREADS[variant]]
            scheduler = Scheduler({"whisper": engine}, BatchOptions(max_batch=8, max_wait=0.01))
            result = await replay_one(stream, scheduler, f"{stream.name}-{variant}", VARIANTS[variant])
            scheduler.close()
            s = summary([result])
            requests, cpu, unpaced = await cost(engine, stream, variant)
            rows.append((stream, variant, off_wer, s, requests, cpu, unpaced.wer()))
            texts.append((stream.name, variant, result.text()))
            print(
                stream.name,
                variant,
                f"offline {off_wer:.3f}",
                s,
                f"req/s {requests:.2f} cpu {cpu:.3f}",
                flush=True,
            )

    lines = [
        f"# Streaming policy vs offline, before and after issue 12 (tiny.en int8, CPU, {threads} threads)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.streaming`. Paced columns: audio replayed at",
        "real-time pace, latencies in seconds from the true end (or start) of each utterance's voice.",
        "Unpaced columns: each 20 ms chunk waits until its requests are answered, so requests and CPU",
        "seconds per second of audio do not depend on the machine's load (no WebRTC, inference only).",
        "Offline: faster-whisper `transcribe`, beam 5, on the whole stream.",
        "",
        "| stream | variant | offline WER | streaming WER | target | final p50 | final p90 | first partial p50 | partials/final | rewrites/final | requests per audio s | CPU s per audio s | unpaced WER |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stream, variant, off_wer, s, requests, cpu, unpaced_wer in rows:
        lines.append(
            f"| {stream.name} | {variant} | {off_wer:.3f} | {s['wer']:.3f} | <= {1.3 * off_wer + 0.01:.3f} | "
            f"{s['final_p50']:.2f} | {s['final_p90']:.2f} | {s['first_partial_p50']:.2f} | "
            f"{s['partials_per_final']:.1f} | {s['rewrites_per_final']:.2f} | {requests:.2f} | {cpu:.3f} | {unpaced_wer:.3f} |"
        )
    lines += ["", "Streaming finals (paced):", ""]
    for name, variant, text in texts:
        lines.append(f"- {name}, {variant}: {text}")
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/streaming.md"))
    ap.add_argument("--variants", default="before,after")
    args = ap.parse_args()
    asyncio.run(main(args.out, args.variants.split(",")))
