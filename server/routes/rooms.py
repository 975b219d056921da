"""Rooms as a resource: creating them, reading their settings, and changing them while live."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from server.edge.auth import bearer, hash_token, token_matches
from server.edge.guard import admit, public_base
from server.edge.http import error, parse_json, read_body
from server.edge.http import shown as shown_text
from server.rooms.names import InvalidRoomName, check_room_name
from server.rooms.outputs import OutputError, TooManyOutputs, check_outputs, shown
from server.rooms.registry import RoomRecord, RoomSpec
from server.rooms.room import Room
from server.rooms.speakers import MAX_SPEAKERS
from server.rooms.translations import LanguageError
from server.rooms.voices import VoiceLanguageError
from server.rooms.words import RoomWords, WordsError
from server.routes.access import request_token, require_publish, require_view
from server.routes.transcripts import FORMATS
from server.routes.viewers import planned_room, room_name
from server.routes.whip import heard_language
from server.state import STATE, AppState

log = logging.getLogger(__name__)

BODY_HELP = (
    'the body must be JSON {"name": "r", "languages": ["es"], "source_language": "en", "private": false,'
    ' "vocabulary": ["Niamh Okonkwo"], "replacements": {"elastic search": "Elasticsearch"},'
    ' "max_speakers": 4, "voice": ["es"], "outputs": [{"type": "youtube", "url": "..."}]} (all optional)'
)
PATCH_HELP = (
    'the body must be JSON with any of "vocabulary" (a list of terms), "replacements" '
    '(an object of phrase -> shown text), "outputs" (a list such as [{"type": "youtube", "url": "..."}]), '
    '"speakers" ("auto" or "named") and "speaker_names" (an object such as {"Speaker 2": "Ben"})'
)
PATCHED = ("vocabulary", "replacements", "outputs", "speakers", "speaker_names")
CHANGE_NEEDS = "changing a room needs its publish token as 'Authorization: Bearer <publish token>'"


def room_settings(room: Room, state: AppState | None = None) -> dict[str, object]:
    """What the room hears and shows: read back by its owner and its viewers alike (outputs
    without their stream keys and passwords, each with how it is doing)."""
    return {
        "vocabulary": list(room.words.vocabulary),
        "replacements": dict(room.words.replacements),
        "max_speakers": room.max_speakers,
        "voice": list(room.voice),
        "speakers": list(room.live_speakers()),
        "speaker_turns": room.words.speakers,
        "speaker_names": dict(room.words.speaker_names),
        "voices": sorted(name for name, _ in room.words.voices),
        "outputs": outputs_shown(state, room),
    }


def outputs_shown(state: AppState | None, room: Room) -> list[dict[str, object]]:
    """A room's outputs, masked, with their health where they run in this process."""
    if state is not None and state.outputs is not None and state.outputs.posters(room):
        return state.outputs.report(room)  # type: ignore[return-value]
    return [shown(o) for o in room.outputs]


def words_of(body: dict[str, object], current: RoomWords | None = None) -> RoomWords:
    try:
        return RoomWords.from_body(body, current)
    except WordsError as exc:
        raise error(400, "bad_words", str(exc)) from exc


def max_speakers_of(body: dict[str, object]) -> int | None:
    raw = body.get("max_speakers")
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_SPEAKERS:
        raise error(400, "bad_request", f'"max_speakers" is a number from 1 to {MAX_SPEAKERS} (or null)')
    return raw


def outputs_of(state: AppState, raw: object, room: Room | None = None) -> tuple[dict[str, str], ...]:
    """A body's outputs, checked: well-formed, reachable under the destination policy, and
    within the server's ``--max-outputs``; an item ``{"id": ...}`` keeps (or edits) one of the
    room's outputs."""
    outputs_in = state.outputs
    current = room.outputs if room is not None else ()
    try:
        outputs = check_outputs(raw, outputs_in.policy if outputs_in is not None else None, current)
    except OutputError as exc:
        raise error(400, "bad_output", str(exc)) from exc
    if outputs and (state.settings.redis or outputs_in is None):
        raise error(
            400, "outputs_unsupported", "room outputs run on the embedded server only, not yet on gateways"
        )
    if outputs_in is not None:
        try:
            outputs_in.check_room(room, outputs)
        except TooManyOutputs as exc:
            raise error(429, "too_many_outputs", str(exc), headers={"Retry-After": "60"}) from exc
    return outputs


def room_languages(state: AppState, room: Room) -> dict[str, object]:
    return {
        "languages": list(room.languages),
        "source_language": room.source_language,
        "spoken": state.spoken(room),
    }


def room_links(base: str, room: str, view_token: str | None = None) -> dict[str, object]:
    """Where to publish, watch and read a room; a private room's links carry its view token."""
    query = f"?token={view_token}" if view_token else ""
    token_attr = f' data-token="{view_token}"' if view_token else ""
    return {
        "whip_url": f"{base}/whip/{room}",
        "viewer_url": f"{base}/rooms/{room}/viewers",
        "overlay_url": f"{base}/overlay/{room}{query}",
        "widget_snippet": f'<script src="{base}/widget.js" data-room="{room}"{token_attr} async></script>',
        "transcripts": {fmt: f"{base}/rooms/{room}/transcript.{fmt}{query}" for fmt in FORMATS},
    }


