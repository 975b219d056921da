"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from server.state import STATE


async def health(request: web.Request) -> web.Response:
    # A load balancer stops sending publishers to a draining server; the ones it has finish.
    if request.app[STATE].draining:
        return web.json_response({"status": "draining"}, status=503, headers={"Retry-After": "5"})
    return web.json_response({"status": "ok"})


async def health_full(request: web.Request) -> web.Response:
    state = request.app[STATE]
    inference = state.backend.stats()
    model = inference.detail.get("model", {})
    return web.json_response(
        {
            "status": "draining" if state.draining else ("ok" if inference.ready else "degraded"),
            "model": model,
            "inference": inference.to_dict(),
            "devices": inference.to_dict()["devices"],
            "sessions": len(state.publishers),
            "max_sessions": inference.max_sessions,
            "queue_depth": inference.queue_depth,
            "queue_delay": round(inference.queue_delay, 3),
            "rooms": len(state.rooms.rooms),
            "peers": len(state.peers),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health), web.get("/health/full", health_full), web.get("/metrics", metrics)]
