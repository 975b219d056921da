"""The aiohttp application factory: routes, typed state, and paired setup/teardown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from pipeline.models import ResolvedModel
from pipeline.scheduler import SchedulerPool
from server import health, ice, pages, room_routes, viewers, whip
from server.http import cors, json_errors
from server.inference import build_pool
from server.metrics import Metrics
from server.peers import PeerSet, allow_loopback_candidates
from server.rooms import RoomRegistry
from server.settings import Settings
from server.state import STATE, AppState
from server.transcripts import TranscriptStore

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, inference: tuple[SchedulerPool, ResolvedModel] | None = None
) -> web.Application:
    """Build the app. ``inference`` lets a caller share already-loaded models (tests, embedding);
    the app then leaves closing them to that caller."""
    metrics = Metrics()
    owns_pool = inference is None
    pool, model = inference if inference is not None else build_pool(settings, metrics)
    # A shared pool serves one app at a time (tests reuse loaded models): it takes this app's
    # metrics and admission limit.
    pool.max_sessions = settings.max_sessions
    for scheduler in pool.schedulers:
        scheduler.observer = metrics
    settings.data_path.mkdir(parents=True, exist_ok=True)
    transcripts = TranscriptStore(settings.data_path)
    state = AppState(
        settings=settings,
        pool=pool,
        model=model,
        metrics=metrics,
        peers=PeerSet(),
        transcripts=transcripts,
        rooms=RoomRegistry(
            settings.data_path / "rooms.json", on_final=transcripts.append, history=transcripts.finals
        ),
    )

    app = web.Application(middlewares=[cors, json_errors], client_max_size=64 * 1024)
    app[STATE] = state
    app[pages.TEMPLATES] = pages.environment()
    app.add_routes(
        health.routes()
        + ice.routes()
        + whip.routes()
        + viewers.routes()
        + room_routes.routes()
        + pages.routes()
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        allow_loopback_candidates(settings.ice_loopback)
        yield
        # Finalise every publisher's last words side by side: shutdown takes one final's time, not N.
        await asyncio.gather(*(p.stop() for p in list(state.publishers.values())), return_exceptions=True)
        await state.peers.close_all()
        if owns_pool:
            pool.close()

    app.cleanup_ctx.append(lifecycle)
    return app
