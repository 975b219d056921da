"""Room names: what a room may be called, since names become file names, URL parts and Redis keys."""

from __future__ import annotations

import difflib
import re
import secrets

# fullmatch, never match with "$": "$" also matches before a trailing newline ("nl\n").
ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class InvalidRoomName(ValueError):
    pass


def check_room_name(name: str) -> str:
    """Names become file names, URL parts and Redis keys, so only a safe alphabet is allowed."""
    if not ROOM_NAME.fullmatch(name):
        raise InvalidRoomName(
            "room names are 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


def room_name_or_new(name: str | None) -> str:
    """``name`` checked, or a new random name for a room created without one (letters and
    digits only, so it reads well in a URL)."""
    return check_room_name(name) if name else secrets.token_urlsafe(6).replace("_", "x").replace("-", "y")


def close_names(name: str, names: list[str], limit: int = 3) -> list[str]:
    """The names in ``names`` a typo of ``name`` could have meant ("stgae" for "stage"), closest
    first; case is not a difference worth a room of its own."""
    folded = {n.casefold(): n for n in names if n != name}
    found = difflib.get_close_matches(name.casefold(), list(folded), n=limit, cutoff=0.75)
    return [folded[f] for f in found]
