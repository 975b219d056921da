"""The HTML pages, rendered from jinja2 templates in web/, and the static files beside them."""

from __future__ import annotations

from pathlib import Path

import jinja2
from aiohttp import web

WEB = Path(__file__).resolve().parent.parent / "web"
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


def routes() -> list[web.RouteDef]:
    return [web.get("/", capture), web.static("/static", WEB / "static")]
