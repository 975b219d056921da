"""A room's words: its vocabulary (names, product words, jargon Whisper should expect) and its
replacements (a word or phrase -> what to show instead: spelling fixes, a profanity filter).

Both come from the room's owner as JSON (``POST /rooms``, ``PATCH /rooms/{room}``), so both are
bounded and checked here; the vocabulary goes to Whisper (pipeline/vocabulary.py), the
replacements are applied to every line the room shows: captions, translations, transcripts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline.vocabulary import Vocabulary

MAX_TERMS = 100
MAX_TERM_CHARS = 50
MAX_REPLACEMENTS = 200
MAX_PHRASE_CHARS = 64


class WordsError(ValueError):
    """A vocabulary or replacements that cannot be taken; the message says why, for the client."""


def _clean(raw: object, what: str, limit: int, empty_ok: bool = False) -> str:
    if not isinstance(raw, str):
        raise WordsError(f"{what} must be a string")
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise WordsError(f"{what} has control characters")
    if not text and not empty_ok:
        raise WordsError(f"{what} is empty")
    if len(text) > limit:
        raise WordsError(f"{what} is over {limit} characters")
    return text


def check_vocabulary(raw: Any) -> tuple[str, ...]:
    """A list of terms: each 1-50 characters, at most 100, duplicates dropped (first kept)."""
    if not isinstance(raw, list):
        raise WordsError('"vocabulary" must be a list of terms, such as ["Niamh Okonkwo", "Elasticsearch"]')
    if len(raw) > MAX_TERMS:
        raise WordsError(f'"vocabulary" has {len(raw)} terms; at most {MAX_TERMS}')
    terms = [_clean(t, f"vocabulary term {i + 1}", MAX_TERM_CHARS) for i, t in enumerate(raw)]
    return tuple(dict.fromkeys(terms))


def check_replacements(raw: Any) -> tuple[tuple[str, str], ...]:
    """An object of phrase -> shown text (empty: the phrase is removed), at most 200."""
    if not isinstance(raw, dict):
        raise WordsError('"replacements" must be an object such as {"elastic search": "Elasticsearch"}')
    if len(raw) > MAX_REPLACEMENTS:
        raise WordsError(f'"replacements" has {len(raw)} entries; at most {MAX_REPLACEMENTS}')
    out: dict[str, str] = {}
    for key, value in raw.items():
        phrase = _clean(key, "a replaced phrase", MAX_PHRASE_CHARS)
        out[phrase] = _clean(value, f"the replacement of {phrase!r}", MAX_PHRASE_CHARS, empty_ok=True)
    return tuple(out.items())


@dataclass(frozen=True)
class RoomWords:
    vocabulary: tuple[str, ...] = ()
    replacements: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_body(cls, body: dict[str, Any], current: RoomWords | None = None) -> RoomWords:
        """The words a request body sets, each key left out keeping ``current``'s."""
        base = current or cls()
        vocabulary = check_vocabulary(body["vocabulary"]) if "vocabulary" in body else base.vocabulary
        replacements = (
            check_replacements(body["replacements"]) if "replacements" in body else base.replacements
        )
        return cls(vocabulary, replacements)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> RoomWords:
        """From a saved record (rooms.json, Redis); what does not parse is left out."""
        try:
            vocabulary = check_vocabulary(data.get("vocabulary", []))
            replacements = check_replacements(data.get("replacements", {}))
        except WordsError:
            return cls()
        return cls(vocabulary, replacements)

    def to_record(self) -> dict[str, Any]:
        return {"vocabulary": list(self.vocabulary), "replacements": dict(self.replacements)}

    @cached_property
    def heard(self) -> Vocabulary:
        return Vocabulary(self.vocabulary)

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        if not self.replacements:
            return None
        # Longest first, so "elastic search cluster" wins over "elastic search"; whole words only.
        phrases = sorted((p for p, _ in self.replacements), key=len, reverse=True)
        alternatives = "|".join(re.escape(p) for p in phrases)
        return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    @cached_property
    def _shown(self) -> dict[str, str]:
        return {p.casefold(): to for p, to in self.replacements}

    def apply(self, text: str) -> str:
        """The text with every replaced phrase (any case, whole words) shown as its replacement."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        replaced = pattern.sub(lambda m: self._shown.get(m.group(0).casefold(), m.group(0)), text)
        return " ".join(replaced.split()) if replaced != text else text


NO_WORDS = RoomWords()
