"""Room outputs: captions delivered where the audience already is. YouTube Live's caption
ingestion: each final is POSTed to the stream's caption URL (YouTube Studio, "Closed captions",
"POST captions to URL"), in YouTube's format: a ``seq`` query parameter that grows by one per
request, a ``text/plain`` body of a UTC timestamp line (``YYYY-MM-DDTHH:MM:SS.mmm``) and the
caption's lines (at most 2 of 42 characters a post, cut by the subtitle rules).

Posts go out in order from one task per room, so a slow or failing endpoint delays only its
own posts, never the room's other listeners; failures are retried with backoff, and a post
too old to be useful (YouTube shows captions against the stream's clock) is dropped and
counted. The URL carries the stream's key: it is never logged and shown back only masked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from server.messages import CaptionMessage
from server.subtitles import CueRules, split_final

log = logging.getLogger(__name__)

MAX_URL = 2048
MAX_QUEUE = 256  # posts waiting for a slow endpoint before the oldest are dropped
TOO_OLD_S = 60.0  # a caption this late is no use to viewers of a live stream
TIMEOUT_S = 5.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
YOUTUBE_RULES = CueRules(max_chars=42, max_lines=2, max_duration=7.0, min_duration=1.0)


class OutputError(ValueError):
    """An output a room cannot carry; the message says why, for a clear 400."""


class OutputCounter(Protocol):
    def output_post(self, kind: str, outcome: str) -> None: ...


OUTPUT_HELP = (
    'an output is {"type": "youtube", "url": "<YouTube caption ingestion URL>"} or '
    '{"type": "obs", "url": "ws://127.0.0.1:4455", "password": "<obs-websocket password>"}'
)


def check_outputs(raw: object) -> tuple[dict[str, str], ...]:
    """``outputs`` of ``POST /rooms``: YouTube caption URLs and obs-websocket servers."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 4:
        raise OutputError('"outputs" is a list of at most 4, such as [{"type": "youtube", "url": "..."}]')
    out = []
    for item in raw:
        kind = item.get("type") if isinstance(item, dict) else None
        allowed = {"type", "url", "password"} if kind == "obs" else {"type", "url"}
        if kind not in ("youtube", "obs") or set(item) - allowed:  # type: ignore[arg-type]
            raise OutputError(OUTPUT_HELP)
        url, password = item.get("url"), item.get("password", "")  # type: ignore[union-attr]
        schemes = ("ws", "wss") if kind == "obs" else ("http", "https")
        parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL else None
        if parts is None or parts.scheme not in schemes or not parts.hostname:
            raise OutputError(
                f"a {kind} output's url is a {'/'.join(schemes)} URL of at most {MAX_URL} characters"
            )
        if not isinstance(password, str) or len(password) > 256:
            raise OutputError("an obs output's password is a string of at most 256 characters")
        out.append({"type": kind, "url": url, **({"password": password} if kind == "obs" else {})})
    return tuple(out)


def shown(output: dict[str, str]) -> dict[str, str]:
    """An output as it may be shown back: no stream key, no password."""
    return {"type": output["type"], "url": masked(output["url"])}


