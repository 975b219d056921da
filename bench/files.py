"""Issue 33 benchmark: files beside live captions, never in front of them.

    python -m bench.files [--sessions 6] [--minutes 10] [--rounds 2] [--out bench/results/files.md]

Starts ``nova-voice serve`` as its own process and, in alternating rounds, publishes the LibriVox
stream from ``--sessions`` aiortc WHIP clients at real-time pace (bench/e2e.py's sessions), once
alone and once with a ``--minutes`` recording (the same speech over and over) sent at the same
moment to the OpenAI-compatible ``POST /v1/audio/transcriptions``. Reports each round's live
final latency (p50, p90 over all, and the worst session's p90), WER, and for the file: when it
finished, its throughput in audio seconds per second while the live sessions ran and over the
whole job, and its WER. Then the file alone (no live sessions), for its full-speed throughput.
The acceptance bound is the worst session's p90 with the file within 1.2x of without it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.corpus import RATE, librivox, silence, write_wav
from bench.e2e import run_sessions, start_server
from bench.harness import write_report
from bench.scoring import wer

BOUND = 1.2


def recording(minutes: float, folder: Path) -> tuple[Path, str, float]:
    """The LibriVox stream repeated to ``minutes``, as FLAC; its reference and duration."""
    stream = librivox()
    copies = max(1, int(np.ceil(minutes * 60 / (len(stream.audio) / RATE))))
    audio = np.concatenate([stream.audio] * copies)[: int(minutes * 60 * RATE)]
    wav = write_wav(folder / "long.wav", audio)
    flac = folder / "long.flac"
    subprocess.run(["sox", str(wav), str(flac)], check=True)
    whole = len(audio) / RATE
    kept = [
        u.text
        for i in range(copies)
        for u in stream.utterances
        if i * len(stream.audio) / RATE + u.end < whole
    ]
    return flac, " ".join(kept), whole


async def transcribe(base: str, path: Path) -> tuple[float, str]:
    """(seconds it took, text) of one OpenAI-style file transcription."""
    started = time.monotonic()
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("response_format", "json")
    form.add_field("file", path.read_bytes(), filename=path.name, content_type="audio/flac")
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(base + "/v1/audio/transcriptions", data=form) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200 or "text" not in body:
                raise RuntimeError(f"file job failed: {resp.status} {body}")
    return time.monotonic() - started, body["text"]


async def live_round(base: str, pid: int, sessions: int, file: Path | None, name: str) -> dict[str, Any]:
    stream = librivox()
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav(Path(tmp) / "live.wav", np.concatenate([stream.audio, silence(1.5)]))
        job = asyncio.ensure_future(transcribe(base, file)) if file is not None else None
        started = time.monotonic()
        live = await run_sessions(base, pid, sessions, stream, wav, prefix=name)
        live_wall = time.monotonic() - started
        out: dict[str, Any] = {"live": live, "live_wall": live_wall}
        if job is not None:
            finished_during_live = job.done()
            seconds, text = await job
            out.update(file_seconds=seconds, file_text=text, file_during_live=finished_during_live)
    return out


async def main(out: Path, sessions: int, minutes: float, rounds: int, flags: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="nova-files-"))
    path, reference, duration = recording(minutes, folder)
    server, base = start_server(flags)
    rows: list[str] = []
    ratios = []
    pooled: dict[str, list[float]] = {"alone": [], "mixed": []}
    try:
        await live_round(base, server.pid, 1, None, "warm")  # warm-up: models paged in, first peers made
        for r in range(rounds):
            alone = await live_round(base, server.pid, sessions, None, f"alone{r}-")
            mixed = await live_round(base, server.pid, sessions, path, f"mixed{r}-")
            a, m = alone["live"], mixed["live"]
            pooled["alone"] += a["latencies"]
            pooled["mixed"] += m["latencies"]
            ratio = m["worst_p90"] / a["worst_p90"]
            ratios.append(ratio)
            file_wer = wer(reference, mixed["file_text"])
            rows.append(
                f"| {r + 1} | without file | {a['final_p50']:.2f} | {a['final_p90']:.2f} | {a['worst_p90']:.2f} | "
                f"{a['wer']:.3f} | {a['missed']} | | | |"
            )
            rows.append(
                f"| {r + 1} | with the file | {m['final_p50']:.2f} | {m['final_p90']:.2f} | {m['worst_p90']:.2f} | "
                f"{m['wer']:.3f} | {m['missed']} | {mixed['file_seconds']:.0f} s | "
                f"{duration / mixed['file_seconds']:.1f} | {file_wer:.3f} |"
            )
            print(rows[-2], rows[-1], f"ratio {ratio:.2f}", flush=True)
        solo_seconds, solo_text = await transcribe(base, path)
    finally:
        server.terminate()
        server.wait(30)
    median_ratio = float(np.median(ratios))
    p90 = {k: float(np.percentile(v, 90)) for k, v in pooled.items()}
    ok = median_ratio <= BOUND
    lines = [
        f"# Files beside live captions ({sessions} live WHIP sessions + a {minutes:g}-minute file)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.files --sessions {sessions} --minutes {minutes:g}"
        f" --rounds {rounds}`{' ' + ' '.join(flags) if flags else ''}: tiny.en int8 on this 2-core CPU machine, "
        "shared with four other engineers' work (timings are noisy: rounds alternate without and with the file, "
        "in one server process). Live: the 32 s LibriVox stream from each aiortc publisher at real-time pace; "
        "latency in seconds from the end of each utterance's voice to its final. File: the same speech "
        f"repeated to {duration:.0f} s, FLAC, `POST /v1/audio/transcriptions` sent as the publishers start.",
        "",
        "| round | live sessions | final p50 | final p90 | worst session p90 | live WER | missed finals "
        "| file done in | file audio s/s | file WER |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Worst-session p90 with/without the file, per round: {', '.join(f'{x:.2f}' for x in ratios)}; "
        f"median {median_ratio:.2f} (bound {BOUND}x: {'met' if ok else 'NOT met'}). Every final of every round "
        f"pooled: p90 {p90['mixed']:.2f} s with the file, {p90['alone']:.2f} s without "
        f"({p90['mixed'] / p90['alone']:.2f}x). A worst session's p90 is the largest of ~30 latencies, so one "
        "slow moment of this shared machine moves it; the pooled p90 and the median over rounds are steadier.",
        "",
        f"The file alone, no live session: {solo_seconds:.0f} s for {duration:.0f} s of audio, "
        f"{duration / solo_seconds:.1f} audio s/s, WER {wer(reference, solo_text):.3f}.",
    ]
    write_report(out, lines, show=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/files.md"))
    parser.add_argument("--flags", default="", help="more `serve` flags, e.g. '--file-chunk 10'")
    args = parser.parse_args()
    asyncio.run(main(args.out, args.sessions, args.minutes, args.rounds, args.flags.split()))
