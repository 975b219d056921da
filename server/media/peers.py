"""RTCPeerConnection lifecycle and the checks an offer passes before aiortc sees it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.sdp import SessionDescription

from server.edge.http import error, shown
from server.edge.limits import Admission, Refusal
from server.media.offers import Rejected

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024


class OfferError(Exception):
    """An offer we refuse, with a machine-readable code and a sentence for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_offer(sdp: str, want_audio: bool) -> SessionDescription:
    """Parse and vet an SDP offer: publishers must send Opus audio; viewers must send no media."""
    if not sdp.strip():
        raise OfferError("empty_sdp", "the SDP offer is empty")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("malformed_sdp", "the body is not an SDP offer (it must start with v=0)")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises many kinds on bad input
        raise OfferError("malformed_sdp", "the SDP offer could not be parsed") from exc
    check_transport(parsed)
    audio = [m for m in parsed.media if m.kind == "audio"]
    if want_audio:
        if not audio:
            raise OfferError("no_audio", "the offer has no audio track to caption")
        if not any(c.mimeType.lower() == "audio/opus" for m in audio for c in m.rtp.codecs):
            raise OfferError(
                "unsupported_codec", "the offer's audio has no Opus codec; Nova Voice needs Opus"
            )
    else:
        sending = [
            m
            for m in parsed.media
            if m.kind in ("audio", "video") and m.direction in ("sendrecv", "sendonly", None)
        ]
        if sending:
            raise OfferError("viewer_sends_media", "a viewer offer must not send media (use recvonly)")
        if not any(m.kind == "application" for m in parsed.media):
            raise OfferError("no_data_channel", "a viewer offer needs a data channel for captions")
    return parsed


# What aiortc's DTLS can verify a peer's certificate with (aiortc/rtcdtlstransport.py).
DTLS_HASHES = frozenset(X509_DIGEST_ALGORITHMS)
_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){19,63}")
# RFC 8839 section 5.4: ice-ufrag 4-256 characters, ice-pwd 22-256.
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")


def check_transport(parsed: SessionDescription) -> None:
    """Every media section must say how to secure and reach it, or the peer could never connect:
    aiortc would answer it, then fail at the connect deadline inside a task (an assertion on the
    missing fingerprint). Refused here instead, before any peer exists."""
    if not parsed.media:
        raise OfferError("no_media", "the offer has no media sections")
    mids = {m.rtp.muxId for m in parsed.media}
    for group in parsed.group:
        # aiortc takes a bundle's transport from its first mid: one naming no section has none.
        if group.semantic.upper() == "BUNDLE" and not set(map(str, group.items)) <= mids:
            raise OfferError("bad_bundle", "a=group:BUNDLE names a mid that no section of the offer has")
    for media in parsed.media:
        if media.port == 0:
            continue  # a section the offerer itself disabled: nothing to secure
        dtls = media.dtls
        if dtls is None:
            raise OfferError("no_dtls_setup", "every media section needs a=setup: actpass, active or passive")
        usable = [f for f in dtls.fingerprints if f.algorithm.lower() in DTLS_HASHES]
        if not dtls.fingerprints:
            raise OfferError("no_fingerprint", "the offer has no DTLS fingerprint (a=fingerprint)")
        if not usable:
            raise OfferError(
                "unsupported_fingerprint",
                "the offer's DTLS fingerprints use no supported hash; use one of sha-256, sha-384, sha-512",
            )
        if not all(_HEX_PAIRS.fullmatch(f.value) for f in usable):
            raise OfferError("bad_fingerprint", "a DTLS fingerprint is not colon-separated hex")
        ufrag, pwd = media.ice.usernameFragment or "", media.ice.password or ""
        if not (4 <= len(ufrag) <= 256 and 22 <= len(pwd) <= 256):
            raise OfferError(
                "no_ice_credentials", "every media section needs a=ice-ufrag (4+ chars) and a=ice-pwd (22+)"
            )
        if not (_ICE_CHARS.fullmatch(ufrag) and _ICE_CHARS.fullmatch(pwd)):
            raise OfferError("bad_ice_credentials", "ICE credentials use letters, digits, '+' and '/' only")


_original_host_addresses = aioice.ice.get_host_addresses


