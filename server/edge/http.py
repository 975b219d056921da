"""HTTP plumbing shared by the handlers: JSON errors, bodies read whole within a size and a time,
JSON parsed within a depth."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

MAX_BODY = 64 * 1024
# A slow client may take this long to send a body; past it the request is answered 408.
BODY_SECONDS = 10.0
# Our bodies nest one level ({"sdp": ...}, {"name": ...}); this leaves room and stops abuse.
MAX_JSON_DEPTH = 8

# Client-facing messages are ours and short: echoed input is cut (shown), and a whole message
# past this is cut too, so no answer carries what a client sent at length.
MAX_MESSAGE = 400
MAX_SHOWN = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """State this request needs (rooms shared through Redis, say) cannot be reached right now:
    answered 503 with ``code`` and a retry; what failed goes to the log, not to the client."""

    code = "unavailable"
    message = "the service is unavailable right now; try again shortly"


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """Client input as an answer may echo it: at most ``limit`` characters, cut visibly."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


class JsonError(web.HTTPError):
    """An HTTP error whose body is ``{"error": code, "message": ...}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **fields: Any
    ) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps({"error": code, "message": shown(message, MAX_MESSAGE), **fields}),
            content_type="application/json",
            headers=headers,
        )
        self.code = code


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **fields: Any
) -> JsonError:
    """A JSON error; ``fields`` are added to its body (``suggestions`` of a room name, say)."""
    return JsonError(status, code, message, headers, **fields)


async def read_body(request: web.Request, limit: int = MAX_BODY, timeout: float = BODY_SECONDS) -> str:
    """The whole request body as text, refusing more than ``limit`` bytes."""
    data = await read_bytes(request, limit, timeout)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(400, "bad_encoding", "the body is not UTF-8 text") from exc


async def read_bytes(request: web.Request, limit: int = MAX_BODY, timeout: float = BODY_SECONDS) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes.

    ``content.read(n)`` returns what has arrived so far, not n bytes: an offer sent in several
    TCP segments would be cut short. Read until the end of the body, within ``timeout``.
    """
    if request.content_length is not None and request.content_length > limit:
        raise error(413, "body_too_large", f"the body is over {limit // 1024} KiB")
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(limit + 1 - len(data)):
                data += chunk
                if len(data) > limit:
                    raise error(413, "body_too_large", f"the body is over {limit // 1024} KiB")
    except TimeoutError as exc:
        raise error(408, "body_timeout", f"the body did not arrive within {timeout:.0f} s") from exc
    return bytes(data)


# Strings first (their brackets do not nest), then the brackets that are left.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str, stop_after: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``text`` nests arrays and objects, counted up to ``stop_after + 1``."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > stop_after:
                break
    return deepest


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON text to Python, or a 400: nesting past ``max_depth`` is refused before parsing
    (Python's parser recurses, and deep input ends in RecursionError), as are NaN and Infinity."""
    if json_depth(text, max_depth) > max_depth:
        raise error(400, "json_too_deep", f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})"
        raise error(400, "bad_json", "the body is not valid JSON" + where) from exc
    except (ValueError, RecursionError) as exc:
        raise error(400, "bad_json", "the body is not valid JSON") from exc


async def read_json(request: web.Request, limit: int = MAX_BODY) -> Any:
    """The request body parsed as JSON, within ``limit`` bytes and ``MAX_JSON_DEPTH`` levels."""
    return parse_json(await read_body(request, limit))


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405 answer in plain text; API clients get the same JSON as ours."""
    try:
        return await handler(request)
    except JsonError:
        raise
    except ServiceUnavailable as exc:
        # Rooms shared through Redis while Redis is away, say: said plainly, retried shortly.
        # What failed (hosts, ports) goes to the log, not to the client.
        log.warning("%s: %s", exc.code, exc)
        raise JsonError(503, exc.code, exc.message, headers={"Retry-After": "5"}) from None
    except web.HTTPException as exc:
        if exc.status < 400 or request.path == "/" or request.path.startswith(("/static/", "/overlay/")):
            raise
        code = exc.reason.lower().replace(" ", "_")
        raise JsonError(
            exc.status,
            code,
            f"{request.method} {shown(request.path)}: {exc.reason}",
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        ) from None
