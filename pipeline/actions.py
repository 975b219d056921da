"""What the caption policy asks of its caller: transcribe this (``Submit``), send this caption
(``Emit``), the voice started or stopped (``SpeechChange``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.types import Caption, TranscribeRequest


@dataclass(frozen=True)
class Submit:
    """Ask the scheduler to transcribe; answer with ``on_result(ticket, ...)``."""

    ticket: int
    final: bool
    segment: int
    request: TranscribeRequest
    origin: int = 0  # stream sample of the request's first audio sample
    repair: bool = False  # a stretch of a final that its decode left without words


@dataclass(frozen=True)
class Emit:
    caption: Caption


@dataclass(frozen=True)
class SpeechChange:
    speaking: bool
    at: float


Action = Submit | Emit | SpeechChange
