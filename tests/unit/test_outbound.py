"""Where outputs may connect (server/edge/outbound.py, server/rooms/outputs.py): the address check itself,
the resolver it guards and the socket gate, tested here without a request ever leaving (the
resolver is one the test controls; the socket gate is asked, never connected)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from server.edge.outbound import (
    DestinationPolicy,
    DestinationRefused,
    GuardedResolver,
    PolicyError,
    guarded_socket_factory,
    parse_address,
)
from server.rooms.outputs import OutputError, check_outputs, masked, post_rate

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.20",
    "169.254.169.254",  # the cloud metadata service
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.251",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2130706433",  # 127.0.0.1, spelled as one number
    "0x7f000001",
    "017700000001",
    "127.1",
    "[::1]",
    "fe80::1%eth0",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "142.250.74.46"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_link_local_and_encoded_addresses_are_refused(address: str) -> None:
    assert DestinationPolicy().refusal(address) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DestinationPolicy().refusal(address) is None


PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"]


@given(st.sampled_from(PRIVATE_V4), st.integers(min_value=0, max_value=2**32 - 1), st.booleans())
def test_any_address_of_a_private_network_in_any_spelling_is_refused_unless_allowed(
    network: str, offset: int, mapped: bool
) -> None:
    net = ipaddress.ip_network(network)
    ip = net[offset % net.num_addresses]
    for spelling in (str(ip), str(int(ip)), hex(int(ip)), f"::ffff:{ip}" if mapped else str(ip)):
        assert DestinationPolicy().refusal(spelling) is not None, spelling
        assert DestinationPolicy.parse(network).refusal(spelling) is None, spelling


def test_the_allow_list_takes_networks_addresses_and_names_and_refuses_nonsense() -> None:
    policy = DestinationPolicy.parse("10.0.0.0/8, 127.0.0.2, [::1], obs.lan.")
    assert policy.refusal("10.9.9.9") is None and policy.refusal("127.0.0.2") is None
    assert policy.refusal("127.0.0.1") is not None and policy.refusal("::1") is None
    assert policy.name_allowed("OBS.lan") and not policy.name_allowed("evil.example")
    with pytest.raises(PolicyError):
        DestinationPolicy.parse("http://x/")
    assert parse_address("example.com") is None and parse_address("cafe") is None


class Resolver(AbstractResolver):
    """DNS as the test says it is."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        pass


async def test_names_are_checked_after_resolution_and_only_allowed_addresses_come_back() -> None:
    dns = Resolver(
        {
            "metadata.evil.example": ["169.254.169.254"],
            "rebind.evil.example": ["10.0.0.7", "127.0.0.1"],
            "mixed.example": ["10.0.0.7", "93.184.216.34"],
            "obs.lan": ["192.168.1.20"],
        }
    )
    resolver = GuardedResolver(DestinationPolicy.parse("obs.lan"), dns)
    for name in ("metadata.evil.example", "rebind.evil.example"):
        with pytest.raises(DestinationRefused):
            await resolver.resolve(name, 80)
    assert [r["host"] for r in await resolver.resolve("mixed.example", 80)] == ["93.184.216.34"]
    # A name the operator allowed reaches its private address, and only through that name.
    assert [r["host"] for r in await resolver.resolve("obs.lan", 4455)] == ["192.168.1.20"]
    gate = guarded_socket_factory(resolver.policy, resolver)
    sock = gate((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("192.168.1.20", 4455)))
    sock.close()


def test_the_socket_gate_refuses_the_address_whatever_led_there() -> None:
    """An IP literal in a URL or in a redirect never meets the resolver: the gate sees it."""
    resolver = GuardedResolver(DestinationPolicy(), Resolver({}))
    gate = guarded_socket_factory(resolver.policy, resolver)
    for family, address in ((socket.AF_INET, ("127.0.0.1", 80)), (socket.AF_INET6, ("::1", 80, 0, 0))):
        with pytest.raises(DestinationRefused):
            gate((family, socket.SOCK_STREAM, 0, "", address))
    sock = gate((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("8.8.8.8", 443)))  # made, not connected
    sock.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/closedcaption",
        "http://2130706433/x",
        "http://0x7f000001/x",
        "http://[::1]:9/x",
        "http://localhost./x",
        "http://LOCALHOST:80/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://user:pass@upload.youtube.com/closedcaption",  # credentials would become Basic auth
        "http://[::1",  # malformed: a 400, never a 500
        "http://upload.youtube.com:99999/x",
        "http://upload.youtube.com/x\nInjected: 1",
        "file:///etc/passwd",
    ],
)
def test_output_urls_that_point_inward_or_do_not_parse_are_a_clear_refusal(url: str) -> None:
    with pytest.raises(OutputError):
        check_outputs([{"type": "youtube", "url": url}])
    with pytest.raises(OutputError):
        check_outputs([{"type": "obs", "url": url.replace("http", "ws", 1), "password": ""}])


def test_an_allowed_listener_is_accepted_and_shown_without_its_key() -> None:
    policy = DestinationPolicy.parse("127.0.0.2")
    out = check_outputs([{"type": "youtube", "url": "http://127.0.0.2:9/cc/SECRETKEY?cid=KEY2"}], policy)
    assert out[0]["url"].endswith("?cid=KEY2")
    assert masked(out[0]["url"]) == "http://127.0.0.2:9/***"
    assert masked("ws://[::1]:4455/KEY") == "ws://[::1]:4455/***"
    assert masked("http://[::1") == "(an unreadable URL)"


def test_a_post_budget_refills_with_time_and_says_how_long_to_wait() -> None:
    rate = post_rate(120)  # burst of 30
    for _ in range(30):
        assert rate.wait(0.0) == 0.0
        rate.take(0.0)
    assert rate.wait(0.0) == pytest.approx(0.5)
    assert rate.wait(0.5) == pytest.approx(0.0)
