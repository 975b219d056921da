"""Viewer signaling: a receive-only aiortc peer whose data channel gets every caption of a room."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection

from pipeline.languages import UnknownLanguage, normalize
from server.edge.guard import admit, refused
from server.edge.http import error, read_json
from server.media.channels import DataChannelListener
from server.media.offers import Rejected
from server.media.peers import OfferError, PeerRefused, answer_offer, check_offer
from server.media.voice import VoiceTrack, send_voice, wants_audio
from server.rooms.names import InvalidRoomName, check_room_name
from server.rooms.registry import RoomRecord
from server.rooms.room import Room
from server.rooms.translations import LanguageError, viewer_language
from server.routes.access import require_view
from server.state import STATE, AppState

MAX_VIEWER_MESSAGE = 4096

log = logging.getLogger(__name__)


def room_name(request: web.Request) -> str:
    """Any well-formed room may be watched: a viewer may come before its publisher (an OBS scene
    is set up before the stream starts) and gets captions the moment someone publishes."""
    try:
        return check_room_name(request.match_info["room"])
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc


def backlog_seconds(request: web.Request) -> float | None:
    """``?backlog=S``: replay no final older than S seconds (an overlay passes its fade time)."""
    raw = request.query.get("backlog")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise error(400, "bad_backlog", "backlog is a number of seconds from 0 to 86400")
    return value


def planned_room(state: AppState, record: RoomRecord) -> Room:
    """The room as its record says it is, or will be once someone uses it (with the default
    languages); nothing is registered, so a refused request leaves no room behind."""
    languages = state.rooms.default_languages if record.languages is None else record.languages
    return Room(
        record.name,
        languages=languages,
        source_language=record.source_language,
        words=record.words,
        max_speakers=record.max_speakers,
        voice=state.rooms.default_voice if record.voice is None else record.voice,
    )


def viewer_stream(state: AppState, room: Room, raw: str | None) -> str | None:
    """The language a viewer's ``?lang=`` picks: None for the source captions, else a target."""
    if not raw:
        return None
    try:
        lang = viewer_language(room, raw, state.spoken(room))
    except LanguageError as exc:
        raise error(400, "language_not_carried", str(exc)) from exc
    if lang is not None and state.translation is None:
        raise error(400, "translation_off", "translation is off on this server")
    return lang


def voice_language(state: AppState, room: Room, raw: str | None) -> str:
    """The voice a listener's ``?lang=`` picks: one of the room's ``voice`` languages (the only
    one, when it speaks one and none is asked for); a 400 naming them otherwise."""
    if state.voice is None:
        raise error(400, "voice_off", "the voice-over is off on this server (no espeak-ng, no Piper voice)")
    spoken = ", ".join(room.voice) or "none"
    if not raw:
        if len(room.voice) == 1:
            return room.voice[0]
        raise error(400, "voice_not_spoken", f"pick a voice with ?lang=; room {room.name!r} speaks: {spoken}")
    try:
        lang = normalize(raw)
    except UnknownLanguage:
        lang = raw
    if lang not in room.voice:
        said = raw if len(raw) <= 32 else raw[:31] + "…"
        raise error(
            400, "voice_not_spoken", f"room {room.name!r} does not speak {said!r}; it speaks: {spoken}"
        )
    return lang


async def watched_room(state: AppState, record: RoomRecord, client: str) -> Room:
    """The room a new reader (a viewer's peer, a feed) joins, its state at hand for the replay,
    or a 429 when it has its ``--max-viewers`` already, or ``client`` (an address) has its
    share of them: one address never takes every slot (an idle room is not kept for it)."""
    room = state.rooms.ensure(record.name)
    state.rooms.adopt(room, record)
    await state.rooms.watch(room)
    settings = state.settings
    refusal = None
    if len(room.viewers) >= settings.max_viewers:
        message = f"room {room.name!r} has its {settings.max_viewers} viewers"
        refusal = ("room_full", "too_many_viewers", message)
    elif room.viewers_from(client) >= settings.viewers_per_address:
        refusal = (
            "address_full",
            "too_many_viewers_from_address",
            f"this address has {settings.viewers_per_address} viewers of room {room.name!r} open already; "
            "close some first",
        )
    if refusal is not None:
        metric, code, message = refusal
        state.metrics.rejected.labels(metric).inc()
        state.rooms.forget_if_idle(room.name)
        raise error(429, code, message, headers={"Retry-After": "30"})
    return room