def masked(url: str) -> str:
    """The URL as it may be shown: its host and path, the query (the stream key) hidden."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?***" if parts.query else "")


def youtube_body(at: datetime, lines: tuple[str, ...]) -> str:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}"
    return stamp + "\n" + "\n".join(lines) + "\n"


@dataclass
class _Post:
    at: datetime  # when the words were said, on the wall clock
    lines: tuple[str, ...]
    queued: float  # monotonic


class _Poster:
    """What both outputs share: one task that sends what is queued, in order."""

    _task: asyncio.Task[None] | None

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def retire(self) -> None:
        """Send what is queued (the task ends once the queue is empty), then close; cancelled
        (shutdown), close at once."""
        try:
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
        finally:
            await self.aclose()


@dataclass
class YouTubeOutput(_Poster):
    """One room's caption posts to one YouTube ingestion URL, in order, from one task."""

    url: str
    metrics: OutputCounter
    session: Callable[[], aiohttp.ClientSession]
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    seq: int = 0
    _queue: asyncio.Queue[_Post] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    _task: asyncio.Task[None] | None = None

    def on_final(self, message: CaptionMessage) -> None:
        """A room final: its cues become posts, timed when their words were said."""
        if not message.text.strip() or message.source_lang is not None:
            return
        now_wall, now = self.wall(), self.monotonic()
        for cue in split_final(message.text, message.start, message.end, YOUTUBE_RULES):
            said = now_wall - max(0.0, message.end - cue.start)
            self._enqueue(_Post(datetime.fromtimestamp(said, UTC), cue.lines, now))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="youtube-output")

    def _enqueue(self, post: _Post) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.metrics.output_post("youtube", "dropped")
        self._queue.put_nowait(post)

    async def _run(self) -> None:
        while not self._queue.empty():
            post = self._queue.get_nowait()
            await self._deliver(post)

    async def _deliver(self, post: _Post) -> None:
        for attempt, pause in enumerate((0.0, *BACKOFF_S)):
            if pause:
                await asyncio.sleep(pause)  # backoff before a retry
            if self.monotonic() - post.queued > TOO_OLD_S:
                self.metrics.output_post("youtube", "dropped")
                return
            self.seq += 1  # one per request: YouTube wants it to grow by one each time
            target = URL(self.url, encoded=True).update_query(seq=str(self.seq))
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    async with self.session().post(
                        target,
                        data=youtube_body(post.at, post.lines).encode(),
                        headers={"Content-Type": "text/plain"},
                    ) as resp:
                        await resp.read()
                        ok = resp.status < 300
                        reason = f"HTTP {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                ok, reason = False, type(exc).__name__
            if ok:
                self.metrics.output_post("youtube", "ok")
                return
            self.metrics.output_post("youtube", "retry")
            if attempt == 0:
                # The URL holds the stream key: only its host is named.
                log.warning("YouTube caption post to %s failed (%s); retrying", masked(self.url), reason)
        self.metrics.output_post("youtube", "dropped")


OBS_RULES = CueRules(max_chars=32, max_lines=2, max_duration=7.0, min_duration=0.0)  # CEA-608 rows


def obs_auth(password: str, salt: str, challenge: str) -> str:
    """obs-websocket 5's authentication: base64(sha256(base64(sha256(password + salt)) + challenge))."""
    secret = base64.b64encode(hashlib.sha256((password + salt).encode()).digest()).decode()
    return base64.b64encode(hashlib.sha256((secret + challenge).encode()).digest()).decode()


class ObsRefused(Exception):
    """obs-websocket closed the handshake (a wrong password, say)."""


