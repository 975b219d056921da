"""A room output of type ``webhook``: each final (and, with ``"partials": true``, each partial)
POSTed as JSON to a URL, signed, so an LLM, a notes tool or a chat bot can follow a live room.

The body is the caption message as viewers get it, plus ``id`` (``room:seq``, the same on every
retry) and ``at`` (when it was sent first). The signature header, Stripe's scheme::

    Nova-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>

A receiver recomputes the HMAC over the raw body and refuses a ``t`` older than a few minutes
(a replayed request). Posts go in order from one task per output; a 5xx, 408, 429, a timeout
or a refused connection is retried with backoff (0.5 s to 8 s); a 4xx is not (the receiver
said no: counted as dropped); a final more than 60 s old is dropped; a partial is never retried,
and one still waiting is replaced by its segment's next. Redirects are not followed, the reply is
read to 4 KiB, and the connection goes only where outputs may reach (``outbound_session``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from server.edge.outbound import DestinationRefused
from server.messages import CaptionMessage
from server.rooms.output_health import OutputHealth

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
TOO_OLD_S = 60.0
MAX_REPLY = 4096
MAX_QUEUE = 256
SIGNATURE_HEADER = "Nova-Signature"
MIN_SECRET, MAX_SECRET = 16, 256


class Counter(Protocol):
    def output_post(self, kind: str, outcome: str) -> None: ...

    def output_failure(self, kind: str, reason: str) -> None: ...


class Ready(Protocol):
    async def ready(self) -> None: ...


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Nova-Signature`` header's value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """What a receiver does (and the tests): the HMAC matches and the timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def reason_of(exc: BaseException) -> str:
    """A failure in a word for metrics and logs (never the exception's text: it may hold the URL)."""
    if isinstance(exc, DestinationRefused) or isinstance(getattr(exc, "os_error", None), DestinationRefused):
        return "refused_destination"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError | OSError):
        return "connect"
    return "protocol"


@dataclass
class _Post:
    message: CaptionMessage
    queued: float  # monotonic
    at: str  # when it was first sent for, ISO 8601 UTC


@dataclass
class WebhookOutput:
    """One room's captions to one webhook URL, in order, from one task."""

    url: str
    secret: str
    partials: bool
    metrics: Counter
    session: Callable[[], aiohttp.ClientSession]
    pacer: Ready
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    config: tuple[str, str, str] = ("", "", "")
    health: OutputHealth = field(default_factory=lambda: OutputHealth("webhook"))
    kind: str = "webhook"
    ident: str = ""  # the output's id in the room
    _queue: deque[_Post] = field(default_factory=deque)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Attached to a room: a webhook holds no connection, so nothing to open."""

    def on_final(self, message: CaptionMessage) -> None:
        if message.source_lang is None:  # the room's own words; translations have their viewers
            self._add(message)

    def on_caption(self, message: CaptionMessage) -> None:
        """Every source caption (a room's ``on_caption``): partials here, finals via on_final."""
        if self.partials and not message.final and message.text.strip():
            # Only the newest partial of a segment is worth sending.
            for i, post in enumerate(self._queue):
                if not post.message.final and post.message.segment == message.segment:
                    del self._queue[i]
                    break
            self._add(message)

    def _add(self, message: CaptionMessage) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self._queue.popleft()
            self._dropped()
        at = (
            datetime.fromtimestamp(self.wall(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        self._queue.append(_Post(message, self.monotonic(), at))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-output")

    async def _run(self) -> None:
        while self._queue:
            await self._deliver(self._queue.popleft())

    def body(self, post: _Post) -> bytes:
        data: dict[str, Any] = post.message.to_dict()
        data.update(id=f"{post.message.room}:{post.message.seq}", at=post.at)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def _dropped(self) -> None:
        self.metrics.output_post("webhook", "dropped")
        self.health.dropped_one()

    async def _post(self, body: bytes, event: str) -> tuple[int, str]:
        """One signed POST: (HTTP status or 0, failure reason)."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, int(self.wall()), body),
            "Nova-Event-Id": event,
        }
        try:
            async with asyncio.timeout(TIMEOUT_S):
                async with self.session().post(
                    self.url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    await resp.content.read(MAX_REPLY)
                    resp.close()  # the rest of the answer is discarded with the connection
                    return resp.status, "status"
        except Exception as exc:  # noqa: BLE001 - whatever the receiver does, the room goes on
            return 0, reason_of(exc)

    async def _deliver(self, post: _Post) -> None:
        body = self.body(post)
        event = f"{post.message.room}:{post.message.seq}"
        tries = (0.0, *BACKOFF_S) if post.message.final else (0.0,)
        for attempt, pause in enumerate(tries):
            if pause:
                await asyncio.sleep(pause)  # backoff before a retry
            await self.pacer.ready()
            if self.monotonic() - post.queued > TOO_OLD_S:
                break
            status, reason = await self._post(body, event)
            if 200 <= status < 300:
                self.metrics.output_post("webhook", "ok")
                self.health.delivered()
                return
            self.metrics.output_failure("webhook", reason)
            self.health.failed(reason, status or None)
            if 400 <= status < 500 and status not in (408, 429):
                break  # the receiver refused it: sending it again will not change that
            if attempt + 1 < len(tries):
                self.metrics.output_post("webhook", "retry")
            if attempt == 0:
                host = self.url.split("/")[2] if "//" in self.url else "?"
                log.warning("webhook to %s failed (%s)", host.rsplit("@", 1)[-1], reason)
        self._dropped()

    async def test(self) -> str | None:
        """One test caption now, once: None when the receiver took it, else why not, in words."""
        await self.pacer.ready()
        message = {"type": "test", "text": "Nova Voice test caption", "id": "test"}
        body = json.dumps(message, separators=(",", ":")).encode()
        status, reason = await self._post(body, "test")
        if 200 <= status < 300:
            self.health.delivered()
            return None
        self.health.failed(reason, status or None)
        return self.health.last_error

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def retire(self) -> None:
        """Send what is queued, then close; cancelled (shutdown), close at once."""
        try:
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
        finally:
            await self.aclose()


def check_secret(secret: object) -> str:
    """A webhook's secret: required, so that every post can be told from a forgery."""
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET or not secret.isprintable():
        raise ValueError(f"a webhook's secret is {MIN_SECRET} to {MAX_SECRET} printable characters")
    return secret
