"""What routes check of a request about a room: its tokens, against the room's record as its
authority keeps it now (this process's registry, or Redis for gateways). The decisions are
server/rooms/access.py's; this module reads the request and answers with JSON errors."""

from __future__ import annotations

import logging

from aiohttp import web

from server.edge.auth import bearer
from server.edge.http import error, shown
from server.rooms.registry import RoomRecord
from server.state import STATE

log = logging.getLogger(__name__)


def request_token(request: web.Request) -> str | None:
    """A token from ``Authorization: Bearer`` or, for links and OBS URLs, ``?token=``."""
    return bearer(request) or request.query.get("token") or None


async def require_view(request: web.Request, room: str, publishers_too: bool = False) -> RoomRecord:
    """Viewers, transcripts and room info of a private room (or of a server with ``--view-token``)
    need its view token: 401 without one, 403 with a wrong one. Decided from the room's record
    as its authority keeps it now (Redis for gateways: unreachable refuses with 503, never opens).
    ``publishers_too``: the room's publish token also opens it (room info, which a publisher
    reads for its languages)."""
    state = request.app[STATE]
    record = await state.rooms.record(room)
    if not state.access.required(record):
        return record
    token = request_token(request)
    if state.access.may_view(record, token) or (publishers_too and state.access.may_publish(record, token)):
        return record
    # Logged with the request's id (bound by the request_ids middleware); floods collapse.
    path = shown(request.path, 120)
    if token is None:
        log.warning("refused %s %s: no view token", request.method, path)
        raise error(
            401,
            "view_token_required",
            f"room {room!r} needs its view token: 'Authorization: Bearer <view token>' or ?token=",
            headers={"WWW-Authenticate": 'Bearer realm="nova-voice"'},
        )
    log.warning("refused %s %s: wrong view token", request.method, path)
    raise error(403, "forbidden", "the view token is not valid for this room")


def require_publish(request: web.Request, record: RoomRecord, needs: str) -> None:
    """Publishing into a room, or changing it, needs its publish token (or the server's): 401
    without one (``needs`` says what for), 403 with a wrong one; refusals are logged."""
    token = bearer(request)
    path = shown(request.path, 120)
    if token is None:
        log.warning("refused %s %s: no publish token", request.method, path)
        raise error(401, "unauthorized", needs, headers={"WWW-Authenticate": 'Bearer realm="nova-voice"'})
    if not request.app[STATE].access.may_publish(record, token):
        log.warning("refused %s %s: wrong publish token", request.method, path)
        raise error(403, "forbidden", "the publish token is not valid for this room")
