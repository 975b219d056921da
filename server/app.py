"""The aiohttp application factory: routes, typed state, and paired setup/teardown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server import health, ice, pages, room_routes, viewers, whip
from server.access import ViewAccess
from server.guard import cors, guard
from server.http import json_errors
from server.inference import LoadedModels, load_models, local_backend
from server.limits import Admission, DescriptorFloor, LimitOptions
from server.metrics import Metrics
from server.peers import PeerSet, allow_loopback_candidates
from server.rooms import RoomRegistry
from server.settings import Settings
from server.state import STATE, AppState
from server.transcripts import TranscriptStore

log = logging.getLogger(__name__)


def create_app(settings: Settings, models: LoadedModels | None = None) -> web.Application:
    """Build the app. ``models`` lets a caller share already-loaded models (tests, embedding);
    the app builds its own schedulers around them, with its own limits and metrics."""
    metrics = Metrics()
    backend = local_backend(settings, models or load_models(settings), observer=metrics)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    transcripts = TranscriptStore(settings.data_path)
    limits = LimitOptions(
        offers_per_minute=settings.offers_per_minute,
        max_pending=settings.max_pending,
        max_peers=settings.max_peers,
    )
    admission = Admission(limits)
    state = AppState(
        settings=settings,
        backend=backend,
        metrics=metrics,
        peers=PeerSet(connect_timeout=settings.connect_timeout, admission=admission),
        transcripts=transcripts,
        rooms=RoomRegistry(
            settings.data_path / "rooms.json", on_final=transcripts.append, history=transcripts.finals
        ),
        admission=admission,
        descriptors=DescriptorFloor(limits),
        access=ViewAccess(settings.view_token, settings.data_path / "view_tokens.json"),
    )

    app = web.Application(middlewares=[guard, cors, json_errors], client_max_size=64 * 1024)
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
        await backend.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app
