"""A recording transcribed as a whole (the OpenAI and Deepgram compatible file APIs), on the same
schedulers as live captions but below them.

The audio is split by the VAD (Silero, as faster-whisper's batched pipeline does) into chunks of
at most ``max_chunk`` seconds, cut in pauses; each chunk is one request at file priority
(``pipeline.batching.Priority.FILE``): it runs only when no live final or partial waits, so a
long file fills the gaps live sessions leave and never stands in front of them. Chunks go in
order, ``window`` at a time; a chunk's prompt is the text of the chunks before it (Whisper's own
``condition_on_previous_text``). Each chunk's words come back timed on the whole recording and
cut into sentence segments, which the caller can send on as they come (streamed answers).

What is dropped or decoded again follows the live finals' rules (``pipeline.text``): text
Whisper invents on non-speech is dropped, a loop or a decode it barely believes is decoded once
more by sampling, and repeated phrases are collapsed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np

from pipeline.backend import InferenceBackend
from pipeline.errors import SchedulerClosed
from pipeline.text import TERMINAL, bad_decode, collapse_loops, is_hallucination, join_words
from pipeline.types import SAMPLE_RATE, DecodeOptions, TranscribeRequest, Transcript, Word

# The prompt a chunk gets from the text before it, in characters: about Whisper's 223 tokens.
PROMPT_CHARS = 600
# A segment closes at a sentence end, or at a pause this long between words, or at this length.
SEGMENT_PAUSE_S = 1.0
SEGMENT_MAX_S = 15.0
# A full stop after these (and after a single letter, an initial) does not end a sentence.
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "etc", "mt", "no", "fig"})


class FileJobFailed(RuntimeError):
    """The job cannot finish: the scheduler closed (shutdown) or a chunk failed twice."""


@dataclass(frozen=True)
class FileOptions:
    """How a recording is transcribed.

    max_chunk: seconds of audio per request; a live request that arrives while a chunk runs
        waits for it, so shorter chunks yield sooner (bench/results/files.md measures it).
    max_gap: a pause longer than this between two stretches of speech starts a new chunk (its
        silence is not encoded).
    window: chunks in flight at once; one keeps the previous text as each chunk's prompt.
    decode: beam, word times, language, task and temperature of every chunk.
    prompt: text before the recording (OpenAI's ``prompt``); hotwords: terms to hear right.
    """

    max_chunk: float = 15.0
    max_gap: float = 2.0
    window: int = 1
    decode: DecodeOptions = DecodeOptions(beam_size=5, word_timestamps=True)
    prompt: str = ""
    hotwords: str = ""


@dataclass(frozen=True)
class Segment:
    """A sentence (or a stretch between pauses) of the recording, timed on the whole of it."""

    id: int
    start: float
    end: float
    words: tuple[Word, ...]
    language: str
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0

    @property
    def text(self) -> str:
        return join_words(self.words)


def speech_spans(audio: np.ndarray, max_chunk: float) -> list[tuple[int, int]]:
    """Where the recording speaks, as (first, end) samples: Silero VAD v6 over the whole of it
    (faster-whisper's ``get_speech_timestamps``, padded 400 ms), no stretch over ``max_chunk``."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(audio) == 0:
        return []
    floats = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio
    options = VadOptions(min_silence_duration_ms=500, speech_pad_ms=400, max_speech_duration_s=max_chunk)
    return [(int(s["start"]), int(s["end"])) for s in get_speech_timestamps(floats, options, SAMPLE_RATE)]


def plan_chunks(spans: list[tuple[int, int]], max_samples: int, max_gap: int) -> list[tuple[int, int]]:
    """Consecutive speech spans merged into chunks of at most ``max_samples`` whose pauses are
    at most ``max_gap`` samples; a span longer than a chunk is cut into equal parts. Chunks never
    overlap and keep the spans' order."""
    chunks: list[tuple[int, int]] = []
    for first, end in spans:
        if end <= first:
            continue
        if chunks:
            a, b = chunks[-1]
            if first - b <= max_gap and end - a <= max_samples and first >= b:
                chunks[-1] = (a, end)
                continue
        if end - first <= max_samples:
            chunks.append((first, end))
            continue
        parts = -(-(end - first) // max_samples)
        step = -(-(end - first) // parts)
        chunks += [(s, min(end, s + step)) for s in range(first, end, step)]
    return chunks


def ends_sentence(text: str) -> bool:
    """Whether a word closes a sentence: a mark of the end, not an abbreviation's full stop."""
    text = text.strip().rstrip("\"')]")
    if not text.endswith(TERMINAL):
        return False
    stem = text.rstrip(".?!").lower()
    return not (text.endswith(".") and (stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())))


def segments_of(
    words: list[Word], first_id: int, language: str, t: Transcript, temperature: float
) -> list[Segment]:
    """A chunk's words (timed on the recording) cut into segments: at a sentence end, at a pause
    of ``SEGMENT_PAUSE_S``, or past ``SEGMENT_MAX_S``."""
    out: list[Segment] = []
    run: list[Word] = []

    def close() -> None:
        if run:
            out.append(
                Segment(
                    first_id + len(out),
                    run[0].start,
                    run[-1].end,
                    tuple(run),
                    language,
                    t.avg_logprob,
                    t.compression_ratio,
                    t.no_speech_prob,
                    temperature,
                )  # fmt: skip
            )
            run.clear()

    for word in words:
        if run and (word.start - run[-1].end >= SEGMENT_PAUSE_S or word.end - run[0].start > SEGMENT_MAX_S):
            close()
        run.append(word)
        if ends_sentence(word.text):
            close()
    close()
    return out


@dataclass
class _Chunk:
    index: int
    first: int
    end: int
    task: asyncio.Task[tuple[Transcript, float]] | None = None


class FileJob:
    """One recording's transcription: ``async for segment in job.run(audio)``."""

    def __init__(
        self,
        backend: InferenceBackend,
        options: FileOptions,
        key: Hashable | None = None,
        executor: Executor | None = None,
    ) -> None:
        """``executor`` runs the VAD over the recording (a low-priority thread, so a long file's
        host work does not take the CPU from live sessions' decoding and VAD)."""
        self.backend = backend
        self.executor = executor
        self.options = options
        self.key = key if key is not None else f"file-{uuid.uuid4().hex[:12]}"
        self.duration = 0.0  # seconds of audio, once run() has it
        self.language = options.decode.language or "en"
        self.chunks = 0
        self.done_chunks = 0
        self._texts: dict[int, str] = {}

    def _prompt(self, index: int) -> str:
        """The user's prompt and the text of every chunk before ``index`` that has come back."""
        before = []
        for i in range(index - 1, -1, -1):
            if i not in self._texts:
                break
            before.append(self._texts[i])
        text = " ".join(t for t in [self.options.prompt, *reversed(before)] if t)
        return text[-PROMPT_CHARS:]

    async def _decode(self, audio: np.ndarray, prompt: str) -> tuple[Transcript, float]:
        """One chunk, with Whisper's fallback: a loop or a doubtful decode is sampled once more."""
        options = self.options.decode
        request = TranscribeRequest(
            audio=audio.astype(np.float32) / 32768.0,
            prompt=prompt,
            options=options,
            hotwords=self.options.hotwords,
        )
        result = await self._submit(request)
        if bad_decode(result, options) and options.temperature == 0.0:
            retry = replace(options, temperature=0.4, beam_size=1)
            again = await self._submit(replace(request, options=retry))
            if not bad_decode(again, retry):
                return again, retry.temperature
        return result, options.temperature

    async def _submit(self, request: TranscribeRequest) -> Transcript:
        for attempt in range(2):
            try:
                return await self.backend.submit("whisper", self.key, request, True, background=True)
            except SchedulerClosed as exc:
                raise FileJobFailed(f"transcription stopped: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - an engine error is tried once more, then said
                if attempt:
                    raise FileJobFailed(
                        f"a chunk of the recording failed twice: {type(exc).__name__}"
                    ) from exc
        raise AssertionError("unreachable")

    async def run(self, audio: np.ndarray) -> AsyncIterator[Segment]:
        """Segments in order as their chunks come back. ``audio``: 16 kHz mono int16."""
        self.duration = len(audio) / SAMPLE_RATE
        loop = asyncio.get_running_loop()
        spans = await loop.run_in_executor(self.executor, speech_spans, audio, self.options.max_chunk)
        plan = plan_chunks(
            spans, int(self.options.max_chunk * SAMPLE_RATE), int(self.options.max_gap * SAMPLE_RATE)
        )
        self.chunks = len(plan)
        chunks = [_Chunk(i, a, b) for i, (a, b) in enumerate(plan)]
        window = max(1, self.options.window)
        next_id = 0
        try:
            for i, chunk in enumerate(chunks):
                for ahead in chunks[i : i + window]:
                    if ahead.task is None:
                        piece = audio[ahead.first : ahead.end]
                        ahead.task = asyncio.ensure_future(self._decode(piece, self._prompt(ahead.index)))
                assert chunk.task is not None
                transcript, temperature = await chunk.task
                seconds = (chunk.end - chunk.first) / SAMPLE_RATE
                words = self._words(transcript, seconds, chunk.first / SAMPLE_RATE)
                self._texts[chunk.index] = join_words(words)
                self.done_chunks += 1
                if transcript.language:
                    self.language = transcript.language
                for segment in segments_of(words, next_id, self.language, transcript, temperature):
                    next_id += 1
                    yield segment
        finally:
            pending = [c.task for c in chunks if c.task is not None and not c.task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.backend.close_session(self.key)

    def _words(self, transcript: Transcript, seconds: float, offset: float) -> list[Word]:
        if is_hallucination(transcript, seconds, self.options.decode):
            return []
        return [
            Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3), w.probability)
            for w in collapse_loops(transcript.words)
        ]
