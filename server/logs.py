"""Logging for people (text) or for machines (one JSON object a line), with the ids of the room,
session and request in hand, so that one caption can be followed through the logs; and logs
that stay readable under attack: a warning or error repeated many times a second (the event
loop's ``socket.accept() out of system resource``, once per queued connection and with a
traceback each time, on CPython 3.11) becomes one line, then one summary per interval."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from pipeline.clock import Clock, MonotonicClock

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Set where work for a room or a publisher starts; asyncio tasks inherit them when created.
_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("nova_log_context", default={})  # noqa: B039 - never mutated, always replaced


def bind(**ids: str) -> None:
    """Add ids (room=, session=, request=) to every later log line of this task and its children."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in ids.items() if v}})


def current() -> dict[str, str]:
    """The ids bound now (room, session, request), to carry them to another process."""
    return dict(_CONTEXT.get())


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


@dataclass
class _Seen:
    until: float
    dropped: int = 0


@dataclass(eq=False)
class CollapseRepeats(logging.Filter):
    """Passes the first WARNING-or-worse record of each (logger, message template), then drops
    the same one for ``interval`` seconds; the next one to pass says how many were dropped.
    INFO and below (the access log) always pass."""

    interval: float = 60.0
    clock: Clock = field(default_factory=MonotonicClock)
    _seen: dict[tuple[str, str], _Seen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock.now()
        seen = self._seen.get(key)
        if seen is not None and now < seen.until:
            seen.dropped += 1
            return False
        if seen is not None and seen.dropped:
            record.msg = f"{record.msg} (and {seen.dropped} more like it in the last {self.interval:.0f} s)"
        if len(self._seen) > 1024:  # messages with variable text must not grow this without end
            self._seen = {k: v for k, v in self._seen.items() if now < v.until}
        self._seen[key] = _Seen(now + self.interval)
        return True


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_WithContext())
    handler.addFilter(CollapseRepeats())
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
