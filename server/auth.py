"""Who may do what: room names, publish tokens (kept hashed), and the Bearer header."""

from __future__ import annotations

import hashlib
import hmac
import re

from aiohttp import web

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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
