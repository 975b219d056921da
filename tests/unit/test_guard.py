"""The pure checks at the edge: Host names, origins, JSON depth, and collapsing repeated logs."""

from __future__ import annotations

import logging

import pytest

from pipeline.clock import FakeClock
from server.edge.guard import host_allowed, same_origin
from server.edge.http import JsonError, json_depth, parse_json
from server.logs import CollapseRepeats
from server.settings import Settings


def test_host_names_must_be_ours_and_addresses_always_pass() -> None:
    loopback = Settings()
    for host in ("127.0.0.1:8080", "127.0.0.1", "[::1]:8080", "localhost:8080", "LOCALHOST", "10.1.2.3:80"):
        assert host_allowed(host, loopback), host
    for host in ("evil.example", "evil.example:8080", "localhost.evil.example", "", ":8080", "a b", "x@evil"):
        assert not host_allowed(host, loopback), host
    public = Settings(host="0.0.0.0", public_host="captions.example.org, https://alt.example:8443")
    for host in ("captions.example.org", "Captions.Example.Org.:443", "alt.example", "192.0.2.1:8080"):
        assert host_allowed(host, public), host
    assert not host_allowed("example.org", public)
    assert host_allowed("box.lan:8080", Settings(host="box.lan"))


def test_same_origin_compares_names_and_ports() -> None:
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("https://captions.example.org", "captions.example.org")  # behind a TLS proxy
    assert same_origin("https://captions.example.org", "captions.example.org:443")
    assert not same_origin("http://captions.example.org", "captions.example.org:8443")
    assert not same_origin("http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not same_origin("https://evil.example", "captions.example.org")
    assert not same_origin("null", "127.0.0.1:8080")
    assert not same_origin("file://", "127.0.0.1:8080")


def test_json_depth_counts_nesting_outside_strings() -> None:
    assert json_depth('{"a": 1}') == 1
    assert json_depth('{"a": [{"b": []}]}') == 4
    assert json_depth('{"a": "[[[[{{{{", "b": "\\"[["}') == 1
    assert json_depth("[" * 100_000, stop_after=8) == 9
    assert json_depth("no json at all") == 0


def test_parse_json_refuses_deep_nesting_bad_text_and_constants_with_a_400() -> None:
    assert parse_json('{"sdp": "v=0"}') == {"sdp": "v=0"}
    for text, code in (
        ("[" * 9 + "]" * 9, "json_too_deep"),
        ("[" * 200_000, "json_too_deep"),
        ("{not json", "bad_json"),
        ('{"a": NaN}', "bad_json"),
        ("[Infinity]", "bad_json"),
        ("", "bad_json"),
    ):
        with pytest.raises(JsonError) as caught:
            parse_json(text)
        assert caught.value.status == 400 and caught.value.code == code, text


def record(msg: str, level: int = logging.ERROR, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_repeated_errors_collapse_to_one_line_per_interval() -> None:
    clock = FakeClock()
    repeats = CollapseRepeats(interval=60.0, clock=clock)
    passed = [repeats.filter(record("socket.accept() out of system resource")) for _ in range(500)]
    assert passed.count(True) == 1
    assert repeats.filter(record("a different error"))
    assert repeats.filter(record("access line", level=logging.INFO))
    assert repeats.filter(record("access line", level=logging.INFO))  # INFO always passes
    clock.advance(61)
    summary = record("socket.accept() out of system resource")
    assert repeats.filter(summary) and "499 more like it" in summary.getMessage()
