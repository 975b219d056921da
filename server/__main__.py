"""``nova-voice serve`` (also ``python -m server``)."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from aiohttp import web

from pipeline.engines.apertium import ApertiumError
from pipeline.languages import UnknownLanguage
from pipeline.models import ModelNotFound
from server import logs
from server.edge.tls import Certificate, certificate, open_url, ssl_context
from server.eventloop import loop_factory, run, running_loop_name
from server.settings import ConfigError, Settings, WorkerSettings, parse

log = logging.getLogger("nova-voice")


def check_exposure(settings: Settings) -> str | None:
    """Refuse to expose unauthenticated publishing beyond this machine by accident."""
    if settings.loopback or settings.open_rooms or settings.publish_token:
        return None
    return (
        f"refusing to bind {settings.host}: anyone could publish to any room. "
        "Pass --publish-token (NOVA_PUBLISH_TOKEN) or --open-rooms (NOVA_OPEN_ROOMS=1)."
    )


def bind(settings: Settings) -> socket.socket:
    """The listening socket, taken before the model loads: a busy port is said at once, in a line."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"nova-voice: port {settings.port} on {settings.host} is already in use "
                "(another Nova Voice?); pick another with --port or NOVA_PORT"
            ) from None
        raise SystemExit(
            f"nova-voice: cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


def connection_limits(settings: Settings) -> dict[str, float]:
    """aiohttp's per-connection timer runs from the connection's first byte to its first whole
    request, and between requests: a client that sends its headers slowly (or never) or holds
    an idle connection is closed after ``--idle-timeout`` instead of aiohttp's default hour."""
    return {"keepalive_timeout": settings.idle_timeout}


async def serve(
    app: web.Application, sock: socket.socket, settings: Settings, cert: Certificate | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then drain: no new publishers (503), the current ones
    finalise their last words (bounded by --drain-timeout), and the process exits."""
    from server.app import drain

    runner = web.AppRunner(app, handle_signals=False, access_log=None, **connection_limits(settings))
    await runner.setup()
    context = ssl_context(cert) if cert is not None else None
    await web.SockSite(runner, sock, ssl_context=context).start()
    scheme = "https" if cert is not None else "http"
    where = f"{scheme}://{settings.host}:{settings.port}"
    print(f"Nova Voice listening on {where} ({running_loop_name()} event loop)", flush=True)
    if cert is not None:
        print(f"Open {open_url(settings, cert)} (certificate for {', '.join(cert.names)})", flush=True)
        print(f"Certificate SHA-256 fingerprint: {cert.fingerprint}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining publishers")
    await drain(app, settings.drain_timeout)
    await runner.cleanup()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["models"]:
        from server.models_cli import main as models_main

        return models_main(args[1:])
    if args[:1] == ["dictate"]:
        from client.dictate import main as dictate_main  # the client: no model, no server settings

        return dictate_main(args[1:])
    command, settings = parse(args)
    logs.configure(settings.log_format)
    try:
        loop_factory(settings.loop)  # a NOVA_LOOP argparse did not check is said now, in a line
    except ConfigError as exc:
        print(f"nova-voice: {exc}", file=sys.stderr)
        return 2
    from pipeline.threads import limit_blas

    limit_blas()  # both serve and worker: numpy's pool would spin a thread per core for nothing
    if isinstance(settings, WorkerSettings):
        from server.worker_main import main_worker

        return main_worker(settings)
    if command != "serve":
        print(f"nova-voice: unknown command {command!r}", file=sys.stderr)
        return 2
    problem = check_exposure(settings)
    if problem:
        print(f"nova-voice: {problem}", file=sys.stderr)
        return 2
    try:
        cert = certificate(settings)
        if cert is not None:
            ssl_context(cert)  # a key that does not fit is said now, before the model loads
    except ConfigError as exc:
        print(f"nova-voice: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(settings)
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 2
    from pipeline.engines.speaker import SpeakerModelNotFound
    from pipeline.engines.voices import VoiceError
    from server.app import create_app  # imported late: loading it pulls in the models' libraries
    from server.inference import DeviceUnavailable
    from server.rooms.translations import LanguageError
    from server.rooms.voices import VoiceLanguageError

    refusals = (
        ModelNotFound,
        ApertiumError,
        UnknownLanguage,
        LanguageError,
        ConfigError,
        DeviceUnavailable,
        SpeakerModelNotFound,
        VoiceError,
        VoiceLanguageError,
    )
    try:
        app = create_app(settings)
    except refusals as exc:
        print(f"nova-voice: {exc}", file=sys.stderr)
        return 2
    run(serve(app, sock, settings, cert), settings.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
