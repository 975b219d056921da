"""A modelled device: Whisper's answers without Whisper, in the time the device would take.

``SimulatedEngine`` stands where ``WhisperEngine`` stands (``nova-voice worker --engine
simulated --device-profile NAME``). Per batch it does the host work for real (log-mel features
once per frame, ``pipeline/features.py``; finding the words; building the transcripts), then
sleeps what a profile of measured costs says the device would take for that batch's shape:

    encode(items) x window / 1000 frames
    + (tokens of the longest item + 4) x step(items x beams)   [beam_step(items) when measured]
    + align(items asking for word times)

each a curve through measured points, linear between them and beyond (``DeviceProfile``). The
words are those a ``Reference`` (audio whose words and times are known, e.g. the benchmark's
LibriVox stream with the times real Whisper aligned) holds where the request's audio lies in
it; the audio is found by its content, so requests from any gateway, session or replay work,
and a session's audio may differ from the reference in its lowest bit (a dither that keeps
sessions from sharing caches). So the batching, Redis, the worker and the policy around it
run as they would on that device, on a machine without one.

Profiles are JSON (``pipeline/engines/profiles/*.json``, or any file): see ``h200-tiny.json``
for the fields and where each figure was measured.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from pipeline.features import LogMel
from pipeline.types import SAMPLE_RATE, TranscribeRequest, Transcript, Word

HOP = 160
FRAME_BUCKETS = (800, 1000, 1500, 2000, 3000)  # as pipeline/engines/whisper.py
SNIPPET = 96  # samples that locate a request's audio in the reference
TERMINAL = (".", "?", "!")


class ProfileError(ValueError):
    """A device profile that cannot be found or read; said in one line."""


def bucket_frames(n_samples: int, min_frames: int = 1000) -> int:
    """The encoder window a request runs in (the same buckets as the real engine)."""
    needed = max(n_samples // HOP + 50, min_frames)
    for frames in sorted({min_frames, *FRAME_BUCKETS}):
        if needed <= frames:
            return frames
    return FRAME_BUCKETS[-1]


@dataclass(frozen=True)
class Curve:
    """Milliseconds as a function of a count, through measured points; linear between and
    beyond them (the last two points' slope), never below zero."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, x: float) -> float:
        if x <= 0:
            return 0.0
        xs, ys = self.xs, self.ys
        if len(xs) == 1:
            return ys[0] * x / xs[0]
        i = int(np.searchsorted(xs, x))
        i = min(max(i, 1), len(xs) - 1)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))

    @classmethod
    def read(cls, data: object, what: str) -> Curve:
        if not isinstance(data, dict) or not data:
            raise ProfileError(f"{what}: a JSON object of count -> milliseconds")
        try:
            points = sorted((float(k), float(v)) for k, v in data.items())
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"{what}: counts and milliseconds are numbers") from exc
        if any(x <= 0 or y < 0 or not math.isfinite(y) for x, y in points):
            raise ProfileError(f"{what}: counts above 0, milliseconds at least 0")
        return cls(tuple(x for x, _ in points), tuple(y for _, y in points))