def listener_peer(state: AppState, room: Room, client: str, gone: Callable[[], None]) -> RTCPeerConnection:
    """A peer for one of the room's listeners (a viewer or a WHEP player), or the refusal of the
    server's peer limits, counted; a room nobody else holds is forgotten with it."""
    try:
        return state.peers.create(on_closed=gone, client=client)
    except PeerRefused as exc:
        state.metrics.rejected.labels(exc.refusal.code).inc()
        state.rooms.forget_if_idle(room.name)
        raise refused(exc.refusal) from exc


async def post_viewer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = room_name(request)
    # First: without the token, not even which languages it carries.
    record = await require_view(request, name)
    max_age = backlog_seconds(request)
    lang = viewer_stream(state, planned_room(state, record), request.query.get("lang"))
    if request.content_type != "application/json":
        raise error(415, "unsupported_media_type", 'send JSON: {"sdp": "<offer>"}')
    client = admit(request)
    body = await read_json(request)
    sdp = body.get("sdp") if isinstance(body, dict) else None
    if not isinstance(sdp, str):
        raise error(400, "bad_request", 'the body must be JSON {"sdp": "<offer>"}')
    try:
        parsed = check_offer(sdp, want_audio=False)
    except OfferError as exc:
        raise error(400, exc.code, exc.message) from exc
    # An offer that also receives audio gets the room's voice-over in ``?voice=`` (or the
    # viewer's language, or the room's one voice) on the same peer connection.
    voice = None
    if wants_audio(parsed):
        planned = planned_room(state, record)
        asked = request.query.get("voice")
        if not asked and (lang or state.spoken(planned)) in planned.voice:
            asked = lang or state.spoken(planned)  # the language the viewer reads, when it is spoken
        voice = voice_language(state, planned, asked or None)
    room = await watched_room(state, record, client)
    line = state.voice.line(room, voice) if state.voice is not None and voice is not None else None
    track: VoiceTrack | None = None

    viewer_id = "viewer-" + uuid.uuid4().hex

    def gone() -> None:
        if viewer_id not in room.viewers:
            return
        room.remove_viewer(viewer_id)
        room.unlisten(viewer_id)
        state.metrics.viewers.dec()
        if track is not None:
            track.stop()
            state.metrics.voice_listeners.dec()
        state.rooms.forget_if_idle(room.name)

    pc = listener_peer(state, room, client, gone)
    room.add_viewer(viewer_id, client)
    state.metrics.viewers.inc()
    if line is not None:
        track = VoiceTrack(line)
        state.metrics.voice_listeners.inc()

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        if viewer_id not in room.viewers:
            return  # the viewer left before its channel opened: nothing to listen for
        # A late viewer sees recent finals and the live partial first: a reloaded overlay is never blank.
        for message in room.replay(max_age, lang):
            channel.send(message)
        room.listen(viewer_id, DataChannelListener(channel), lang)

        @channel.on("message")
        def ignore(message: object) -> None:
            """Viewers have nothing to say; whatever they send is dropped unread."""

    def with_voice() -> tuple[str, list[Rejected]]:
        if track is not None:
            send_voice(pc, parsed, track)
        return sdp, []

    await answer_offer(state.peers, pc, with_voice, gone, "viewer")
    return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})


def routes() -> list[web.RouteDef]:
    return [web.post("/rooms/{room}/viewers", post_viewer)]
