"""Where the server may connect on a room's behalf: outputs (YouTube posts, obs-websocket) are
requests to a URL that someone else chose, so they reach only public addresses unless the
operator lists more (``--outputs-allow CIDR_OR_HOST[,...]``).

A destination is checked after it is resolved, at the address the connection goes to: the
resolver drops addresses the policy refuses, and the socket factory checks the address each
socket connects to (the connector never resolves twice, so a name that resolves to a public
address once and to 127.0.0.1 the next time, DNS rebinding, cannot slip through; and an IP
literal in a URL or a redirect, which aiohttp never sends to the resolver, is checked there
too). The decisions are pure (``DestinationPolicy``); the aiohttp pieces only apply them.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Carrier-grade NAT (RFC 6598): not "private" to Python 3.11, but no public host lives there.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# How long an address a --outputs-allow'ed name resolved to stays allowed for its connection.
BLESSED_S = 60.0


class PolicyError(ValueError):
    """An ``--outputs-allow`` entry that is neither a network, an address nor a host name."""


class DestinationRefused(OSError):
    """A connection the policy does not allow; aiohttp reports it as a connector error."""


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), else itself:
    ``::ffff:127.0.0.1`` is loopback whatever Python 3.11's ``is_loopback`` says of it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def parse_address(text: str) -> IPAddress | None:
    """An address as a URL's host or a socket gives it: ``[::1]``, ``fe80::1%eth0``, ``10.0.0.1``;
    also the legacy numeric IPv4 forms that ``inet_aton`` (and so getaddrinfo) accepts
    (``2130706433``, ``0x7f000001``, ``127.1``), which are an address, not a name."""
    host = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def classify(ip: IPAddress) -> str | None:
    """Why an address is not a public one (None: it is). An IPv6 address that carries an IPv4
    one is judged by the IPv4 address it leads to."""
    address = _embedded(ip)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "unique-local"
    if address.is_private:
        return "private"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Public addresses are allowed; others only when ``--outputs-allow`` lists their network,
    their address, or the host name they were reached by."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str) -> DestinationPolicy:
        networks: list[IPNetwork] = []
        names: set[str] = set()
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.rstrip(".").lower()
            if not name or len(name) > 253 or not all(c.isalnum() or c in "-." for c in name):
                raise PolicyError(
                    f"--outputs-allow takes networks (10.0.0.0/8), addresses and host names; got {entry!r}"
                )
            names.add(name)
        return cls(tuple(networks), frozenset(names))

    def name_allowed(self, host: str) -> bool:
        return host.rstrip(".").lower() in self.names

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why a connection to ``address`` is refused (None: allowed)."""
        ip = parse_address(address) if isinstance(address, str) else address
        if ip is None:
            return "not an address"
        inner = _embedded(ip)
        if any(a.version == n.version and a in n for n in self.networks for a in {ip, inner}):
            return None
        reason = classify(ip)
        return None if reason is None else f"{'an' if reason[0] in 'aeiou' else 'a'} {reason} address"

    def check_host(self, host: str) -> str | None:
        """At configuration time: why a URL's host is refused outright (an address, in any
        spelling, that is not allowed); a name is checked when it is resolved."""
        if self.name_allowed(host):
            return None
        ip = parse_address(host)
        if ip is not None:
            return self.refusal(ip)
        if host.rstrip(".").lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
            return "a loopback name"
        return None


@dataclass
class GuardedResolver(AbstractResolver):
    """Resolves through ``base`` and keeps only the addresses the policy allows; addresses of
    names the operator allowed are remembered for the socket check that follows."""

    policy: DestinationPolicy
    base: AbstractResolver = field(default_factory=DefaultResolver)
    clock: Callable[[], float] = time.monotonic
    blessed: dict[str, float] = field(default_factory=dict)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.base.resolve(host, port, family)
        if self.policy.name_allowed(host):
            until = self.clock() + BLESSED_S
            for result in results:
                self.blessed[result["host"]] = until
            return results
        allowed = [r for r in results if self.policy.refusal(r["host"]) is None]
        if not allowed:
            reasons = sorted({self.policy.refusal(r["host"]) or "" for r in results})
            raise DestinationRefused(f"{host} resolves only to {', '.join(reasons) or 'nothing'}")
        return allowed

    def is_blessed(self, address: str) -> bool:
        until = self.blessed.get(address)
        if until is None:
            return False
        if until < self.clock():
            del self.blessed[address]
            return False
        return True

    async def close(self) -> None:
        await self.base.close()


def guarded_socket_factory(
    policy: DestinationPolicy, resolver: GuardedResolver
) -> Callable[[Any], socket.socket]:
    """The last gate: the address a socket is about to connect to, whatever led there (a name
    resolved a moment ago, an IP literal, a redirect)."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _canon, address = addr_info
        host = str(address[0])
        reason = None if resolver.is_blessed(host) else policy.refusal(host)
        if reason is not None:
            raise DestinationRefused(f"connections to {reason} are not allowed (--outputs-allow)")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def outbound_session(
    policy: DestinationPolicy, base: AbstractResolver | None = None, timeout: float = 10.0
) -> aiohttp.ClientSession:
    """An HTTP client that reaches only what ``policy`` allows. No proxy from the environment
    (it would connect on our behalf, unchecked), no cookies kept between rooms' outputs."""
    resolver = GuardedResolver(policy, base or DefaultResolver())
    connector = aiohttp.TCPConnector(
        resolver=resolver, socket_factory=guarded_socket_factory(policy, resolver), limit=64
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )
