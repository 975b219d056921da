"""``nova-voice serve`` (also ``python -m server``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from pipeline.engines.apertium import ApertiumError
from pipeline.languages import UnknownLanguage
from pipeline.models import ModelNotFound
from server.settings import Settings, parse


def check_exposure(settings: Settings) -> str | None:
    """Refuse to expose unauthenticated publishing beyond this machine by accident."""
    if settings.loopback or settings.open_rooms or settings.publish_token:
        return None
    return (
        f"refusing to bind {settings.host}: anyone could publish to any room. "
        "Pass --publish-token (NOVA_PUBLISH_TOKEN) or --open-rooms (NOVA_OPEN_ROOMS=1)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["models"]:
        from server.models_cli import main as models_main

        return models_main(args[1:])
    command, settings = parse(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    if command != "serve":
        print(f"nova-voice: unknown command {command!r}", file=sys.stderr)
        return 2
    problem = check_exposure(settings)
    if problem:
        print(f"nova-voice: {problem}", file=sys.stderr)
        return 2
    from server.app import create_app  # imported late: loading it pulls in the models' libraries
    from server.translations import LanguageError

    try:
        app = create_app(settings)
    except (ModelNotFound, ApertiumError, UnknownLanguage, LanguageError) as exc:
        print(f"nova-voice: {exc}", file=sys.stderr)
        return 2
    print(f"Nova Voice listening on http://{settings.host}:{settings.port}", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
