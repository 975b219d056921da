"""The edge an open network meets first: the Host check (DNS rebinding), which origins may do
what (CORS), per-client admission of offers and rooms, and file descriptors.

The decisions themselves are pure (server/edge/limits.py); this module reads the request, the
process's descriptors and the settings, and answers with JSON errors. It knows nothing of
rooms: what it needs of the app is its own ``EDGE`` state.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from server.edge.http import Handler, JsonError, error, shown
from server.edge.limits import Admission, DescriptorFloor, Refusal, client_key
from server.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# Viewing and publishing may come from pages on any origin (embedding sites, WHIP clients);
# creating rooms and fetching TURN credentials only from the server's own pages or
# --allow-origin. Paths not listed get no CORS headers at all.
PUBLIC_CORS_PREFIXES = ("/whip/", "/whep/", "/rooms/", "/widget.js", "/health", "/static/", "/v1/")
RESTRICTED_CORS_PATHS = ("/rooms", "/ice")
CORS_COMMON = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match, Nova-View-Token",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Retry-After, Nova-Publisher",
    "Access-Control-Max-Age": "86400",
}


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _hostname(host: str) -> tuple[str, int | None] | None:
    """(name, port) of a Host header or an origin's netloc; None when it does not parse."""
    try:
        parts = urlsplit("//" + host)
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path or parts.query:
        return None
    return name.rstrip("."), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host: str, settings: Settings) -> bool:
    """DNS rebinding gives an attacker's name our address, so a browser sends ``Host: evil.example``:
    names are accepted only when they are ours (bound, ``--public-host``, localhost). Addresses
    are always accepted: a page cannot make a browser send a literal address as Host for its own
    origin."""
    parsed = _hostname(host)
    if parsed is None:
        return False
    name = parsed[0].lower()
    if _is_ip(name) or name == "localhost":
        return True
    ours = {settings.host.lower().rstrip(".")}
    for entry in _split(settings.public_host):
        entry_name = _hostname(urlsplit(entry).netloc if "://" in entry else entry)
        if entry_name is not None:
            ours.add(entry_name[0].lower())
    return name in ours


def same_origin(origin: str, host: str) -> bool:
    """An ``Origin`` header naming the host the request was sent to. A Host without a port (behind
    a TLS proxy, say) matches the origin's name whatever its scheme and port."""
    o = urlsplit(origin)
    theirs = _hostname(o.netloc) if o.scheme in DEFAULT_PORTS else None
    ours = _hostname(host)
    if theirs is None or ours is None:
        return False
    port = theirs[1] or DEFAULT_PORTS[o.scheme]
    return theirs[0].lower() == ours[0].lower() and (ours[1] is None or ours[1] == port)


def origin_allowed(request: web.Request, settings: Settings) -> bool:
    """A request that is not cross-origin (no ``Origin``: not from a page), from the server's own
    pages, or from an origin in ``--allow-origin``."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {o.rstrip("/").lower() for o in _split(settings.allow_origin)}
    return (
        "*" in allowed
        or origin.rstrip("/").lower() in allowed
        or same_origin(origin, request.headers.get("Host", ""))
    )


@dataclass
class Edge:
    """What the edge needs of the app: the settings it checks requests against, the admission
    counts and the descriptor floor (shared with the peers), and a counter of refusals."""

    settings: Settings
    admission: Admission
    descriptors: DescriptorFloor
    rejected: Callable[[str], None] = lambda code: None


EDGE = web.AppKey("edge", Edge)


def refused(refusal: Refusal) -> JsonError:
    return error(refusal.status, refusal.code, refusal.message, headers=refusal.headers())


def descriptor_usage() -> tuple[int, int] | None:
    """(open, soft limit) of this process's file descriptors; None where that cannot be known."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        return len(os.listdir("/proc/self/fd")), soft
    except FileNotFoundError:
        return None  # no /proc: no floor
    except OSError:
        return soft, soft  # listing needs a descriptor of its own: there is none left


def check_descriptors(edge: Edge, usage: tuple[int, int] | None) -> None:
    """Refuses with 503 while descriptors are low; logs once when they run low and once when
    they recover, never once per request."""
    if usage is None:
        return
    refusal, line = edge.descriptors.check(*usage)
    if line is not None:
        (log.warning if refusal else log.info)("%s", line)
    if refusal is not None:
        edge.rejected(refusal.code)
        raise refused(refusal)


def spare_descriptors(request: web.Request) -> None:
    """A request about to hold a connection open (a feed): descriptors to spare, or a 503."""
    check_descriptors(request.app[EDGE], descriptor_usage())


def client_of(request: web.Request) -> str:
    """The key a request's limits are kept under: its peer address, or with ``--trust-proxy``
    the address our reverse proxy appended last to ``X-Forwarded-For``."""
    address = request.remote
    if request.app[EDGE].settings.trust_proxy:
        forwarded = _split(request.headers.get("X-Forwarded-For", ""))
        if forwarded:
            address = forwarded[-1]
    return client_key(address)


def public_base(request: web.Request) -> str:
    """The scheme and host a browser reached the server by, for links the server hands out:
    with ``--trust-proxy``, the scheme our reverse proxy says (``X-Forwarded-Proto``: a proxy
    that speaks HTTPS to browsers and HTTP to us), else the request's own."""
    scheme = request.scheme
    if request.app[EDGE].settings.trust_proxy:
        forwarded = _split(request.headers.get("X-Forwarded-Proto", ""))
        if forwarded and forwarded[-1].lower() in ("http", "https"):
            scheme = forwarded[-1].lower()
    return f"{scheme}://{request.host}"


def admit(request: web.Request) -> str:
    """A request about to create a peer or a room: descriptors to spare, and the client within
    its rate. Returns the client's key (pending peers are counted under it)."""
    edge = request.app[EDGE]
    check_descriptors(edge, descriptor_usage())
    client = client_of(request)
    refusal = edge.admission.offer(client)
    if refusal is not None:
        edge.rejected(refusal.code)
        raise refused(refusal)
    return client


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The Host check before anything else; a descriptor shortage met anyway is a 503, not a 500."""
    host = request.headers.get("Host")
    if not host:
        raise error(400, "missing_host", "the request has no Host header")
    edge = request.app[EDGE]
    if not host_allowed(host, edge.settings):
        raise error(
            421,
            "unknown_host",
            f"this server does not answer for {shown(host)!r}; its names are set with --public-host",
        )
    try:
        return await handler(request)
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        check_descriptors(edge, descriptor_usage() or (1, 1))  # logs once, raises the 503
        raise error(503, "low_on_resources", "the server is low on resources; try again shortly") from exc


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Publishers and viewers may live on other origins (WHIP clients, embedding sites): any
    origin. Room creation and ``/ice``: only the server's own pages and ``--allow-origin``."""
    path = request.path
    origin = request.headers.get("Origin")
    headers: dict[str, str] = {}
    if path in RESTRICTED_CORS_PATHS:
        if not origin_allowed(request, request.app[EDGE].settings):
            raise error(
                403,
                "origin_not_allowed",
                f"pages on {origin} may not use {path}; the server's --allow-origin lists who may",
            )
        if origin is not None:
            headers = {**CORS_COMMON, "Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    elif path.startswith(PUBLIC_CORS_PREFIXES):
        headers = {**CORS_COMMON, "Access-Control-Allow-Origin": "*"}
    if headers and request.method == "OPTIONS":
        return web.Response(status=204, headers=headers)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(headers)
        raise
    response.headers.update(headers)
    return response
