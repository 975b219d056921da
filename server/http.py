"""HTTP plumbing shared by the handlers: JSON errors, bounded bodies, CORS."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.rooms import RoomsUnavailable

MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class JsonError(web.HTTPError):
    """An HTTP error whose body is ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps({"error": code, "message": message}),
            content_type="application/json",
            headers=headers,
        )
        self.code = code


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JsonError:
    return JsonError(status, code, message, headers)


async def read_body(request: web.Request, limit: int = MAX_BODY) -> str:
    """The request body as text, refusing more than ``limit`` bytes before reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise error(413, "body_too_large", f"the body is over {limit // 1024} KiB")
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise error(413, "body_too_large", f"the body is over {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(400, "bad_encoding", "the body is not UTF-8 text") from exc


CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Retry-After",
    "Access-Control-Max-Age": "86400",
}
CORS_PREFIXES = ("/whip/", "/rooms", "/ice", "/widget.js", "/health", "/static/")


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Publishers and viewers may live on other origins (WHIP clients, embedding sites)."""
    wants = request.path.startswith(CORS_PREFIXES)
    if wants and request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if wants:
            exc.headers.update(CORS_HEADERS)
        raise
    if wants:
        response.headers.update(CORS_HEADERS)
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405 answer in plain text; API clients get the same JSON as ours."""
    try:
        return await handler(request)
    except JsonError:
        raise
    except RoomsUnavailable as exc:
        # Rooms shared through Redis while Redis is away: said plainly, retried shortly.
        raise JsonError(503, "rooms_unavailable", str(exc), headers={"Retry-After": "5"}) from None
    except web.HTTPException as exc:
        if exc.status < 400 or request.path == "/" or request.path.startswith(("/static/", "/overlay/")):
            raise
        code = exc.reason.lower().replace(" ", "_")
        raise JsonError(
            exc.status,
            code,
            f"{request.method} {request.path}: {exc.reason}",
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        ) from None
