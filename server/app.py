"""The aiohttp application factory: routes, typed state, and paired setup/teardown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from pipeline.languages import parse_list
from pipeline.translation import TranslationOptions
from server import health, ice, pages, room_routes, viewers, whip
from server.http import cors, json_errors
from server.inference import LoadedModels, load_models, local_backend, with_translator
from server.metrics import Metrics
from server.peers import PeerSet, allow_loopback_candidates
from server.rooms import RoomRegistry
from server.settings import Settings
from server.state import STATE, AppState
from server.transcripts import TranscriptStore
from server.translations import TranslationService

log = logging.getLogger(__name__)


def create_app(settings: Settings, models: LoadedModels | None = None) -> web.Application:
    """Build the app. ``models`` lets a caller share already-loaded models (tests, embedding);
    the app builds its own schedulers around them, with its own limits and metrics."""
    metrics = Metrics()
    defaults = parse_list(settings.translate_to)  # UnknownLanguage: the caller says which, and exits
    models, own_engines = with_translator(models or load_models(settings), settings)
    backend = local_backend(settings, models, observer=metrics)
    translation = None
    if models.translator is not None:
        translator = models.devices[0][1][models.translator]
        translation = TranslationService(
            translator,  # type: ignore[arg-type]  # both translator engines have languages/supports
            backend,
            metrics,
            TranslationOptions(
                partials=settings.translate_partials, partial_interval=settings.translate_partial_interval
            ),
            timeout=settings.translate_timeout,
            max_languages=settings.max_room_languages,
        )
        defaults = translation.check(list(defaults), None if models.multilingual else "en")
    settings.data_path.mkdir(parents=True, exist_ok=True)
    transcripts = TranscriptStore(settings.data_path)
    state = AppState(
        settings=settings,
        backend=backend,
        metrics=metrics,
        peers=PeerSet(),
        transcripts=transcripts,
        rooms=RoomRegistry(
            settings.data_path / "rooms.json",
            on_final=transcripts.append,
            history=transcripts.finals,
            default_languages=defaults if translation else (),
            on_room=translation.attach if translation else None,
        ),
        translation=translation,
        multilingual=models.multilingual,
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
        if translation is not None:
            await translation.aclose()
        await backend.aclose()
        for engine in own_engines:
            await asyncio.to_thread(engine.close)  # ends the Apertium pipelines this app started

    app.cleanup_ctx.append(lifecycle)
    return app
