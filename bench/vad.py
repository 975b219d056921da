"""Issue 12 benchmark: Silero VAD against webrtcvad on speech in noise and on noise alone.

    python -m bench.vad [--out bench/results/vad.md] [--snr 15]

Streams: LibriVox (5 utterances) and the espeak passage (8), each clean and mixed with pink
noise, a fan, keyboard clicks and music at ``--snr`` dB below the voice; and 30 s of each noise
alone at the level it has in the mix, plus 60 s of digital silence. Per VAD engine, with the
segmenter options the server uses:

- missed: share of the true speech time (corpus boundaries) outside the audio of every VAD
  utterance (pre-roll and end silence included, as the policy gets it);
- pieces: VAD utterances per true utterance (1.0 is whole; more is speech chopped into pieces);
- pauses kept open: share of the 1-1.2 s pauses between utterances (less pre-roll and end
  silence) that the VAD still calls speech: utterances run together, finals come late;
- open in noise: share of the noise-only time inside an utterance, and its longest utterance;
- CPU: process CPU seconds per second of audio (one stream, scored frame batch by batch).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.corpus import Stream, espeak_passage, librivox
from bench.harness import cpu_seconds, write_report
from bench.noise import NOISES, mix, noise_only, speech_rms
from pipeline.vad import VadOptions, VadSegmenter

RATE = 16_000
CHUNK = 320  # 20 ms, as WebRTC delivers it


def segments(options: VadOptions, audio: np.ndarray) -> tuple[list[tuple[float, float]], float]:
    """The audio each VAD utterance hands to the policy, as (start, end) seconds (pre-roll and
    end silence included: what Whisper hears), and the CPU seconds it took."""
    seg = VadSegmenter(options)
    out: list[tuple[float, float]] = []
    t = 0
    start: float | None = None
    cpu0 = cpu_seconds()
    for i in range(0, len(audio), CHUNK):
        for frame in seg.push(audio[i : i + CHUNK]):
            t += len(frame.samples)
            if frame.started is not None:
                start = (t - len(frame.started)) / RATE
            if frame.ended and start is not None:
                out.append((start, t / RATE))
                start = None
    if start is not None:
        out.append((start, t / RATE))
    return out, cpu_seconds() - cpu0


def covered(a: float, b: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, e) - max(a, s)) for s, e in spans)


def speech_scores(stream: Stream, spans: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(share of speech missed, VAD pieces per utterance, share of the pauses kept open)."""
    total = sum(u.end - u.start for u in stream.utterances)
    missed = total - sum(covered(u.start, u.end, spans) for u in stream.utterances)
    pieces = [sum(1 for s, e in spans if s < u.end and e > u.start) for u in stream.utterances]
    # The pauses between utterances, less the pre-roll before and the end silence after.
    gaps = [
        (a.end + 0.6, b.start - 0.45) for a, b in zip(stream.utterances, stream.utterances[1:], strict=False)
    ]
    gaps = [(a, b) for a, b in gaps if b > a]
    gap_total = sum(b - a for a, b in gaps)
    gap_open = sum(covered(a, b, spans) for a, b in gaps) / gap_total if gap_total else 0.0
    return missed / total, float(np.mean(pieces)), gap_open


def main(out: Path, snr: float) -> None:
    engines = {"webrtc": VadOptions(engine="webrtc"), "silero": VadOptions(engine="silero")}
    streams = [librivox(), espeak_passage()]
    rows: list[str] = []
    noise_rows: list[str] = []
    cpu: dict[str, list[float]] = {k: [] for k in engines}
    for name in ["clean", *NOISES]:
        mixed = [
            s
            if name == "clean"
            else Stream(s.name, mix(s.audio, NOISES[name](len(s.audio) / RATE), snr), s.utterances)
            for s in streams
        ]
        for engine, options in engines.items():
            missed, pieces, gaps = [], [], []
            for s in mixed:
                spans, secs = segments(options, s.audio)
                cpu[engine].append(secs / (len(s.audio) / RATE))
                m, p, g = speech_scores(s, spans)
                missed.append(m)
                pieces.append(p)
                gaps.append(g)
            rows.append(
                f"| {name} | {engine} | {100 * np.mean(missed):.1f} % | {np.mean(pieces):.2f} | {100 * np.mean(gaps):.0f} % |"
            )
            print(rows[-1], flush=True)
    level = float(np.mean([speech_rms(s.audio) for s in streams])) / (10 ** (snr / 20))
    for name, make in [("silence", None), *NOISES.items()]:
        audio = np.zeros(60 * RATE, np.int16) if make is None else noise_only(make(30.0), level)
        for engine, options in engines.items():
            spans, _ = segments(options, audio)
            length = len(audio) / RATE
            open_share = sum(e - s for s, e in spans) / length  # end silence included
            longest = max((e - s for s, e in spans), default=0.0)
            noise_rows.append(
                f"| {name} | {engine} | {length:.0f} | {len(spans)} | {100 * open_share:.0f} % | {longest:.1f} |"
            )
            print(noise_rows[-1], flush=True)
    lines = [
        f"# VAD: Silero v6 against webrtcvad, speech in noise at {snr:.0f} dB SNR",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.vad`. Segmenter options as the server's",
        "(start 90 ms of voice in 150 ms, end after 500 ms below; Silero thresholds 0.5 / 0.35, webrtcvad",
        "mode 2). True speech: the corpus' utterance boundaries (LibriVox 5, espeak 8 utterances).",
        "",
        "## Speech in noise",
        "",
        "| noise | VAD | speech missed | VAD pieces per utterance | pauses between utterances kept open |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "## Noise alone (at the level it has in the mixes above)",
        "",
        "| noise | VAD | seconds | utterances opened | time inside an utterance | longest utterance s |",
        "|---|---|---|---|---|---|",
        *noise_rows,
        "",
        "## Cost",
        "",
        "| VAD | CPU s per s of audio | % of one core per stream |",
        "|---|---|---|",
        *[f"| {e} | {np.mean(v):.4f} | {100 * np.mean(v):.2f} |" for e, v in cpu.items()],
        "",
    ]
    write_report(out, lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/vad.md"))
    ap.add_argument("--snr", type=float, default=15.0)
    args = ap.parse_args()
    main(args.out, args.snr)
