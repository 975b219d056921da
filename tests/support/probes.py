"""What an attacker (or an unlucky network) sends: ghost offers, raw HTTP in pieces, and the
counters a test watches to see that everything it caused was freed again."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack


def without_candidates(sdp: str) -> str:
    """An offer whose ICE can never complete: no candidates, and no end-of-candidates either
    (aioice then waits for candidates for ever; OBS 30.2+ sends offers like this)."""
    lines = [line for line in sdp.splitlines() if not line.startswith(("a=candidate", "a=end-of-candidates"))]
    return "\r\n".join(lines) + "\r\n"


async def ghost_offer(publisher: bool) -> str:
    """A real aiortc offer (a publisher's with audio, or a viewer's with only a data channel),
    with its candidates removed: the peer behind it will never do ICE."""
    pc = RTCPeerConnection()
    if publisher:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.createDataChannel("captions")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return without_candidates(sdp)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Until ``predicate()`` holds; returns the seconds it took. Polls: what it waits on
    (sockets closing, descriptors freed) has no event to wait for."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib(trim: bool = False) -> int:
    """Resident memory. ``trim``: first hand the allocator's free pages back to the system
    (glibc malloc_trim), so that what is measured is memory held, not memory cached."""
    if trim:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def live_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks() if not t.done())


@dataclass(frozen=True)
class Levels:
    """What a process holds: peers (of the server under test), tasks, descriptors, Python
    objects and allocated blocks (where a leak of Python objects shows exactly), and memory."""

    peers: int
    tasks: int
    fds: int
    objects: int
    blocks: int
    rss_kib: int

    @classmethod
    def now(cls, peers: int) -> Levels:
        gc.collect()
        return cls(
            peers,
            live_tasks(),
            open_fds(),
            len(gc.get_objects()),
            sys.getallocatedblocks(),
            rss_kib(trim=True),
        )


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(
    host: str,
    port: int,
    head: str,
    body: bytes = b"",
    piece: int = 0,
    pause: float = 0.0,
) -> RawResponse:
    """One HTTP/1.1 request written by hand: ``head`` is the request line and headers (without
    the blank line); ``body`` goes in ``piece``-byte writes ``pause`` seconds apart, the way a
    slow or lossy network delivers it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.replace("\n", "\r\n").rstrip("\r\n").encode("latin-1") + b"\r\n\r\n")
        await writer.drain()
        pieces: Sequence[bytes] = (
            [body[i : i + piece] for i in range(0, len(body), piece)] if piece else [body]
        )
        for i, chunk in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)  # the network's pace, not a synchronisation
            writer.write(chunk)
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        await writer.wait_closed()
    head_bytes, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(lines[0].split()[1]), headers, rest)
