"""WHIP ingest (RFC 9725): an SDP offer in, an aiortc peer that captions its audio, a DELETE out."""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web
from aiortc import MediaStreamTrack, RTCDataChannel

from pipeline.backend import BackendUnavailable, SchedulerFull
from pipeline.clusterer import VoiceClusterer
from pipeline.languages import UnknownLanguage, base, normalize
from pipeline.session import CaptionSession
from pipeline.turns import SpeakerTurns, TurnOptions
from server.edge.auth import bearer
from server.edge.guard import admit, refused
from server.edge.http import error, read_body
from server.logs import bind
from server.media.channels import DataChannelListener
from server.media.offers import Rejected, receive_first_audio, restore, set_aside
from server.media.peers import OfferError, PeerRefused, answer_offer, check_offer
from server.media.publisher import Publisher
from server.rooms.names import InvalidRoomName, check_room_name, close_names
from server.rooms.registry import RoomRecord, RoomsUnavailable
from server.rooms.room import Room, SpeakerRefused, check_room_space
from server.rooms.speakers import MAX_SPEAKERS, InvalidSpeaker, check_speaker, public_id
from server.rooms.words import SPEAKER_MODES
from server.routes.access import require_publish
from server.state import STATE, AppState

log = logging.getLogger(__name__)


async def authorize(request: web.Request, state: AppState, room_name: str) -> RoomRecord:
    """May this request publish into the room? Decided from the room's record as its authority
    keeps it now (Redis for gateways), like every other access decision."""
    record = await state.rooms.record(room_name)
    token = bearer(request)
    if not record.created and token is not None and not state.access.may_publish(record, token):
        # A token, and no room it could open: most likely a typo in the room's name, which
        # would otherwise go live as a new open room without a word. (With a server-wide
        # token, rooms need not be created: a wrong token is a 403 unless it opens a room
        # whose name is close.)
        refusal, meant = await no_room_for_token(state, room_name, token)
        if meant or not state.settings.publish_token:
            raise refusal
    if record.publish_hash is None and not state.settings.publish_token:
        if not record.known and not (state.settings.loopback or state.settings.open_rooms):
            raise error(404, "unknown_room", f"room {room_name!r} does not exist; create it with POST /rooms")
        return record
    require_publish(request, record, "this room needs 'Authorization: Bearer <publish token>'")
    return record


async def no_room_for_token(state: AppState, name: str, token: str) -> tuple[web.HTTPException, list[str]]:
    """404 ``unknown_room`` for a publish token sent to a room that was never created. The
    rooms it could have meant (names close to it, among those this process knows) are named
    only when the token opens them: nobody learns room names they hold no token of."""
    meant = []
    for close in close_names(name, list(state.rooms.rooms)):
        record = await state.rooms.record(close)
        if record.created and state.access.may_publish(record, token):
            meant.append(close)
    message = f"there is no room {name!r} on this server"
    if meant:
        message += f"; did you mean {' or '.join(repr(n) for n in meant)}?"
    message += " Create it first (POST /rooms) to publish into it with a token."
    return error(404, "unknown_room", message, suggestions=meant), meant


def spoken_language(request: web.Request, state: AppState, record: RoomRecord) -> str | None:
    """``?lang=`` on the WHIP URL, else the room's ``source_language``; None: detect it."""
    raw = request.query.get("lang") or record.source_language
    if not raw:
        return None if state.multilingual else "en"
    return base(heard_language(state, raw))  # Whisper knows Chinese as one language, whatever its script


def heard_language(state: AppState, raw: str) -> str:
    """A language someone will speak (a room's or a publisher's), normalized: 400 when it is no
    language, or when this server's Whisper model hears only English and it is another."""
    try:
        lang = normalize(raw)
    except UnknownLanguage as exc:
        raise error(400, "unknown_language", str(exc)) from exc
    if not state.multilingual and lang != "en":
        raise error(
            400,
            "unsupported_language",
            f"the Whisper model {state.settings.model!r} hears only English; start with --model base "
            "(or another multilingual model) to caption other languages",
        )
    return lang


def speaker_name(request: web.Request) -> str | None:
    """``?speaker=`` on the WHIP URL, checked: the name shown with this publisher's captions."""
    raw = request.query.get("speaker")
    if raw is None or not raw.strip():
        return None
    try:
        return check_speaker(raw)
    except InvalidSpeaker as exc:
        raise error(400, "invalid_speaker", str(exc)) from exc


