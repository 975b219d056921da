"""A publisher: one WHIP peer's audio, decoded and fed to its caption session, and its captions
handed to the room. Ends once, whoever notices first (media end, peer gone, DELETE, shutdown)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from pipeline.actions import SpeechChange
from pipeline.audio import GapTracker, Resampler
from pipeline.session import CaptionSession, Event
from pipeline.types import SAMPLE_RATE, Caption
from server.media.inline_audio import Decoded, deliver_to
from server.messages import ErrorMessage
from server.rooms.room import Room
from server.rooms.words import RoomWords
from server.state import AppState

log = logging.getLogger(__name__)

FINALISE_TIMEOUT = 15.0
ENDED_KEPT = 4096
STALL_SECONDS = 0.5


async def next_frame(track: MediaStreamTrack, stall: float) -> AudioFrame | Decoded | None:
    """The track's next frame, or None when none came within ``stall`` seconds.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands just as
    a frame arrives, and a DELETE waiting for the media task to end would then wait forever.
    """
    try:
        async with asyncio.timeout(stall):
            return await track.recv()  # type: ignore[return-value]  # audio tracks yield AudioFrames
    except TimeoutError:
        return None


class FrameFeed:
    """A track's frames into its caption session: gaps in their timestamps filled with silence
    (less what a stall already filled), and when the last one came, for stall detection."""

    def __init__(self, session: CaptionSession) -> None:
        self._session = session
        self._resampler = Resampler()
        self._gaps = GapTracker()
        self._filled = 0
        self._last = time.monotonic()
        self.closed = False

    def frame(self, frame: AudioFrame | Decoded) -> None:
        if self.closed:
            return  # its consumer has ended: frames still decoded until the peer closes are dropped
        self._last = time.monotonic()
        missing = max(0, self._gaps.gap(frame.pts, frame.samples, frame.sample_rate) - self._filled)
        self._filled = 0
        if missing:
            self._session.push(np.zeros(missing, dtype=np.int16))
        # Decoded at 16 kHz mono already (inline_audio.py), or an av.AudioFrame to resample.
        self._session.push(frame.pcm if isinstance(frame, Decoded) else self._resampler.convert(frame))

    def silence(self, samples: int) -> None:
        """A stall: silence in place of the frames that did not come (counted against the gap
        the next frame's timestamp shows), and the next stall a whole stall from now."""
        self._last = time.monotonic()
        self._filled += samples
        self._session.push(np.zeros(samples, dtype=np.int16))

    def stall_left(self) -> float:
        """Seconds until no frame for ``STALL_SECONDS`` is a stall (0 when it is one now)."""
        return max(0.0, self._last + STALL_SECONDS - time.monotonic())


@dataclass
class Publisher:
    id: str
    room: Room
    state: AppState
    session: CaptionSession
    pc: object
    speaker: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _finishing: asyncio.Task[None] | None = None
    _deleted: bool = False

    def __post_init__(self) -> None:
        # The room's vocabulary now, and whenever it changes (PATCH /rooms/{room}, any gateway).
        self.words_changed(self.room.words)
        self.room.on_words.append(self.words_changed)
        self.room.enders[self.id] = self.taken_over

    def forget(self) -> None:
        """Off the room's hooks: it no longer hears of new words or take-overs."""
        if self.room.enders.get(self.id) == self.taken_over:
            del self.room.enders[self.id]
        if self.words_changed in self.room.on_words:
            self.room.on_words.remove(self.words_changed)

    def words_changed(self, words: RoomWords) -> None:
        """Whisper hears the room's vocabulary from the publisher's next utterance on."""
        self.session.policy.vocabulary = words.heard

    async def taken_over(self) -> None:
        """Another publisher took this one's name (``?takeover=1``): its last words become a
        final, its channel is told why, and it ends as a DELETE would end it."""
        channel = self.room.listeners.get(self.id)
        if channel is not None:
            message = "another session took over this speaker name; this one has ended"
            channel.send(ErrorMessage("taken_over", message).to_json())
        log.info("publisher taken over")
        await self.stop(deleted=False)  # ended by the server: its publisher's DELETE may still come

    def on_event(self, event: Event) -> None:
        if isinstance(event, Caption):
            self.room.caption(self.id, event)
            self.state.metrics.captions.labels("final" if event.final else "partial").inc()
            turns = self.session.turns
            if event.final and self.speaker and turns is not None and turns.learning:
                # Its own named microphone: the room learns the voice, for its shared mics.
                voice = turns.voiceprint()
                if voice is not None:
                    self.room.heard_voices[self.speaker] = voice
        elif isinstance(event, SpeechChange):
            # The app's heartbeat repeats the room's status twice a second; a change goes out now.
            self.room.speech(self.id, event.speaking, self.session.queue_delay())

    async def consume(self, track: MediaStreamTrack) -> None:
        """One task per track: decode, resample to 16 kHz mono, feed the caption session.

        Frames decoded inline (inline_audio.py) come straight to ``feed.frame`` from aiortc's
        packet handling; this task then wakes only when the track ends or frames stop coming
        (``feed.stall_left``), not once a frame. Other frames still come through the track.

        When frames stop coming (a sender that mutes, pauses or vanishes without a goodbye),
        silence is fed in their place, so the utterance in progress still ends and is finalised
        within about a second instead of waiting for ICE to declare the peer dead. A connected
        peer that sends nothing for ``--media-timeout`` seconds is gone: it is finalised and
        closed then, not ~30 s later when ICE consent fails (Opus DTX still sends a frame
        every 400 ms in silence, so a live sender never looks gone).
        """
        feed = FrameFeed(self.session)
        deliver_to(track, feed.frame)
        idle = 0.0  # seconds without a frame while connected
        timed_out = False
        try:
            while True:
                try:
                    frame = await next_frame(track, feed.stall_left())
                except MediaStreamError:
                    break
                if frame is not None:
                    idle = 0.0
                    feed.frame(frame)
                    continue
                if feed.stall_left() > 0:
                    idle = 0.0  # frames came straight to the feed meanwhile
                    continue
                if self.state.peers.is_connected(self.pc):  # type: ignore[arg-type]
                    idle += STALL_SECONDS
                if idle >= self.state.settings.media_timeout:
                    timed_out = True
                    log.info("publisher %s sent no audio for %.0f s: ending it", self.id, idle)
                    break
                feed.silence(int(STALL_SECONDS * SAMPLE_RATE))
        finally:
            feed.closed = True
            # Audio ended (peer gone, DELETE, or network drop): the last words still become a final.
            await self.finish()
            if timed_out:
                # Its slot, sockets and peer go now; its last final has been sent.
                await self.state.peers.close(self.pc)  # type: ignore[arg-type]

    def finish(self) -> Awaitable[None]:
        """Finalise and release everything, once, whoever asks first (media end, peer gone, DELETE)."""
        if self._finishing is None:
            self._finishing = asyncio.get_running_loop().create_task(self._finish())
        # Shielded: a media task cancelled while it waits must not cancel the cleanup itself.
        return asyncio.shield(self._finishing)

    async def _finish(self) -> None:
        await self.session.close(FINALISE_TIMEOUT)
        # Rooms shared through Redis echo captions back through it: let the last one arrive first.
        await self.state.rooms.settle(self.room)
        self.room.leave_publisher(self.id)
        self.room.unlisten(self.id)
        self.forget()
        self.state.publishers.pop(self.id, None)
        if not self._deleted:
            # Ended by the server (its media stopped, its peer went): its DELETE may still come.
            self.state.ended[self.id] = self.room.name
            while len(self.state.ended) > ENDED_KEPT:
                del self.state.ended[next(iter(self.state.ended))]
        self.state.rooms.forget_if_idle(self.room.name)
        log.info("publisher finished")
        self.state.metrics.sessions.set(len(self.state.publishers))

    def peer_closed(self) -> None:
        """The connection failed or closed: finish even if no audio track ever arrived, and end
        the media task, whose track never ends if the peer never connected (aiortc starts the
        receiver only once connected, and only a started receiver ends its track on close)."""
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:  # the media task itself may be the one closing the peer
                task.cancel()
        self.finish()

    async def stop(self, deleted: bool = True) -> None:
        """DELETE: finalise first so the publisher's own data channel still gets the last line."""
        self._deleted = deleted
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.finish()
        await self.state.peers.close(self.pc)  # type: ignore[arg-type]
