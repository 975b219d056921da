"""Transcripts: every final written through to disk as it arrives, and exported on request.

One append-only JSON-lines file per room under ``<data-dir>/transcripts/``: a line per final,
and a line marking where each publishing session starts. A line is flushed and fsynced before
the next caption, so a crash loses no finished caption.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from server.messages import CaptionMessage
from server.rooms.names import check_room_name
from server.rooms.room import RoomHistory, SessionMark
from server.rooms.subtitles import Cue, CueRules, Voice, cues_of

log = logging.getLogger(__name__)

# What a transcript line keeps of a final: the room is the file, and a final is always final.
STORED = ("seq", "segment", "start", "end", "text", "lang", "source_lang", "speaker", "publisher")


class TranscriptStore:
    """Writes go to one thread of their own, in order, so an fsync never stalls the event loop;
    reads run on the same thread, so they see every write made before them."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "transcripts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcripts")

    def close(self) -> None:
        self._io.shutdown(wait=True)

    def path(self, room: str) -> Path:
        # Room names are validated to a safe alphabet, so no name can leave this folder.
        return self.dir / f"{check_room_name(room)}.jsonl"

    def _write(self, room: str, record: dict[str, Any]) -> None:
        self._io.submit(self._write_now, self.path(room), json.dumps(record, ensure_ascii=False))

    @staticmethod
    def _write_now(path: Path, line: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            log.exception("could not write the transcript %s", path)

    def append(self, message: CaptionMessage) -> None:
        data = message.to_dict()
        self._write(message.room, {k: data[k] for k in STORED if k in data})

    def mark_session(self, room: str, mark: SessionMark) -> None:
        self._write(room, mark.to_dict())

    def exists(self, room: str) -> bool:
        return self.path(room).exists()

    async def has(self, room: str) -> bool:
        """On the writing thread, after every write made before: a room whose first final is
        still being written has a transcript already."""
        return await asyncio.wrap_future(self._io.submit(self.exists, room))

    def history(self, room: str) -> RoomHistory:
        """Blocks until earlier writes are done: for a room's rare first use in this process."""
        return self._io.submit(self._read, room).result()

    async def read(self, room: str) -> RoomHistory:
        return await asyncio.wrap_future(self._io.submit(self._read, room))

    def _read(self, room: str) -> RoomHistory:
        path = self.path(room)
        history = RoomHistory()
        if not path.exists():
            return history
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                if "session" in record:
                    history.sessions.append(SessionMark.from_dict(record))
                else:
                    history.finals.append(CaptionMessage.from_dict({"room": room, "final": True, **record}))
            except (ValueError, TypeError, KeyError):
                continue  # a line torn by a crash mid-write: skip it, keep the rest
        return history

    def finals(self, room: str) -> list[CaptionMessage]:
        return self.history(room).finals


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def for_language(items: Iterable[CaptionMessage], lang: str | None) -> list[CaptionMessage]:
    """The source finals (``lang`` None), or the finals translated into ``lang`` (or, when the
    room has no such translation, the source finals spoken in ``lang``)."""
    items = list(items)
    source = [m for m in items if m.source_lang is None]
    if lang is None:
        return source
    return [m for m in items if m.source_lang is not None and m.lang == lang] or [
        m for m in source if m.lang == lang
    ]


Timed = tuple[float, float, str, str | None]  # start, end, text, speaker


def _cues(items: Iterable[CaptionMessage], lang: str | None) -> list[Timed]:
    cues = []
    for item in items:
        text = item.text.strip()
        if text and (not lang or item.lang == lang):
            cues.append((item.start, max(item.end, item.start + 0.1), text, item.speaker))
    return cues


def _with_sessions(
    cues: Sequence[Cue | Timed], sessions: Sequence[SessionMark]
) -> list[tuple[SessionMark | None, Any]]:
    """Cues in time order with each session's mark before its first cue (a session may be empty)."""
    events: list[tuple[float, int, SessionMark | None, Any]] = []
    events += [(m.start, 0, m, None) for m in sessions]
    events += [(c.start if isinstance(c, Cue) else c[0], 1, None, c) for c in cues]
    return [(m, c) for _, _, m, c in sorted(events, key=lambda e: (e[0], e[1]))]


# How each format marks the speaker, counted in the line it shares (server/rooms/subtitles.py):
# SRT "Ana: " before a cue's first line and "- Ana: ..." in a dialogue cue; WebVTT a voice span.
SRT_VOICE = Voice(first="{name}: ", line="- {name}: {text}", anonymous="- {text}")
VTT_VOICE = Voice(first="<v {name}>", line="<v {name}>- {text}</v>", anonymous="- {text}")


def _subtitles(
    items: Iterable[CaptionMessage], lang: str | None, rules: CueRules, voice: Voice, dialogue: bool
) -> list[Cue]:
    """Finals cut into cues within the subtitle guidelines (server/rooms/subtitles.py)."""
    return cues_of(_cues(items, lang), rules, voice, dialogue)


def _vtt_text(text: str) -> str:
    """Cue text as WebVTT needs it: its markup characters escaped, no "-->" inside."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_body(cue: Cue) -> str:
    if cue.turns:
        return "\n".join(
            VTT_VOICE.turn(None if who is None else _vtt_text(who), _vtt_text(text))
            for who, text in cue.turns
        )
    # A voice span per cue (WebVTT's <v>): players show or style the speaker's name.
    body = "\n".join(_vtt_text(line) for line in cue.lines)
    return body if cue.speaker is None else f"<v {_vtt_text(cue.speaker)}>{body}"


def _srt_body(cue: Cue) -> str:
    if cue.turns:
        return "\n".join(SRT_VOICE.turn(who, text) for who, text in cue.turns)
    return _said_by(cue.speaker, cue.text)


def _said_by(speaker: str | None, text: str) -> str:
    """SRT and plain text mark the speaker the way people write it: "Ana: ..."."""
    return f"{speaker}: {text}" if speaker else text


def to_vtt(
    items: list[CaptionMessage],
    lang: str | None = None,
    sessions: Sequence[SessionMark] = (),
    rules: CueRules | None = None,
    dialogue: bool = False,
) -> str:
    """WebVTT: speakers' overlapping cues overlap (players stack them), or with ``dialogue``
    become dialogue cues or follow one another, as in SRT."""
    lines = ["WEBVTT", ""]
    cues = _subtitles(items, lang, rules or CueRules(), VTT_VOICE, dialogue)
    for mark, cue in _with_sessions(cues, sessions):
        if mark is not None:
            lines += [f"NOTE session {mark.session} started {mark.at} at {_clock(mark.start, '.')}", ""]
        elif cue is not None:
            lines += [f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}", _vtt_body(cue), ""]
    return "\n".join(lines)


def to_srt(items: list[CaptionMessage], lang: str | None = None, rules: CueRules | None = None) -> str:
    """SRT: one cue at a time, never overlapping; two speakers at once share a dialogue cue."""
    lines = []
    for i, cue in enumerate(_subtitles(items, lang, rules or CueRules(), SRT_VOICE, True), 1):
        lines += [str(i), f"{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}", _srt_body(cue), ""]
    return "\n".join(lines)


def to_txt(items: list[CaptionMessage], lang: str | None = None, sessions: Sequence[SessionMark] = ()) -> str:
    out = []
    for mark, cue in _with_sessions(_cues(items, lang), sessions):
        if mark is not None:
            out += ([""] if out else []) + [f"[session {mark.session}, {mark.at}]"]
        elif cue is not None:
            out.append(_said_by(cue[3], cue[2]))
    return "\n".join(out) + "\n"


def to_json(room: str, items: list[CaptionMessage], sessions: Sequence[SessionMark] = ()) -> dict[str, Any]:
    return {
        "room": room,
        "sessions": [m.to_dict() for m in sessions],
        "captions": [{k: v for k, v in m.to_dict().items() if k != "type"} for m in items],
    }
