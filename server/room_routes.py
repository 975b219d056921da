"""Creating rooms, and their transcripts as WebVTT, SRT, JSON or text."""

from __future__ import annotations

import json

from aiohttp import web

from server.auth import InvalidRoomName, bearer, check_room_name, hash_token, token_matches
from server.http import error, read_body
from server.state import STATE
from server.transcripts import to_json, to_srt, to_txt, to_vtt

FORMATS = ("vtt", "srt", "json", "txt")


def room_links(base: str, room: str) -> dict[str, object]:
    return {
        "whip_url": f"{base}/whip/{room}",
        "viewer_url": f"{base}/rooms/{room}/viewers",
        "overlay_url": f"{base}/overlay/{room}",
        "widget_snippet": f'<script src="{base}/widget.js" data-room="{room}" async></script>',
        "transcripts": {fmt: f"{base}/rooms/{room}/transcript.{fmt}" for fmt in FORMATS},
    }


async def create_room(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.settings.publish_token:
        # With a server-wide token, creating rooms is for those who hold it.
        token = bearer(request)
        if token is None or not token_matches(token, hash_token(state.settings.publish_token)):
            raise error(
                401, "unauthorized", "creating rooms needs 'Authorization: Bearer <server publish token>'"
            )
    raw = await read_body(request) if request.can_read_body else ""
    try:
        body = json.loads(raw) if raw.strip() else {}
        name = body.get("name") if isinstance(body, dict) else None
        if name is not None and not isinstance(name, str):
            raise TypeError
    except (ValueError, TypeError) as exc:
        raise error(400, "bad_request", 'the body must be JSON {"name": "optional-room-name"}') from exc
    try:
        room, token = await state.rooms.create_room(name or None)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    except KeyError as exc:
        raise error(409, "room_exists", f"room {name!r} already exists") from exc
    base = f"{request.scheme}://{request.host}"
    return web.json_response(
        {"room": room.name, "publish_token": token, **room_links(base, room.name)}, status=201
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
    if state.rooms.get(name) is None and not await state.transcripts.has(name):
        raise error(404, "unknown_room", f"room {name!r} has no transcript")
    history = await state.transcripts.read(name)
    items, sessions = history.finals, history.sessions
    lang = request.query.get("lang") or None
    # Shown in the browser, and saved under the room's name (not "transcript.vtt") when downloaded.
    headers = {"Cache-Control": "no-cache", "Content-Disposition": f'inline; filename="{name}.{fmt}"'}
    if fmt == "json":
        return web.json_response(to_json(name, items, sessions), headers=headers)
    if fmt == "vtt":
        return web.Response(text=to_vtt(items, lang, sessions), content_type="text/vtt", headers=headers)
    if fmt == "srt":
        return web.Response(text=to_srt(items, lang), content_type="application/x-subrip", headers=headers)
    return web.Response(text=to_txt(items, lang, sessions), content_type="text/plain", headers=headers)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/rooms", create_room),
        web.get(r"/rooms/{room}/transcript.{fmt}", transcript),
    ]
