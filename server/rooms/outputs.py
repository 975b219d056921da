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
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from server.edge.limits import TokenBucket
from server.edge.outbound import DestinationPolicy, DestinationRefused, outbound_session
from server.messages import CaptionMessage
from server.rooms.output_health import ALERT_AFTER, OutputHealth
from server.rooms.subtitles import CueRules, split_final
from server.rooms.webhook import WebhookOutput, check_secret

log = logging.getLogger(__name__)

MAX_URL = 2048
MAX_QUEUE = 256  # posts waiting for a slow endpoint before the oldest are dropped
TOO_OLD_S = 60.0  # a caption this late is no use to viewers of a live stream
TIMEOUT_S = 5.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
YOUTUBE_RULES = CueRules(max_chars=42, max_lines=2, max_duration=7.0, min_duration=1.0)
# What is read of an endpoint's answer: its status matters, its body does not (a 700 MB answer
# once grew the server by 1.4 GB); the rest is discarded with the connection.
MAX_REPLY = 4096
MAX_OBS_MESSAGE = 64 * 1024
MAX_ROOM_OUTPUTS = 4
# Requests (retries included) one room's outputs may make a minute, and all rooms together:
# a fast speaker makes ~40 posts a minute; a room pointed at a victim makes no more than this.
ROOM_POSTS_PER_MINUTE = 120
SERVER_POSTS_PER_MINUTE = 1200


class OutputError(ValueError):
    """An output a room cannot carry; the message says why, for a clear 400."""


class OutputCounter(Protocol):
    def output_post(self, kind: str, outcome: str) -> None: ...

    def output_failure(self, kind: str, reason: str) -> None: ...


OUTPUT_HELP = (
    'an output is {"type": "youtube", "url": "<YouTube caption ingestion URL>"}, '
    '{"type": "obs", "url": "ws://127.0.0.1:4455", "password": "<obs-websocket password>"} or '
    '{"type": "webhook", "url": "https://...", "secret": "<16+ characters>", "partials": false}'
)
EXTRA_FIELDS = {"youtube": {"url"}, "obs": {"url", "password"}, "webhook": {"url", "secret", "partials"}}


