"""Admission on an open network: offers per client per minute, peers still connecting per
client, a cap on all peers, and a floor of free file descriptors.

Pure decisions with time as an input (pipeline/clock.py): the HTTP edge (server/edge/guard.py) and
the peer lifecycle (server/media/peers.py) ask and report; nothing here sleeps, reads /proc or logs.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import dataclass, field

from pipeline.clock import Clock, MonotonicClock

# Per-client state is dropped once it says nothing (a full bucket, no peer pending); a sweep
# runs when this many clients are tracked, so memory follows active clients, not all clients ever.
SWEEP_AT = 4096


@dataclass(frozen=True)
class LimitOptions:
    """Limits per client address (an IPv6 client is its /64: one host owns the whole prefix).

    offers_per_minute: WHIP and viewer offers and room creations a client may make per minute,
        sustained (0: no limit).
    offers_burst: how many of them may come at once (0: a quarter of a minute's worth, at least 4).
    max_pending: a client's peers that may be negotiating (offered, not yet connected) at once
        (0: no limit). Pending peers hold publisher and viewer slots until they connect or their
        connect deadline closes them, so this bounds what one address can hold without connecting.
    max_peers: peers of the whole server, pending and connected (0: no limit).
    fd_reserve: file descriptors kept free; below it new peers and rooms are refused with 503
        (0: a sixteenth of the limit, at least 32), so existing peers and the HTTP server
        never meet ``Too many open files``.
    """

    offers_per_minute: int = 60
    offers_burst: int = 0
    max_pending: int = 8
    max_peers: int = 1000
    fd_reserve: int = 0

    @property
    def burst(self) -> int:
        return self.offers_burst or max(4, self.offers_per_minute // 4)

    def reserve(self, fd_limit: int) -> int:
        return self.fd_reserve or max(32, fd_limit // 16)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and when it is worth trying again (``Retry-After``)."""

    status: int
    code: str
    message: str
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def client_key(address: str | None) -> str:
    """The key limits are kept under: the IP address, an IPv6 address's /64, or the raw text."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class TokenBucket:
    """Requests a minute, sustained, with ``burst`` of them at once: full at its first use,
    refilled with time (pure: time is an argument)."""

    per_minute: float
    burst: float
    tokens: float = -1.0  # below zero: not used yet, so full
    stamp: float = 0.0

    def level(self, now: float) -> float:
        """The tokens there at ``now``, spending nothing."""
        if self.tokens < 0:
            return self.burst
        return min(self.burst, self.tokens + (now - self.stamp) * (self.per_minute / 60.0))

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0.0: one is)."""
        self.tokens, self.stamp = self.level(now), now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / (self.per_minute / 60.0)

    def take(self, now: float) -> float:
        """Spends a token and answers 0.0, or answers how long until one is due, spending nothing."""
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1.0
        return wait


@dataclass
class TokenBuckets:
    """A token bucket per key (a client, an API key). Memory follows active keys: a full
    bucket says nothing, so full ones are dropped when ``SWEEP_AT`` keys are held."""

    per_minute: float
    burst: float
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def take(self, key: str, now: float) -> float:
        """As ``TokenBucket.take``, from ``key``'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= SWEEP_AT:
                self._buckets = {k: b for k, b in self._buckets.items() if b.level(now) < b.burst}
            bucket = self._buckets[key] = TokenBucket(self.per_minute, self.burst)
        return bucket.take(now)

    def keys(self) -> set[str]:
        return set(self._buckets)


@dataclass
class Admission:
    """Counts per client: offer tokens (a token bucket), pending peers; and all peers."""

    options: LimitOptions = field(default_factory=LimitOptions)
    clock: Clock = field(default_factory=MonotonicClock)
    peers: int = 0
    _pending: Counter[str] = field(default_factory=Counter)
    _offers: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        self._offers = TokenBuckets(self.options.offers_per_minute, float(self.options.burst))

    def offer(self, client: str) -> Refusal | None:
        """An offer or a room creation from ``client``: spends a token, or says when one is due."""
        if self.options.offers_per_minute <= 0:
            return None
        due = self._offers.take(client, self.clock.now())
        if due == 0.0:
            return None
        wait = math.ceil(due)
        return Refusal(
            429,
            "too_many_offers",
            f"more than {self.options.offers_per_minute} offers a minute from one address; "
            f"try again in {wait} s",
            wait,
        )

    def open(self, client: str, retry_after: int) -> Refusal | None:
        """A new peer for ``client``, pending until ``connected``; or why not.
        ``retry_after`` is when a pending peer will have connected or been closed at the latest."""
        if self.options.max_peers and self.peers >= self.options.max_peers:
            return Refusal(
                503,
                "too_many_peers",
                f"the server has its {self.options.max_peers} peers; try again later",
                retry_after,
            )
        if self.options.max_pending and self._pending[client] >= self.options.max_pending:
            return Refusal(
                429,
                "too_many_pending",
                f"{self.options.max_pending} connections from this address are still being set up; "
                "finish or close them first",
                retry_after,
            )
        self.peers += 1
        self._pending[client] += 1
        return None

    def connected(self, client: str) -> None:
        """A pending peer of ``client`` connected: it no longer counts as pending."""
        self._release_pending(client)

    def closed(self, client: str, pending: bool) -> None:
        """A peer of ``client`` is gone (``pending``: it never connected)."""
        self.peers = max(0, self.peers - 1)
        if pending:
            self._release_pending(client)

    def pending(self, client: str | None = None) -> int:
        return self._pending[client] if client is not None else sum(self._pending.values())

    def tracked(self) -> int:
        """Clients with state held for them (buckets and pending counts)."""
        return len(self._offers.keys() | self._pending.keys())

    def _release_pending(self, client: str) -> None:
        if self._pending[client] <= 1:
            self._pending.pop(client, None)
        else:
            self._pending[client] -= 1


@dataclass
class DescriptorFloor:
    """Refuses new peers while free file descriptors are below the reserve, and says when to log:
    once when they run low, once when they have recovered; never once per refused request. An
    episode ends only when twice the reserve is free again, so hovering at the floor (peers
    closing and new ones taking their place) is one episode, not a line per peer."""

    options: LimitOptions = field(default_factory=LimitOptions)
    low: bool = False

    def check(self, open_fds: int, fd_limit: int) -> tuple[Refusal | None, str | None]:
        """(a refusal or None, a line to log or None)."""
        reserve = self.options.reserve(fd_limit)
        free = fd_limit - open_fds
        if free < reserve:
            line = None
            if not self.low:
                self.low = True
                line = (
                    f"file descriptors running low ({open_fds} of {fd_limit} open, keeping {reserve} "
                    "free): refusing new peers and rooms with 503 until some close"
                )
            return (
                Refusal(503, "low_on_resources", "the server is low on resources; try again shortly", 15),
                line,
            )
        if self.low and free >= 2 * reserve:
            self.low = False
            return None, f"file descriptors recovered ({open_fds} of {fd_limit} open)"
        return None, None
