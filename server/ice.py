"""``GET /ice``: the ICE servers a browser should use, with short-lived TURN credentials.

coturn's TURN REST API (``use-auth-secret``): the username is ``<expiry>:<name>`` and the
password is base64(HMAC-SHA1(static-auth-secret, username)), so no per-user state is kept.
coturn checks the expiry when an allocation is made, not while it lives, so a few minutes
(``--ice-ttl``) are enough: pages fetch them just before they connect. Only the server's own
pages and ``--allow-origin`` get them (server/guard.py), and with ``--view-token`` only holders
of a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from aiohttp import web
from aiortc import RTCIceServer

from server.auth import hash_token, token_matches
from server.guard import request_token
from server.http import error
from server.settings import Settings
from server.state import STATE, AppState

TTL = 300


def turn_credentials(
    secret: str, name: str = "nova", now: float | None = None, ttl: int = TTL
) -> tuple[str, str]:
    username = f"{int((now if now is not None else time.time()) + ttl)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def token_opens_ice(state: AppState, room: str | None, token: str) -> bool:
    """Any token that lets its holder watch or publish: the server's view or publish token, or
    the view or publish token of ``room``."""
    if state.access.allows(room, token):
        return True
    found = state.rooms.get(room) if room else None
    hashes = [h for h in (found.token_hash if found else None,) if h]
    if state.settings.publish_token:
        hashes.append(hash_token(state.settings.publish_token))
    return any([token_matches(token, h) for h in hashes])


async def ice(request: web.Request) -> web.Response:
    state = request.app[STATE]
    settings = state.settings
    if state.access.server_wide:
        token = request_token(request)
        if token is None or not token_opens_ice(state, request.query.get("room") or None, token):
            raise error(
                401,
                "view_token_required",
                "ICE servers are for holders of a view or publish token: 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="nova-voice"'},
            )
    servers: list[dict[str, object]] = []
    listed = urls(settings)
    if listed and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret, ttl=settings.ice_ttl)
        servers.append({"urls": listed, "username": username, "credential": credential})
    return web.json_response(
        {"iceServers": servers, "ttl": settings.ice_ttl}, headers={"Cache-Control": "no-store"}
    )


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
    return [web.get("/ice", ice)]