def allow_loopback_candidates(enabled: bool) -> None:
    """aioice never gathers 127.0.0.1 (aioice/ice.py get_host_addresses), so a peer on a machine
    whose only interface is loopback, or a test in a network namespace, could not connect.
    Adding it costs one extra candidate pair and lets same-machine peers always meet."""

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = _original_host_addresses(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    aioice.ice.get_host_addresses = with_loopback if enabled else _original_host_addresses


class PeerRefused(Exception):
    """No peer was made: the client has too many still connecting, or the server too many."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass
class _Peer:
    client: str
    on_closed: Callable[[], None] | None
    deadline: asyncio.TimerHandle | None
    connected: bool = False


class PeerSet:
    """Every peer connection of an app, from offer to close, so that none outlives its use.

    A peer must connect within ``connect_timeout`` seconds of its offer or it is closed: an offer
    whose ICE never completes (one without candidates waits for ever in aioice) would otherwise
    hold its slot and its sockets for good. Until it connects it is pending, and ``admission``
    bounds pending peers per client and peers in all.
    """

    def __init__(
        self,
        ice_servers: Callable[[], list[RTCIceServer]] | None = None,
        *,
        connect_timeout: float = 15.0,
        admission: Admission | None = None,
    ) -> None:
        """``ice_servers`` is asked for every new peer: TURN credentials expire."""
        self._peers: dict[RTCPeerConnection, _Peer] = {}
        self._ice_servers = ice_servers or (lambda: [])
        self._connect_timeout = connect_timeout
        self._admission = admission or Admission()
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._peers)

    def pending(self) -> int:
        return sum(1 for p in self._peers.values() if not p.connected)

    def is_connected(self, pc: RTCPeerConnection) -> bool:
        peer = self._peers.get(pc)
        return peer is not None and peer.connected

    def create(self, on_closed: Callable[[], None] | None = None, client: str = "") -> RTCPeerConnection:
        """A new pending peer of ``client``, or ``PeerRefused``. ``on_closed`` runs once when it
        is closed, whoever closes it (failure, the connect deadline, ``close``, shutdown)."""
        refusal = self._admission.open(client, retry_after=max(1, math.ceil(self._connect_timeout)))
        if refusal is not None:
            raise PeerRefused(refusal)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers()))
        deadline = asyncio.get_running_loop().call_later(self._connect_timeout, self._expire, pc)
        self._peers[pc] = _Peer(client, on_closed, deadline)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            peer = self._peers.get(pc)
            if pc.connectionState == "connected" and peer is not None and not peer.connected:
                peer.connected = True
                if peer.deadline is not None:
                    peer.deadline.cancel()
                self._admission.connected(peer.client)
            elif pc.connectionState in ("failed", "closed"):
                await self.close(pc)

        return pc

    def _expire(self, pc: RTCPeerConnection) -> None:
        peer = self._peers.get(pc)
        if peer is None or peer.connected:
            return
        log.debug("closing a peer of %s: not connected within %.0f s", peer.client, self._connect_timeout)
        task = asyncio.get_running_loop().create_task(self.close(pc))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _forget(self, pc: RTCPeerConnection) -> bool:
        """Drop ``pc`` from the set, release its admission and run its ``on_closed``; False when
        it was not (or no longer) ours."""
        peer = self._peers.pop(pc, None)
        if peer is None:
            return False
        if peer.deadline is not None:
            peer.deadline.cancel()
        self._admission.closed(peer.client, pending=not peer.connected)
        if peer.on_closed is not None:
            peer.on_closed()
        return True

    async def close(self, pc: RTCPeerConnection) -> None:
        """Close ``pc`` once; later calls return at once (see ``_close``)."""
        if self._forget(pc):
            await _close(pc)

    async def close_all(self, timeout: float = 5.0) -> None:
        """Bounded: closing a TURN allocation waits for a relay that may itself be gone."""
        peers = [pc for pc in list(self._peers) if self._forget(pc)]
        closing = asyncio.gather(*(_close(pc) for pc in peers), *self._closing, return_exceptions=True)
        try:
            async with asyncio.timeout(timeout):
                await closing
        except TimeoutError:
            log.warning("%d peer(s) did not close within %.0f s", len(peers), timeout)


async def _close(pc: RTCPeerConnection) -> None:
    """``pc.close()``, and when it fails half-way, stop the transports it did not reach.

    aiortc's close raises AttributeError on a transceiver that an odd offer left without a
    transport (found by tests/integration/test_fuzz.py); it then never stops the transports
    after it, whose sockets would stay open, and a second close would wait for ever on the
    first. So each peer is closed exactly once, here.
    """
    try:
        await pc.close()
        return
    except Exception:  # noqa: BLE001 - whatever aiortc raised, the sockets must still go
        log.debug("closing a peer failed half-way; stopping its transports one by one", exc_info=True)
    dtls = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    for transport in dtls:
        if transport is None:
            continue
        for stop in (transport.stop, transport.transport.stop):
            with contextlib.suppress(Exception):
                await stop()


async def answer_offer(
    peers: PeerSet,
    pc: RTCPeerConnection,
    prepare: Callable[[], tuple[str, list[Rejected]]],
    undo: Callable[[], None],
    what: str,
) -> list[Rejected]:
    """Answers an offer on ``pc``: ``prepare`` adds what the server sends or receives and
    returns the SDP aiortc is to see, with the sections set aside (to restore in the answer).
    An offer aiortc cannot answer closes the peer, runs ``undo`` and is a 400 ``bad_offer``."""
    try:
        offer, rejected = prepare()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError and others on offers it cannot answer
        await peers.close(pc)
        undo()
        log.info("%s offer not answerable: %s: %s", what, type(exc).__name__, shown(str(exc), 200))
        raise error(400, "bad_offer", "the offer could not be answered; check its media sections") from exc
    return rejected
