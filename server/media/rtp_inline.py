"""A publisher's RTP packets handled where they arrive: aioice's queue and the DTLS task stood aside.

aiortc reads every datagram of a peer through one task: aioice's ``Connection.data_received``
puts it on an ``asyncio.Queue``, and the DTLS transport's task, woken for it, unprotects SRTP,
parses the RTP packet and hands it to its receiver. For a publisher's audio that is a queue put
and a task wake-up every 20 ms packet; at 16 sessions (bench/results/gateway.md) 800 a second
on the gateway's loop, where aiortc's per-packet path is most of its CPU. Once the transport's
SRTP keys are set, an SRTP packet (RFC 7983: first byte 128-191) that is not RTCP is handled
at once, in the datagram callback: unprotected, and handed to the same
``RTCDtlsTransport._handle_rtp_data`` the task would have called. The receiver's jitter buffer,
statistics and decoder hook (inline_audio.py) run as before, so reordering and loss are
handled exactly as aiortc handles them. Such packets also skip aioice's attempt to parse
them as STUN first (an exception a packet).

A packet's handling is a coroutine; an audio receiver's never waits on anything (it sends no
NACK, REMB or PLI, and Opus is decoded inline), so it runs to its end on its first step. Should
one wait after all, the rest of it goes on in a task, as aiortc's own task would have run it.
Everything else (DTLS records, the data channel's SCTP, RTCP, anything while packets are still
queued from before, so none overtakes them) goes through aiortc's queue as before.

This reaches into aiortc 1.16 and aioice 0.13 (both pinned in constraints.txt): where what it
reaches is not found, aiortc's path stays; ``tests/unit/test_rtp_inline.py`` fails so that an
upgrade is noticed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
import weakref
from collections.abc import Coroutine, Generator
from typing import Any

import pylibsrtp
from aiortc import RTCDtlsTransport
from aiortc.rtp import is_rtcp

log = logging.getLogger(__name__)

RX_BYTES = "_RTCDtlsTransport__rx_bytes"
RX_PACKETS = "_RTCDtlsTransport__rx_packets"
NTP_OFFSET = 2_208_988_800  # seconds from the NTP epoch (1900) to the Unix epoch


class InlineRtp:
    """Counts of one transport's packets handled inline, and of SRTP packets refused."""

    def __init__(self) -> None:
        self.packets = 0
        self.refused = 0
        self.failed = 0


_installed: weakref.WeakKeyDictionary[RTCDtlsTransport, InlineRtp] = weakref.WeakKeyDictionary()


def inline_rtp(dtls: RTCDtlsTransport) -> InlineRtp | None:
    """The counts of ``dtls``'s packets handled inline, None where its packets take aiortc's path."""
    return _installed.get(dtls)


def handle_rtp_inline(dtls: RTCDtlsTransport) -> bool:
    """From now on, ``dtls``'s SRTP packets are handled as they arrive (once its keys are set).
    False where aiortc or aioice is not as expected: their own path stays."""
    if dtls in _installed:
        return True
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    queue = getattr(connection, "_queue", None)
    handle = getattr(dtls, "_handle_rtp_data", None)
    if (
        not isinstance(queue, asyncio.Queue)
        or handle is None
        or not hasattr(dtls, "_rx_srtp")
        or not isinstance(getattr(dtls, RX_BYTES, None), int)
        or not isinstance(getattr(dtls, RX_PACKETS, None), int)
    ):
        log.warning("aiortc's DTLS transport or aioice is not as expected: RTP takes aiortc's path")
        return False
    counts = _installed[dtls] = InlineRtp()
    queued = connection.data_received  # type: ignore[union-attr]
    transport = weakref.ref(dtls)  # the connection must not keep its transport alive

    def data_received(data: bytes, component: int) -> None:
        dtls = transport()
        srtp = dtls._rx_srtp if dtls is not None else None  # noqa: SLF001
        if srtp is None or not data or not 127 < data[0] < 192 or is_rtcp(data) or not queue.empty():
            queued(data, component)
            return
        arrival = int((time.time() + NTP_OFFSET) * 1000)  # aiortc's clock.current_ms, without datetimes
        setattr(dtls, RX_BYTES, getattr(dtls, RX_BYTES) + len(data))
        setattr(dtls, RX_PACKETS, getattr(dtls, RX_PACKETS) + 1)
        try:
            plain = srtp.unprotect(data)
        except pylibsrtp.Error:
            counts.refused += 1  # as aiortc: a packet that does not authenticate is dropped
            return
        counts.packets += 1
        run_now(dtls._handle_rtp_data(plain, arrival_time_ms=arrival), counts)  # noqa: SLF001

    connection.data_received = data_received  # type: ignore[union-attr]
    for protocol in getattr(connection, "_protocols", []):
        skip_stun_parse(protocol, data_received)
    return True


def skip_stun_parse(protocol: Any, data_received: Any) -> None:
    """aioice parses every datagram as STUN first and hands on those that fail (an exception
    per RTP packet); a first byte of 128-191 is RTP or RTCP, never STUN (RFC 7983), so those
    go to ``data_received`` at once."""
    candidate = getattr(protocol, "local_candidate", None)
    parse_first = getattr(protocol, "datagram_received", None)
    if candidate is None or parse_first is None:
        return
    component = candidate.component

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            data_received(data, component)
        else:
            parse_first(data, addr)

    protocol.datagram_received = datagram_received


def run_now(coro: Coroutine[Any, Any, None], counts: InlineRtp) -> None:
    """Run ``coro`` to its end now; if it waits on something, the rest of it in a task."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return
    except Exception:
        counts.failed += 1
        if counts.failed == 1:
            log.exception("an RTP packet's handling failed; later failures are counted")
        return
    asyncio.get_running_loop().create_task(_rest(coro, waiting))


async def _rest(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    await _resume(coro, waiting)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """The rest of a coroutine that already yielded ``waiting``: what ``yield from`` does,
    from its second step on (the task running this waits on what it waits on)."""
    while True:
        try:
            value = yield waiting
        except BaseException as exc:  # noqa: BLE001 - a cancel or error thrown in goes on to it
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coro.send(value)
            except StopIteration:
                return
