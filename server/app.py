"""The aiohttp application factory: routes, typed state, and paired setup/teardown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from pipeline import silero
from pipeline.backend import InferenceBackend
from pipeline.languages import parse_list
from pipeline.pacing import PacingOptions
from pipeline.redis_backend import RedisBackend
from pipeline.translation import TranslationOptions
from server import logs
from server.api import deepgram, realtime
from server.api import openai as openai_api
from server.api.files import FILE_JOBS, FileJobs
from server.api.keys import API_KEYS, KEY_LIMITS, ApiKeys, KeyLimitOptions, KeyLimits
from server.edge.guard import EDGE, Edge, cors, guard
from server.edge.http import json_errors
from server.edge.limits import Admission, DescriptorFloor, LimitOptions
from server.edge.outbound import DestinationPolicy, PolicyError
from server.eventloop import watch as watch_loop
from server.inference import (
    LoadedModels,
    load_models,
    local_backend,
    redis_backend,
    with_translator,
    with_voice,
)
from server.logs import request_ids
from server.media.peers import PeerSet, allow_loopback_candidates
from server.messages import ErrorMessage
from server.metrics import Metrics
from server.rooms.access import ViewAccess
from server.rooms.bus import RoomBus
from server.rooms.outputs import OutputError, Outputs, check_outputs
from server.rooms.registry import RoomRegistry
from server.rooms.room import Room
from server.rooms.shared import SharedRoomRegistry, SharedTranscripts
from server.rooms.transcripts import TranscriptStore
from server.rooms.translations import RemoteTranslator, TranslationService, Translator
from server.rooms.voices import RemoteVoices, Voices, VoiceService
from server.routes import enrolment, events, health, ice, pages, viewers, whep, whip
from server.routes import rooms as room_routes
from server.routes import transcripts as transcript_routes
from server.routes.ice import server_ice_servers
from server.settings import ConfigError, Settings
from server.state import STATE, AppState

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5


def create_app(settings: Settings, models: LoadedModels | None = None) -> web.Application:
    """Build the app. ``models`` lets a caller share already-loaded models (tests, embedding);
    the app builds its own schedulers around them, with its own limits and metrics."""
    metrics = Metrics()
    outputs = Outputs(metrics, destination_policy(settings), max_outputs=settings.max_outputs)
    metrics.watch_outputs(outputs.states)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    if settings.vad == "silero":
        # Loaded with the app, not by the first publisher: the first ONNX session of a process
        # takes a moment and opens onnxruntime's own files (1.32: a telemetry database).
        silero.load_model()
    backend: InferenceBackend
    shared: RedisBackend | None = None
    bus: RoomBus | None = None
    translation: TranslationService | None = None
    voice: VoiceService | None = None
    own_engines: list[Any] = []
    defaults = parse_list(settings.translate_to)  # UnknownLanguage: the caller says which, and exits
    if settings.redis:
        # A gateway: no models here; inference, rooms and transcripts are shared through Redis,
        # and translation runs on translation workers (nova-voice worker --engines apertium).
        engine = settings.translation_engine
        shared = redis_backend(
            settings,
            context=logs.current,
            bind=logs.bound,
            engines=(
                "whisper",
                *((engine,) if engine else ()),
                "piper",
                *(("speaker",) if settings.diarize else ()),
            ),
        )
        bus = RoomBus(settings.redis, gateway=shared.gateway)
        backend = shared
        if engine is not None:
            translation = translation_service(RemoteTranslator(engine, shared), shared, metrics, settings)
        # Voices run on workers (--engines piper); a room may speak what their heartbeats offer.
        voice = voice_service(RemoteVoices(shared), shared, metrics, settings, bus)
        transcripts: TranscriptStore = SharedTranscripts(settings.data_path, bus)
        rooms: RoomRegistry = SharedRoomRegistry(
            bus,
            default_languages=defaults if translation else (),
            on_room=both(translation.attach if translation else None, voice.attach),
            on_forget=both(translation.detach if translation else None, voice.detach),
        )
        # The model runs on the workers: its name says whether it hears more than English.
        multilingual = not settings.model.endswith(".en")
        # Speaker turns where a worker runs the speaker engine (checked as each publisher comes).
        diarize = settings.diarize
        metrics.watch_backend(shared)
    else:
        models, own_engines = with_translator(models or load_models(settings), settings)
        models, tts = with_voice(models, settings)
        backend = local_backend(settings, models, observer=metrics)
        if tts is not None:
            voice = voice_service(tts, backend, metrics, settings)
        if models.translator is not None:
            translator = models.devices[0][1][models.translator]
            # Both translator engines have languages and supports().
            translation = translation_service(translator, backend, metrics, settings)  # type: ignore[arg-type]
            defaults = translation.check(list(defaults), None if models.multilingual else "en")
        transcripts = TranscriptStore(settings.data_path)
        service = translation
        speaking = voice

        def on_room(room: Room) -> None:
            if service is not None:
                service.attach(room)
            if speaking is not None:
                speaking.attach(room)
            outputs.attach(room, room.outputs)

        def on_forget(room: Room) -> None:
            # The room object goes: so do its outputs (a room of that name made later has its own).
            if service is not None:
                service.detach(room)
            if speaking is not None:
                speaking.detach(room)
            outputs.detach(room)

        rooms = RoomRegistry(
            settings.data_path / "rooms.json",
            on_final=transcripts.append,
            history=transcripts.history,
            on_session=transcripts.mark_session,
            default_languages=defaults if translation else (),
            on_room=on_room,
            on_forget=on_forget,
        )
        if settings.youtube_caption_url:
            try:
                rooms.default_outputs = check_outputs(
                    [{"type": "youtube", "url": settings.youtube_caption_url}], outputs.policy
                )
            except OutputError as exc:
                raise ConfigError(f"--youtube-caption-url: {exc}") from exc
        multilingual = models.multilingual
        diarize = any("speaker" in engines for _, engines in models.devices)
    voice_defaults = parse_list(settings.voice_langs)
    if voice_defaults and settings.redis:
        rooms.default_voice = voice_defaults  # checked against the voice workers as rooms are created
    elif voice_defaults:
        if voice is None:
            raise ConfigError("--voice-langs: nothing can speak here (install espeak-ng, or --voice-model)")
        spoken = None if multilingual else "en"
        rooms.default_voice = voice.check(list(voice_defaults), rooms.default_languages, spoken)
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
        peers=PeerSet(
            ice_servers=lambda: server_ice_servers(settings),
            connect_timeout=settings.connect_timeout,
            admission=admission,
        ),
        transcripts=transcripts,
        rooms=rooms,
        translation=translation,
        multilingual=multilingual,
        diarize=diarize,
        admission=admission,
        descriptors=DescriptorFloor(limits),
        access=ViewAccess(settings.view_token, settings.publish_token),
        outputs=outputs,
        voice=voice,
    )

    app = web.Application(middlewares=[request_ids, guard, cors, json_errors], client_max_size=64 * 1024)
    app[STATE] = state
    app[EDGE] = Edge(
        settings, admission, state.descriptors, rejected=lambda code: metrics.rejected.labels(code).inc()
    )
    app[pages.TEMPLATES] = pages.environment()
    # The OpenAI and Deepgram compatible APIs (server/api/): keys, per-key limits, file jobs.
    app[API_KEYS] = ApiKeys.from_settings(settings)
    key_limits = KeyLimits(
        KeyLimitOptions(
            requests_per_minute=settings.api_requests_per_minute,
            jobs=settings.max_file_jobs_per_key,
            sockets=settings.max_api_sessions_per_key,
        )
    )
    app[KEY_LIMITS] = key_limits
    app[FILE_JOBS] = file_jobs = FileJobs(backend, settings, key_limits, metrics)
    app.add_routes(
        health.routes()
        + ice.routes()
        + whip.routes()
        + whep.routes()
        + viewers.routes()
        + room_routes.routes()
        + enrolment.routes()
        + transcript_routes.routes()
        + events.routes()
        + pages.routes()
        + openai_api.routes()
        + deepgram.routes()
        + realtime.routes()
    )

    async def inference(app: web.Application) -> AsyncIterator[None]:
        if shared is not None:
            await shared.start()
        outputs.start_all()  # rooms kept from before: their OBS outputs connect now
        yield
        await outputs.aclose()
        if translation is not None:
            await translation.aclose()
        if voice is not None:
            await voice.aclose()
        await backend.aclose()
        file_jobs.close()
        for engine in own_engines:
            await asyncio.to_thread(engine.close)  # ends the Apertium pipelines this app started

    async def room_bus(app: web.Application) -> AsyncIterator[None]:
        if bus is not None:
            await bus.start()
        yield
        if bus is not None:
            await bus.aclose()

    async def peers(app: web.Application) -> AsyncIterator[None]:
        allow_loopback_candidates(settings.ice_loopback)
        yield
        await state.peers.close_all()

    async def files(app: web.Application) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(transcripts.close)

    async def heartbeat(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(beat(state), name="heartbeat")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def publishers(app: web.Application) -> AsyncIterator[None]:
        yield
        await drain(app, settings.drain_timeout)
        await app[STATE].vad_pump.aclose()

    async def loop_errors(app: web.Application) -> AsyncIterator[None]:
        unwatch = watch_loop(asyncio.get_running_loop(), lambda kind: metrics.loop_errors.labels(kind).inc())
        yield
        unwatch()

    # Torn down in reverse: publishers finalise first, while peers, files and models still work.
    app.cleanup_ctx.extend([loop_errors, inference, room_bus, files, peers, heartbeat, publishers])
    return app


def both(first: Callable[[Room], None] | None, second: Callable[[Room], None]) -> Callable[[Room], None]:
    """One room hook made of two (the first may be absent)."""

    def hook(room: Room) -> None:
        if first is not None:
            first(room)
        second(room)

    return hook


def destination_policy(settings: Settings) -> DestinationPolicy:
    """Where outputs may connect: public addresses, and what ``--outputs-allow`` lists."""
    try:
        return DestinationPolicy.parse(settings.outputs_allow)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc


def translation_service(
    translator: Translator, backend: InferenceBackend, metrics: Metrics, settings: Settings
) -> TranslationService:
    """The app's translation driver, the same for the embedded server and a gateway."""
    options = TranslationOptions(
        partials=settings.translate_partials, partial_interval=settings.translate_partial_interval
    )
    return TranslationService(
        translator,
        backend,
        metrics,
        options,
        timeout=settings.translate_timeout,
        max_languages=settings.max_room_languages,
    )


