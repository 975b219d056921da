"""How a room output is doing, in words its owner can act on: connected, retrying since when and
why, idle; when it last delivered, how much it sent and dropped.

Every output type keeps one ``OutputHealth`` and reports to it (a delivery, a failure with its
reason, a connection opened or lost, a caption dropped); ``GET /rooms/{room}``, the status
messages to the room's publishers and the metrics read it. It is pure: time is read from the
clock it is given, so a test moves time by hand. An output failing for longer than
``ALERT_AFTER`` seconds is said to the publisher's page once per failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# An output failing this long is worth interrupting the speaker for: a restart of OBS or a
# network blip recovers well within it (obs-websocket reconnects in 0.5-8 s here).
ALERT_AFTER = 30.0

STATES = ("idle", "connected", "retrying")

# Each failure reason (server/rooms/outputs.py's failure_reason) in words a streamer can act on.
REASONS = {
    "connect": "nothing answers at that address (is it running, and is the address and port right?)",
    "refused_destination": (
        "this server may not connect there (a private or local address needs --outputs-allow)"
    ),
    "timeout": "no answer within 5 s",
    "status": "the endpoint refused the caption",
    "redirect": "the endpoint answered with a redirect, which is not followed",
    "handshake": "OBS refused the connection (check the obs-websocket password)",
    "protocol": "the other end does not speak the expected protocol",
    "closed": "the connection was closed by the other end",
    "obs_refused": "OBS did not take the caption (it takes captions only while it is streaming)",
    "offline": "not connected",
}


def plain_words(reason: str, status: int | None = None) -> str:
    """A failure in words, with the HTTP status where there is one (401/403: a stream key)."""
    if reason == "status" and status is not None:
        if status in (401, 403):
            return f"the endpoint refused the caption (HTTP {status}: check the stream key or URL)"
        if status == 404:
            return "the endpoint does not know this URL (HTTP 404: check the caption URL)"
        return f"the endpoint refused the caption (HTTP {status})"
    return REASONS.get(reason, "it failed")


def _stamp(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class OutputHealth:
    """One output's state, updated by its poster and read by whoever shows it."""

    kind: str
    clock: Callable[[], float] = time.time  # wall-clock seconds: shown as times of day
    state: str = "idle"
    since: float = field(default=-1.0)
    last_error: str | None = None
    last_ok: float | None = None
    sent: int = 0
    dropped: int = 0
    _alerted: bool = False

    def __post_init__(self) -> None:
        if self.since < 0:
            self.since = self.clock()

    def _enter(self, state: str) -> None:
        if self.state != state:
            self.state, self.since = state, self.clock()
            self._alerted = False

    def delivered(self) -> None:
        """A caption reached the other end."""
        self.sent += 1
        self.last_ok = self.clock()
        self._enter("connected")

    def connected(self) -> None:
        """A connection is open and ready (obs-websocket identified)."""
        self._enter("connected")

    def failed(self, reason: str, status: int | None = None) -> None:
        """A delivery or a connection failed; the output keeps trying."""
        self.last_error = plain_words(reason, status)
        self._enter("retrying")

    def dropped_one(self) -> None:
        """A caption given up (too old, or the queue full behind a dead endpoint)."""
        self.dropped += 1

    def failing_for(self) -> float:
        """Seconds it has been retrying (0 unless retrying)."""
        return self.clock() - self.since if self.state == "retrying" else 0.0

    def alert_due(self, after: float = ALERT_AFTER) -> bool:
        """True once per failure, when it has been retrying longer than ``after`` seconds."""
        if self._alerted or self.failing_for() <= after:
            return False
        self._alerted = True
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "since": _stamp(self.since),
            "seconds": round(max(0.0, self.clock() - self.since), 1),
            "last_ok": _stamp(self.last_ok),
            "sent": self.sent,
            "dropped": self.dropped,
        }
        if self.last_error is not None:
            out["last_error"] = self.last_error
        return out
