"""A publisher's RTP packets handled in the datagram callback (server/media/rtp_inline.py): what
it reaches into is where the pinned aiortc and aioice keep it (this fails when an upgrade moves
it), RTP skips the STUN parse while STUN still gets it, and a packet's handling that does wait
on something still runs to its end, in a task. The whole path under a real aiortc peer is
proven in tests/integration/test_whip_speech.py."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.clock import current_ms

from server.media.rtp_inline import (
    NTP_OFFSET,
    InlineRtp,
    handle_rtp_inline,
    inline_rtp,
    run_now,
    skip_stun_parse,
)


async def test_the_transport_of_the_pinned_aiortc_takes_the_inline_path() -> None:
    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    connection = dtls.transport._connection  # noqa: SLF001 - what handle_rtp_inline reaches
    assert handle_rtp_inline(dtls) and handle_rtp_inline(dtls)  # once, however often asked
    counts = inline_rtp(dtls)
    assert isinstance(counts, InlineRtp)
    # Before its SRTP keys are set (and for all that is not SRTP), aioice's queue as before.
    connection.data_received(b"\x80\x6f" + bytes(30), 1)
    connection.data_received(b"\x16\xfe\xfd" + bytes(30), 1)  # a DTLS record
    assert connection._queue.qsize() == 2 and counts.packets == 0  # noqa: SLF001


def test_the_arrival_time_is_aiortcs_clock() -> None:
    """An audio receiver does not read it (only video's bandwidth estimator does); still the same."""
    assert abs(int((time.time() + NTP_OFFSET) * 1000) - current_ms()) < 50


async def test_rtp_skips_the_stun_parse_and_everything_else_still_gets_it() -> None:
    fast: list[bytes] = []
    parsed: list[bytes] = []
    protocol = SimpleNamespace(
        local_candidate=SimpleNamespace(component=1), datagram_received=lambda data, addr: parsed.append(data)
    )
    skip_stun_parse(protocol, lambda data, component: fast.append(data))
    for first in (0x00, 0x01, 0x16, 0x80, 0xBF, 0xC0):  # STUN, STUN, DTLS, RTP, RTP/RTCP, other
        protocol.datagram_received(bytes([first, 0]), ("127.0.0.1", 9))
    assert [d[0] for d in fast] == [0x80, 0xBF]
    assert [d[0] for d in parsed] == [0x00, 0x01, 0x16, 0xC0]


async def test_a_handling_that_waits_goes_on_in_a_task_and_one_that_fails_is_counted() -> None:
    counts = InlineRtp()
    done: list[str] = []

    async def at_once() -> None:
        done.append("at once")

    finished = asyncio.Event()

    async def waits(gate: asyncio.Future[str]) -> None:
        done.append(await gate)
        finished.set()

    run_now(at_once(), counts)
    assert done == ["at once"]  # ran to its end in the call, no task
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    run_now(waits(gate), counts)
    gate.set_result("after waiting")
    await asyncio.wait_for(finished.wait(), 5)
    assert done == ["at once", "after waiting"]

    async def fails() -> Any:
        raise ValueError("a bad packet")

    run_now(fails(), counts)
    run_now(fails(), counts)
    assert counts.failed == 2
