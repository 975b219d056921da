"""HTTPS for the server itself: browsers give the microphone only to secure pages, so a phone or
a second computer needs ``https://``. Either the operator's certificate (``--tls-cert`` and
``--tls-key``, say from Let's Encrypt) or, with ``--tls self-signed``, one this server makes for
the machine's names and addresses and keeps under the data dir, so that a browser told once to
trust it (by its SHA-256 fingerprint) goes on trusting it across restarts. A certificate that
no longer covers the machine's names (a new address on the LAN) or that is near its end is
made again.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.settings import ConfigError, Settings

VALID_DAYS = 397  # the longest validity browsers accept of a server certificate
RENEW_DAYS = 30  # made again when it has fewer days than this left
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the certificate, AB:CD:... as browsers show it
    spki: str  # base64 SHA-256 of its public key (Chromium's --ignore-certificate-errors-spki-list)
    names: tuple[str, ...]  # the DNS names and addresses it is valid for


def machine_names(settings: Settings) -> tuple[list[str], list[Address]]:
    """The names and addresses a browser may reach this server by: ``localhost``, the host
    name, ``--public-host`` and the bound address (or, bound to every address, the machine's
    own: those of its host name, and the one it reaches the network from)."""
    names = ["localhost", socket.gethostname(), socket.getfqdn()]
    names += [h.strip() for h in settings.public_host.split(",") if h.strip()]
    addresses: list[Address] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    try:
        bound = ipaddress.ip_address(settings.host)
    except ValueError:
        names.append(settings.host)
        bound = None
    if bound is not None and not bound.is_unspecified:
        addresses.append(bound)
    else:
        addresses += _own_addresses()
    dns = [n.lower() for n in dict.fromkeys(names) if n and _is_dns_name(n)]
    return list(dict.fromkeys(dns)), list(dict.fromkeys(addresses))


def _is_dns_name(name: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        return False
    return all(part and len(part) <= 63 for part in name.split(".")) and len(name) <= 253


def _own_addresses() -> list[Address]:
    found: list[Address] = []
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.append(ipaddress.ip_address(info[4][0].split("%")[0]))
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        # A UDP "connect" sends nothing: it only asks the kernel which address would be used.
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            found.append(ipaddress.ip_address(s.getsockname()[0].split("%")[0]))
    return [a for a in found if not a.is_unspecified and not a.is_link_local]


def _describe(cert: x509.Certificate, cert_path: Path, key_path: Path) -> Certificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(v) for v in san.get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        names = ()
    return Certificate(
        cert_path,
        key_path,
        ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        names,
    )


def _covers(
    cert: x509.Certificate, dns: Iterable[str], addresses: Iterable[Address], now: dt.datetime
) -> bool:
    if cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_DAYS) or cert.not_valid_before_utc > now:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return set(dns) <= have_dns and set(addresses) <= have_ips


def self_signed(
    folder: Path, dns: list[str], addresses: list[Address], now: dt.datetime | None = None
) -> Certificate:
    """The certificate kept in ``folder`` (``cert.pem``, ``key.pem``), made anew when there is
    none, it does not cover ``dns`` and ``addresses``, or it ends within RENEW_DAYS."""
    now = now or dt.datetime.now(dt.UTC)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists() and key_path.exists():
        with contextlib.suppress(ValueError):
            kept = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if _covers(kept, dns, addresses, now):
                return _describe(kept, cert_path, key_path)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ["nova-voice"])[0][:64])])
    alt = [x509.DNSName(n) for n in dns] + [x509.IPAddress(a) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key is written readable by this user only, before a byte of it is in the file.
    fd = os.open(key_path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    key_path.with_suffix(".tmp").replace(key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return _describe(cert, cert_path, key_path)


def certificate(settings: Settings) -> Certificate | None:
    """The certificate the settings ask for (None: plain HTTP); ConfigError when they cannot work."""
    if settings.tls not in ("", "self-signed"):
        raise ConfigError(f"--tls takes self-signed (or use --tls-cert and --tls-key); got {settings.tls!r}")
    if settings.tls and (settings.tls_cert or settings.tls_key):
        raise ConfigError("--tls self-signed makes its own certificate: drop --tls-cert and --tls-key")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: the certificate (chain) and its private key")
    if settings.tls:
        dns, addresses = machine_names(settings)
        return self_signed(settings.data_path / "tls", dns, addresses)
    if not settings.tls_cert:
        return None
    cert_path, key_path = Path(settings.tls_cert), Path(settings.tls_key)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tls-cert {cert_path}: not a readable PEM certificate ({exc})") from None
    return _describe(cert, cert_path, key_path)


def ssl_context(cert: Certificate) -> ssl.SSLContext:
    """A server context for the certificate: TLS 1.2 or newer, Python's default ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert.cert, cert.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the certificate {cert.cert} with the key {cert.key}: {exc}") from None
    return context


def open_url(settings: Settings, cert: Certificate | None) -> str:
    """The address to open in a browser: a name the certificate covers where the server binds
    every address (a bare 0.0.0.0 opens nothing)."""
    scheme = "https" if cert is not None else "http"
    host = settings.host
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        public = [h.strip() for h in settings.public_host.split(",") if h.strip()]
        own = [str(a) for a in _own_addresses() if not a.is_loopback]
        host = (public or own or ["localhost"])[0]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"
