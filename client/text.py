"""What ``nova-voice dictate`` makes of the server's words, as pure functions.

The server is not trusted: whatever it sends is printed on the user's terminal and, with
``--type``, typed into whichever window has the focus, a shell included. So its text becomes
printable words and single spaces only (no control character turns into Enter, Tab or a terminal
escape), a line break is typed only from a spoken command the user enabled with ``--newlines``,
and every field of every message is checked before it is used (a bad one is skipped, never a
crash that would reconnect in a loop).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from functools import cache
from typing import Any

# ---- Text: printable words and single spaces -------------------------------------------------

# Whole escape sequences, so that their payload (a window title, a clipboard's base64) does not
# stay behind as words. Control strings (OSC, DCS, SOS, PM, APC, 7-bit or C1) run to BEL or ST,
# or to the end of the text when unterminated; CSI to its final byte; other ESC sequences are
# ESC, intermediates, one final byte (ECMA-35). Safety does not rest on these: every control
# character left after them is removed below, so no terminal can be inside a sequence.
_SEQUENCE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?",
    re.DOTALL,
)
# Bidirectional embeddings, overrides, isolates and marks: they reorder what is shown, so that
# a line reads differently from what it types ("Trojan Source").
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
TAGS = range(0xE0000, 0xE0080)  # invisible copies of ASCII: text a reader cannot see
# Invisible joiners that scripts (Persian, Indic) and emoji sequences need: kept.
JOINERS = frozenset("\u200c\u200d")


def removed(ch: str) -> bool:
    """Whether a character never reaches a terminal or a keyboard: controls (C0, DEL, C1),
    surrogates, bidi controls, tag characters and other invisible format characters (Cf)."""
    if ch in JOINERS:
        return False
    return ch in BIDI or ord(ch) in TAGS or unicodedata.category(ch) in ("Cc", "Cf", "Cs")


def clean(text: str) -> str:
    """The server's text as printable words separated by single spaces.

    Escape sequences go whole; a control that is whitespace (``\\n``, ``\\t``, ``\\r``, ``\\v``,
    ``\\f``, NEL...) separates words like a space; every other removed character (see
    ``removed``) goes without a trace; runs of whitespace of any kind become one space."""
    text = _SEQUENCE.sub("", text)
    text = "".join(" " if ch.isspace() else "" if removed(ch) else ch for ch in text)
    return " ".join(text.split())


def is_plain(text: str) -> bool:
    """Whether ``text`` may be typed or printed as it is: single spaces and characters that
    ``clean`` keeps (a leading space between two finals included). The typist checks this last."""
    return all(ch == " " or not (ch.isspace() or removed(ch)) for ch in text)


# ---- Spoken commands (as web/static/capture.js understands them) ------------------------------

PUNCT = ".,;:!?…"
# A line break is something Whisper does not write: said as a sentence of its own ("New line."),
# in the caption's language; the English ones are understood in every language. 2: a paragraph.
COMMANDS: dict[str, tuple[tuple[str, int], ...]] = {
    "en": ((r"new[\s-]?paragraph", 2), (r"new[\s-]?line", 1)),
    "es": ((r"nuevo\s+p[aá]rrafo", 2), (r"nueva\s+l[ií]nea", 1)),
    "de": ((r"neuer\s+absatz", 2), (r"neue\s+zeile", 1)),
    "fr": ((r"nouveau\s+paragraphe", 2), (r"nouvelle\s+ligne", 1), (r"[àa]\s+la\s+ligne", 1)),
}


@cache
def _commands(lang: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    code = re.split(r"[-_]", lang.lower())[0]
    table = COMMANDS.get(code, ()) + (() if code == "en" else COMMANDS["en"])
    alternatives = "|".join(f"({pattern})" for pattern, _ in table)
    # A command stands between punctuation or the ends of the text: "a new line of shoes" is
    # words, "Thanks. New line." is a line break.
    pattern = rf"(?:^|(?<=[{PUNCT}]))\s*[¡¿]?(?:{alternatives})\s*(?:[{PUNCT}]+|$)"
    return re.compile(pattern, re.IGNORECASE), tuple(lines for _, lines in table)


@dataclass(frozen=True)
class Enter:
    """Press Enter ``times`` times: the only key other than characters a final may press."""

    times: int


def pieces(text: str, lang: str, newlines: bool) -> list[str | Enter]:
    """A final as words to type and line breaks, in order. Without ``newlines`` a command is
    words like any other; the words are always ``clean``."""
    text = clean(text)
    if not newlines:
        return [text] if text else []
    pattern, lines = _commands(lang)
    out: list[str | Enter] = []
    at = 0
    for match in pattern.finditer(text):
        words = text[at : match.start()].strip()
        if words:
            out.append(words)
        which = next(i for i, group in enumerate(match.groups()) if group is not None)
        out.append(Enter(lines[which]))
        at = match.end()
    if words := text[at:].strip():
        out.append(words)
    return out


class Position(Enum):
    """Where the typist's cursor stands: what the next words need before them."""

    START = "start"  # nothing typed yet: no space
    AFTER_TEXT = "after text"  # a space between two finals
    AFTER_BREAK = "after break"  # no space; a capital letter, as after a break in the browser