def voice_service(
    voices: Voices,
    backend: InferenceBackend,
    metrics: Metrics,
    settings: Settings,
    bus: RoomBus | None = None,
) -> VoiceService:
    """The app's voice-over driver: pacing from the settings, synthesis on the backend (on a
    gateway, ``bus`` carries each sentence to every gateway's listeners)."""
    return VoiceService(
        voices,
        backend,
        metrics,
        PacingOptions(max_lag=settings.voice_max_lag),
        timeout=max(settings.voice_max_lag, 1.0) * 2,
        bus=bus,
    )


async def beat(state: AppState) -> None:
    """Every listener hears from the room twice a second, speech or not: a page that hears
    nothing for a while knows its server is gone long before ICE would tell it."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)  # a period, not a synchronisation
        delay = state.backend.queue_delay()
        for room in list(state.rooms.rooms.values()):
            if room.listeners:
                room.status(delay)
        if state.outputs is not None:
            # An output failing for a while is said once to the room's publishers' pages.
            for room, words in state.outputs.alerts():
                room.tell_publishers(ErrorMessage("output_failing", words))


async def drain(app: web.Application, timeout: float) -> None:
    """Stop taking publishers (WHIP answers 503, /health says draining) and finalise the ones
    in progress side by side, within ``timeout`` seconds: their last words still go out."""
    state = app[STATE]
    state.draining = True
    stopping = [p.stop() for p in list(state.publishers.values())]
    if not stopping:
        return
    log.info("draining: finalising %d publisher(s)", len(stopping))
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*stopping, return_exceptions=True)
    except TimeoutError:
        log.warning("draining: publishers still open after %.0f s; closing them", timeout)
        # What their finals still held is reported (logged and counted), not silently gone.
        for publisher in list(state.publishers.values()):
            await publisher.session.abort("drain_timeout")
