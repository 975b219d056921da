"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from server.state import STATE


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def health_full(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pool = state.pool
    return web.json_response(
        {
            "status": "ok",
            "model": {
                "name": state.model.name,
                "path": state.model.path,
                "source": state.model.source,
                "loaded": True,
            },
            "devices": [
                {
                    "device": s.device,
                    "sessions": len(s.sessions),
                    "queue_depth": s.depth(),
                    "queue_delay": round(s.queue_delay(), 3),
                    "max_batch": s.options.max_batch,
                }
                for s in pool.schedulers
            ],
            "sessions": len(state.publishers),
            "max_sessions": pool.max_sessions,
            "queue_depth": pool.depth(),
            "queue_delay": round(pool.queue_delay(), 3),
            "rooms": len(state.rooms.rooms),
            "peers": len(state.peers),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health), web.get("/health/full", health_full), web.get("/metrics", metrics)]