@dataclass(frozen=True)
class DeviceProfile:
    """What one model costs on one device, by batch shape (milliseconds).

    encode: a batch of N windows of 1000 mel frames (a window of F frames costs F / 1000 of it).
    step: one decoder step over N sequences (items times beams).
    beam_step: one beam-search step over N items (their beams together), where measured
        (``bench.profile``): a beam shares its item's encoder output, so it is not ``step`` at
        items x beams (on this CPU 5 beams of one item cost less a step than 4 items greedy).
    align: word alignment of N items.
    fixed_steps: steps beyond the text's tokens (start-of-transcript sequence, end).
    tokens_per_word: Whisper tokens per word of the reference text.
    """

    name: str
    model: str
    device: str
    encode: Curve
    step: Curve
    align: Curve
    fixed_steps: int = 4
    beam_step: Curve | None = None
    tokens_per_word: float = 1.4
    notes: str = ""

    def batch_ms(self, frames: int, items: int, sequences: int, steps: int, aligned: int) -> dict[str, float]:
        """The device's time for one batch, by stage."""
        if sequences > items and self.beam_step is not None:
            step = self.beam_step(items)  # beams priced by their items, where measured
        else:
            step = self.step(sequences)
        return {
            "encode": self.encode(items) * frames / 1000,
            "generate": steps * step,
            "align": self.align(aligned),
        }

    @classmethod
    def load(cls, name_or_path: str) -> DeviceProfile:
        """A shipped profile by name (``h200-tiny``) or a JSON file."""
        path = Path(name_or_path)
        try:
            if path.suffix == ".json" or path.exists():
                text = path.read_text()
            else:
                shipped = resources.files("pipeline.engines.profiles")
                text = shipped.joinpath(f"{name_or_path}.json").read_text()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, OSError) as exc:
            shipped = ", ".join(profiles())
            raise ProfileError(
                f"no device profile {name_or_path!r}: give a JSON file or one of {shipped}"
            ) from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProfileError(f"device profile {name_or_path!r} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ProfileError(f"device profile {name_or_path!r} is not a JSON object")
        try:
            return cls(
                name=str(data.get("name") or path.stem),
                model=str(data["model"]),
                device=str(data["device"]),
                encode=Curve.read(data["encode_ms"], "encode_ms"),
                step=Curve.read(data["step_ms"], "step_ms"),
                align=Curve.read(data["align_ms"], "align_ms"),
                beam_step=(
                    Curve.read(data["beam_step_ms"], "beam_step_ms") if "beam_step_ms" in data else None
                ),
                fixed_steps=int(data.get("fixed_steps", 4)),
                tokens_per_word=float(data.get("tokens_per_word", 1.4)),
                notes=str(data.get("notes", "")),
            )
        except KeyError as exc:
            raise ProfileError(f"device profile {name_or_path!r} lacks {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"device profile {name_or_path!r}: {exc}") from exc


def profiles() -> list[str]:
    """The names of the shipped profiles."""
    folder = resources.files("pipeline.engines.profiles")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def _halved(pcm: np.ndarray) -> bytes:
    """Samples without their lowest bit, as bytes: what locates audio whatever its dither."""
    return (pcm.astype(np.int16) >> 1).astype("<i2").tobytes()


@dataclass
class Reference:
    """Audio whose words are known: int16 samples at 16 kHz and words timed in its seconds."""

    audio: np.ndarray
    words: tuple[Word, ...]
    _halves: bytes = b""
    _found: dict[int, int] = field(default_factory=dict)
    _ends: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.audio = np.asarray(self.audio, dtype=np.int16)
        self._halves = _halved(self.audio)
        self._ends = np.array([w.end for w in self.words])

    @classmethod
    def load(cls, path: str) -> Reference:
        """An ``.npz`` with ``audio`` (int16) and ``words`` (JSON: [[text, start, end], ...])."""
        try:
            saved = np.load(path)
            words = tuple(Word(str(t), float(a), float(b)) for t, a, b in json.loads(str(saved["words"])))
            return cls(saved["audio"], words)
        except (OSError, KeyError, ValueError) as exc:
            raise ProfileError(f"reference {path!r}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        words = json.dumps([[w.text, w.start, w.end] for w in self.words])
        np.savez(path, audio=self.audio, words=np.array(words))

    def locate(self, pcm: np.ndarray) -> int | None:
        """Where in the reference ``pcm`` begins (its leading zeros, a cut's lead, included), or
        None when it is not there. Found by a stretch of clear sound (near-silence repeats) and
        checked at the other end of the audio."""
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 512)
        if len(loud) == 0:
            loud = np.flatnonzero(pcm >> 1)
            if len(loud) == 0:
                return None
        first = int(loud[0])
        snippet = _halved(pcm[first : first + SNIPPET])
        tail = _halved(pcm[-SNIPPET:])
        key = zlib.crc32(snippet) ^ (len(pcm) << 32) ^ (zlib.crc32(tail) << 64)
        if key in self._found:
            return self._found[key]
        at = -1
        while True:
            at = self._halves.find(snippet, at + 1)
            if at < 0:
                return None
            if at % 2:
                continue
            start = at // 2 - first
            end = 2 * (start + len(pcm))
            if start >= 0 and self._halves[end - len(tail) : end] == tail:
                break
        if len(self._found) > 100_000:
            self._found.clear()
        self._found[key] = start
        return start

    def heard(self, pcm: np.ndarray) -> list[Word] | None:
        """The reference's words in ``pcm`` (those whose middle is inside it: the aligned times
        of a phrase's last word run long), timed from its first sample; None when the audio is
        not in the reference."""
        start = self.locate(pcm)
        if start is None:
            return None
        begin, end = start / SAMPLE_RATE, (start + len(pcm)) / SAMPLE_RATE
        out = []
        for w in self.words[int(np.searchsorted(self._ends, begin)) :]:
            if w.start >= end:
                break
            if begin <= (w.start + w.end) / 2 < end:
                a, b = max(0.0, w.start - begin), min(end - begin, w.end - begin)
                out.append(Word(w.text, a, max(a, b), 0.9))
        return out


@dataclass
class SimulatedTimes:
    """Summed over calls: the requests, the host work done for real, the device time slept."""

    requests: int = 0
    batches: int = 0
    host: float = 0.0
    device: dict[str, float] = field(default_factory=lambda: {"encode": 0.0, "generate": 0.0, "align": 0.0})


class SimulatedEngine:
    """``run_batch`` as the profiled device would take it, with the reference's words."""

    name = "whisper"
    multilingual = False

    def __init__(
        self,
        profile: DeviceProfile,
        reference: Reference | None = None,
        sleep: Callable[[float], None] = time.sleep,
        n_mels: int = 80,
    ) -> None:
        from faster_whisper.feature_extractor import FeatureExtractor  # numpy only: no model

        self.profile = profile
        self.reference = reference
        self._sleep = sleep
        self._logmel = LogMel(FeatureExtractor(feature_size=n_mels).mel_filters)
        self.times = SimulatedTimes()

    def run_batch(self, requests: Sequence[TranscribeRequest]) -> list[Transcript]:
        if not requests:
            return []
        started = time.perf_counter()
        frames = max(bucket_frames(len(r.audio), r.options.min_window_frames) for r in requests)
        for r in requests:
            self._logmel(r.audio[: frames * HOP], frames)  # the host work of the real engine
        heard = [self._words(r) for r in requests]
        out = [self._transcript(r, words) for r, words in zip(requests, heard, strict=True)]
        tokens = max(math.ceil(len(w) * self.profile.tokens_per_word) for w in heard)
        beams = max(1 if r.options.temperature > 0 else r.options.beam_size for r in requests)
        aligned = sum(1 for r, w in zip(requests, heard, strict=True) if r.options.word_timestamps and w)
        device = self.profile.batch_ms(
            frames, len(requests), len(requests) * beams, tokens + self.profile.fixed_steps, aligned
        )
        t = self.times
        t.requests += len(requests)
        t.batches += 1
        t.host += time.perf_counter() - started
        for stage, ms in device.items():
            t.device[stage] += ms / 1000
        self._sleep(sum(device.values()) / 1000)
        return out

    def _words(self, request: TranscribeRequest) -> list[Word]:
        pcm = np.clip(np.rint(request.audio * 32768.0), -32768, 32767).astype(np.int16)
        if self.reference is not None:
            found = self.reference.heard(pcm)
            if found is not None:
                return found
        return _placeholder_words(pcm)

    @staticmethod
    def _transcript(request: TranscribeRequest, words: list[Word]) -> Transcript:
        seconds = len(request.audio) / SAMPLE_RATE
        if words and not request.options.word_timestamps:
            # As the real engine: without alignment, the words are spread evenly over the audio.
            span = seconds / len(words)
            words = [Word(w.text, i * span, (i + 1) * span, w.probability) for i, w in enumerate(words)]
        text = "".join(w.text for w in words).strip()
        return Transcript(
            words=tuple(words),
            language="en",
            no_speech_prob=0.02 if words else 0.9,
            avg_logprob=-0.2 if words else -1.5,
            compression_ratio=max(1.0, len(text) / max(1, len(zlib.compress(text.encode())))),
            timed=request.options.word_timestamps,
            sentence_end=0.9 if text.endswith(TERMINAL) else 0.0,
        )


def _placeholder_words(pcm: np.ndarray) -> list[Word]:
    """Audio the reference does not hold: a word per 0.4 s of sound, so the captions show that
    something was heard (a live microphone against a modelled device)."""
    step = int(0.4 * SAMPLE_RATE)
    out = []
    for i in range(0, len(pcm) - step + 1, step):
        if np.abs(pcm[i : i + step].astype(np.int32)).mean() > 300:
            out.append(Word(f" word{len(out) + 1}", i / SAMPLE_RATE, (i + step) / SAMPLE_RATE, 0.9))
    return out
