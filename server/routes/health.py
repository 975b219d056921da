"""Liveness, readiness and Prometheus metrics.

``/health/full`` shows the public what a load balancer or a status page needs (ready, sessions,
queues, devices, the model's name), never where things are: model paths, the Redis address,
worker host names and failure texts are for holders of ``--admin-token``. With ``--view-token``
or ``--admin-token`` set, ``/health/full`` needs one of them.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from server.edge.auth import hash_token, token_matches
from server.edge.http import error
from server.routes.access import request_token
from server.state import STATE, AppState

log = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    # A load balancer stops sending publishers to a draining server; the ones it has finish.
    if request.app[STATE].draining:
        return web.json_response({"status": "draining"}, status=503, headers={"Retry-After": "5"})
    return web.json_response({"status": "ok"})


def _matches(token: str | None, secret: str) -> bool:
    return bool(token and secret and token_matches(token, hash_token(secret)))


def health_reader(request: web.Request, state: AppState) -> bool:
    """Whether this request may read ``/health/full`` (True: with the admin's detail), or a 401/403."""
    settings = state.settings
    token = request_token(request)
    if _matches(token, settings.admin_token):
        return True
    if not (settings.admin_token or settings.view_token):
        return False
    if _matches(token, settings.view_token):
        return False
    log.warning("refused GET /health/full: %s", "no token" if token is None else "wrong token")
    if token is None:
        raise error(
            401,
            "token_required",
            "/health/full needs the view or admin token: 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="nova-voice"'},
        )
    raise error(403, "forbidden", "the token is not valid for /health/full")


def public_detail(inference: dict[str, Any]) -> dict[str, Any]:
    """The inference stats without where things are: no paths, addresses, host names or errors."""
    detail = inference.get("detail", {})
    public: dict[str, Any] = {}
    if "model" in detail:
        public["model"] = {k: v for k, v in detail["model"].items() if k in ("name", "loaded", "where")}
    if "translator" in detail:
        public["translator"] = {"engine": detail["translator"].get("engine")}
    if "redis" in detail:
        redis = detail["redis"]
        public["redis"] = {"connected": redis.get("connected"), "workers": redis.get("workers")}
    # Worker ids carry host names: the public sees them numbered, with their device kind.
    devices = [
        {**d, "device": f"worker-{i}/{d['device'].rsplit('/', 1)[-1]}"} if inference["kind"] == "redis" else d
        for i, d in enumerate(inference.get("devices", []), 1)
    ]
    return {**inference, "detail": public, "devices": devices}


async def health_full(request: web.Request) -> web.Response:
    state = request.app[STATE]
    admin = health_reader(request, state)
    stats = state.backend.stats()
    inference = stats.to_dict() if admin else public_detail(stats.to_dict())
    return web.json_response(
        {
            "status": "draining" if state.draining else ("ok" if stats.ready else "degraded"),
            "model": inference["detail"].get("model", {}),
            "inference": inference,
            "devices": inference["devices"],
            "sessions": len(state.publishers),
            "max_sessions": stats.max_sessions,
            "queue_depth": stats.queue_depth,
            "queue_delay": round(stats.queue_delay, 3),
            "rooms": len(state.rooms.rooms),
            "peers": len(state.peers),
        },
        headers={"Cache-Control": "no-store"},
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health), web.get("/health/full", health_full), web.get("/metrics", metrics)]
