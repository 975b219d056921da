"""Transcripts: every final written through to disk as it arrives, and exported on request.

One append-only JSON-lines file per room under ``<data-dir>/transcripts/``; a line is flushed
and fsynced before the next caption, so a crash loses no finished caption.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from server.auth import check_room_name
from server.messages import CaptionMessage

# What a transcript line keeps of a final: the room is the file, and a final is always final.
STORED = ("seq", "segment", "start", "end", "text", "lang", "source_lang")


class TranscriptStore:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "transcripts"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, room: str) -> Path:
        # Room names are validated to a safe alphabet, so no name can leave this folder.
        return self.dir / f"{check_room_name(room)}.jsonl"

    def append(self, message: CaptionMessage) -> None:
        data = message.to_dict()
        line = json.dumps({k: data[k] for k in STORED if k in data}, ensure_ascii=False)
        with open(self.path(message.room), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def exists(self, room: str) -> bool:
        return self.path(room).exists()

    def finals(self, room: str) -> list[CaptionMessage]:
        path = self.path(room)
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(CaptionMessage.from_dict({"room": room, "final": True, **json.loads(line)}))
            except (ValueError, TypeError):
                continue  # a line torn by a crash mid-write: skip it, keep the rest
        return out


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def for_language(items: Iterable[CaptionMessage], lang: str | None) -> list[CaptionMessage]:
    """The source finals (``lang`` None), or the finals translated into ``lang``."""
    if lang is None:
        return [m for m in items if m.source_lang is None]
    return [m for m in items if m.source_lang is not None and m.lang == lang]


def _cues(items: Iterable[CaptionMessage], lang: str | None) -> list[tuple[float, float, str]]:
    cues = []
    for item in items:
        text = item.text.strip()
        if text and (not lang or item.lang == lang):
            cues.append((item.start, max(item.end, item.start + 0.1), text))
    return cues


def to_vtt(items: list[CaptionMessage], lang: str | None = None) -> str:
    lines = ["WEBVTT", ""]
    for start, end, text in _cues(items, lang):
        lines += [f"{_clock(start, '.')} --> {_clock(end, '.')}", text.replace("-->", "->"), ""]
    return "\n".join(lines)


def to_srt(items: list[CaptionMessage], lang: str | None = None) -> str:
    lines = []
    for i, (start, end, text) in enumerate(_cues(items, lang), 1):
        lines += [str(i), f"{_clock(start, ',')} --> {_clock(end, ',')}", text, ""]
    return "\n".join(lines)


def to_txt(items: list[CaptionMessage], lang: str | None = None) -> str:
    return "\n".join(text for _, _, text in _cues(items, lang)) + "\n"


def to_json(room: str, items: list[CaptionMessage]) -> dict[str, Any]:
    return {"room": room, "captions": [{k: v for k, v in m.to_dict().items() if k != "type"} for m in items]}
