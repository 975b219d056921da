"""Settings from the command line, each flag also read from a ``NOVA_…`` environment variable."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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


def _env(name: str, default: str) -> str:
    return os.environ.get("NOVA_" + name.upper(), default)


def _flag(p: argparse.ArgumentParser, name: str, kind: type, help: str) -> None:
    default = getattr(Settings, name)
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
    _flag(p, "turn_urls", str, "comma-separated turn: URLs handed to browsers")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nova-voice", description="Self-hosted live captions over WebRTC.")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the captioning server (the default)")
    _serve_flags(serve)
    return p


def parse(argv: Sequence[str]) -> tuple[str, Settings]:
    args = list(argv)
    if not args or args[0].startswith("-"):
        args = ["serve", *args]
    ns = parser().parse_args(args)
    values = {k: v for k, v in vars(ns).items() if k != "command"}
    return ns.command, Settings(**values)
