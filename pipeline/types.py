"""The vocabulary shared by the pipeline: words, transcripts, requests and captions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Word:
    """One recognised word, timed in seconds from the start of the audio it came from."""

    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class DecodeOptions:
    """How a Whisper request is decoded; documented defaults tuned for CPU tiny.en.

    beam_size: 1 is greedy search. Finals and partials never share an engine call, so the
        policy can spend a beam on finals only.
    temperature: above 0, sample instead of searching (the fallback for a final that came out
        as a hallucination, as Whisper's own temperature fallback does).
    word_timestamps: align words to the audio (a cross-attention pass after generation). Finals
        need the times; a partial only needs its words, and skipping the pass saves ~20 % of it.
    min_window_frames: the smallest encoder window (mel frames, 100 per second) this request may
        run in. Below ~700 frames tiny.en turns to noise (bench/results/windows.md).
    task: ``transcribe``, or ``translate`` (into English; a multilingual model only: an English
        model hears English and writes it as it is).
    """

    beam_size: int = 1
    temperature: float = 0.0
    word_timestamps: bool = True
    min_window_frames: int = 1000
    # Whisper's own guards against text invented on silence or noise.
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    language: str | None = None
    task: str = "transcribe"


@dataclass(frozen=True)
class TranscribeRequest:
    """Audio (16 kHz mono float32) of one utterance, with the text that came before it."""

    audio: np.ndarray
    prompt: str = ""
    options: DecodeOptions = field(default_factory=DecodeOptions)
    # Words the speaker is likely to say (a room's vocabulary): they go before the earlier text
    # in Whisper's prompt, on a budget of their own, so neither crowds the other out.
    hotwords: str = ""


@dataclass(frozen=True)
class Transcript:
    """What the engine heard in one request."""

    words: tuple[Word, ...]
    language: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    # False when the request skipped alignment: word times are then spread evenly, a guess.
    timed: bool = True
    # The model's probability of the sentence-ending mark (. ? !) that closes the text, 0 when
    # the text does not end with one: how sure Whisper is that the speaker ended a sentence.
    sentence_end: float = 0.0

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()


@dataclass(frozen=True)
class Caption:
    """A line of captions: a partial that will be replaced, or a final that closes its segment.

    ``start`` and ``end`` are stream time: seconds since the publisher's first sample.
    """

    segment: int
    final: bool
    text: str
    start: float
    end: float
    lang: str
    translations: dict[str, str] = field(default_factory=dict)
    # The leading part of a partial that successive hypotheses agreed on and will not change.
    stable: str = ""
    # The words of ``text`` on stream time, with their probabilities, for APIs that answer word
    # by word (Deepgram's live results); a partial's times are a guess where it was not aligned.
    words: tuple[Word, ...] = field(default=(), compare=False)
    # Who spoke it, when speaker turns tell voices apart on one microphone ("Speaker 2", "Ana").
    speaker: str | None = None


@dataclass(frozen=True)
class TranslateRequest:
    """One line to translate, between ISO codes (``en`` -> ``es``).

    ``prefix`` is translated text already shown to viewers for this line: an engine that can
    force it (NLLB) continues after it, so a growing line grows rather than rewriting itself
    (NoLanguageLeftWaiting); an engine that cannot (Apertium) ignores it.
    """

    text: str
    source: str
    target: str
    prefix: str = ""


@dataclass(frozen=True)
class Translation:
    text: str
    source: str
    target: str


@dataclass(frozen=True)
class EmbedRequest:
    """Voiced audio (16 kHz mono, int16 or float32) whose speaker embeddings are wanted."""

    audio: np.ndarray


@dataclass(frozen=True)
class Embeddings:
    """One L2-normalised vector per window of a request's audio: window ``i`` covers
    ``[i * step, i * step + span]`` seconds of it."""

    vectors: np.ndarray  # (windows, dim) float32
    step: float
    span: float


@dataclass(frozen=True)
class SpeakRequest:
    """A sentence to speak in ``lang`` (ISO code), ``speed`` times faster than the voice's
    normal pace (the voice-over's pacing speeds up a voice that falls behind)."""

    text: str
    lang: str
    speed: float = 1.0


@dataclass(frozen=True)
class Speech:
    """A spoken sentence: int16 mono samples at ``rate``, and which voice spoke it."""

    pcm: np.ndarray
    rate: int
    lang: str
    voice: str

    @property
    def duration(self) -> float:
        return self.pcm.size / self.rate if self.rate else 0.0
