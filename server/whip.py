"""WHIP ingest (RFC 9725): an SDP offer in, an aiortc peer that captions its audio, a DELETE out."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCDataChannel, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from pipeline.audio import GapTracker, Resampler
from pipeline.policy import CaptionPolicy, PolicyOptions, SpeechChange
from pipeline.scheduler import SchedulerFull
from pipeline.session import CaptionSession, Event
from pipeline.types import SAMPLE_RATE, Caption, DecodeOptions
from pipeline.vad import VadOptions
from server.http import error, read_body
from server.peers import OfferError, check_offer, prefer_opus
from server.rooms import InvalidRoomName, Room, check_room_name, hash_token, token_matches
from server.state import STATE, AppState, DataChannelListener

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
    _last_status: float = 0.0

    def on_event(self, event: Event) -> None:
        if isinstance(event, Caption):
            self.room.caption(self.id, event)
            self.state.metrics.captions.labels("final" if event.final else "partial").inc()
            now = time.monotonic()
            if not event.final and now - self._last_status >= 1.0:
                self._last_status = now
                self.room.status(True, self.session.scheduler.queue_delay())
        elif isinstance(event, SpeechChange):
            self._last_status = time.monotonic()
            self.room.status(event.speaking, self.session.scheduler.queue_delay())

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
        self.state.pool.release(self.id)
        self.room.leave_publisher(self.id)
        self.room.listeners.pop(self.id, None)
        self.state.publishers.pop(self.id, None)
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


def authorize(request: web.Request, state: AppState, room_name: str) -> None:
    room = state.rooms.get(room_name)
    accepted = [h for h in (room.token_hash if room else None,) if h]
    if state.settings.publish_token:
        accepted.append(hash_token(state.settings.publish_token))
    if not accepted:
        if room is None and not (state.settings.loopback or state.settings.open_rooms):
            raise error(404, "unknown_room", f"room {room_name!r} does not exist; create it with POST /rooms")
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise error(
            401,
            "unauthorized",
            "this room needs 'Authorization: Bearer <publish token>'",
            headers={"WWW-Authenticate": 'Bearer realm="nova-voice"'},
        )
    if not any(token_matches(token.strip(), h) for h in accepted):
        raise error(403, "forbidden", "the publish token is not valid for this room")


async def post_whip(request: web.Request) -> web.Response:
    state = request.app[STATE]
    room_name = request.match_info["room"]
    try:
        check_room_name(room_name)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    authorize(request, state, room_name)
    if request.content_type != "application/sdp":
        raise error(415, "unsupported_media_type", "send the offer as Content-Type: application/sdp")
    sdp = await read_body(request)
    try:
        check_offer(sdp, want_audio=True)
    except OfferError as exc:
        state.metrics.rejected.labels(exc.code).inc()
        raise error(400, exc.code, exc.message) from exc

    pub_id = uuid.uuid4().hex
    try:
        scheduler = state.pool.place(pub_id)
    except SchedulerFull as exc:
        state.metrics.rejected.labels("full").inc()
        raise error(503, "server_full", str(exc), headers={"Retry-After": "10"}) from exc

    s = state.settings
    policy = CaptionPolicy(
        PolicyOptions(partial_interval=s.partial_interval, max_utterance=s.max_utterance),
        VadOptions(aggressiveness=s.vad_aggressiveness, end_silence_ms=s.end_silence_ms),
        DecodeOptions(beam_size=s.beam_size),
    )
    room = state.rooms.ensure(room_name)
    pc = state.peers.create(on_closed=lambda: publisher.peer_closed())
    # The session reports to its publisher, which owns the session: bind through a closure.
    session = CaptionSession(pub_id, policy, scheduler, lambda event: publisher.on_event(event))
    publisher = Publisher(pub_id, room, state, session, pc)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind != "audio" or publisher.tasks:
            return
        task = asyncio.get_running_loop().create_task(publisher.consume(track))
        publisher.tasks.add(task)
        task.add_done_callback(publisher.tasks.discard)

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        room.listeners[pub_id] = DataChannelListener(channel)

    try:
        prefer_opus(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError and others on offers it cannot answer
        await state.peers.close(pc)
        state.pool.release(pub_id)
        raise error(400, "bad_offer", f"the offer could not be answered: {exc}") from exc

    room.join_publisher(pub_id)
    state.publishers[pub_id] = publisher
    state.metrics.sessions.set(len(state.publishers))
    location = f"/whip/{room_name}/{pub_id}"
    return web.Response(
        status=201,
        text=pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": location, "ETag": f'"{pub_id}"'},
    )


async def delete_whip(request: web.Request) -> web.Response:
    state = request.app[STATE]
    publisher = state.publishers.get(request.match_info["session"])
    if publisher is None or publisher.room.name != request.match_info["room"]:
        raise error(404, "unknown_session", "no such publishing session")
    await publisher.stop()
    return web.Response(status=200)


async def patch_whip(request: web.Request) -> web.Response:
    # Trickle ICE is optional in RFC 9725; our answers carry all candidates already.
    raise error(
        405,
        "trickle_unsupported",
        "trickle ICE is not supported; send a complete offer",
        headers={"Allow": "DELETE, OPTIONS"},
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/whip/{room}", post_whip),
        web.delete("/whip/{room}/{session}", delete_whip),
        web.patch("/whip/{room}/{session}", patch_whip),
    ]
