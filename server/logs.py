"""Logging for people (text) or for machines (one JSON object a line), with the ids of the room,
session and request in hand, so that one caption can be followed through the logs."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Set where work for a room or a publisher starts; asyncio tasks inherit them when created.
_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("nova_log_context", default={})  # noqa: B039 - never mutated, always replaced


def bind(**ids: str) -> None:
    """Add ids (room=, session=, request=) to every later log line of this task and its children."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in ids.items() if v}})


@contextmanager
def bound(**ids: str) -> Iterator[None]:
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class _WithContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.nova = _CONTEXT.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "nova", {}),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = getattr(record, "nova", {})
        return line + ("  [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]" if ids else "")


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each request's log lines (and those of the peers and tasks it starts) carry its id."""
    with bound(request=uuid.uuid4().hex[:12]):
        return await handler(request)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_WithContext())
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
