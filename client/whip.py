"""The WHIP side of ``nova-voice dictate``: one session (an offer POSTed, an answer, a DELETE),
what a refusal means for the user, and the backoff between tries."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from client.text import Once, clean, parse_retry_after

log = logging.getLogger("nova-voice.dictate")

CONNECT_TIMEOUT = 15.0  # the POST, then ICE and the data channel
RETRIED = (408, 425, 429)  # the 4xx answers that may change; every other 4xx ends the client


class Refused(Exception):
    """A refusal that retrying will not change: exit code 2."""


class Unavailable(Exception):
    """The server is unreachable or busy: try again later."""

    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class Backoff:
    """0.5 s doubling to 10 s; each wait drawn between half and all of it (so that many clients
    cut off together do not come back together)."""

    initial: float = 0.5
    cap: float = 10.0
    rand: Callable[[], float] = random.random
    attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.initial * 2**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


def refusal(status: int, body: str, room: str, url: str) -> str:
    """The one line said for a refusal that retrying will not change. The server's words in it
    are ``clean``: they reach the user's terminal."""
    try:
        data = json.loads(body)
        code, message = clean(str(data.get("error", ""))), clean(str(data.get("message", "")))
    except (ValueError, AttributeError, RecursionError):
        code, message, data = "", "", {}
    if status == 401:
        return f"room {room!r} needs a publish token: pass --token (or set NOVA_PUBLISH_TOKEN)"
    if status == 403:
        return f"the publish token is not valid for room {room!r}: check --token"
    if status == 404 and code == "unknown_room":
        named = data.get("suggestions")  # rooms the token opens whose names are close
        meant = [clean(n) for n in named if isinstance(n, str)][:3] if isinstance(named, list) else []
        guess = f" (did you mean {' or '.join(repr(n) for n in meant)}?)" if meant else ""
        return f"room {room!r} does not exist on {url}{guess}: create it first (POST /rooms) or pick --room"
    if status in (404, 405) and code in ("", "not_found", "method_not_allowed"):
        return f"{url} has no WHIP endpoint: is --server a Nova Voice server?"
    return f"the server refused to publish ({status} {code or 'error'}): {message or clean(body)[:200]}"


def session_url(url: str, location: str | None) -> str | None:
    """The session's URL from the answer's ``Location`` (relative to ``url``), or None when it is
    not one: missing, unparsable (``http://[::1`` raises in urljoin), not http(s), or holding
    characters ``clean`` would remove. The client sends its DELETE, with the token, there."""
    if not location:
        return None
    try:
        joined = urljoin(url, location.strip())
        parts = urlsplit(joined)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or clean(joined) != joined
        or " " in joined
    ):
        return None
    return joined


class Connection:
    """One WHIP session: a peer with the feed's track and a captions channel."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        room: str,
        once: Once | None = None,
    ) -> None:
        self.http, self.url, self.headers, self.room = http, url, headers, room
        self.once = once or Once(log)  # shared across connections: a bad header is said once
        self.pc = RTCPeerConnection()
        self.location: str | None = None
        self.publisher: str | None = None  # the server's public id of this session
        self.up = asyncio.Event()
        self.down = asyncio.Event()

    async def open(
        self,
        track: MediaStreamTrack,
        on_message: Callable[[Any], None],
        on_publisher: Callable[[str | None], None] = lambda _: None,
    ) -> None:
        """Publish ``track``; ``on_message`` gets the channel's messages, and ``on_publisher``
        the answer's ``Nova-Publisher`` (None without one) before any message can arrive."""
        self.pc.addTransceiver(track, direction="sendonly")
        channel = self.pc.createDataChannel("captions")
        channel.on("open", self.up.set)
        channel.on("close", self.down.set)
        channel.on("message", on_message)

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                self.down.set()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        try:
            async with (
                asyncio.timeout(CONNECT_TIMEOUT),
                self.http.post(self.url, data=self.pc.localDescription.sdp, headers=self.headers) as resp,
            ):
                body = await resp.text()
                if 400 <= resp.status < 500 and resp.status not in RETRIED:
                    raise Refused(refusal(resp.status, body, self.room, self.url))
                if resp.status != 201:
                    raise Unavailable(f"{self.url} answered {resp.status}", self.retry_after(resp))
                location = resp.headers.get("Location")
                self.publisher = resp.headers.get("Nova-Publisher", "").strip() or None
        except aiohttp.ClientConnectorError as exc:
            raise Unavailable(f"cannot reach {exc.host}:{exc.port} ({exc.os_error.strerror or exc})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
        self.location = session_url(self.url, location)
        if self.location is None or not body.startswith("v=0"):
            raise Refused(f"{self.url} did not answer with SDP and a Location: is --server a WHIP server?")
        on_publisher(self.publisher)  # before the answer is applied: no message comes before it
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        except Exception as exc:  # ValueError, and for a crafted answer KeyError, AssertionError...
            raise Refused(f"the server's answer cannot be used: {type(exc).__name__}: {exc}") from exc
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self.up.wait()
        except TimeoutError:
            raise Unavailable(f"no connection within {CONNECT_TIMEOUT:.0f} s (ICE)") from None

    def retry_after(self, resp: aiohttp.ClientResponse) -> float:
        """The answer's ``Retry-After`` in seconds; 0 (the backoff's own wait) when absent or not
        a value it may have (logged once)."""
        header = resp.headers.get("Retry-After")
        if header is None:
            return 0.0
        wait = parse_retry_after(header)
        if wait is None:
            self.once.warn("retry-after", "ignoring Retry-After %r: neither seconds nor an HTTP date", header)
            return 0.0
        return wait

    def delete_headers(self) -> dict[str, str]:
        """The publish token goes only where the offer went: a ``Location`` on another origin
        (WHIP allows one) gets the DELETE, not the token."""
        same = _origin(self.location or "") == _origin(self.url)
        return self.headers if same else {k: v for k, v in self.headers.items() if k != "Authorization"}

    async def close(self, delete: bool = True) -> None:
        """DELETE the session (the server finalises first: its last words come on the channel),
        then, briefly, let them arrive before the peer closes."""
        if delete and self.location:
            try:
                async with (
                    asyncio.timeout(CONNECT_TIMEOUT),
                    self.http.delete(self.location, headers=self.delete_headers()),
                ):
                    pass
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("DELETE %s failed: %s", self.location, exc)
            try:
                async with asyncio.timeout(2.0):
                    await self.down.wait()
            except TimeoutError:
                pass
        await self.pc.close()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port
