"""``GET /ice``: the ICE servers a browser should use, with short-lived TURN credentials.

coturn's TURN REST API (``use-auth-secret``): the username is ``<expiry>:<name>`` and the
password is base64(HMAC-SHA1(static-auth-secret, username)), so no per-user state is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from aiohttp import web
from aiortc import RTCIceServer

from server.settings import Settings
from server.state import STATE

TTL = 6 * 3600


def turn_credentials(
    secret: str, name: str = "nova", now: float | None = None, ttl: int = TTL
) -> tuple[str, str]:
    username = f"{int((now if now is not None else time.time()) + ttl)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


async def ice(request: web.Request) -> web.Response:
    settings = request.app[STATE].settings
    servers: list[dict[str, object]] = []
    listed = urls(settings)
    if listed and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret)
        servers.append({"urls": listed, "username": username, "credential": credential})
    return web.json_response({"iceServers": servers, "ttl": TTL}, headers={"Cache-Control": "no-store"})


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
        username, credential = turn_credentials(settings.turn_secret, name="nova-server")
        servers.append(RTCIceServer(urls=turn, username=username, credential=credential))
    return servers


def routes() -> list[web.RouteDef]:
    return [web.get("/ice", ice)]
