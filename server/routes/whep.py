"""WHEP egress: a room's voice-over in one language as an Opus track, for OBS, GStreamer's
``whepsrc`` and any WHEP player.

``POST /whep/{room}?lang=es`` takes an SDP offer (``application/sdp``) with a receiving audio
section and answers ``201 Created``, ``Location: /whep/{room}/{session}`` and the SDP answer,
whose audio carries the room's Spanish voice; ``DELETE`` on the location ends it. The same
view-token rules and limits as viewers apply: a player counts as one of the room's
``--max-viewers`` and of its address's share, and its peer has the connect deadline.
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from aiortc.sdp import SessionDescription

from server.edge.guard import admit
from server.edge.http import error, read_body
from server.media.offers import Rejected, restore, set_aside
from server.media.peers import OfferError, answer_offer, check_transport
from server.media.voice import Listening, VoiceTrack, send_voice, wants_audio
from server.routes.access import require_view
from server.routes.viewers import listener_peer, planned_room, room_name, voice_language, watched_room
from server.routes.whip import no_trickle
from server.state import STATE

log = logging.getLogger(__name__)


async def post_whep(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = room_name(request)
    record = await require_view(request, name)  # first: without the token, not even its voices
    if request.content_type != "application/sdp":
        raise error(415, "unsupported_media_type", "send the offer as Content-Type: application/sdp")
    client = admit(request)
    sdp = await read_body(request)
    lang = voice_language(state, planned_room(state, record), request.query.get("lang"))
    if not sdp.strip():
        raise error(400, "empty_sdp", "the SDP offer is empty")
    if not sdp.lstrip().startswith("v=0"):
        raise error(400, "malformed_sdp", "the body is not an SDP offer (it must start with v=0)")
    try:
        parsed = SessionDescription.parse(sdp)
        check_transport(parsed)
    except OfferError as exc:
        raise error(400, exc.code, exc.message) from exc
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises many kinds on bad input
        raise error(400, "malformed_sdp", "the SDP offer could not be parsed") from exc
    if not wants_audio(parsed):
        raise error(400, "no_audio", "the offer has no audio section that receives Opus (a=recvonly)")
    room = await watched_room(state, record, client)
    assert state.voice is not None  # voice_language said so
    line = state.voice.line(room, lang)
    if line is None:
        state.rooms.forget_if_idle(room.name)
        raise error(400, "voice_not_spoken", f"room {room.name!r} does not speak {lang!r}")

    session = uuid.uuid4().hex
    listener_id = "whep-" + session

    def gone() -> None:
        if listener_id not in room.viewers:
            return
        room.remove_viewer(listener_id)
        state.listening.pop(session, None)
        track.stop()
        state.metrics.voice_listeners.dec()
        state.rooms.forget_if_idle(room.name)

    pc = listener_peer(state, room, client, gone)
    track = VoiceTrack(line)
    room.add_viewer(listener_id, client)
    state.metrics.voice_listeners.inc()

    def sending() -> tuple[str, list[Rejected]]:
        send_voice(pc, parsed, track)
        return set_aside(sdp, parsed)

    rejected = await answer_offer(state.peers, pc, sending, gone, "WHEP")
    state.listening[session] = Listening(session, room.name, lang, pc)
    log.info("WHEP player of room %s (%s) accepted", room.name, lang)
    return web.Response(
        status=201,
        text=restore(pc.localDescription.sdp, rejected),
        content_type="application/sdp",
        headers={"Location": f"/whep/{room.name}/{session}", "ETag": f'"{session}"'},
    )


async def delete_whep(request: web.Request) -> web.Response:
    """Ends a player: the session id in the location is what a player holds (unguessable)."""
    state = request.app[STATE]
    session = state.listening.get(request.match_info["session"])
    if session is None or session.room != request.match_info["room"]:
        raise error(404, "unknown_session", "no such WHEP session")
    await state.peers.close(session.pc)
    state.listening.pop(session.id, None)
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/whep/{room}", post_whep),
        web.delete("/whep/{room}/{session}", delete_whep),
        web.patch("/whep/{room}/{session}", no_trickle),
    ]
