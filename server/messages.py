"""The wire vocabulary: every message a data channel carries, defined once.

Rooms build them, transcripts store them, tests parse them, and web/static/captions.js reads
them. One JSON object per data-channel message; unknown keys are ignored by readers, so fields
can be added without breaking old overlays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

# Keys dropped from the JSON when they hold None, so a source caption carries no source_lang.
_OPTIONAL = frozenset({"stable", "source_lang", "speaker", "publisher"})
# Kept in the process, never sent: which publisher a caption came from (its WHIP session id,
# which is also what its DELETE names) decides which listeners may read it.
_INTERNAL = frozenset({"origin"})


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class CaptionMessage:
    """A partial (replaced by the next one of its segment) or a final (closes the segment).

    ``start``/``end`` are room stream time in seconds. ``stable`` (partials) is the leading
    text that will not change. A translation carries ``lang`` (the target language) and
    ``source_lang``, with the same ``segment``, ``start`` and ``end`` as its source.
    ``speaker`` is the name its publisher gave (absent when none) and ``publisher`` a public id
    of the publishing session (never the WHIP session id, which is what a DELETE takes).
    """

    type: ClassVar[str] = "caption"
    room: str
    seq: int
    segment: int
    final: bool
    text: str
    start: float
    end: float
    lang: str
    stable: str | None = None
    source_lang: str | None = None
    speaker: str | None = None
    publisher: str | None = None
    origin: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if (value is None and f.name in _OPTIONAL) or f.name in _INTERNAL:
                continue
            out[f.name] = round(value, 3) if f.name in ("start", "end") else value
        return out

    def to_json(self) -> str:
        return dumps(self.to_dict())

    def with_seq(self, seq: int) -> CaptionMessage:
        return replace(self, seq=seq)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionMessage:
        """Read a caption back (from a transcript or the wire); raises ValueError when malformed."""
        try:
            return cls(
                room=str(data["room"]),
                seq=int(data.get("seq", 0)),
                segment=int(data["segment"]),
                final=bool(data.get("final", True)),
                text=str(data["text"]),
                start=float(data["start"]),
                end=float(data["end"]),
                lang=str(data.get("lang", "")),
                stable=None if data.get("stable") is None else str(data["stable"]),
                source_lang=None if data.get("source_lang") is None else str(data["source_lang"]),
                speaker=None if data.get("speaker") is None else str(data["speaker"]),
                publisher=None if data.get("publisher") is None else str(data["publisher"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a caption message: {exc}") from exc


@dataclass(frozen=True)
class StatusMessage:
    """Whether someone is speaking, how far behind inference runs (seconds), and who is live
    (the names of the named publishers, sorted). To the room's publishers only, the room's
    ``outputs`` and how each is doing (as ``GET /rooms/{room}`` shows them)."""

    type: ClassVar[str] = "status"
    room: str
    speech: bool
    queue_delay: float
    publishers: int
    speakers: tuple[str, ...] = ()
    outputs: tuple[dict[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "type": self.type,
            "room": self.room,
            "speech": self.speech,
            "queue_delay": round(self.queue_delay, 3),
            "publishers": self.publishers,
            "speakers": list(self.speakers),
        }
        if self.outputs is not None:
            out["outputs"] = list(self.outputs)
        return out

    def to_json(self) -> str:
        return dumps(self.to_dict())


@dataclass(frozen=True)
class SettingsMessage:
    """The room's settings changed (``PATCH /rooms/{room}``): which ones, and from which
    utterance on they apply (the next one each publisher starts)."""

    type: ClassVar[str] = "settings"
    room: str
    changed: tuple[str, ...]
    vocabulary: int = 0  # how many terms the room's vocabulary now has
    replacements: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "room": self.room,
            "changed": list(self.changed),
            "vocabulary": self.vocabulary,
            "replacements": self.replacements,
            "applies": "next_utterance",
        }

    def to_json(self) -> str:
        return dumps(self.to_dict())


@dataclass(frozen=True)
class ErrorMessage:
    type: ClassVar[str] = "error"
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.code, "message": self.message}

    def to_json(self) -> str:
        return dumps(self.to_dict())


Message = CaptionMessage | StatusMessage | SettingsMessage | ErrorMessage


def parse(raw: str | dict[str, Any]) -> Message:
    """Any wire message back into its type (tests, and gateways reading a room stream)."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict):
        raise ValueError("a message is a JSON object")
    kind = data.get("type")
    if kind == "caption":
        return CaptionMessage.from_dict(data)
    if kind == "status":
        return StatusMessage(
            room=str(data["room"]),
            speech=bool(data["speech"]),
            queue_delay=float(data["queue_delay"]),
            publishers=int(data["publishers"]),
            speakers=tuple(str(s) for s in data.get("speakers", ())),
            outputs=tuple(data["outputs"]) if isinstance(data.get("outputs"), list) else None,
        )
    if kind == "settings":
        return SettingsMessage(
            room=str(data["room"]),
            changed=tuple(str(c) for c in data["changed"]),
            vocabulary=int(data.get("vocabulary", 0)),
            replacements=int(data.get("replacements", 0)),
        )
    if kind == "error":
        return ErrorMessage(code=str(data["code"]), message=str(data["message"]))
    raise ValueError(f"unknown message type {kind!r}")
