"""Who may watch and who may publish: the decisions, from a room's record and a request's tokens.

A server-wide ``--view-token`` makes every room private; ``POST /rooms`` with ``"private": true``
gives one room a view token of its own (returned once, like the publish token). Rooms keep
their tokens hashed in their record: in ``rooms.json`` for the embedded server, in Redis for
gateways, read fresh for every request so that every gateway decides alike (server/edge/guard.py
reads them; this module only decides).
"""

from __future__ import annotations

from collections.abc import Iterable

from server.edge.auth import hash_token, token_matches
from server.rooms.registry import RoomRecord


def _any_match(tokens: Iterable[str | None], hashes: Iterable[str | None]) -> bool:
    wanted = [h for h in hashes if h]
    # Every pair is compared, so the time taken does not say which one matched.
    return any([token_matches(t, h) for t in tokens if t for h in wanted])


class ViewAccess:
    def __init__(self, server_token: str = "", server_publish_token: str = "") -> None:
        self._server_hash = hash_token(server_token) if server_token else None
        self._publish_hash = hash_token(server_publish_token) if server_publish_token else None

    @property
    def server_wide(self) -> bool:
        return self._server_hash is not None

    def required(self, record: RoomRecord | None) -> bool:
        """Whether watching the room (None: anything not tied to a room, like ``/ice``) needs a token."""
        return self._server_hash is not None or (record is not None and record.private)

    def may_view(self, record: RoomRecord | None, *tokens: str | None) -> bool:
        """Whether any of ``tokens`` lets its holder read the room's captions and transcripts:
        the server's view token opens every room, a room's own view token that room."""
        if not self.required(record):
            return True
        return _any_match(tokens, (self._server_hash, record.view_hash if record else None))

    def may_publish(self, record: RoomRecord | None, *tokens: str | None) -> bool:
        """Whether any of ``tokens`` is a publish token for the room (its own or the server's)."""
        return _any_match(tokens, (self._publish_hash, record.publish_hash if record else None))