def speaker_engine(state: AppState) -> bool:
    """Whether speaker embeddings run: here, or on a live worker (``--engines ...,speaker``)."""
    runs = getattr(state.backend, "runs", None)
    return state.diarize and (runs is None or bool(runs("speaker")))


def speaker_turns(
    request: web.Request, state: AppState, record: RoomRecord, speaker: str | None
) -> SpeakerTurns | None:
    """``?speakers=auto`` (or the room's ``"speakers": "auto"``) on an unnamed publisher: speaker
    turns on its microphone, ``?max_speakers=N`` voices at most. A named publisher's voice is
    learnt instead, for the room's shared microphones to know it by name."""
    asked = request.query.get("speakers")
    if asked is not None and asked not in SPEAKER_MODES:
        raise error(400, "invalid_speakers", '"speakers" is "auto" (speaker turns) or "named"')
    if asked == "auto" and speaker:
        raise error(
            400, "invalid_speakers", "a named publisher (?speaker=) is one voice: leave out speakers=auto"
        )
    auto = (asked or record.words.speakers) == "auto" and not speaker
    if not speaker_engine(state):
        if asked == "auto":
            message = "speaker turns are off (--diarize-model off, or no worker runs --engines speaker)"
            raise error(400, "speaker_turns_unavailable", message)
        return None
    if not auto:
        return SpeakerTurns(learning=True) if speaker else None
    options = TurnOptions(hold=max(0, state.settings.speaker_hold_ms) / 1000)
    most = record.max_speakers
    if "max_speakers" in request.query:
        raw = request.query["max_speakers"]
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_SPEAKERS:
            raise error(400, "invalid_max_speakers", f"max_speakers is a number of voices, 1-{MAX_SPEAKERS}")
        most = int(raw)
    return SpeakerTurns(VoiceClusterer(max_speakers=most), options)


TAKEOVER_WAIT = 10.0  # how long a take-over waits for the old session's gateway to end it


async def join_room(
    state: AppState, room: Room, pub_id: str, speaker: str | None, takeover: bool
) -> str | None:
    """Join the publisher to its room; with ``takeover``, a live publisher of the same name is
    ended first (on whichever gateway it is), and the name waited for. Returns the name it
    speaks under: a take-over keeps the room's spelling ("cleo" taking over "Cleo" is Cleo, so
    the transcript keeps one voice under one name)."""
    try:
        await state.rooms.join(room, pub_id, speaker)
        return speaker
    except SpeakerRefused as exc:
        if not (takeover and exc.code == "speaker_taken" and exc.holder is not None):
            raise
        log.info("taking over speaker %r", speaker)
        speaker = room.name_of(exc.holder) or speaker
        await state.rooms.take_over(room, exc.holder)
    async with asyncio.timeout(TAKEOVER_WAIT):
        while True:
            try:
                await state.rooms.join(room, pub_id, speaker)
                return speaker
            except SpeakerRefused as exc:
                if exc.code != "speaker_taken":
                    raise
            await asyncio.sleep(0.2)  # retry period while another gateway ends the old session


