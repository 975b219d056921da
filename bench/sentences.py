"""Issue 12 benchmark: does Whisper's full stop tell a sentence end from a pause in mid-sentence?

    python -m bench.sentences [--out bench/results/sentences.md]

Pieces of speech as a final sees them (400 ms lead-in, 500 ms of silence after), decoded as
finals are (beam 5, word times, earlier finals as the prompt): each LibriVox sentence cut at
word boundaries a third, half and two thirds of the way in ("mid"), and whole ("end"); and
espeak sentences spoken with an 800 ms SSML break in the middle, cut at the break ("mid") and
whole ("end"). For each: whether the text ends with . ? !, and the probability Whisper gave that
mark (``Transcript.sentence_end``). The policy waits for more speech when the mark is missing
or below its thresholds (``PolicyOptions.sentence_sure`` and ``sentence_likely``); the table
shows what each threshold holds back.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from bench.corpus import LIBRIVOX
from bench.harness import write_report
from pipeline.audio import read_audio
from pipeline.engines.whisper import WhisperConfig, WhisperEngine
from pipeline.models import resolve_whisper
from pipeline.policy_options import FINAL_DECODE
from pipeline.text import ends_sentence
from pipeline.types import TranscribeRequest, Transcript

RATE = 16_000
SPLIT_SENTENCES = [
    ("Today we will talk about the new release", "and the budget for next year."),
    ("The design review is scheduled", "for Thursday afternoon."),
    ("Please send your questions", "to the project channel before Friday."),
    ("Our customers asked for better search", "and faster loading pages."),
    ("We hired two new engineers", "who will join the platform team next month."),
    ("The server migration finished last weekend", "without any downtime."),
    ("Thank you all for your hard work", "during this busy quarter."),
    ("In the morning the team", "reviewed every open ticket."),
    ("If the build fails again", "we will roll back the change."),
    ("My brother and I", "drove to the coast on Sunday."),
    ("The results of the survey", "were better than we expected."),
    ("When the rain stopped", "the children went outside to play."),
]


def final(engine: WhisperEngine, audio: np.ndarray, prompt: str) -> Transcript:
    padded = np.concatenate([np.zeros(int(0.4 * RATE), np.int16), audio, np.zeros(int(0.5 * RATE), np.int16)])
    (t,) = engine.run_batch([TranscribeRequest(padded.astype(np.float32) / 32768, prompt, FINAL_DECODE)])
    return t


def espeak_split(a: str, b: str, path: Path) -> tuple[np.ndarray, int]:
    """The sentence with a break in the middle, and the sample where the break starts."""
    ssml = f'<speak>{a} <break time="800ms"/> {b}</speak>'
    subprocess.run(["espeak-ng", "-m", "-v", "en-us", "-s", "150", "-w", str(path), ssml], check=True)
    audio = read_audio(str(path))
    rms = np.sqrt(np.mean(audio[: len(audio) // 480 * 480].astype(np.float64).reshape(-1, 480) ** 2, axis=1))
    quiet = rms < 100
    best, i = (0, 0), 0
    while i < len(quiet):
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if j - i > best[1] - best[0] and i > 0 and j < len(quiet):
            best = (i, j)
        i = max(j, i + 1)
    return audio, best[0] * 480


def main(out: Path) -> None:
    path = resolve_whisper("tiny.en").path
    engine = WhisperEngine(WhisperConfig(path, cpu_threads=os.cpu_count() or 1))
    aligner = WhisperModel(path, device="cpu", compute_type="int8")
    rows: list[tuple[str, str, Transcript]] = []
    prompt = ""
    with tempfile.TemporaryDirectory() as tmp:
        for a, b in SPLIT_SENTENCES:
            audio, cut = espeak_split(a, b, Path(tmp) / "s.wav")
            rows.append(("mid", "espeak", final(engine, audio[:cut], prompt)))
            whole = final(engine, audio, prompt)
            rows.append(("end", "espeak", whole))
            prompt = (prompt + " " + whole.text)[-200:]
    prompt = ""
    for clip in LIBRIVOX:
        audio = read_audio(str(clip.path))
        segments, _ = aligner.transcribe(
            audio.astype(np.float32) / 32768, language="en", word_timestamps=True
        )
        words = [w for s in segments for w in s.words]
        for k in (len(words) // 3, len(words) // 2, 2 * len(words) // 3):
            cut = int((words[k - 1].end + words[k].start) / 2 * RATE)
            rows.append(("mid", "librivox", final(engine, audio[:cut], prompt)))
        whole = final(engine, audio, prompt)
        rows.append(("end", "librivox", whole))
        prompt = (prompt + " " + whole.text)[-200:]

    summary = []
    for threshold in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9):
        held = {
            k: sum(1 for kind, _, t in rows if kind == k and not ends_sentence(t, threshold))
            for k in ("mid", "end")
        }
        n = {k: sum(1 for kind, _, _ in rows if kind == k) for k in ("mid", "end")}
        summary.append(f"| {threshold:.1f} | {held['mid']} of {n['mid']} | {held['end']} of {n['end']} |")
    lines = [
        "# Sentence ends: Whisper's full stop after a mid-sentence pause and at a true end (tiny.en int8)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.sentences`. Pieces decoded as finals are.",
        "",
        "| threshold | mid-sentence pieces held back (good) | sentence ends held back (cost: waits up to 0.7 s) |",
        "|---|---|---|",
        *summary,
        "",
        "The policy closes a final at once from 0.9, waits half its sentence wait (0.35 s) from 0.7, and",
        "the whole wait (0.7 s) below 0.7 or without a mark.",
        "",
        "| piece | source | ends with . ? ! | probability of the mark | last word's probability | text |",
        "|---|---|---|---|---|---|",
        *[
            f"| {kind} | {src} | {'yes' if t.text.rstrip(chr(34)).endswith(('.', '?', '!')) else 'no'} | "
            f"{t.sentence_end:.2f} | {t.words[-1].probability if t.words else 0:.2f} | {t.text} |"
            for kind, src, t in rows
        ],
        "",
    ]
    write_report(out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/sentences.md"))
    main(ap.parse_args().out)
