"""Prometheus metrics of one app, in its own registry so that apps in one process never clash."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram(
            "nova_whisper_batch_size", "Requests per batched Whisper call", buckets=BATCH_BUCKETS, registry=r
        )
        self.engine_batch_size = Histogram(
            "nova_engine_batch_size",
            "Requests per batched engine call",
            ["engine", "device"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "nova_inference_seconds", "Seconds per batched engine call", ["engine", "device"], registry=r
        )
        self.queue_delay = Histogram(
            "nova_queue_delay_seconds", "Time a request waited before its batch ran", ["engine"], registry=r
        )
        self.requests_coalesced = Counter(
            "nova_requests_coalesced_total",
            "Partial requests replaced by a newer one",
            ["engine"],
            registry=r,
        )
        self.requests_dropped = Counter(
            "nova_requests_dropped_total",
            "Requests dropped because their session left",
            ["engine"],
            registry=r,
        )
        self.sessions = Gauge("nova_sessions", "Publishing sessions", registry=r)
        self.viewers = Gauge("nova_viewers", "Connected viewers", registry=r)
        self.captions = Counter("nova_captions_total", "Caption messages sent to rooms", ["kind"], registry=r)
        self.rejected = Counter("nova_rejected_total", "Requests refused", ["reason"], registry=r)
        self.translation_errors = Counter(
            "nova_translation_errors_total",
            "Translations given up (the source caption still went out)",
            ["engine", "reason"],
            registry=r,
        )

    def translation_error(self, engine: str, reason: str) -> None:
        self.translation_errors.labels(engine, reason).inc()

    # SchedulerObserver: called from the scheduler's thread; prometheus-client is thread-safe.
    def on_batch(self, engine: str, device: str, size: int, seconds: float, waited: list[float]) -> None:
        if engine == "whisper":
            self.batch_size.observe(size)
        self.engine_batch_size.labels(engine, device).observe(size)
        self.inference_seconds.labels(engine, device).observe(seconds)
        for w in waited:
            self.queue_delay.labels(engine).observe(w)

    def on_coalesced(self, engine: str) -> None:
        self.requests_coalesced.labels(engine).inc()

    def on_cancelled(self, engine: str, count: int) -> None:
        self.requests_dropped.labels(engine).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
