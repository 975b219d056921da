"""``nova-voice worker``: load the models, feed each device's scheduler from Redis, and answer
``/health``, ``/health/full`` and ``/metrics`` on ``--port``. SIGTERM drains: stop reading,
finish the batch, acknowledge, exit."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.audio_refs import AudioCache
from pipeline.models import ModelNotFound
from pipeline.streams import connect
from pipeline.worker import Worker, WorkerOptions
from server import logs
from server.eventloop import run, running_loop_name
from server.metrics import InferenceMetrics, queue_families
from server.settings import ConfigError, WorkerSettings

log = logging.getLogger(__name__)

WORKERS = web.AppKey("workers", list[Worker])
REGISTRY = web.AppKey("registry", CollectorRegistry)


class _QueueCollector(Collector):
    """Read at scrape time from the workers' own view of Redis and of themselves."""

    def __init__(self, workers: list[Worker]) -> None:
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        stats = [w.stats() for w in self._workers]
        first = stats[0] if stats else None
        yield from queue_families(first.streams if first else (), first.cluster if first else {})

        inflight = GaugeMetricFamily(
            "nova_worker_inflight", "Requests this worker holds", labels=["worker", "device"]
        )
        load = GaugeMetricFamily(
            "nova_worker_load",
            "Fraction of the last second the device spent in batches",
            labels=["worker", "device"],
        )
        idle = GaugeMetricFamily(
            "nova_worker_reclaim_idle_seconds",
            "Idle time after which entries are reclaimed",
            labels=["worker"],
        )
        handled = CounterMetricFamily(
            "nova_worker_requests",
            "Requests by outcome (ok, dropped, reclaimed, failures, dead_letters, ...)",
            labels=["worker", "outcome"],
        )
        for s in stats:
            inflight.add_metric([s.id, s.device], s.inflight)
            load.add_metric([s.id, s.device], s.load)
            idle.add_metric([s.id], s.reclaim_idle_ms / 1000)
            for outcome, n in sorted(s.counts.items()):
                handled.add_metric([s.id, outcome], n)
        yield from (inflight, load, idle, handled)


async def health(request: web.Request) -> web.Response:
    workers = request.app[WORKERS]
    if any(w.draining for w in workers):
        return web.json_response({"status": "draining"}, status=503)
    if not all(w.stats().connected for w in workers):
        return web.json_response({"status": "redis_unreachable"}, status=503)
    return web.json_response({"status": "ok"})


async def health_full(request: web.Request) -> web.Response:
    workers = [w.stats() for w in request.app[WORKERS]]
    first = workers[0]
    return web.json_response(
        {
            "status": "ok" if all(w.connected and not w.draining for w in workers) else "degraded",
            "workers": [
                {
                    "id": w.id,
                    "device": w.device,
                    "connected": w.connected,
                    "draining": w.draining,
                    "inflight": w.inflight,
                    "max_inflight": w.max_inflight,
                    "load": round(w.load, 3),
                    "reclaim_idle_ms": w.reclaim_idle_ms,
                    "counts": dict(w.counts),
                }
                for w in workers
            ],
            "streams": {s.stream: s.to_dict() for s in first.streams},
            "cluster": dict(first.cluster),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def worker_app(workers: list[Worker], registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app[WORKERS] = workers
    app[REGISTRY] = registry
    app.add_routes(
        [web.get("/health", health), web.get("/health/full", health_full), web.get("/metrics", metrics)]
    )
    return app


async def serve_worker(settings: WorkerSettings) -> int:
    # Imported here: it pulls in the models' libraries.
    from pipeline.engines.apertium import ApertiumError
    from pipeline.engines.simulated import ProfileError
    from server.inference import DeviceUnavailable, batch_options, load_worker_models, simulated_models

    try:
        serve = settings.serve_settings()
        engines = settings.engine_list
        if settings.engine == "simulated":
            devices, model_name = simulated_models(settings.device_profile, settings.reference)
            own: list[Any] = []
        else:
            devices, model_name, own = await asyncio.to_thread(load_worker_models, serve, engines)
    except (
        ModelNotFound,
        DeviceUnavailable,
        ApertiumError,
        ConfigError,
        ProfileError,
        FileNotFoundError,
    ) as exc:
        print(f"nova-voice: {exc}", file=sys.stderr)  # FileNotFoundError: no --diarize-model there
        return 2
    client = connect(settings.redis)
    observed = InferenceMetrics(CollectorRegistry())
    options = WorkerOptions(
        model=model_name,
        max_inflight=settings.max_inflight,
        max_deliveries=settings.max_deliveries,
    )
    # One store of utterance audio for the process: a request reaches any of its devices.
    audio = AudioCache(options.audio_cache_mb << 20, options.audio_cache_ttl)
    workers = [
        Worker(
            client,
            engines,
            batch_options(serve, dev),
            device=str(dev),
            options=options,
            observer=observed,
            bind=logs.bound,
            audio=audio,
        )
        for dev, engines in devices
    ]
    observed.registry.register(_QueueCollector(workers))
    runner = web.AppRunner(worker_app(workers, observed.registry), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [w.drain() for w in workers])
    names = ", ".join(f"{w.id} on {w.device}" for w in workers)
    print(
        f"Nova Voice worker {names} ({running_loop_name()} event loop); "
        f"health on http://{settings.host}:{settings.port}/health",
        flush=True,
    )
    try:
        await asyncio.gather(*(w.run() for w in workers))
    finally:
        await runner.cleanup()
        await client.aclose()
        for engine in own:
            await asyncio.to_thread(engine.close)  # ends the Apertium pipelines this worker started
    return 0


def main_worker(settings: WorkerSettings) -> int:
    return run(serve_worker(settings), settings.loop)
