"""The publisher's media loop ends when cancelled, however the cancel and a frame interleave."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import MediaStreamTrack
from av import AudioFrame

from server.media.publisher import next_frame


class BusyTrack(MediaStreamTrack):
    """A track that always has a frame waiting, like a receiver with a backlog: every recv
    completes within one loop turn, so a cancel often lands just as a frame arrives."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.frame = AudioFrame(format="s16", layout="mono", samples=960)
        self.frame.sample_rate = 48000

    async def recv(self) -> AudioFrame:
        await asyncio.sleep(0)
        return self.frame


async def read_forever(track: MediaStreamTrack) -> None:
    while True:
        await next_frame(track, 0.5)


async def test_a_cancelled_media_loop_always_ends() -> None:
    # The cancel is delivered at every offset within a frame's turn; on Python 3.11 wait_for
    # swallowed some of them and the loop (and a DELETE waiting on it) ran on forever.
    track = BusyTrack()
    for offset in range(12):
        task = asyncio.get_running_loop().create_task(read_forever(track))
        for _ in range(offset):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done, f"the loop ignored a cancel delivered {offset} turns in"
        with pytest.raises(asyncio.CancelledError):
            task.result()


async def test_no_frame_within_the_stall_window_reads_as_none() -> None:
    class SilentTrack(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> AudioFrame:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    assert await next_frame(SilentTrack(), 0.05) is None
