"""The HTML pages, rendered from jinja2 templates in web/, and the static files beside them."""

from __future__ import annotations

from pathlib import Path

import jinja2
from aiohttp import web

from server.edge.http import error
from server.rooms.names import InvalidRoomName, check_room_name

WEB = Path(__file__).resolve().parents[2] / "web"
TEMPLATES = web.AppKey("templates", jinja2.Environment)


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )


def render(request: web.Request, name: str, **context: object) -> web.Response:
    html = request.app[TEMPLATES].get_template(name).render(static_prefix="/static", **context)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-cache"})


async def capture(request: web.Request) -> web.Response:
    room = request.query.get("room", "demo")
    return render(request, "capture.html", title="Nova Voice — live captions", default_room=room)


async def overlay(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    try:
        check_room_name(room)
    except InvalidRoomName as exc:
        raise error(400, "invalid_room", str(exc)) from exc
    # Served for rooms that do not exist yet: an OBS scene is set up before the stream starts,
    # and the page keeps trying until the room has captions.
    return render(request, "overlay.html", room=room)


async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask every site for /favicon.ico whatever the page links: the pages' own SVG icon,
    so no page logs a 404 for it."""
    return web.FileResponse(
        WEB / "static" / "favicon.svg",
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=86400"},
    )


WIDGET_PARTS = ("viewer.js", "captions.js", "widget-main.js")


def widget_source() -> str:
    """One file for one script tag: the shared viewer and renderer, then the widget itself."""
    return "\n".join((WEB / "static" / name).read_text(encoding="utf-8") for name in WIDGET_PARTS)


async def widget(request: web.Request) -> web.Response:
    return web.Response(
        text=widget_source(),
        content_type="application/javascript",
        headers={"Cache-Control": "no-cache"},
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", capture),
        web.get("/overlay/{room}", overlay),
        web.get("/widget.js", widget),
        web.get("/favicon.ico", favicon),
        web.static("/static", WEB / "static"),
    ]
