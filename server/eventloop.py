"""The event loop a server runs on (uvloop by default), and the exceptions no task retrieved.

Which loop: a gateway's CPU is mostly its event loop's (79 % of it at 16 live WebRTC sessions,
bench/results/gateway.md): aiortc's per-packet path is datagram callbacks, queue hand-offs and
task wake-ups, 50 a second a session, which uvloop (libuv, in Cython) runs for less than
asyncio's pure-Python loop. ``--loop asyncio`` (``NOVA_LOOP``) runs on asyncio's own, for an
operator to fall back to.

Exceptions that no task retrieved: logged once per kind, counted, never a flood.
asyncio reports an exception nobody awaited ("Task exception was never retrieved", a callback
that raised) through the loop's exception handler, whose default logs a full traceback every
time: one hostile client could make the log scroll by hundreds of lines a minute. Each such
report is a defect, so it is counted (``nova_loop_errors_total{kind}``) for alerting, and its
first occurrence of each kind is logged with its traceback; the rest only count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from server.settings import LOOPS, ConfigError

T = TypeVar("T")

log = logging.getLogger(__name__)

Sink = Callable[[str], None]


class LoopErrors:
    """The exception handler of one event loop, shared by the apps that run on it (tests run
    several apps on one loop): each app's sink counts every report."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.sinks: list[Sink] = []
        self.logged: set[str] = set()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if closed_while_connecting(exc):
            log.debug("a peer closed while it connected: %s", exc)
            return
        kind = type(exc).__name__ if exc is not None else "error"
        where = str(context.get("message", ""))[:80]
        for sink in list(self.sinks):
            sink(kind)
        key = f"{kind}: {where}"
        if key in self.logged or len(self.logged) > 256:
            log.debug("unretrieved %s (logged once already)", key)
            return
        self.logged.add(key)
        log.error(
            "unretrieved %s (%s); later ones of this kind are only counted in nova_loop_errors_total",
            kind,
            where,
            exc_info=exc if isinstance(exc, BaseException) else None,
        )


def closed_while_connecting(exc: object) -> bool:
    """aiortc's connecting task of a peer closed meanwhile (a ghost's deadline, a DELETE, a bad
    offer), failing as its transports are closed under it: the close is ours and complete, and
    aiortc leaves that task's error to nobody. Seen on uvloop, whose timing lets the close land
    between the connecting task's steps; not a defect to count."""
    from aiortc.exceptions import InvalidStateError

    if not isinstance(exc, InvalidStateError) or not str(exc).endswith(" is closed"):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and "aiortc" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "__connect"


def watch(loop: asyncio.AbstractEventLoop, sink: Sink) -> Callable[[], None]:
    """Count the loop's unretrieved exceptions into ``sink`` until the returned function is called."""
    handler = loop.get_exception_handler()
    if not isinstance(handler, LoopErrors):
        handler = LoopErrors(handler)
        loop.set_exception_handler(handler)
    handler.sinks.append(sink)
    errors = handler

    def unwatch() -> None:
        if sink in errors.sinks:
            errors.sinks.remove(sink)
        if not errors.sinks and loop.get_exception_handler() is errors:
            loop.set_exception_handler(errors.previous)

    return unwatch


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A maker of the event loop called ``name`` (one of ``LOOPS``)."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ConfigError(f"--loop (NOVA_LOOP) takes {' or '.join(LOOPS)}; got {name!r}")


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """``asyncio.run(main)`` on the event loop called ``loop``."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """What the running loop is, from the loop itself (not from the settings): said at startup."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"