async def in_use(state: AppState, name: str) -> bool:
    """A room someone already publishes to, or whose transcript holds what was said in it."""
    room = state.rooms.get(name)
    return (room is not None and (room.created or bool(room.publishers))) or await state.transcripts.has(name)


async def create_room(request: web.Request) -> web.Response:
    """A deliberate act: JSON only (a page on another origin must pass a CORS preflight, which
    only --allow-origin passes), within the client's rate, and never a name already in use."""
    state = request.app[STATE]
    if state.settings.publish_token:
        # With a server-wide token, creating rooms is for those who hold it.
        token = bearer(request)
        if token is None or not token_matches(token, hash_token(state.settings.publish_token)):
            raise error(
                401, "unauthorized", "creating rooms needs 'Authorization: Bearer <server publish token>'"
            )
    if request.content_type != "application/json":
        raise error(415, "unsupported_media_type", "send Content-Type: application/json; " + BODY_HELP)
    admit(request)
    raw = await read_body(request)
    body = parse_json(raw) if raw.strip() else {}
    name = body.get("name") if isinstance(body, dict) else None
    private = body.get("private", False) if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(name, str | None) or not isinstance(private, bool):
        raise error(400, "bad_request", BODY_HELP)
    if name:
        try:
            check_room_name(name)
        except InvalidRoomName as exc:
            raise error(400, "invalid_room", str(exc)) from exc
        if await in_use(state, name):
            raise error(409, "room_exists", f"room {name!r} already exists or is in use")
    languages, source = room_language_options(state, body)
    outputs = outputs_of(state, body.get("outputs"))
    words = words_of(body)
    max_speakers = max_speakers_of(body)
    voice = voice_of(state, body, languages, source)
    view_token = secrets.token_urlsafe(24) if private else None
    view_hash = hash_token(view_token) if view_token else None
    try:
        spec = RoomSpec(languages, source, view_hash, outputs, words, max_speakers, voice)
        room, token = await state.rooms.create_room(name or None, spec)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    except KeyError as exc:
        raise error(409, "room_exists", f"room {name!r} already exists") from exc
    base = public_base(request)
    extra = {"view_token": view_token} if view_token else {}
    return web.json_response(
        {
            "room": room.name,
            "publish_token": token,
            **extra,
            **room_languages(state, room),
            **room_settings(room, state),
            **room_links(base, room.name, view_token),
        },
        status=201,
        headers={"Cache-Control": "no-store"},
    )


def room_language_options(
    state: AppState, body: dict[str, object]
) -> tuple[tuple[str, ...] | None, str | None]:
    """A new room's target languages (None: the server's defaults) and fixed spoken language."""
    source = body.get("source_language")
    if source is not None:
        if not isinstance(source, str):
            raise error(400, "bad_request", '"source_language" must be a language code such as "es"')
        source = heard_language(state, source)
    raw = body.get("languages")
    if raw is None:
        return None, source
    if state.translation is None:
        if raw in ([], ""):
            return (), source
        raise error(
            400,
            "translation_off",
            "translation is off on this server; start it with --translate-to, --translate-engine "
            "apertium or --translate-model",
        )
    spoken = source or (None if state.multilingual else "en")
    try:
        return state.translation.check(raw, spoken), source
    except LanguageError as exc:
        code = "too_many_languages" if "at most" in str(exc) else "unknown_language"
        raise error(400, code, str(exc)) from exc


def voice_of(
    state: AppState, body: dict[str, object], languages: tuple[str, ...] | None, source: str | None
) -> tuple[str, ...] | None:
    """A new room's voice languages (None: the server's defaults): each one it shows captions in."""
    raw = body.get("voice")
    if raw is None:
        return None
    if state.voice is None:
        if raw in ([], ""):
            return ()
        raise error(400, "voice_off", "the voice-over is off on this server (no espeak-ng, no Piper voice)")
    carried = state.rooms.default_languages if languages is None else languages
    try:
        return state.voice.check(raw, carried, source or (None if state.multilingual else "en"))
    except VoiceLanguageError as exc:
        raise error(400, "voice_not_spoken", str(exc)) from exc


async def room_info(request: web.Request) -> web.Response:
    """A room's languages and settings, for pages that let their reader pick one. A room that
    is not known here and one the request may not read get the same answer (no room names to
    enumerate)."""
    state = request.app[STATE]
    name = room_name(request)
    record = await state.rooms.record(name)
    if not state.access.required(record) and not record.known:
        raise no_such_room(name)
    if state.access.required(record) and not state.access.server_wide:
        token = request_token(request)
        if not (state.access.may_view(record, token) or state.access.may_publish(record, token)):
            raise no_such_room(name)
    record = await require_view(request, name, publishers_too=True)
    room = planned_room(state, record)
    live = state.rooms.get(room.name)
    settings = room_settings(room)
    if live is not None:
        settings.update(speakers=list(live.live_speakers()), outputs=outputs_shown(state, live))
    return web.json_response(
        {"room": room.name, "private": record.private, **room_languages(state, room), **settings},
        headers={"Cache-Control": "no-store"},
    )