async def post_whip(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        message = "this server is shutting down; publish again shortly"
        raise error(503, "draining", message, headers={"Retry-After": "5"})
    room_name = request.match_info["room"]
    try:
        check_room_name(room_name)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    record = await authorize(request, state, room_name)
    # Its own captions always; the room's other speakers only if it may also view the room
    # (a view token as ``?token=`` or the Bearer), else its channel would be a viewer in disguise.
    reads_room = state.access.may_view(record, bearer(request), request.query.get("token"))
    spoken = spoken_language(request, state, record)
    speaker = speaker_name(request)
    turns = speaker_turns(request, state, record, speaker)
    takeover = request.query.get("takeover", "").lower() in ("1", "true", "yes")
    live_room = state.rooms.get(room_name)
    if live_room is not None and not takeover:
        try:
            check_room_space(live_room, speaker)  # refused before any peer exists; joining checks again
        except SpeakerRefused as exc:
            raise error(409, exc.code, exc.message) from exc
    if request.content_type != "application/sdp":
        raise error(415, "unsupported_media_type", "send the offer as Content-Type: application/sdp")
    client = admit(request)
    sdp = await read_body(request)
    try:
        parsed = check_offer(sdp, want_audio=True)
    except OfferError as exc:
        state.metrics.rejected.labels(exc.code).inc()
        raise error(400, exc.code, exc.message) from exc

    pub_id = uuid.uuid4().hex
    # The peer's and the session's tasks start from this handler and inherit these ids.
    bind(room=room_name, session=pub_id[:12])
    try:
        state.backend.open_session(pub_id)
    except BackendUnavailable as exc:
        state.metrics.rejected.labels("unavailable").inc()
        # Why (a Redis address, a worker gone) is for the operator's log, not for the client.
        log.warning("publisher refused: inference unavailable: %s", exc)
        message = "captioning is unavailable right now; try again shortly"
        raise error(503, "inference_unavailable", message, headers={"Retry-After": "5"}) from exc
    except SchedulerFull as exc:
        state.metrics.rejected.labels("full").inc()
        raise error(503, "server_full", str(exc), headers={"Retry-After": "10"}) from exc

    policy = state.caption_policy(spoken)
    try:
        pc = state.peers.create(on_closed=lambda: publisher.peer_closed(), client=client)
    except PeerRefused as exc:
        state.backend.close_session(pub_id)
        state.metrics.rejected.labels(exc.refusal.code).inc()
        raise refused(exc.refusal) from exc
    room = state.rooms.ensure(room_name)
    state.rooms.adopt(room, record)  # its languages, as created on whichever gateway
    if turns is not None:
        turns.clusterer.known = room.known_voices  # named here, or enrolled
    # The session reports to its publisher, which owns the session: bind through a closure.
    session = CaptionSession(
        pub_id,
        policy,
        state.backend,
        lambda event: publisher.on_event(event),
        state.metrics.voice_account,
        turns=turns,
        pump=state.vad_pump,
    )
    publisher = Publisher(pub_id, room, state, session, pc, speaker)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind != "audio" or publisher.tasks:
            return
        task = asyncio.get_running_loop().create_task(publisher.consume(track))
        publisher.tasks.add(task)
        task.add_done_callback(publisher.tasks.discard)

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        # A channel can open after its publisher ended (a DELETE right after connecting):
        # listening then would keep the dead peer alive in the room for good.
        if state.publishers.get(pub_id) is publisher:
            room.listen(pub_id, DataChannelListener(channel), only=None if reads_room else pub_id)

    def receiving() -> tuple[str, list[Rejected]]:
        receive_first_audio(pc, parsed)
        return set_aside(sdp, parsed)

    rejected = await answer_offer(
        state.peers, pc, receiving, lambda: state.backend.close_session(pub_id), "WHIP"
    )

    try:
        await state.rooms.watch(room)
        publisher.speaker = speaker = await join_room(state, room, pub_id, speaker, takeover)
    except (RoomsUnavailable, SpeakerRefused, TimeoutError) as exc:
        await state.peers.close(pc)
        state.backend.close_session(pub_id)
        publisher.forget()
        if isinstance(exc, SpeakerRefused):
            raise error(409, exc.code, exc.message) from exc
        if isinstance(exc, TimeoutError):
            message = f"the session speaking as {speaker!r} did not end in time; try again"
            raise error(409, "speaker_taken", message) from exc
        raise  # answered 503 by the JSON error middleware
    state.publishers[pub_id] = publisher
    log.info("publisher accepted (%s)", request.remote)
    state.metrics.sessions.set(len(state.publishers))
    location = f"/whip/{room_name}/{pub_id}"
    return web.Response(
        status=201,
        text=restore(pc.localDescription.sdp, rejected),
        content_type="application/sdp",
        # Which captions on the channel are this publisher's own (their "publisher" field):
        # a dictation client types only its own words in a room where others speak too.
        headers={"Location": location, "ETag": f'"{pub_id}"', "Nova-Publisher": public_id(pub_id)},
    )


async def delete_whip(request: web.Request) -> web.Response:
    state = request.app[STATE]
    session, room_name = request.match_info["session"], request.match_info["room"]
    publisher = state.publishers.get(session)
    if publisher is None and state.ended.get(session) == room_name:
        del state.ended[session]  # the server ended it already (no media for --media-timeout)
        return web.Response(status=200)
    if publisher is None or publisher.room.name != room_name:
        raise error(404, "unknown_session", "no such publishing session")
    bind(room=publisher.room.name, session=publisher.id[:12])
    await publisher.stop()
    return web.Response(status=200)


async def no_trickle(request: web.Request) -> web.Response:
    """PATCH of a WHIP or WHEP session. Trickle ICE is optional in RFC 9725 (and WHEP): our
    answers carry all candidates already."""
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
        web.patch("/whip/{room}/{session}", no_trickle),
    ]
