"""``GET /ice``: the ICE servers a browser should use, with short-lived TURN credentials.

coturn's TURN REST API (``use-auth-secret``): the username is ``<expiry>:<name>`` and the
password is base64(HMAC-SHA1(static-auth-secret, username)), so no per-user state is kept.
coturn checks the expiry when an allocation is made, not while it lives, so a few minutes
(``--ice-ttl``) are enough: pages fetch them just before they connect. Only the server's own
pages and ``--allow-origin`` get them (server/edge/guard.py), and with ``--view-token`` only holders
of a token.

``GET /rooms/{room}/ice`` is the same answer for a room's viewers, under the public CORS prefix:
the widget embedded on any origin asks it, and a page on an origin that may not have TURN
credentials reads an empty list instead of meeting a CORS refusal (a red error in every
embedding site's console).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time

from aiohttp import web
from aiortc import RTCIceServer

from server.edge.guard import origin_allowed
from server.edge.http import error
from server.rooms.names import InvalidRoomName, check_room_name
from server.routes.access import request_token
from server.settings import Settings
from server.state import STATE, AppState

TTL = 300

log = logging.getLogger(__name__)


def turn_credentials(
    secret: str, name: str = "nova", now: float | None = None, ttl: int = TTL
) -> tuple[str, str]:
    username = f"{int((now if now is not None else time.time()) + ttl)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


async def require_ice_right(request: web.Request, state: AppState, room: str | None = None) -> None:
    """With ``--view-token`` every ``/ice`` request, and for a private room (``?room=``, or
    ``room`` from the path) its own, needs a token that lets its holder watch or publish: the
    server's view or publish token, or the room's view or publish token, checked against the
    room's record as its authority keeps it."""
    raw_room = room or request.query.get("room") or None
    record = None
    if raw_room is not None:
        try:
            record = await state.rooms.record(check_room_name(raw_room))
        except InvalidRoomName as exc:
            raise error(400, "invalid_room", str(exc)) from exc
    if not state.access.required(record):
        return
    token = request_token(request)
    access = state.access
    if token is not None and (access.may_view(record, token) or access.may_publish(record, token)):
        return
    log.warning("refused GET /ice: %s", "no token" if token is None else "a token that opens nothing here")
    raise error(
        401,
        "view_token_required",
        "ICE servers are for holders of a view or publish token: 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": 'Bearer realm="nova-voice"'},
    )


def answer(settings: Settings, vary: bool = False) -> web.Response:
    servers: list[dict[str, object]] = []
    listed = urls(settings)
    if listed and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret, ttl=settings.ice_ttl)
        servers.append({"urls": listed, "username": username, "credential": credential})
    headers = {"Cache-Control": "no-store", **({"Vary": "Origin"} if vary else {})}
    return web.json_response({"iceServers": servers, "ttl": settings.ice_ttl}, headers=headers)


async def ice(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await require_ice_right(request, state)
    return answer(state.settings)


async def room_ice(request: web.Request) -> web.Response:
    """A room's viewers' ICE servers. Every origin may read this path (server/edge/guard.py), so what
    it holds depends on the ``Origin`` a browser sends, which no page can choose: TURN credentials
    only where ``/ice`` gives them (no ``Origin``, the server's own pages, ``--allow-origin``), and
    to any other origin an empty list, which leaves its viewers their host candidates and the
    HTTP feed, as a refused ``/ice`` did, without an error in the page's console."""
    state = request.app[STATE]
    try:
        room = check_room_name(request.match_info["room"])
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    # A private room's first, from any origin: its ICE answer is read with a token or not at all.
    await require_ice_right(request, state, room)
    if not origin_allowed(request, state.settings):
        note = "TURN credentials go to the server's own pages and the origins in --allow-origin only"
        return web.json_response(
            {"iceServers": [], "ttl": state.settings.ice_ttl, "note": note},
            headers={"Cache-Control": "no-store", "Vary": "Origin"},
        )
    return answer(state.settings, vary=True)


def urls(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.turn_urls.split(",") if u.strip()]


def server_ice_servers(settings: Settings) -> list[RTCIceServer]:
    """The server's own peers use the same TURN servers as browsers, so a peer that can only be
    reached through a relay (a symmetric NAT, a relay-only policy) still meets the server.
    STUN URLs in the list are used without credentials."""
    listed = urls(settings)
    stun = [u for u in listed if u.startswith("stun:")]
    turn = [u for u in listed if u.startswith(("turn:", "turns:"))]
    servers = [RTCIceServer(urls=stun)] if stun else []
    if turn and settings.turn_secret:
        username, credential = turn_credentials(
            settings.turn_secret, name="nova-server", ttl=settings.ice_ttl
        )
        servers.append(RTCIceServer(urls=turn, username=username, credential=credential))
    return servers


def routes() -> list[web.RouteDef]:
    return [web.get("/ice", ice), web.get("/rooms/{room}/ice", room_ice)]
