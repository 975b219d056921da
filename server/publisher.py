"""A publisher: one WHIP peer's audio, decoded and fed to its caption session, and its captions
handed to the room. Ends once, whoever notices first (media end, peer gone, DELETE, shutdown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from pipeline.audio import GapTracker, Resampler
from pipeline.policy import SpeechChange
from pipeline.session import CaptionSession, Event
from pipeline.types import SAMPLE_RATE, Caption
from server.rooms import Room
from server.state import AppState

log = logging.getLogger(__name__)

FINALISE_TIMEOUT = 15.0
STALL_SECONDS = 0.5


async def next_frame(track: MediaStreamTrack, stall: float) -> AudioFrame | None:
    """The track's next frame, or None when none came within ``stall`` seconds.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands just as
    a frame arrives, and a DELETE waiting for the media task to end would then wait forever.
    """
    try:
        async with asyncio.timeout(stall):
            return await track.recv()  # type: ignore[return-value]  # audio tracks yield AudioFrames
    except TimeoutError:
        return None


@dataclass
class Publisher:
    id: str
    room: Room
    state: AppState
    session: CaptionSession
    pc: object
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _finishing: asyncio.Task[None] | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, Caption):
            self.room.caption(self.id, event)
            self.state.metrics.captions.labels("final" if event.final else "partial").inc()
        elif isinstance(event, SpeechChange):
            # The app's heartbeat repeats the room's status twice a second; a change goes out now.
            self.room.speech(self.id, event.speaking, self.session.queue_delay())

    async def consume(self, track: MediaStreamTrack) -> None:
        """One task per track: decode, resample to 16 kHz mono, feed the caption session.

        When frames stop coming (a sender that mutes, pauses or vanishes without a goodbye),
        silence is fed in their place, so the utterance in progress still ends and is finalised
        within about a second instead of waiting for ICE to declare the peer dead.
        """
        resampler = Resampler()
        gaps = GapTracker()
        filled = 0
        try:
            while True:
                try:
                    frame = await next_frame(track, STALL_SECONDS)
                except MediaStreamError:
                    break
                if frame is None:
                    silence = int(STALL_SECONDS * SAMPLE_RATE)
                    filled += silence
                    self.session.push(np.zeros(silence, dtype=np.int16))
                    continue
                missing = max(0, gaps.gap(frame.pts, frame.samples, frame.sample_rate) - filled)
                filled = 0
                if missing:
                    self.session.push(np.zeros(missing, dtype=np.int16))
                self.session.push(resampler.convert(frame))
        finally:
            # Audio ended (peer gone, DELETE, or network drop): the last words still become a final.
            await self.finish()

    def finish(self) -> Awaitable[None]:
        """Finalise and release everything, once, whoever asks first (media end, peer gone, DELETE)."""
        if self._finishing is None:
            self._finishing = asyncio.get_running_loop().create_task(self._finish())
        # Shielded: a media task cancelled while it waits must not cancel the cleanup itself.
        return asyncio.shield(self._finishing)

    async def _finish(self) -> None:
        await self.session.close(FINALISE_TIMEOUT)
        self.room.leave_publisher(self.id)
        self.room.listeners.pop(self.id, None)
        self.state.publishers.pop(self.id, None)
        self.state.rooms.forget_if_idle(self.room.name)
        log.info("publisher finished")
        self.state.metrics.sessions.set(len(self.state.publishers))

    def peer_closed(self) -> None:
        """The connection failed or closed: finish even if no audio track ever arrived."""
        self.finish()

    async def stop(self) -> None:
        """DELETE: finalise first so the publisher's own data channel still gets the last line."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.finish()
        await self.state.peers.close(self.pc)  # type: ignore[arg-type]
