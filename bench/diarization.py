"""Speaker turns on one microphone: who said each word, what it costs, and what it changes.

    python -m bench.diarization [--out bench/results/diarization.md]

1. Thresholds are read off the dev voices (bench/panel.py), never the panel.
2. The held-out panel (3 real people taking turns of 2-10 s, some 0.25 s apart so that one
   final spans two of them) runs through the real caption session, Whisper tiny.en and the
   speaker engine on one scheduler, with speaker turns and without: the share of words
   captioned under the right person (best mapping of labels to people), the number of labels,
   a DER over word time, and both WERs. Allison speaks first on her own named microphone
   (other clips), so the panel should call her by name.
3. The engine's cost per voiced second, one session and sixteen sessions' windows per call.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import time
from pathlib import Path

import numpy as np

from bench.harness import CHUNK, write_report
from bench.panel import Panel, available, dev_voices, named_mic, panel
from bench.scoring import wer
from pipeline.backend import LocalBackend
from pipeline.batching import BatchOptions
from pipeline.clusterer import VoiceClusterer, unit
from pipeline.engines.speaker import SpeakerConfig, SpeakerEngine
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.scheduler import Scheduler
from pipeline.session import CaptionSession, caption_policy
from pipeline.turns import SPLIT_SEGMENTS, SpeakerTurns, TurnOptions
from pipeline.types import Caption, EmbedRequest


async def run_session(
    backend: LocalBackend, key: str, audio: np.ndarray, turns: SpeakerTurns | None, paced: bool = False
) -> list[Caption]:
    """Unpaced: each chunk waits for what it caused, so the result does not hang on load.
    Paced: in real time, as a publisher sends it (a final then waits 0.3 s at most)."""
    finals: list[Caption] = []

    def on_event(event: object) -> None:
        if isinstance(event, Caption) and event.final and event.text:
            finals.append(event)

    backend.open_session(key)
    session = CaptionSession(key, caption_policy(), backend, on_event, turns=turns)
    t0 = time.monotonic()
    for i in range(0, len(audio), CHUNK * 10):
        session.push(audio[i : i + CHUNK * 10])
        if not paced:
            await session.settled()
            continue
        ahead = t0 + (i + CHUNK * 10) / 16_000 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)  # real-time pacing of the replay, not synchronisation
    await session.close()
    return finals


def attribution(p: Panel, finals: list[Caption]) -> dict[str, float]:
    """Words under the right person with the best mapping of labels to people; a DER over
    word time (each word's span labelled by its caption against who truly spoke there)."""
    words = [(w, f.speaker or "?") for f in finals for w in f.words]
    labels = sorted({s for _, s in words})
    people = sorted(p.people)
    truth = [p.who((w.start + w.end) / 2) for w, _ in words]
    best, mapping = -1, {}
    for perm in itertools.permutations(people + ["-"] * max(0, len(labels) - len(people)), len(labels)):
        m = dict(zip(labels, perm, strict=True))
        right = sum(m[s] == t for (_, s), t in zip(words, truth, strict=True))
        if right > best:
            best, mapping = right, m
    speech = sum(t.end - t.start for t in p.turns)
    confused = sum(w.end - w.start for (w, s), t in zip(words, truth, strict=True) if mapping[s] != t)
    covered = sum(w.end - w.start for w, _ in words)
    missed = max(0.0, speech - covered)
    return {
        "words": len(words),
        "right": best / max(1, len(words)),
        "labels": len(labels),
        "der": (confused + missed) / speech,
        "confusion": confused / speech,
        "mapping": mapping,  # type: ignore[dict-item]
    }


def dev_thresholds(engine: SpeakerEngine) -> list[str]:
    voices = dev_voices()
    n = int(2.0 * 16_000)
    stretches: list[tuple[str, np.ndarray]] = []
    for who, clips in voices.items():
        for c in clips:
            for i in range(0, len(c) - n + 1, n):
                if np.abs(c[i : i + n]).mean() < 300:
                    continue
                (e,) = engine.run_batch([EmbedRequest(c[i : i + n])])
                stretches.append((who, unit(e.vectors.mean(axis=0))))
    centroids = {w: unit(np.mean([e for x, e in stretches if x == w], axis=0)) for w in voices}
    lines = ["| 2 s stretches of | " + " | ".join(centroids) + " |", "|---" * (len(centroids) + 1) + "|"]
    for w in voices:
        own = [float(e @ centroids[w]) for x, e in stretches if x == w]
        row = [f"{np.mean([float(e @ centroids[v]) for x, e in stretches if x == w]):.2f}" for v in voices]
        lines.append(f"| {w} (min to own {min(own):.2f}) | " + " | ".join(row) + " |")
    return lines


def cost(engine: SpeakerEngine, audio: np.ndarray) -> list[str]:
    """Seconds of CPU per voiced second: windows of one session alone, and of 16 per call."""
    w = engine.spec.window_samples
    s = engine.spec.stride_samples
    windows = [audio[i : i + w] for i in range(0, len(audio) - w, s)][:64]
    voiced = len(windows) * s / 16_000
    rows = []
    for batch in (1, 16, 64):
        reqs = [EmbedRequest(x) for x in windows]
        engine.run_batch(reqs[:batch])  # warm
        t0 = time.perf_counter()
        for i in range(0, len(reqs), batch):
            engine.run_batch(reqs[i : i + batch])
        took = time.perf_counter() - t0
        rows.append(f"| {batch} | {took / len(reqs) * 1000:.2f} | {took / voiced * 1000:.1f} |")
    return ["| windows per call | ms per window | ms per voiced second |", "|---|---|---|", *rows]


async def main_async(out: Path) -> None:
    if not available():
        raise SystemExit("needs pocketsphinx-testdata and asterisk-core-sounds-en-wav (install.sh --dev)")
    threads = os.cpu_count() or 1
    whisper = WhisperEngine(WhisperConfig(resolve_whisper("tiny.en").path, cpu_threads=threads))
    t0 = time.perf_counter()
    # As the server runs it (server/inference.py): one thread, a scheduler of its own.
    speaker = SpeakerEngine(SpeakerConfig(cpu_threads=1))
    loaded = time.perf_counter() - t0
    scheduler = Scheduler({"whisper": whisper}, BatchOptions(max_batch=8, max_wait=0.01, max_partial_batch=3))
    own = Scheduler({"speaker": speaker}, BatchOptions(max_batch=64, max_wait=0.01))
    backend = LocalBackend([scheduler], engine_schedulers={"speaker": own})
    p = panel()
    # Allison on her own named microphone first: the room learns her voice.
    learner = SpeakerTurns(learning=True)
    pauses = [np.concatenate([c.audio, np.zeros(16_000, np.int16)]) for c in named_mic()]
    await run_session(backend, "allison-mic", np.concatenate(pauses), learner)
    print_ = learner.voiceprint()
    known = {"Allison": print_} if print_ is not None else {}
    rows = []
    results = {}
    late = {}
    for variant in ("without", "with", "with, no named mic", "with, in real time"):
        turns = None
        if variant != "without":
            room = known if variant != "with, no named mic" else {}
            # Unpaced, a final waits for all its windows (the labels do not hang on this
            # machine's load); in real time, 0.3 s at most, as the server runs it.
            hold = TurnOptions().hold if variant == "with, in real time" else 60.0
            turns = SpeakerTurns(VoiceClusterer(known=lambda room=room: room), TurnOptions(hold=hold))
        t = time.perf_counter()
        paced = variant == "with, in real time"
        finals = await run_session(backend, f"panel-{variant}", p.audio, turns, paced)
        if turns is not None:
            late[variant] = f"{turns.late} of {len(finals)}"
        took = time.perf_counter() - t
        print(f"panel {variant}: {took:.1f} s", flush=True)
        text = " ".join(f.text for f in finals)
        results[variant] = (finals, wer(p.reference, text), took)
    base_wer = results["without"][1]
    for variant, (finals, w, took) in results.items():
        if variant == "without":
            rows.append(f"| {variant} | {w:.3f} | - | - | - | - | - | {took:.1f} |")
            continue
        a = attribution(p, finals)
        names = ", ".join(f"{k} = {v}" for k, v in sorted(a["mapping"].items()))  # type: ignore[attr-defined]
        rows.append(
            f"| {variant} | {w:.3f} ({w - base_wer:+.3f}) | {a['right']:.1%} of {a['words']} | "
            f"{a['labels']} ({names}) | {a['der']:.1%} | {a['confusion']:.1%} | {late[variant]} | {took:.1f} |"
        )
    cut = sum(1 for f in results["with"][0] if f.segment >= SPLIT_SEGMENTS)
    lines = [
        "# Speaker turns on one microphone (`python -m bench.diarization`)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other "
        "engineers' work (times are noisy; the variants ran in one process, one after the other).",
        "",
        "## The held-out panel",
        "",
        f"{len(p.turns)} turns of 2-10 s by {len(p.people)} real people ({', '.join(sorted(p.people))}; "
        f"bench/panel.py), {len(p.audio) / 16000:.0f} s in one telephone band and loudness; 6 of 12 "
        "changes 0.25 s apart (one utterance for the VAD: the final must be cut). Whisper tiny.en, "
        "the caption session as the server runs it, unpaced. Allison spoke first on her own named "
        "microphone (three other clips, 14.5 s).",
        "",
        "| speaker turns | WER | words under the right person | labels | DER (word time) | confusion | "
        "finals labelled before all their windows were in | seconds |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Finals cut at a change of voice: {cut}.",
        "",
        "## Thresholds, from the dev voices only",
        "",
        "Mean cosine of 2 s stretches to each voice's centroid (bench/panel.py `dev_voices`):",
        "",
        *dev_thresholds(speaker),
        "",
        f"## Cost of the embedding model on this CPU, on one thread as the server runs it (loaded in {loaded:.2f} s)",
        "",
        *cost(speaker, p.audio),
        "",
    ]
    scheduler.close()
    own.close()
    write_report(out, lines, show=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results/diarization.md"))
    args = parser.parse_args()
    asyncio.run(main_async(args.out))


if __name__ == "__main__":
    main()
