"""Admission decisions with a fake clock: offer rates, pending peers, the peer cap, descriptors."""

from __future__ import annotations

from pipeline.clock import FakeClock
from server.edge.limits import SWEEP_AT, Admission, DescriptorFloor, LimitOptions, client_key


def test_offers_come_in_a_burst_then_at_the_rate_per_minute() -> None:
    clock = FakeClock()
    admission = Admission(LimitOptions(offers_per_minute=60, offers_burst=5), clock)
    assert all(admission.offer("1.2.3.4") is None for _ in range(5))
    refusal = admission.offer("1.2.3.4")
    assert refusal is not None and refusal.status == 429 and refusal.code == "too_many_offers"
    assert refusal.retry_after == 1 and refusal.headers() == {"Retry-After": "1"}
    # Another address has its own budget.
    assert admission.offer("5.6.7.8") is None
    clock.advance(1.0)  # one offer a second refills
    assert admission.offer("1.2.3.4") is None
    assert admission.offer("1.2.3.4") is not None
    clock.advance(3600)  # a long pause refills only up to the burst
    assert sum(admission.offer("1.2.3.4") is None for _ in range(10)) == 5


def test_retry_after_says_when_the_next_offer_is_due() -> None:
    clock = FakeClock()
    admission = Admission(LimitOptions(offers_per_minute=6, offers_burst=1), clock)
    assert admission.offer("a") is None
    refusal = admission.offer("a")
    assert refusal is not None and refusal.retry_after == 10
    clock.advance(9.5)
    assert admission.offer("a") is not None
    clock.advance(0.5)
    assert admission.offer("a") is None


def test_zero_means_no_limit() -> None:
    admission = Admission(LimitOptions(offers_per_minute=0, max_pending=0, max_peers=0), FakeClock())
    assert all(admission.offer("a") is None for _ in range(1000))
    assert all(admission.open("a", 15) is None for _ in range(1000))


def test_default_burst_is_a_quarter_minute_and_at_least_four() -> None:
    assert LimitOptions(offers_per_minute=60).burst == 15
    assert LimitOptions(offers_per_minute=6).burst == 4
    assert LimitOptions(offers_per_minute=6, offers_burst=2).burst == 2


def test_pending_peers_are_bounded_per_client_until_they_connect_or_close() -> None:
    admission = Admission(LimitOptions(max_pending=2, max_peers=0), FakeClock())
    assert admission.open("a", 15) is None and admission.open("a", 15) is None
    refusal = admission.open("a", 15)
    assert refusal is not None and (refusal.status, refusal.code) == (429, "too_many_pending")
    assert refusal.retry_after == 15
    assert admission.open("b", 15) is None  # other clients are not held back
    admission.connected("a")  # one of a's peers connected: a may start another
    assert admission.open("a", 15) is None
    assert admission.open("a", 15) is not None
    admission.closed("a", pending=True)  # a pending one was closed by its deadline
    assert admission.pending("a") == 1 and admission.open("a", 15) is None
    assert admission.peers == 4
    for pending in (True, True, False):
        admission.closed("a", pending=pending)
    admission.closed("b", pending=True)
    assert admission.peers == 0 and admission.pending() == 0 and admission.tracked() == 0


def test_the_server_wide_cap_counts_connected_and_pending_peers() -> None:
    admission = Admission(LimitOptions(max_pending=0, max_peers=3), FakeClock())
    for client in ("a", "b", "c"):
        assert admission.open(client, 15) is None
    admission.connected("a")
    refusal = admission.open("d", 15)
    assert refusal is not None and (refusal.status, refusal.code) == (503, "too_many_peers")
    admission.closed("a", pending=False)
    assert admission.open("d", 15) is None


def test_clients_are_keyed_by_address_and_ipv6_by_its_slash_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.4") == "198.51.100.4"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == "unknown" and client_key("not an address") == "not an address"


def test_idle_clients_are_forgotten_so_memory_follows_active_ones() -> None:
    clock = FakeClock()
    admission = Admission(LimitOptions(offers_per_minute=60, offers_burst=2), clock)
    for i in range(SWEEP_AT):
        admission.offer(f"10.0.{i // 256}.{i % 256}")
    assert admission.tracked() == SWEEP_AT
    clock.advance(2.0)  # every bucket has refilled: nothing left to remember
    admission.offer("192.0.2.1")
    assert admission.tracked() == 1


def test_low_descriptors_refuse_and_log_once_per_episode() -> None:
    floor = DescriptorFloor(LimitOptions(fd_reserve=50))
    assert floor.check(100, 1024) == (None, None)
    refusal, line = floor.check(980, 1024)
    assert refusal is not None and (refusal.status, refusal.code) == (503, "low_on_resources")
    assert line is not None and "running low" in line
    # Still low: refused every time, logged never again.
    for _ in range(1000):
        refusal, line = floor.check(1000, 1024)
        assert refusal is not None and line is None
    # Hovering at the floor, peers closing and others taking their place: the same episode.
    for open_fds in (970, 980, 960, 990) * 10:
        assert floor.check(open_fds, 1024)[1] is None
    refusal, line = floor.check(900, 1024)
    assert refusal is None and line is not None and "recovered" in line
    assert floor.check(900, 1024) == (None, None)


def test_the_default_reserve_scales_with_the_limit() -> None:
    assert LimitOptions().reserve(256) == 32
    assert LimitOptions().reserve(65536) == 4096
    assert LimitOptions(fd_reserve=10).reserve(65536) == 10
