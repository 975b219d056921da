"""A room's transcript as WebVTT, SRT, JSON or text, cut into cues by the subtitle rules the
request may tune."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from pipeline.languages import UnknownLanguage, normalize
from server.edge.http import error
from server.rooms.names import InvalidRoomName, check_room_name
from server.rooms.room import RoomHistory
from server.rooms.subtitles import CueRules
from server.rooms.transcripts import for_language, to_json, to_srt, to_txt, to_vtt
from server.rooms.translations import LanguageError, viewer_language
from server.routes.access import require_view
from server.routes.viewers import planned_room
from server.state import STATE

FORMATS = ("vtt", "srt", "json", "txt")


async def transcript(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name, fmt = request.match_info["room"], request.match_info["fmt"]
    if fmt not in FORMATS:
        raise error(404, "unknown_format", f"transcripts come as {', '.join(FORMATS)}")
    try:
        check_room_name(name)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    record = await require_view(request, name)
    if not record.known and not await state.transcripts.has(name):
        raise error(404, "unknown_room", f"room {name!r} has no transcript")
    history = await state.transcripts.read(name)
    lang = None
    if request.query.get("lang"):
        raw = request.query["lang"]
        room = planned_room(state, record)
        try:
            lang = (
                viewer_language(room, raw, state.spoken(room))
                if record.known
                else kept_language(history, raw)
            )
        except (LanguageError, UnknownLanguage) as exc:
            raise error(400, "language_not_carried", str(exc)) from exc
    rules = cue_rules(request) if fmt in ("vtt", "srt") else None
    items, sessions = for_language(history.finals, lang), history.sessions
    if record.words.speaker_names:
        # Labels of shared microphones by the names given since (PATCH speaker_names).
        items = [replace(m, speaker=record.words.speaker(m.speaker)) for m in items]
    # Shown in the browser without ?download=1 (SRT as plain text: browsers save
    # application/x-subrip rather than show it); with it, saved under the room's name.
    download = request.query.get("download", "") not in ("", "0", "false", "no")
    disposition = "attachment" if download else "inline"
    filename = f"{name}.{lang}.{fmt}" if lang else f"{name}.{fmt}"  # a translation says which
    headers = {"Cache-Control": "no-cache", "Content-Disposition": f'{disposition}; filename="{filename}"'}
    if fmt == "json":
        return web.json_response(to_json(name, items, sessions), headers=headers)
    if fmt == "vtt":
        dialogue = request.query.get("dialogue", "") not in ("", "0", "false", "no")
        return web.Response(
            text=to_vtt(items, None, sessions, rules, dialogue), content_type="text/vtt", headers=headers
        )
    if fmt == "srt":
        kind = "application/x-subrip" if download else "text/plain"
        return web.Response(text=to_srt(items, None, rules), content_type=kind, headers=headers)
    return web.Response(text=to_txt(items, None, sessions), content_type="text/plain", headers=headers)


def kept_language(history: RoomHistory, raw: str) -> str:
    """``?lang=`` of a room known only by its transcript (published to, then idle): a language
    its finals were spoken or translated in, else LanguageError naming those."""
    lang = normalize(raw)
    carried = sorted({m.lang for m in history.finals if m.lang})
    if lang in carried:
        return lang
    said = raw if len(raw) <= 32 else raw[:31] + "…"
    names = ", ".join(carried) if carried else "no language yet (it has no captions)"
    raise LanguageError(f"this room does not carry {said!r}; it carries: {names}")


# Each subtitle limit as a query parameter: (name, field, lowest, highest).
CUE_LIMITS = (
    ("max_chars", "max_chars", 16, 120),
    ("max_lines", "max_lines", 1, 4),
    ("max_cue", "max_duration", 1.0, 30.0),
    ("min_cue", "min_duration", 0.0, 5.0),
)


def cue_rules(request: web.Request) -> CueRules:
    """The subtitle guidelines (42 characters a line, 2 lines, 1-7 s a cue), each overridable:
    ``?max_chars=32&max_lines=2&max_cue=6&min_cue=1``."""
    values: dict[str, float] = {}
    for param, field_name, low, high in CUE_LIMITS:
        raw = request.query.get(param)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high or (isinstance(low, int) and value != int(value)):
            raise error(400, "bad_subtitle_limit", f"{param} is a number from {low} to {high}")
        values[field_name] = int(value) if isinstance(low, int) else value
    return CueRules(**values)  # type: ignore[arg-type]


def routes() -> list[web.RouteDef]:
    return [web.get(r"/rooms/{room}/transcript.{fmt}", transcript)]