@dataclass
class ObsOutput(_Poster):
    """One room's finals into OBS's outgoing stream as CEA-608 captions (obs-websocket 5's
    ``SendStreamCaption``; YouTube and Twitch show them behind their CC button): 32 characters
    a row, two rows a caption, in order from one task, reconnecting with backoff when OBS
    restarts. The password is never logged nor shown back."""

    url: str
    password: str
    metrics: OutputCounter
    session: Callable[[], aiohttp.ClientSession]
    monotonic: Callable[[], float] = time.monotonic
    _queue: asyncio.Queue[tuple[str, float]] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    _task: asyncio.Task[None] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _ids: int = 0

    def on_final(self, message: CaptionMessage) -> None:
        if not message.text.strip() or message.source_lang is not None:
            return
        now = self.monotonic()
        for cue in split_final(message.text, message.start, message.end, OBS_RULES):
            if self._queue.full():
                self._queue.get_nowait()
                self.metrics.output_post("obs", "dropped")
            self._queue.put_nowait((cue.text, now))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="obs-output")

    async def _run(self) -> None:
        while not self._queue.empty():
            text, queued = self._queue.get_nowait()
            await self._deliver(text, queued)

    async def _deliver(self, text: str, queued: float) -> None:
        for attempt, pause in enumerate((0.0, *BACKOFF_S)):
            if pause:
                await asyncio.sleep(pause)  # backoff while OBS is away
            if self.monotonic() - queued > TOO_OLD_S:
                break
            ok = False
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    ws = await self._connected()
                    self._ids += 1
                    request = {"requestType": "SendStreamCaption", "requestId": str(self._ids)}
                    await ws.send_json({"op": 6, "d": {**request, "requestData": {"captionText": text}}})
                    ok = await self._answer(ws, str(self._ids))
            except (TimeoutError, aiohttp.ClientError, OSError, ObsRefused, ValueError, TypeError) as exc:
                await self._drop_connection()
                if attempt == 0:
                    log.warning("OBS output at %s: %s; retrying", masked(self.url), type(exc).__name__)
            if ok:
                self.metrics.output_post("obs", "ok")
                return
            self.metrics.output_post("obs", "retry")
        self.metrics.output_post("obs", "dropped")

    async def _connected(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is not None and not self._ws.closed:
            return self._ws
        ws = await self.session().ws_connect(self.url, protocols=("obswebsocket.json",))
        hello = await ws.receive_json()
        if hello.get("op") != 0:
            await ws.close()
            raise ValueError("not obs-websocket: no Hello")
        identify: dict[str, Any] = {"rpcVersion": 1, "eventSubscriptions": 0}
        auth = hello.get("d", {}).get("authentication")
        if auth:
            identify["authentication"] = obs_auth(self.password, auth["salt"], auth["challenge"])
        await ws.send_json({"op": 1, "d": identify})
        reply = await ws.receive()
        if reply.type != aiohttp.WSMsgType.TEXT or json.loads(reply.data).get("op") != 2:
            await ws.close()
            raise ObsRefused(f"obs-websocket refused to identify (close code {ws.close_code})")
        self._ws = ws
        return ws

    @staticmethod
    async def _answer(ws: aiohttp.ClientWebSocketResponse, request_id: str) -> bool:
        while True:
            msg = await ws.receive_json()
            if msg.get("op") == 7 and msg.get("d", {}).get("requestId") == request_id:
                return bool(msg["d"].get("requestStatus", {}).get("result"))

    async def _drop_connection(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            with contextlib.suppress(Exception):
                await ws.close()

    async def aclose(self) -> None:
        await super().aclose()
        await self._drop_connection()


@dataclass
class Outputs:
    """Every room's outputs in this process; one HTTP session for all of them."""

    metrics: OutputCounter
    rooms: dict[str, list[Any]] = field(default_factory=dict)
    configs: dict[str, tuple[dict[str, str], ...]] = field(default_factory=dict)
    # Posters of outputs a PATCH replaced, sending what they hold before they close.
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _http: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def attach(self, room: Any, outputs: tuple[dict[str, str], ...]) -> None:
        """Give ``room`` its outputs. A room keeps its posters (and their seq) while its outputs
        stay as they are; changed (``PATCH /rooms/{room}``), the old ones take no new final and
        the new ones take every final from now on."""
        if self.configs.get(room.name, ()) == outputs:
            return
        for poster in self.rooms.pop(room.name, []):
            room.on_final.remove(poster.on_final)
            task = asyncio.get_running_loop().create_task(poster.retire(), name="output-retired")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self.configs[room.name] = outputs
        if not outputs:
            return
        posters: list[Any] = [
            YouTubeOutput(o["url"], self.metrics, self.session)
            if o["type"] == "youtube"
            else ObsOutput(o["url"], o.get("password", ""), self.metrics, self.session)
            for o in outputs
        ]
        self.rooms[room.name] = posters
        for poster in posters:
            room.on_final.append(poster.on_final)

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()  # the poster closes as its retire() is cancelled
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for poster in [p for posters in self.rooms.values() for p in posters]:
            await poster.aclose()
        if self._http is not None:
            await self._http.close()
