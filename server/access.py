"""Who may watch: view tokens for private deployments and private rooms.

A server-wide ``--view-token`` makes every room private; ``POST /rooms`` with ``"private": true``
gives one room a view token of its own (returned once, like the publish token). Tokens are kept
hashed, in ``view_tokens.json`` beside ``rooms.json``, so private rooms stay private across restarts.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from server.auth import hash_token, token_matches


class ViewAccess:
    def __init__(self, server_token: str = "", path: Path | None = None) -> None:
        self._server_hash = hash_token(server_token) if server_token else None
        self._path = path
        self._rooms: dict[str, str] = {}
        if path is not None and path.exists():
            self._rooms = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}

    @property
    def server_wide(self) -> bool:
        return self._server_hash is not None

    def required(self, room: str | None) -> bool:
        """Whether watching ``room`` (None: anything not tied to a room, like ``/ice``) needs a token."""
        return self._server_hash is not None or (room is not None and room in self._rooms)

    def allows(self, room: str | None, token: str) -> bool:
        """The server's view token opens every room; a room's own token opens that room."""
        hashes = [h for h in (self._server_hash, self._rooms.get(room) if room else None) if h]
        # Every hash is compared, so the time taken does not say which one matched.
        return any([token_matches(token, h) for h in hashes])

    def grant(self, room: str) -> str:
        """A new view token for ``room``, replacing any earlier one; returned once, kept hashed."""
        token = secrets.token_urlsafe(24)
        self._rooms[room] = hash_token(token)
        self._save()
        return token

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._rooms, indent=1))
        tmp.replace(self._path)  # atomic: a crash leaves the old file or the new one
