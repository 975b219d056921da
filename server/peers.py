"""RTCPeerConnection lifecycle and the checks an offer passes before aiortc sees it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.sdp import SessionDescription

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
        raise OfferError("malformed_sdp", f"the SDP offer could not be parsed: {exc}") from exc
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


class PeerSet:
    """Every live peer connection of an app, so that shutdown closes them all."""

    def __init__(self, ice_servers: Callable[[], list[RTCIceServer]] | None = None) -> None:
        """``ice_servers`` is asked for every new peer: TURN credentials expire."""
        self._peers: set[RTCPeerConnection] = set()
        self._ice_servers = ice_servers or (lambda: [])

    def __len__(self) -> int:
        return len(self._peers)

    def create(self, on_closed: Callable[[], None] | None = None) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers()))
        self._peers.add(pc)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(pc)
                if on_closed is not None:
                    on_closed()

        return pc

    async def close(self, pc: RTCPeerConnection) -> None:
        self._peers.discard(pc)
        await pc.close()

    async def close_all(self, timeout: float = 5.0) -> None:
        """Bounded: closing a TURN allocation waits for a relay that may itself be gone."""
        peers, self._peers = list(self._peers), set()
        closing = asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)
        try:
            async with asyncio.timeout(timeout):
                await closing
        except TimeoutError:
            log.warning("%d peer(s) did not close within %.0f s", len(peers), timeout)
