"""Logs that stay readable under attack: a warning or error repeated many times a second (the
event loop's ``socket.accept() out of system resource``, once per queued connection and with a
traceback each time, on CPython 3.11) becomes one line, then one summary per interval."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pipeline.clock import Clock, MonotonicClock


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


def collapse_repeats(interval: float = 60.0) -> None:
    """Install on every handler of the root logger (records of all loggers pass there); one
    filter each, since every handler sees the same record."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(CollapseRepeats(interval))