def typing_plan(
    text: str, lang: str, newlines: bool, position: Position
) -> tuple[list[str | Enter], Position]:
    """What to type for one final from ``position``, and where that leaves the cursor. Every
    string in it is ``is_plain``; ``Enter`` appears only from a spoken command with ``newlines``."""
    plan: list[str | Enter] = []
    for piece in pieces(text, lang, newlines):
        if isinstance(piece, Enter):
            plan.append(piece)
            position = Position.AFTER_BREAK
            continue
        if position is Position.AFTER_BREAK:
            piece = piece[0].upper() + piece[1:]
        plan.append((" " if position is Position.AFTER_TEXT else "") + piece)
        position = Position.AFTER_TEXT
    return plan, position


# ---- Messages from the data channel -----------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    """A caption whose fields have the types the wire promises (text not yet cleaned)."""

    segment: int
    final: bool
    text: str
    lang: str
    publisher: str | None
    translated: bool


@dataclass(frozen=True)
class ServerError:
    """An ``error`` message: its text, cleaned and short, for one log line."""

    text: str


@dataclass(frozen=True)
class Other:
    """A message the client has no use for (status, settings, a type it does not know)."""


@dataclass(frozen=True)
class Bad:
    """A message that cannot be used. ``kind`` names what was wrong, so that it is logged once
    per kind and not once per message (a hostile server could send thousands)."""

    kind: str
    why: str


Message = Caption | ServerError | Other | Bad
MAX_ERROR_TEXT = 200


def _is_int(value: Any) -> bool:
    """An integer, and not a bool: True is an int to Python, and a list is not hashable."""
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_str(data: dict[str, Any], key: str) -> bool:
    """Absent, null, or a string (the wire drops optional fields that hold None)."""
    return data.get(key) is None or isinstance(data[key], str)


def read_message(raw: Any) -> Message:
    """One data-channel message, checked field by field before any of it is used."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):  # RecursionError: "[[[[..." nested deep
        return Bad("json", "a message that is not JSON")
    if not isinstance(data, dict):
        return Bad("object", "a message that is not a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        return Bad("type", "a message whose 'type' is not a string")
    if kind == "error":
        said = data.get("message") or data.get("code")
        if not isinstance(said, str):
            return Bad("error", "an error message without a text")
        return ServerError(clean(said)[:MAX_ERROR_TEXT])
    if kind != "caption":
        return Other()
    checks = (
        ("segment", _is_int(data.get("segment")), "an integer"),
        ("final", isinstance(data.get("final"), bool), "true or false"),
        ("text", isinstance(data.get("text"), str), "a string"),
        ("stable", _optional_str(data, "stable"), "a string"),
        ("lang", _optional_str(data, "lang"), "a string"),
        ("source_lang", _optional_str(data, "source_lang"), "a string"),
        ("publisher", _optional_str(data, "publisher"), "a string"),
    )
    for name, ok, expected in checks:
        if not ok:
            return Bad(f"caption.{name}", f"a caption whose '{name}' is not {expected}")
    return Caption(
        segment=data["segment"],
        final=data["final"],
        text=data["text"],
        lang=data.get("lang") or "",
        publisher=data.get("publisher") or None,
        translated=bool(data.get("source_lang")),
    )


# ---- Retry-After -------------------------------------------------------------------------------

MAX_RETRY_AFTER = 3600.0  # seconds; the client's backoff caps its waits lower still
_SECONDS = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() takes "²", float() does not


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``, between 0 and MAX_RETRY_AFTER; None when
    it is neither delay-seconds nor an HTTP-date (RFC 9110 10.2.3), to be ignored."""
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return min(float(value) if len(value) <= 10 else MAX_RETRY_AFTER, MAX_RETRY_AFTER)
    if not value.isascii() or not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000" in a date: UTC, as HTTP-dates always are
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# ---- Logging ------------------------------------------------------------------------------------


class Once:
    """Says each kind of problem once: a server that sends the same bad value a thousand times
    gets one log line, not a thousand."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.said: set[str] = set()

    def warn(self, kind: str, message: str, *args: Any) -> None:
        if kind not in self.said:
            self.said.add(kind)
            self.logger.warning(message, *args)


def clean_lines(text: str) -> str:
    """``clean`` line by line, keeping the line breaks and each line's indent (a traceback)."""
    return "\n".join(" " * (len(line) - len(line.lstrip(" "))) + clean(line) for line in text.split("\n"))


class CleanLog(logging.Filter):
    """Every log line cleaned: error texts, URLs and exception messages can hold the server's
    words, and a log line reaches the same terminal as the captions. A library's traceback too
    (aiortc logs one when a peer misbehaves), line by line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = clean(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = clean_lines(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = clean_lines(record.exc_text)
        if record.stack_info:
            record.stack_info = clean_lines(record.stack_info)
        return True
