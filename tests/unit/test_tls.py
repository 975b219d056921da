"""HTTPS certificates: the operator's, or one made for this machine and kept across restarts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest

from server.edge.tls import certificate, machine_names, open_url, self_signed, ssl_context
from server.settings import ConfigError, Settings

LAN = ipaddress.ip_address("192.168.1.20")


def test_a_self_signed_certificate_is_kept_until_the_machine_or_the_calendar_moves_on(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    first = self_signed(tmp_path, ["localhost", "studio.lan"], [LAN], now)
    assert set(first.names) >= {"localhost", "studio.lan", "192.168.1.20"}
    assert len(first.fingerprint.split(":")) == 32
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600  # the key is this user's only
    again = self_signed(tmp_path, ["localhost", "studio.lan"], [LAN], now + dt.timedelta(days=100))
    assert again.fingerprint == first.fingerprint  # a browser told to trust it once still does
    moved = self_signed(tmp_path, ["localhost", "studio.lan"], [ipaddress.ip_address("10.0.0.7")], now)
    assert moved.fingerprint != first.fingerprint and "10.0.0.7" in moved.names
    late = self_signed(
        tmp_path,
        ["localhost", "studio.lan"],
        [ipaddress.ip_address("10.0.0.7")],
        now + dt.timedelta(days=380),
    )
    assert late.fingerprint != moved.fingerprint  # made again before it runs out


def test_the_settings_pick_the_certificate_and_refuse_what_cannot_work(tmp_path: Path) -> None:
    assert certificate(Settings(data_dir=str(tmp_path))) is None
    made = certificate(Settings(data_dir=str(tmp_path), tls="self-signed", public_host="captions.lan"))
    assert made is not None and "captions.lan" in made.names and "127.0.0.1" in made.names
    assert isinstance(ssl_context(made), ssl.SSLContext)
    given = certificate(Settings(tls_cert=str(made.cert), tls_key=str(made.key)))
    assert given is not None and given.fingerprint == made.fingerprint
    for wrong in (
        Settings(tls="yes"),
        Settings(tls_cert=str(made.cert)),
        Settings(tls="self-signed", tls_cert=str(made.cert), tls_key=str(made.key)),
        Settings(tls_cert=str(tmp_path / "missing.pem"), tls_key=str(made.key)),
    ):
        with pytest.raises(ConfigError):
            certificate(wrong)


def test_the_url_to_open_names_the_machine_when_it_binds_every_address() -> None:
    dns, addresses = machine_names(Settings(host="0.0.0.0", public_host="captions.lan"))
    assert "captions.lan" in dns and ipaddress.ip_address("127.0.0.1") in addresses
    assert (
        open_url(Settings(host="0.0.0.0", port=8443, public_host="captions.lan"), None)
        == "http://captions.lan:8443"
    )
    assert open_url(Settings(host="::1", port=8443), None) == "http://[::1]:8443"
