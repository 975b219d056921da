"""Prometheus metrics of one app, in its own registry so that apps in one process never clash."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pipeline.ledger import VoiceReport
    from pipeline.redis_backend import RedisBackend
    from pipeline.streams import StreamStats

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


class InferenceMetrics:
    """What a scheduler tells (a ``SchedulerObserver``): batch sizes and times, how long requests
    waited, partials coalesced and requests dropped. The embedded server and the worker share it;
    the scheduler calls it from its own thread, and prometheus-client is thread-safe."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
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


class Metrics(InferenceMetrics):
    """The embedded server's or a gateway's metrics, in a registry of its own per app."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        r = self.registry
        self.sessions = Gauge("nova_sessions", "Publishing sessions", registry=r)
        self.viewers = Gauge("nova_viewers", "Connected viewers", registry=r)
        self.captions = Counter("nova_captions_total", "Caption messages sent to rooms", ["kind"], registry=r)
        self.rejected = Counter("nova_rejected_total", "Requests refused", ["reason"], registry=r)
        self.voice_sentences = Counter(
            "nova_voice_sentences_total",
            "Finals of a voice language: spoken, dropped (late, failed), or unheard (no listener)",
            ["lang", "outcome"],
            registry=r,
        )
        self.voice_dropped = Counter(
            "nova_voice_dropped_total",
            "Spoken finals dropped unstarted: late (past --voice-max-lag) or failed synthesis",
            ["lang", "reason"],
            registry=r,
        )
        self.voice_start_delay = Histogram(
            "nova_voice_start_delay_seconds",
            "Seconds from a final reaching the viewers to its voice starting",
            ["lang"],
            buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
            registry=r,
        )
        self.voice_listeners = Gauge("nova_voice_listeners", "Audio tracks playing a voice", registry=r)
        self.translation_errors = Counter(
            "nova_translation_errors_total",
            "Translations given up (the source caption still went out)",
            ["engine", "reason"],
            registry=r,
        )

        # Where every voiced second went (pipeline/ledger.py): unfinalised must stay 0.
        self.voiced_seconds = Counter(
            "nova_voiced_seconds_total", "Seconds of voiced audio the VAD passed into utterances", registry=r
        )
        self.voiced_unfinalised = Counter(
            "nova_voiced_seconds_unfinalised_total",
            "Voiced seconds that reached no final and were not dropped on purpose (a defect)",
            registry=r,
        )
        self.voiced_dropped = Counter(
            "nova_voiced_seconds_dropped_total",
            "Voiced seconds dropped on purpose and logged: noise, engine_failure, finalise_timeout, ...",
            ["reason"],
            registry=r,
        )
        self.voiced_repaired = Counter(
            "nova_voiced_seconds_repaired_total",
            "Voiced seconds a final's words skipped, decoded once more on their own",
            registry=r,
        )
        self.final_repairs = Counter(
            "nova_final_repairs_total",
            "Finals that skipped a stretch of voice and had it decoded again",
            registry=r,
        )
        self.voiced_doubled = Counter(
            "nova_voiced_seconds_doubled_total",
            "Voiced seconds that went into two finals (a defect)",
            registry=r,
        )

        self.output_posts = Counter(
            "nova_output_posts_total",
            "Caption posts to room outputs (YouTube) by outcome: ok, retry, dropped",
            ["type", "outcome"],
            registry=r,
        )
        self.output_failures = Counter(
            "nova_output_failures_total",
            "Failed output requests by reason (refused_destination, timeout, connect, status, ...)",
            ["type", "reason"],
            registry=r,
        )
        self.file_jobs = Counter(
            "nova_file_jobs_total",
            "File transcriptions of the OpenAI and Deepgram compatible APIs by outcome: done, failed",
            ["outcome"],
            registry=r,
        )
        self.file_audio_seconds = Counter(
            "nova_file_audio_seconds_total", "Seconds of audio of the file jobs transcribed", registry=r
        )
        self.file_jobs_running = Gauge("nova_file_jobs_running", "File jobs running now", registry=r)
        self.loop_errors = Counter(
            "nova_loop_errors_total",
            "Exceptions no task retrieved (a defect: each kind is logged once)",
            ["kind"],
            registry=r,
        )

    def voice_account(self, report: VoiceReport) -> None:
        """A caption session's ``on_account``."""
        self.voiced_seconds.inc(report.voiced)
        self.voiced_doubled.inc(report.doubled)
        self.voiced_repaired.inc(report.repaired)
        self.final_repairs.inc(report.repairs)
        for gap in report.gaps:
            if gap.reason == "unfinalised":
                self.voiced_unfinalised.inc(gap.voiced)
            else:
                self.voiced_dropped.labels(gap.reason).inc(gap.voiced)

    def output_post(self, kind: str, outcome: str) -> None:
        self.output_posts.labels(kind, outcome).inc()

    def output_failure(self, kind: str, reason: str) -> None:
        self.output_failures.labels(kind, reason).inc()

    def voice_event(self, lang: str, outcome: str, late: float | None = None) -> None:
        """A final of a voice language: ``spoken`` (``late`` seconds after its caption), ``late``
        or ``failed`` (dropped unstarted), or ``unheard`` (nobody listened: not synthesised)."""
        self.voice_sentences.labels(lang, outcome).inc()
        if outcome in ("late", "failed"):
            self.voice_dropped.labels(lang, outcome).inc()
        if late is not None:
            self.voice_start_delay.labels(lang).observe(late)

    def translation_error(self, engine: str, reason: str) -> None:
        self.translation_errors.labels(engine, reason).inc()

    def watch_outputs(self, states: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Room outputs by type and state (idle, connected, retrying), read at scrape time."""
        self.registry.register(_OutputsCollector(states))

    def watch_backend(self, backend: RedisBackend) -> None:
        """A gateway's view of the Redis queues and the workers behind them, read at scrape time."""
        self.registry.register(_RedisCollector(backend))


def queue_families(streams: Sequence[StreamStats], cluster: Mapping[str, int]) -> Iterator[Metric]:
    """Queue length and age per request stream, and the cluster-wide counts kept in Redis."""
    waiting = GaugeMetricFamily(
        "nova_stream_waiting", "Requests not yet read by any worker", labels=["stream"]
    )
    age = GaugeMetricFamily(
        "nova_stream_waiting_age_seconds", "Age of the oldest unread request", labels=["stream"]
    )
    pending = GaugeMetricFamily(
        "nova_stream_pending", "Requests read and not yet answered", labels=["stream"]
    )
    pending_age = GaugeMetricFamily(
        "nova_stream_pending_age_seconds",
        "Age of the oldest request read and not answered",
        labels=["stream"],
    )
    for st in streams:
        waiting.add_metric([st.stream], st.waiting)
        age.add_metric([st.stream], st.waiting_age)
        pending.add_metric([st.stream], st.pending)
        pending_age.add_metric([st.stream], st.pending_age)
    yield from (waiting, age, pending, pending_age)
    entries = CounterMetricFamily(
        "nova_cluster_entries",
        "Cluster-wide counts kept in Redis (reclaimed, dead_letters, late, ...)",
        labels=["kind"],
    )
    for kind, value in sorted(cluster.items()):
        entries.add_metric([kind], value)
    yield entries


class _OutputsCollector(Collector):
    def __init__(self, states: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "nova_outputs",
            "Room outputs by type and state: idle, connected, retrying",
            labels=["type", "state"],
        )
        counts = self._states()
        for kind in ("youtube", "obs"):
            for state in ("idle", "connected", "retrying"):
                gauge.add_metric([kind, state], counts.get((kind, state), 0))
        for (kind, state), n in sorted(counts.items()):
            if kind not in ("youtube", "obs"):
                gauge.add_metric([kind, state], n)  # an output type added later
        yield gauge


class _RedisCollector(Collector):
    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        snap = self._backend.snapshot
        yield from queue_families(snap.streams, snap.counters)
        up = GaugeMetricFamily("nova_redis_up", "1 while Redis answers this gateway")
        up.add_metric([], 1.0 if self._backend.available else 0.0)
        workers = GaugeMetricFamily("nova_workers", "Inference workers with a live heartbeat")
        workers.add_metric([], len(snap.workers))
        load = GaugeMetricFamily(
            "nova_worker_load",
            "Fraction of the last second a worker spent in batches",
            labels=["worker", "device"],
        )
        inflight = GaugeMetricFamily(
            "nova_worker_inflight", "Requests a worker holds", labels=["worker", "device"]
        )
        # Worker ids carry host names and pids: the public metrics number them, as /health/full does.
        for i, w in enumerate(snap.workers, 1):
            labels = [f"worker-{i}", str(w.get("device", "?")).rsplit("/", 1)[-1]]
            load.add_metric(labels, float(w.get("load", 0.0)))
            inflight.add_metric(labels, float(w.get("inflight", 0)))
        outcomes = CounterMetricFamily(
            "nova_gateway_requests",
            "This gateway's requests by outcome (sent, results, shed, expired, duplicates, ...)",
            labels=["outcome"],
        )
        for outcome, n in sorted(self._backend.counts.items()):
            outcomes.add_metric([outcome], n)
        yield from (up, workers, load, inflight, outcomes)