def no_such_room(name: str) -> web.HTTPException:
    message = f"there is no room {name!r} here, or it needs a token this request lacks"
    return error(404, "unknown_room", message)


def may_change(request: web.Request, state: AppState, record: RoomRecord) -> None:
    """Who may change a room: the admin token, or a publish token for it (the room's or the
    server's). A room that was never created and one the token does not open get the same
    answers (401 without a token, 403 with one), so PATCH tells no room names apart."""
    token = bearer(request)
    if token is None or not is_admin(state, token):
        # A room never created has no token of its own: only the server's opens it.
        require_publish(request, record if record.created else RoomRecord(record.name), CHANGE_NEEDS)
    if not record.created:
        raise error(
            404, "unknown_room", f"room {record.name!r} was not created with POST /rooms; it has no settings"
        )


def may_redirect(request: web.Request, state: AppState, record: RoomRecord) -> None:
    """Where a room's captions go is for those who may read them: a room that needs a view
    token (a private room, or every room with ``--view-token``) has its outputs changed only by
    a request that also shows one (``?token=`` or ``Nova-View-Token``), or by the admin token.
    Else a publish token handed to a guest speaker would read the whole room through an output
    of her own."""
    token = bearer(request)
    if not state.access.required(record) or (token is not None and is_admin(state, token)):
        return
    view = request.headers.get("Nova-View-Token") or request.query.get("token")
    if not state.access.may_view(record, view, token):
        path = shown_text(request.path, 120)
        log.warning("refused %s %s: outputs without a view token", request.method, path)
        raise error(
            403,
            "view_token_required",
            "changing where this room's captions go needs its view token too (?token= or a "
            "Nova-View-Token header), as reading them does",
        )


def is_admin(state: AppState, token: str) -> bool:
    admin = state.settings.admin_token
    return bool(admin) and token_matches(token, hash_token(admin))


async def patch_room(request: web.Request) -> web.Response:
    """Change a live room's vocabulary, replacements or outputs (its publish token; outputs of
    a private room also its view token): each publisher's next utterance hears the new
    vocabulary, every line from now on shows the replacements and goes to the new outputs, and
    listeners get a ``settings`` message saying so."""
    state = request.app[STATE]
    name = room_name(request)
    record = await state.rooms.record(name)
    may_change(request, state, record)
    if request.content_type != "application/json":
        raise error(415, "unsupported_media_type", "send Content-Type: application/json; " + PATCH_HELP)
    admit(request)
    body = parse_json(await read_body(request))
    if not isinstance(body, dict) or not body or set(body) - set(PATCHED):
        raise error(400, "bad_request", PATCH_HELP)
    words = words_of(body, record.words)
    outputs = None
    if "outputs" in body:
        may_redirect(request, state, record)
        outputs = outputs_of(state, body["outputs"], state.rooms.get(name))
    changed = tuple(k for k in PATCHED if k in body)
    room = state.rooms.ensure(name)
    state.rooms.adopt(room, record)
    if outputs is not None:
        state.rooms.set_outputs(room, outputs)
    said = tuple(k for k in changed if k != "outputs")
    if said:
        await state.rooms.set_words(room, words, said)
        room.words = words  # this gateway's answer shows them even before Redis's copy comes back
    log.info("room %s: %s changed", name, " and ".join(changed))
    response = web.json_response(
        {"room": name, "changed": list(changed), **room_settings(room, state)},
        headers={"Cache-Control": "no-store"},
    )
    state.rooms.forget_if_idle(name)
    return response


async def test_output(request: web.Request) -> web.Response:
    """Send one test caption through one of the room's outputs, now, once, and say how it went
    (the same tokens as changing the room's outputs): the capture page's Test button."""
    state = request.app[STATE]
    name = room_name(request)
    record = await state.rooms.record(name)
    may_change(request, state, record)
    may_redirect(request, state, record)
    room = state.rooms.get(name)
    ident = request.match_info["output"]
    poster = state.outputs.poster(room, ident) if state.outputs is not None and room is not None else None
    if poster is None:
        raise error(404, "unknown_output", f"room {name!r} has no output {shown_text(ident, 16)!r}")
    problem = await poster.test()
    report = next((o for o in outputs_shown(state, room) if o.get("id") == ident), {})  # type: ignore[arg-type]
    answer: dict[str, object] = {"room": name, "ok": problem is None, "output": report}
    if problem is not None:
        answer["message"] = problem
    return web.json_response(answer, headers={"Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/rooms", create_room),
        web.get("/rooms/{room}", room_info),
        web.patch("/rooms/{room}", patch_room),
        web.post("/rooms/{room}/outputs/{output}/test", test_output),
    ]
