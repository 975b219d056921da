"""API keys and what each key may do at once.

Keys come from ``--api-key`` (comma-separated) and ``--api-keys-file`` (one a line, an optional
name after it; ``#`` starts a comment), are kept as SHA-256 hashes and compared in constant
time. A request presents one as ``Authorization: Bearer`` (OpenAI's SDKs) or ``Authorization:
Token`` (Deepgram's); a browser's WebSocket, which cannot set headers, as a subprotocol
(Deepgram's ``token, KEY``, OpenAI's ``openai-insecure-api-key.KEY``). Without keys the APIs are
open only on a loopback server; bound anywhere else without keys they answer 401 to everyone
(the server still starts: its WHIP side has its own tokens).

Limits per key (per client address when the server is open on loopback), like the WHIP ones:
requests a minute (a token bucket, bursts of a quarter), file jobs at once, live sockets at once.
Pure decisions with time as an input; the routes ask and release.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from pipeline.clock import Clock, MonotonicClock
from server.edge.guard import client_of
from server.edge.http import JsonError
from server.edge.limits import TokenBuckets
from server.settings import ConfigError, Settings

MAX_KEY = 256


class ApiRefused(Exception):
    """A request an API answers with an error, in that API's shape (each renders its own)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorShape = Callable[[int, str, str, dict[str, str] | None], web.Response]


def refusals_as(shape: ErrorShape) -> Callable[[Handler], Handler]:
    """Handlers whose refusals, their own (ApiRefused) and the shared edge helpers' (JsonError),
    answer in one API's error shape: ``shape(status, code, message, headers)``."""

    def wrap(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiRefused as exc:
                return shape(exc.status, exc.code, exc.message, exc.headers())
            except JsonError as exc:
                body = json.loads(exc.text or "{}")
                return shape(exc.status, body.get("error", "error"), body.get("message", ""), None)

        return wrapped

    return wrap


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    """Hashes of the keys that open the APIs, with a name for each (logs and limits)."""

    hashes: tuple[tuple[str, str], ...] = ()  # (sha256, name)
    open: bool = False  # no keys and a loopback server: anyone on this machine

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        found: list[tuple[str, str]] = []
        for i, key in enumerate(k.strip() for k in settings.api_key.split(",")):
            if key:
                found.append((key, f"key{i + 1}"))
        if settings.api_keys_file:
            try:
                lines = Path(settings.api_keys_file).read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"--api-keys-file {settings.api_keys_file}: {exc.strerror}") from exc
            for n, line in enumerate(lines, 1):
                parts = line.split("#", 1)[0].split()
                if parts:
                    found.append((parts[0], parts[1] if len(parts) > 1 else f"line{n}"))
        for key, name in found:
            if len(key) < 16 or len(key) > MAX_KEY or not key.isascii() or not key.isprintable():
                raise ConfigError(f"API key {name!r}: 16 to {MAX_KEY} printable ASCII characters, no spaces")
        return cls(tuple((_hash(k), name) for k, name in found), open=not found and settings.loopback)

    def identify(self, presented: str | None) -> str | None:
        """The name of the key presented, None when it opens nothing. Every key is compared, in
        constant time, so the time taken says nothing of which came close."""
        if not presented or len(presented) > MAX_KEY:
            return None
        digest = _hash(presented)
        name = None
        for known, key_name in self.hashes:
            if hmac.compare_digest(digest, known):
                name = key_name
        return name


def presented_key(request: web.Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer|Token <key>``, or a WebSocket
    subprotocol (``token, <key>``; ``openai-insecure-api-key.<key>``)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    for i, proto in enumerate(protocols):
        if proto.lower() == "token" and i + 1 < len(protocols) and protocols[i + 1]:
            return protocols[i + 1]
        if proto.startswith("openai-insecure-api-key."):
            return proto.removeprefix("openai-insecure-api-key.")
    return None


API_KEYS = web.AppKey("api_keys", ApiKeys)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, for limits and logs: a key's name, or a client address."""

    name: str


def authenticate(request: web.Request, keys: ApiKeys) -> Caller:
    """The caller, or ApiRefused 401: no key, a wrong one, or keys not configured off loopback."""
    if keys.open:
        return Caller(f"address:{client_of(request)}")
    if not keys.hashes:
        raise ApiRefused(
            401,
            "api_keys_not_configured",
            "this server's APIs need keys when it listens beyond loopback: start it with --api-key "
            "or --api-keys-file",
        )
    presented = presented_key(request)
    if presented is None:
        raise ApiRefused(401, "missing_api_key", "send your API key as 'Authorization: Bearer <key>'")
    name = keys.identify(presented)
    if name is None:
        raise ApiRefused(401, "invalid_api_key", "the API key is not valid for this server")
    return Caller(f"key:{name}")


@dataclass(frozen=True)
class KeyLimitOptions:
    """requests_per_minute: requests of one caller a minute, bursts of a quarter (0: no limit).
    jobs: file jobs of one caller at once; sockets: live sessions of one caller at once."""

    requests_per_minute: int = 60
    jobs: int = 2
    sockets: int = 8


@dataclass
class KeyLimits:
    """Each caller's request bucket and what it holds open (file jobs, live sockets)."""

    options: KeyLimitOptions = field(default_factory=KeyLimitOptions)
    clock: Clock = field(default_factory=MonotonicClock)
    _requests: TokenBuckets = field(init=False)
    _held: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        per_minute = self.options.requests_per_minute
        self._requests = TokenBuckets(per_minute, float(max(4, per_minute // 4)))

    def request(self, caller: Caller) -> None:
        """One request: spends a token, or ApiRefused 429 saying when one is due."""
        per_minute = self.options.requests_per_minute
        if per_minute <= 0:
            return
        due = self._requests.take(caller.name, self.clock.now())
        if due == 0.0:
            return
        wait = math.ceil(due)
        raise ApiRefused(
            429,
            "rate_limit_exceeded",
            f"more than {per_minute} requests a minute; try again in {wait} s",
            wait,
        )

    def hold(self, caller: Caller, kind: str) -> None:
        """Open a file job (``job``) or a live socket (``socket``), or ApiRefused 429."""
        limit = self.options.jobs if kind == "job" else self.options.sockets
        if limit and self._held[(caller.name, kind)] >= limit:
            what = "file jobs" if kind == "job" else "live sessions"
            raise ApiRefused(
                429, "too_many_concurrent", f"{limit} {what} of this key are running; wait for one to end", 5
            )
        self._held[(caller.name, kind)] += 1

    def release(self, caller: Caller, kind: str) -> None:
        key = (caller.name, kind)
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]

    def holding(self, caller: Caller, kind: str) -> int:
        return self._held[(caller.name, kind)]


KEY_LIMITS = web.AppKey("key_limits", KeyLimits)
