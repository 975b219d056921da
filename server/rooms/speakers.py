"""Speaker names: who says what in a room with several microphones.

A publisher names itself (``POST /whip/{room}?speaker=Ana``); the name travels with each of its
captions, into transcripts and onto overlays, so it is bounded and checked here, and shown by
every page as text, never as markup. Two live publishers of a room never share a name, and two
names that look the same are the same name: they are compared by ``speaker_keys``, which fold
case, compatibility forms (fullwidth ``Ａｎａ``) and look-alike letters from other scripts
(Cyrillic ``Аna``), the skeleton of Unicode TR #39; invisible characters that would make two
names differ while they look alike (U+034F, variation selectors, the Hangul filler) are refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import unicodedata
from importlib import resources

MAX_SPEAKER_CHARS = 32
MAX_SPEAKERS = 64
# Besides letters, marks, digits and spaces: what names are written with ("Mary-Jane O'Neil Jr.").
_PUNCTUATION = frozenset(".-'’_()")

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt), and the fillers that are
# letters by category but draw nothing (U+3164 HANGUL FILLER and kin): a name holding one looks
# like a name without it.
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


class InvalidSpeaker(ValueError):
    """A speaker name that cannot be taken; the message says why, for the client."""


def invisible(c: str) -> bool:
    code = ord(c)
    return any(low <= code <= high for low, high in _IGNORABLE) or unicodedata.category(c) == "Cf"


def check_speaker(raw: str) -> str:
    """The name as stored and shown: NFKC (so fullwidth and other compatibility forms read as
    the letters they show), spaces collapsed; 1-32 letters, digits, spaces and . - ' _ ( ),
    and nothing invisible."""
    if any(invisible(c) for c in raw):
        raise InvalidSpeaker("a speaker name has no invisible characters (joiners, selectors, fillers)")
    name = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not name:
        raise InvalidSpeaker("a speaker name is empty")
    if len(name) > MAX_SPEAKER_CHARS:
        raise InvalidSpeaker(f"a speaker name is at most {MAX_SPEAKER_CHARS} characters")
    for c in name:
        if not (c == " " or c in _PUNCTUATION or unicodedata.category(c)[0] in "LMN") or invisible(c):
            raise InvalidSpeaker("a speaker name has only letters, digits, spaces and . - ' _ ( )")
    return name


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each confusable character -> the one character (or string) that stands for its class.

    The data is Unicode's confusables.txt as the confusable_homoglyphs package ships it, with
    each mapping in both directions; TR #39 maps every source to one prototype, so the classes
    are stars around their prototypes, and any one member can stand for a class: the smallest
    code point is taken. A source mapped to several characters ("m" -> "rn") keeps that string.
    """
    data = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    graph: dict[str, list[dict[str, str]]] = json.loads(data)
    parent: dict[str, str] = {}

    def find(c: str) -> str:
        root = c
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(c, c) != root:
            parent[c], c = root, parent[c]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    strings: dict[str, str] = {}
    strip = str.maketrans("", "", "\u200e\u200f")  # confusables.txt wraps right-to-left glyphs
    for key, entries in graph.items():
        source = key.translate(strip)
        for entry in entries:
            target = entry["c"].translate(strip)
            if len(source) == 1 and len(target) == 1:
                union(source, target)
            elif len(source) == 1 and target:
                strings.setdefault(source, target)
            elif len(target) == 1 and source:
                strings.setdefault(target, source)
    table: dict[str, str] = {}
    for c in set(parent) | set(strings):
        root = find(c)
        if root != c:
            table[c] = root
    for c, text in strings.items():
        table[find(c)] = text
        table[c] = text
    return table


def skeleton(text: str) -> str:
    """TR #39's skeleton: decomposed, every character replaced by its class's prototype."""
    table = _prototypes()
    mapped = "".join(table.get(c, c) for c in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


def speaker_keys(name: str) -> tuple[str, str]:
    """What two names are compared by; one equal key, and they are the same name to a reader.
    Case and shape disagree on some letters, so there are two: shape first (Cyrillic "Вen" is
    "Ben", though its lower case "вen" is not "ben"), and case first ("IAN" is "ian", though
    the skeleton draws a capital I as an l)."""
    plain = unicodedata.normalize("NFKC", name)
    return skeleton(skeleton(plain).casefold()), skeleton(plain.casefold())


def same_speaker(a: str, b: str) -> bool:
    return any(x == y for x, y in zip(speaker_keys(a), speaker_keys(b), strict=True))


def public_id(session: str) -> str:
    """What captions say of their publishing session: stable for the session, and no use for
    ending it (the WHIP session id, which a DELETE takes, is a secret of its publisher)."""
    return hashlib.sha256(f"nova-publisher:{session}".encode()).hexdigest()[:12]
