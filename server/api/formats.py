"""A file job's segments in the shapes the APIs answer with: OpenAI's json, text, srt, vtt and
verbose_json (segments, and words when asked), and Deepgram's pre-recorded response (channels,
alternatives, words with confidence, utterances). Subtitles are cut by the same rules as a
room's transcript (server/rooms/subtitles.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipeline.filejob import Segment
from pipeline.types import Word
from server.messages import CaptionMessage
from server.rooms.transcripts import to_srt, to_vtt

# Whisper answers OpenAI's verbose_json with the language's English name.
LANGUAGE_NAMES = {
    "en": "english", "es": "spanish", "fr": "french", "de": "german", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "ru": "russian", "zh": "chinese", "ja": "japanese",
    "ko": "korean", "ar": "arabic", "hi": "hindi", "tr": "turkish", "pl": "polish", "uk": "ukrainian",
    "sv": "swedish", "ca": "catalan", "cs": "czech", "el": "greek", "he": "hebrew", "id": "indonesian",
}  # fmt: skip

OPENAI_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def full_text(segments: Sequence[Segment]) -> str:
    return " ".join(s.text for s in segments if s.text).strip()


def _messages(segments: Sequence[Segment]) -> list[CaptionMessage]:
    return [
        CaptionMessage(
            room="file",
            seq=s.id,
            segment=s.id,
            final=True,
            text=s.text,
            start=s.start,
            end=max(s.end, s.start + 0.1),
            lang=s.language,
        )  # fmt: skip
        for s in segments
        if s.text
    ]


def openai_body(
    segments: Sequence[Segment], response_format: str, duration: float, language: str, task: str, words: bool
) -> tuple[str | dict[str, Any], str]:
    """(body, content type) of one transcription or translation in OpenAI's ``response_format``."""
    text = full_text(segments)
    if response_format == "text":
        return text + "\n", "text/plain"
    if response_format == "srt":
        return to_srt(_messages(segments)), "text/plain"
    if response_format == "vtt":
        return to_vtt(_messages(segments)), "text/vtt"
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if response_format == "json":
        return {"text": text, "usage": usage}, "application/json"
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGE_NAMES.get(language, language),
        "duration": round(duration, 3),
        "text": text,
        "segments": [
            {
                "id": s.id,
                "seek": int(s.start * 100),
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": " " + s.text if s.text else "",
                "tokens": [],
                "temperature": s.temperature,
                "avg_logprob": round(s.avg_logprob, 4),
                "compression_ratio": round(s.compression_ratio, 4),
                "no_speech_prob": round(s.no_speech_prob, 4),
            }
            for s in segments
        ],
        "usage": usage,
    }
    if words:
        body["words"] = [
            {"word": w.text.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
            for s in segments
            for w in s.words
            if w.text.strip()
        ]
    return body, "application/json"


def _bare(word: Word) -> str:
    """Deepgram's ``word``: lower case, no punctuation; ``punctuated_word`` keeps the text."""
    return "".join(c for c in word.text.strip().lower() if c.isalnum() or c in "'-")


def deepgram_words(
    words: Sequence[Word], punctuate: bool, speaker: int | None = None
) -> list[dict[str, Any]]:
    out = []
    for w in words:
        text = w.text.strip()
        if not text:
            continue
        item: dict[str, Any] = {
            "word": _bare(w) or text,
            "start": round(w.start, 3),
            "end": round(w.end, 3),
            "confidence": round(w.probability, 4),
        }
        if punctuate:
            item["punctuated_word"] = text
        if speaker is not None:
            item["speaker"] = speaker
        out.append(item)
    return out


def deepgram_transcript(words: Sequence[Word], punctuate: bool) -> str:
    if punctuate:
        return " ".join(w.text.strip() for w in words if w.text.strip())
    return " ".join(filter(None, (_bare(w) for w in words)))


def confidence(words: Sequence[Word]) -> float:
    return round(float(np.mean([w.probability for w in words])), 4) if words else 0.0


def deepgram_body(
    segments: Sequence[Segment],
    duration: float,
    model: str,
    punctuate: bool,
    utterances: bool,
    language: str | None,
) -> dict[str, Any]:
    """Deepgram's pre-recorded response for one channel (the recording mixed to mono)."""
    words = [w for s in segments for w in s.words]
    request_id = str(uuid.uuid4())
    alternative: dict[str, Any] = {
        "transcript": deepgram_transcript(words, punctuate),
        "confidence": confidence(words),
        "words": deepgram_words(words, punctuate),
    }
    channel: dict[str, Any] = {"alternatives": [alternative]}
    if language:
        channel["detected_language"] = language
    results: dict[str, Any] = {"channels": [channel]}
    if utterances:
        results["utterances"] = [
            {
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "confidence": confidence(s.words),
                "channel": 0,
                "transcript": deepgram_transcript(s.words, punctuate),
                "words": deepgram_words(s.words, punctuate),
                "id": str(uuid.uuid5(uuid.UUID(request_id), str(s.id))),
            }
            for s in segments
            if s.words
        ]
    return {
        "metadata": {
            "transaction_key": "deprecated",
            "request_id": request_id,
            "sha256": "",
            "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "duration": round(duration, 3),
            "channels": 1,
            "models": [model],
            "model_info": {model: {"name": model, "version": "nova-voice", "arch": "whisper"}},
        },
        "results": results,
    }
