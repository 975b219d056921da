"""A room's words: its vocabulary (names, product words, jargon Whisper should expect) and its
replacements (a word or phrase -> what to show instead: spelling fixes, a profanity filter);
and what it says of voices: whether its shared microphones get speaker turns (``speakers``),
the names given to their labels (``speaker_names``: "Speaker 2" -> "Ben"), and the voices
enrolled with audio (name -> a speaker embedding, kept as base64 float16).

Both come from the room's owner as JSON (``POST /rooms``, ``PATCH /rooms/{room}``), so both are
bounded and checked here; the vocabulary goes to Whisper (pipeline/vocabulary.py), the
replacements are applied to every line the room shows: captions, translations, transcripts.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from pipeline.vocabulary import Vocabulary
from server.rooms.speakers import InvalidSpeaker, check_speaker

MAX_TERMS = 100
MAX_TERM_CHARS = 50
MAX_REPLACEMENTS = 200
MAX_PHRASE_CHARS = 64
MAX_SPEAKER_NAMES = 64
MAX_VOICES = 32
SPEAKER_MODES = ("auto", "named")


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


def check_speaker_mode(raw: Any) -> str:
    if raw not in SPEAKER_MODES:
        raise WordsError('"speakers" is "auto" (speaker turns on shared microphones) or "named"')
    return str(raw)


def check_speaker_names(raw: Any, current: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    """Labels to names, merged into ``current``: {"Speaker 2": "Ben"}; an empty name (or null)
    takes a label's name away. Both sides are speaker names (1-32 characters, checked)."""
    if not isinstance(raw, dict):
        raise WordsError('"speaker_names" must be an object such as {"Speaker 2": "Ben"}')
    out = dict(current)
    for key, value in raw.items():
        try:
            label = check_speaker(key) if isinstance(key, str) else ""
        except InvalidSpeaker as exc:
            raise WordsError(f"speaker label {str(key)[:40]!r}: {exc}") from None
        if value is None or (isinstance(value, str) and not value.strip()):
            out.pop(label, None)
            continue
        if not isinstance(value, str):
            raise WordsError(f"the name of {label!r} must be a string")
        try:
            out[label] = check_speaker(value)
        except InvalidSpeaker as exc:
            raise WordsError(f"the name of {label!r}: {exc}") from None
    if len(out) > MAX_SPEAKER_NAMES:
        raise WordsError(f'"speaker_names" would hold {len(out)} names; at most {MAX_SPEAKER_NAMES}')
    return tuple(out.items())


@dataclass(frozen=True)
class RoomWords:
    vocabulary: tuple[str, ...] = ()
    replacements: tuple[tuple[str, str], ...] = ()
    speakers: str = "named"
    speaker_names: tuple[tuple[str, str], ...] = ()
    voices: tuple[tuple[str, str], ...] = ()  # enrolled: name -> base64 float16 embedding

    @classmethod
    def from_body(cls, body: dict[str, Any], current: RoomWords | None = None) -> RoomWords:
        """The words a request body sets, each key left out keeping ``current``'s."""
        base = current or cls()
        vocabulary = check_vocabulary(body["vocabulary"]) if "vocabulary" in body else base.vocabulary
        replacements = (
            check_replacements(body["replacements"]) if "replacements" in body else base.replacements
        )
        speakers = check_speaker_mode(body["speakers"]) if "speakers" in body else base.speakers
        names = (
            check_speaker_names(body["speaker_names"], base.speaker_names)
            if "speaker_names" in body
            else base.speaker_names
        )
        return cls(vocabulary, replacements, speakers, names, base.voices)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> RoomWords:
        """From a saved record (rooms.json, Redis); what does not parse is left out."""
        try:
            vocabulary = check_vocabulary(data.get("vocabulary", []))
            replacements = check_replacements(data.get("replacements", {}))
        except WordsError:
            return cls()
        try:
            speakers = check_speaker_mode(data.get("speakers", "named"))
            names = check_speaker_names(data.get("speaker_names", {}))
            voices = tuple((str(k), str(v)) for k, v in dict(data.get("voices", {})).items())[:MAX_VOICES]
        except (WordsError, TypeError, ValueError):
            speakers, names, voices = "named", (), ()
        return cls(vocabulary, replacements, speakers, names, voices)

    def to_record(self) -> dict[str, Any]:
        return {
            "vocabulary": list(self.vocabulary),
            "replacements": dict(self.replacements),
            "speakers": self.speakers,
            "speaker_names": dict(self.speaker_names),
            "voices": dict(self.voices),
        }

    def speaker(self, label: str | None) -> str | None:
        """The name a label is shown by (PATCH ``speaker_names``), else the label."""
        if label is None:
            return None
        return self._names.get(label, label)

    @cached_property
    def _names(self) -> dict[str, str]:
        return dict(self.speaker_names)

    @cached_property
    def voice_vectors(self) -> dict[str, np.ndarray]:
        """The enrolled voices as vectors; one that does not decode is left out."""
        out = {}
        for name, encoded in self.voices:
            try:
                out[name] = decode_voice(encoded)
            except ValueError:
                continue
        return out

    def with_voices(self, voices: tuple[tuple[str, str], ...]) -> RoomWords:
        return replace(self, voices=voices)

    def with_voice(self, name: str, vector: np.ndarray) -> RoomWords:
        """These words with one more enrolled voice (or a new recording of one)."""
        voices = dict(self.voices)
        voices[name] = encode_voice(vector)
        if len(voices) > MAX_VOICES:
            raise WordsError(f"a room keeps at most {MAX_VOICES} enrolled voices")
        return replace(self, voices=tuple(voices.items()))

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


def encode_voice(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_voice(encoded: str) -> np.ndarray:
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64") from exc
    if not raw or len(raw) % 2 or len(raw) > 8192:
        raise ValueError("not an embedding")
    vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise ValueError("not finite")
    return vector
