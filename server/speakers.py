"""Speaker names: who says what in a room with several microphones.

A publisher names itself (``POST /whip/{room}?speaker=Ana``); the name travels with each of its
captions, into transcripts and onto overlays, so it is bounded and checked here, and shown by
every page as text, never as markup. Two live publishers of a room never share a name (compared
case-insensitively): the second is refused, or takes the name over when it asks to.
"""

from __future__ import annotations

import hashlib
import unicodedata

MAX_SPEAKER_CHARS = 32
MAX_SPEAKERS = 64
# Besides letters, marks, digits and spaces: what names are written with ("Mary-Jane O'Neil Jr.").
_PUNCTUATION = frozenset(".-'’_()")


class InvalidSpeaker(ValueError):
    """A speaker name that cannot be taken; the message says why, for the client."""


def check_speaker(raw: str) -> str:
    """The name as shown: NFC, spaces collapsed; 1-32 letters, digits, spaces and . - ' _ ( )."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise InvalidSpeaker("a speaker name is empty")
    if len(name) > MAX_SPEAKER_CHARS:
        raise InvalidSpeaker(f"a speaker name is at most {MAX_SPEAKER_CHARS} characters")
    for c in name:
        if not (c == " " or c in _PUNCTUATION or unicodedata.category(c)[0] in "LMN"):
            raise InvalidSpeaker("a speaker name has only letters, digits, spaces and . - ' _ ( )")
    return name


def same_speaker(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def public_id(session: str) -> str:
    """What captions say of their publishing session: stable for the session, and no use for
    ending it (the WHIP session id, which a DELETE takes, is a secret of its publisher)."""
    return hashlib.sha256(f"nova-publisher:{session}".encode()).hexdigest()[:12]
