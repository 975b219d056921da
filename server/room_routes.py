"""Creating rooms, and their transcripts as WebVTT, SRT, JSON or text."""

from __future__ import annotations

from aiohttp import web

from server.auth import InvalidRoomName, bearer, check_room_name, hash_token, token_matches
from server.guard import admit, require_view
from server.http import error, parse_json, read_body
from server.state import STATE, AppState
from server.transcripts import to_json, to_srt, to_txt, to_vtt
from server.viewers import known_room

FORMATS = ("vtt", "srt", "json", "txt")


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


def in_use(state: AppState, name: str) -> bool:
    """A room someone already publishes to, or whose transcript holds what was said in it."""
    room = state.rooms.get(name)
    return (room is not None and (room.created or bool(room.publishers))) or state.transcripts.exists(name)


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
        raise error(
            415, "unsupported_media_type", 'send Content-Type: application/json, body {"name": "optional"}'
        )
    admit(request)
    raw = await read_body(request)
    body = parse_json(raw) if raw.strip() else {}
    name = body.get("name") if isinstance(body, dict) else None
    private = body.get("private", False) if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(name, str | None) or not isinstance(private, bool):
        raise error(400, "bad_request", 'the body must be JSON {"name": "optional-name", "private": false}')
    if name:
        try:
            check_room_name(name)
        except InvalidRoomName as exc:
            raise error(400, "invalid_room", str(exc)) from exc
        if in_use(state, name):
            raise error(409, "room_exists", f"room {name!r} already exists or is in use")
    try:
        room, token = state.rooms.create(name or None)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    except KeyError as exc:
        raise error(409, "room_exists", f"room {name!r} already exists") from exc
    view_token = state.access.grant(room.name) if private else None
    base = f"{request.scheme}://{request.host}"
    extra = {"view_token": view_token} if view_token else {}
    return web.json_response(
        {"room": room.name, "publish_token": token, **extra, **room_links(base, room.name, view_token)},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def transcript(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name, fmt = request.match_info["room"], request.match_info["fmt"]
    if fmt not in FORMATS:
        raise error(404, "unknown_format", f"transcripts come as {', '.join(FORMATS)}")
    try:
        check_room_name(name)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    require_view(request, name)
    known_room(state, name)
    items = state.transcripts.finals(name)
    lang = request.query.get("lang") or None
    headers = {"Cache-Control": "no-cache"}
    if fmt == "json":
        return web.json_response(to_json(name, items), headers=headers)
    if fmt == "vtt":
        return web.Response(text=to_vtt(items, lang), content_type="text/vtt", headers=headers)
    if fmt == "srt":
        return web.Response(text=to_srt(items, lang), content_type="application/x-subrip", headers=headers)
    return web.Response(text=to_txt(items, lang), content_type="text/plain", headers=headers)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/rooms", create_room),
        web.get(r"/rooms/{room}/transcript.{fmt}", transcript),
    ]