def check_outputs(
    raw: object, policy: DestinationPolicy | None = None, current: tuple[dict[str, str], ...] = ()
) -> tuple[dict[str, str], ...]:
    """``outputs`` of ``POST /rooms`` and ``PATCH /rooms/{room}``: YouTube caption URLs and
    obs-websocket servers. A URL with credentials in it is refused (they would become a Basic
    header sent wherever the URL points), and so is an address the server may not reach;
    names are checked again when they are resolved, at every connection.

    Each output gets an ``id``. An item ``{"id": ...}`` names one of the room's ``current``
    outputs and keeps it; with ``url`` or ``password`` beside it, it changes just those (the
    page edits an output whose stream key it was never shown)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_ROOM_OUTPUTS:
        raise OutputError(
            f'"outputs" is a list of at most {MAX_ROOM_OUTPUTS}, '
            'such as [{"type": "youtube", "url": "..."}]'
        )
    policy = policy or DestinationPolicy()
    known = {o.get("id"): o for o in current if o.get("id")}
    out = []
    for item in raw:
        if isinstance(item, dict) and "id" in item:
            if not isinstance(item["id"], str) or item["id"] not in known:
                raise OutputError(f"this room has no output with id {str(item['id'])[:16]!r}")
            base = known[item["id"]]
            if item.get("type", base["type"]) != base["type"]:
                raise OutputError("an output keeps its type; remove it and add one of the other type")
            item = {**base, **item}
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in EXTRA_FIELDS or set(item) - EXTRA_FIELDS[kind] - {"type", "id"}:  # type: ignore[arg-type,index]
            raise OutputError(OUTPUT_HELP)
        url, password = item.get("url"), item.get("password", "")  # type: ignore[union-attr]
        schemes = ("ws", "wss") if kind == "obs" else ("http", "https")
        host = url_host(url, schemes)
        if host is None:
            raise OutputError(
                f"a {kind} output's url is a {'/'.join(schemes)} URL of at most {MAX_URL} characters, "
                "with a host and without a user name or password in it"
            )
        reason = policy.check_host(host)
        if reason is not None:
            raise OutputError(
                f"a {kind} output may not point at {reason}; the server's --outputs-allow lists "
                "the networks and hosts outputs may reach besides public ones"
            )
        if not isinstance(password, str) or len(password) > 256:
            raise OutputError("an obs output's password is a string of at most 256 characters")
        ident = item.get("id") or new_id()  # type: ignore[union-attr]
        if kind == "webhook":
            try:
                secret = check_secret(item.get("secret"))  # type: ignore[union-attr]
            except ValueError as exc:
                raise OutputError(str(exc)) from None
            partials = item.get("partials", False)  # type: ignore[union-attr]
            if partials in ("true", ""):  # as a kept output stores it
                partials = partials == "true"
            if not isinstance(partials, bool):
                raise OutputError('a webhook\'s "partials" is true or false')
            out.append(
                {
                    "id": ident,
                    "type": kind,
                    "url": url,
                    "secret": secret,
                    "partials": "true" if partials else "",
                }
            )
            continue
        out.append(
            {"id": ident, "type": kind, "url": url, **({"password": password} if kind == "obs" else {})}
        )
    if len({o["id"] for o in out}) != len(out):
        raise OutputError("each output may be named once")
    return tuple(out)


def new_id() -> str:
    return secrets.token_hex(4)


def with_ids(outputs: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
    """Outputs kept before they had ids (rooms.json of an older version) get one each."""
    return tuple(o if o.get("id") else {"id": new_id(), **o} for o in outputs)


def url_host(url: object, schemes: tuple[str, ...]) -> str | None:
    """The host of a well-formed URL of one of ``schemes``, without credentials; else None."""
    if not isinstance(url, str) or len(url) > MAX_URL or any(c in url for c in "\r\n\t\x00 "):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
        host = parts.hostname
        URL(url, encoded=True)
    except ValueError:
        return None
    if parts.scheme not in schemes or not host or parts.username is not None or parts.password is not None:
        return None
    return host


def shown(output: dict[str, str]) -> dict[str, str]:
    """An output as it may be shown back: no stream key, no password."""
    return {"id": output.get("id", ""), "type": output["type"], "url": masked(output["url"])}


def masked(url: str) -> str:
    """The URL as it may be shown or logged: its scheme and host; the rest (a stream key may be
    in the path as well as in the query) hidden whole."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "(an unreadable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/***"


def post_rate(per_minute: float) -> TokenBucket:
    """A budget of posts a minute, bursts of a quarter of it (at least one)."""
    return TokenBucket(per_minute, max(1.0, per_minute / 4))


@dataclass
class Pacer:
    """A room's request budget and the server's, both spent by every request (retries too)."""

    room: TokenBucket
    server: TokenBucket
    monotonic: Callable[[], float] = time.monotonic

    async def ready(self) -> None:
        while True:
            now = self.monotonic()
            wait = max(self.room.wait(now), self.server.wait(now))
            if wait <= 0:
                self.room.take(now)
                self.server.take(now)
                return
            await asyncio.sleep(math.ceil(wait * 100) / 100)  # the budget refills with time


def unpaced() -> Pacer:
    return Pacer(post_rate(ROOM_POSTS_PER_MINUTE), post_rate(SERVER_POSTS_PER_MINUTE))


def youtube_body(at: datetime, lines: tuple[str, ...]) -> str:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}"
    return stamp + "\n" + "\n".join(lines) + "\n"


@dataclass
class _Post:
    at: datetime  # when the words were said, on the wall clock
    lines: tuple[str, ...]
    queued: float  # monotonic


def failure_reason(exc: BaseException) -> str:
    """A failure in a word for metrics and logs (never the exception's text: it may hold the URL)."""
    if isinstance(exc, DestinationRefused) or isinstance(getattr(exc, "os_error", None), DestinationRefused):
        return "refused_destination"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ObsRefused):
        return "handshake"
    if isinstance(exc, aiohttp.RedirectClientError):
        return "redirect"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError | OSError):
        return "connect"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.WSServerHandshakeError):
        return "status"
    return "protocol"


TEST_CAPTION = "Nova Voice test caption"


class _Poster:
    """What every output shares: one task that sends what is queued, in order, within the
    room's and the server's request budget, and the output's health (server/rooms/output_health.py)."""

    _task: asyncio.Task[None] | None
    pacer: Pacer
    health: OutputHealth
    kind: str = ""
    config: tuple[str, str, str] = ("", "", "")  # (type, url, password): what it was made for
    ident: str = ""  # the output's id in the room

    def start(self) -> None:
        """Attached to a room: an output that holds a connection opens it now, so its state is
        known before the first caption (a dead OBS address shows as retrying at once)."""

    async def test(self) -> str | None:
        """Send one test caption now, once: None when it arrived, else why not, in plain words."""
        raise NotImplementedError

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

    def _dropped(self) -> None:
        self.metrics.output_post(self.kind, "dropped")  # type: ignore[attr-defined]
        self.health.dropped_one()


@dataclass
class Sequence:
    """YouTube's ``seq``: one more per request to a URL, whichever poster sends it (a room made
    again, or an output moved by a PATCH while the old one still sends what it holds)."""

    last: int = 0

    def next(self) -> int:
        self.last += 1
        return self.last


@dataclass
class YouTubeOutput(_Poster):
    """One room's caption posts to one YouTube ingestion URL, in order, from one task."""

    url: str
    metrics: OutputCounter
    session: Callable[[], aiohttp.ClientSession]
    pacer: Pacer = field(default_factory=unpaced)
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sequence: Sequence = field(default_factory=Sequence)
    health: OutputHealth = field(default_factory=lambda: OutputHealth("youtube"))
    kind: str = "youtube"
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
            self._dropped()
        self._queue.put_nowait(post)

    async def _run(self) -> None:
        while not self._queue.empty():
            post = self._queue.get_nowait()
            await self._deliver(post)

    async def _deliver(self, post: _Post) -> None:
        for attempt, pause in enumerate((0.0, *BACKOFF_S)):
            if pause:
                await asyncio.sleep(pause)  # backoff before a retry
            await self.pacer.ready()
            if self.monotonic() - post.queued > TOO_OLD_S:
                break
            reason = await self._post(post)
            if reason is None:
                self.metrics.output_post("youtube", "ok")
                return
            self.metrics.output_post("youtube", "retry")
            if attempt == 0:
                # The URL holds the stream key: only its host is named.
                log.warning("YouTube caption post to %s failed (%s); retrying", masked(self.url), reason)
        self._dropped()

    async def _post(self, post: _Post) -> str | None:
        """One request: None when YouTube took it, else the failure's reason (counted)."""
        # One per request: YouTube wants it to grow by one each time.
        target = URL(self.url, encoded=True).update_query(seq=str(self.sequence.next()))
        status = None
        try:
            async with asyncio.timeout(TIMEOUT_S):
                # Redirects are not followed: a 307 would re-POST the captions wherever it says.
                async with self.session().post(
                    target,
                    data=youtube_body(post.at, post.lines).encode(),
                    headers={"Content-Type": "text/plain"},
                    allow_redirects=False,
                ) as resp:
                    await resp.content.read(MAX_REPLY)
                    resp.close()  # the rest of the answer is discarded with the connection
                    status = resp.status
                    reason = None if status < 300 else "status"
        except Exception as exc:  # noqa: BLE001 - whatever the endpoint does, the room goes on
            reason = failure_reason(exc)
        if reason is None:
            self.health.delivered()
            return None
        self.metrics.output_failure("youtube", reason)
        self.health.failed(reason, status)
        return reason

    async def test(self) -> str | None:
        await self.pacer.ready()
        post = _Post(datetime.fromtimestamp(self.wall(), UTC), (TEST_CAPTION,), self.monotonic())
        return None if await self._post(post) is None else self.health.last_error


OBS_RULES = CueRules(max_chars=32, max_lines=2, max_duration=7.0, min_duration=0.0)  # CEA-608 rows
# Reconnecting to OBS: soon after it restarts, then less and less often while it stays away
# (a streamer's OBS is closed for days between streams).
OBS_RECONNECT_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def obs_auth(password: str, salt: str, challenge: str) -> str:
    """obs-websocket 5's authentication: base64(sha256(base64(sha256(password + salt)) + challenge))."""
    secret = base64.b64encode(hashlib.sha256((password + salt).encode()).digest()).decode()
    return base64.b64encode(hashlib.sha256((secret + challenge).encode()).digest()).decode()


class ObsRefused(Exception):
    """obs-websocket closed the handshake (a wrong password, say), or answered it with something
    that is not obs-websocket 5."""


def obs_challenge(hello: object) -> tuple[str, str] | None:
    """(salt, challenge) of obs-websocket's Hello, None when it asks for no password; a Hello
    that is not one raises ObsRefused (a peer that is not OBS, or a hostile one)."""
    if not isinstance(hello, dict) or hello.get("op") != 0 or not isinstance(hello.get("d"), dict):
        raise ObsRefused("not obs-websocket: no Hello")
    auth = hello["d"].get("authentication")
    if auth is None:
        return None
    if not isinstance(auth, dict) or not all(isinstance(auth.get(k), str) for k in ("salt", "challenge")):
        raise ObsRefused("obs-websocket's Hello has an unreadable authentication")
    return auth["salt"], auth["challenge"]


@dataclass
class ObsOutput(_Poster):
    """One room's finals into OBS's outgoing stream as CEA-608 captions (obs-websocket 5's
    ``SendStreamCaption``; YouTube and Twitch show them behind their CC button): 32 characters
    a row, two rows a caption, in order from one task. The connection is held from the moment
    the output is attached, by a task that alone reads it and reconnects with backoff when OBS
    restarts or is away; the password is never logged nor shown back."""

    url: str
    password: str
    metrics: OutputCounter
    session: Callable[[], aiohttp.ClientSession]
    pacer: Pacer = field(default_factory=unpaced)
    monotonic: Callable[[], float] = time.monotonic
    health: OutputHealth = field(default_factory=lambda: OutputHealth("obs"))
    kind: str = "obs"
    _queue: asyncio.Queue[tuple[str, float]] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    _task: asyncio.Task[None] | None = None
    _keeper: asyncio.Task[None] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _answers: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one request on the wire at a time
    _ids: int = 0

    def start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # rooms loaded as the app is made: Outputs.start_all() starts them with the app
        if self._keeper is None or self._keeper.done():
            self._keeper = loop.create_task(self._keep(), name="obs-connection")

    def on_final(self, message: CaptionMessage) -> None:
        if not message.text.strip() or message.source_lang is not None:
            return
        now = self.monotonic()
        for cue in split_final(message.text, message.start, message.end, OBS_RULES):
            if self._queue.full():
                self._queue.get_nowait()
                self._dropped()
            self._queue.put_nowait((cue.text, now))
        self.start()
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
            reason = await self._send(text)
            if reason is None:
                self.metrics.output_post("obs", "ok")
                return
            self.metrics.output_post("obs", "retry")
            if attempt == 0 and reason != "offline":
                log.warning("OBS output at %s: %s; retrying", masked(self.url), reason)
        self._dropped()

    async def _send(self, text: str) -> str | None:
        """One ``SendStreamCaption`` on the held connection: None when OBS took it, else why not
        ("offline" while the connection is down: the connecting task counts that failure)."""
        request_id = ""
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self._ready.wait()
                async with self._lock:
                    await self.pacer.ready()
                    ws = self._ws
                    if ws is None or ws.closed:
                        return "offline"
                    self._ids += 1
                    request_id = str(self._ids)
                    answer = asyncio.get_running_loop().create_future()
                    self._answers[request_id] = answer
                    request = {"requestType": "SendStreamCaption", "requestId": request_id}
                    await ws.send_json({"op": 6, "d": {**request, "requestData": {"captionText": text}}})
                    took = await answer
        except TimeoutError:
            if not self._ready.is_set():
                return "offline"
            reason = "timeout"
        except Exception as exc:  # noqa: BLE001 - a broken or hostile peer is retried, never fatal
            reason = failure_reason(exc)
        else:
            if took:
                self.health.delivered()
                return None
            reason = "obs_refused"
        finally:
            self._answers.pop(request_id, None)
        self.metrics.output_failure("obs", reason)
        self.health.failed(reason)
        if reason != "obs_refused":
            await self._drop_connection()  # the connecting task opens a fresh one
        return reason

    async def test(self) -> str | None:
        self.start()
        if not self._ready.is_set() and self.health.state == "retrying":
            return self.health.last_error  # OBS is away: no use waiting for the connection
        reason = await self._send(TEST_CAPTION)
        return None if reason is None else self.health.last_error

    async def _keep(self) -> None:
        """Hold the connection: open it, read it (answers go to the request waiting for them),
        and when it fails or closes, open it again with backoff."""
        failures = 0
        while True:
            await self.pacer.ready()
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    ws = await self._open()
            except Exception as exc:  # noqa: BLE001 - OBS away, refused, or not OBS: retried
                reason = failure_reason(exc)
                self.metrics.output_failure("obs", reason)
                self.health.failed(reason)
                if failures == 0:
                    log.warning("OBS output at %s: %s; retrying", masked(self.url), reason)
                await asyncio.sleep(OBS_RECONNECT_S[min(failures, len(OBS_RECONNECT_S) - 1)])
                failures += 1
                continue
            failures = 0
            self._ws = ws
            self._ready.set()
            self.health.connected()
            try:
                await self._read(ws)
            finally:
                self._ready.clear()
                self._ws = None
                for answer in self._answers.values():
                    if not answer.done():
                        answer.set_exception(ConnectionResetError("obs-websocket closed"))
                with contextlib.suppress(Exception):
                    await ws.close()
            self.health.failed("closed")
            await asyncio.sleep(OBS_RECONNECT_S[0])  # OBS restarting: back within a second

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        ws = await self.session().ws_connect(
            self.url, protocols=("obswebsocket.json",), max_msg_size=MAX_OBS_MESSAGE, autoping=True
        )
        try:
            challenge = obs_challenge(await ws.receive_json())
            identify: dict[str, Any] = {"rpcVersion": 1, "eventSubscriptions": 0}
            if challenge is not None:
                identify["authentication"] = obs_auth(self.password, *challenge)
            await ws.send_json({"op": 1, "d": identify})
            reply = await ws.receive()
            if reply.type != aiohttp.WSMsgType.TEXT or _op(reply.data) != 2:
                raise ObsRefused(f"obs-websocket refused to identify (close code {ws.close_code})")
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Until the connection ends: each request's answer to the request that waits for it."""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                continue
            d = data.get("d") if isinstance(data, dict) else None
            if isinstance(d, dict) and data.get("op") == 7:
                answer = self._answers.get(str(d.get("requestId")))
                if answer is not None and not answer.done():
                    status = d.get("requestStatus")
                    answer.set_result(isinstance(status, dict) and status.get("result") is True)

    async def _drop_connection(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            with contextlib.suppress(Exception):
                await ws.close()

    async def aclose(self) -> None:
        await super().aclose()
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self._drop_connection()


def _op(data: str) -> object:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message.get("op") if isinstance(message, dict) else None


class TooManyOutputs(Exception):
    """The server carries its ``--max-outputs`` already."""


MAX_SEQUENCES = 4096  # YouTube URLs whose seq is remembered after their rooms went


def _config(output: dict[str, str]) -> tuple[str, str, str]:
    secret = output.get("password") or output.get("secret", "") + (
        "+partials" if output.get("partials") else ""
    )
    return output["type"], output["url"], secret


@dataclass
class Outputs:
    """Every live room's outputs in this process, one HTTP client for all of them, reaching only
    what the destination policy allows. A room's posters live as long as the room object does:
    a room forgotten while idle takes its outputs with it (they send what they hold), and the
    room made again under the same name gets its own (YouTube's ``seq`` carries on per URL)."""

    metrics: OutputCounter
    policy: DestinationPolicy = field(default_factory=DestinationPolicy)
    max_outputs: int = 64
    rooms: dict[int, tuple[Any, list[Any]]] = field(default_factory=dict)  # id(room) -> (room, posters)
    server_rate: TokenBucket = field(default_factory=lambda: post_rate(SERVER_POSTS_PER_MINUTE))
    _room_rates: dict[int, TokenBucket] = field(default_factory=dict)
    _sequences: dict[str, Sequence] = field(default_factory=dict)
    # Posters of outputs a PATCH replaced, sending what they hold before they close.
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _http: aiohttp.ClientSession | None = None
    alert_after: float = ALERT_AFTER

    def session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = outbound_session(self.policy)
        return self._http

    def count(self, but: Any = None) -> int:
        """Outputs live in this process (of every room but ``but``)."""
        return sum(len(posters) for key, (_r, posters) in self.rooms.items() if key != id(but))

    def check_room(self, room: Any, outputs: tuple[dict[str, str], ...]) -> None:
        """Raises TooManyOutputs when giving ``room`` these outputs would pass ``--max-outputs``."""
        if outputs and self.count(but=room) + len(outputs) > self.max_outputs:
            raise TooManyOutputs(f"the server carries its {self.max_outputs} outputs already")

    def attach(self, room: Any, outputs: tuple[dict[str, str], ...]) -> None:
        """Give ``room`` its outputs. An output that stays as it was keeps its poster (and its
        queue and health); one that changed (``PATCH /rooms/{room}``: a new stream key
        mid-event) takes no new final and sends what it holds, and the new ones take every
        final from now on."""
        key = id(room)
        _old_room, old = self.rooms.pop(key, (room, []))
        kept: dict[tuple[str, str, str], Any] = {}
        for poster in old:
            kept.setdefault(poster.config, poster)
        pacer = Pacer(self._room_rates.setdefault(key, post_rate(ROOM_POSTS_PER_MINUTE)), self.server_rate)
        posters = [kept.pop(_config(o), None) or self._poster(o, pacer) for o in outputs]
        for poster in [p for p in old if p not in posters]:
            self._retire(room, poster)
        if posters:
            self.rooms[key] = (room, posters)
        for output, poster in zip(outputs, posters, strict=True):
            poster.ident = output.get("id", "")
            if poster.on_final not in room.on_final:
                room.on_final.append(poster.on_final)
            if isinstance(poster, WebhookOutput) and poster.on_caption not in room.on_caption:
                room.on_caption.append(poster.on_caption)  # its partials, when asked for
            poster.start()
        # The room's publishers read its outputs' health in their status messages.
        room.outputs_report = (lambda: self.report(room)) if posters else None

    def start_all(self) -> None:
        """The app has started: the outputs of the rooms it loaded connect now."""
        for _room, posters in list(self.rooms.values()):
            for poster in posters:
                poster.start()

    def posters(self, room: Any) -> list[Any]:
        return list(self.rooms.get(id(room), (room, []))[1])

    def report(self, room: Any) -> list[dict[str, Any]]:
        """The room's outputs as they may be shown (no stream key, no password), each with its
        health: what ``GET /rooms/{room}`` and the publishers' status messages carry."""
        posters = {getattr(p, "ident", ""): p for p in self.posters(room)}
        out = []
        for output in room.outputs:
            poster = posters.get(output.get("id", ""))
            out.append({**shown(output), **(poster.health.to_dict() if poster is not None else {})})
        return out

    def poster(self, room: Any, ident: str) -> Any | None:
        return next((p for p in self.posters(room) if getattr(p, "ident", "") == ident), None)

    def alerts(self) -> list[tuple[Any, str]]:
        """(room, words) for each output that has just been failing longer than
        ``alert_after``: said once per failure to the room's publishers."""
        out = []
        for room, posters in list(self.rooms.values()):
            for poster in posters:
                if poster.health.alert_due(self.alert_after):
                    label = {"youtube": "YouTube", "obs": "OBS"}.get(poster.kind, poster.kind)
                    seconds = int(poster.health.failing_for())
                    out.append(
                        (
                            room,
                            f"The {label} output at {masked(poster.url)} has failed for {seconds} s: "
                            f"{poster.health.last_error or 'it keeps failing'}. It keeps trying.",
                        )
                    )
        return out

    def states(self) -> dict[tuple[str, str], int]:
        """How many outputs of each type are in each state (the metrics' gauge)."""
        counts: dict[tuple[str, str], int] = {}
        for _room, posters in list(self.rooms.values()):
            for poster in posters:
                key = (poster.kind, poster.health.state)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _poster(self, output: dict[str, str], pacer: Pacer) -> Any:
        if output["type"] == "youtube":
            url = output["url"]
            sequence = self._sequences.pop(url, None) or Sequence()
            self._sequences[url] = sequence  # the newest last: the oldest go first past the bound
            while len(self._sequences) > MAX_SEQUENCES:
                del self._sequences[next(iter(self._sequences))]
            poster: Any = YouTubeOutput(url, self.metrics, self.session, pacer, sequence=sequence)
        elif output["type"] == "webhook":
            partials = bool(output.get("partials"))
            poster = WebhookOutput(
                output["url"], output["secret"], partials, self.metrics, self.session, pacer
            )
        else:
            poster = ObsOutput(output["url"], output.get("password", ""), self.metrics, self.session, pacer)
        poster.config = _config(output)
        return poster

    def detach(self, room: Any) -> None:
        """The room object is gone (forgotten while idle): its outputs send what they hold and close."""
        _room, posters = self.rooms.pop(id(room), (room, []))
        room.outputs_report = None
        for poster in posters:
            self._retire(room, poster)
        self._room_rates.pop(id(room), None)

    def _retire(self, room: Any, poster: Any) -> None:
        if poster.on_final in room.on_final:
            room.on_final.remove(poster.on_final)
        if getattr(poster, "on_caption", None) in room.on_caption:
            room.on_caption.remove(poster.on_caption)
        task = asyncio.get_running_loop().create_task(poster.retire(), name="output-retired")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()  # the poster closes as its retire() is cancelled
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for _room, posters in list(self.rooms.values()):
            for poster in posters:
                await poster.aclose()
        if self._http is not None:
            await self._http.close()
