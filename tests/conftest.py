"""Shared fixtures: one real Whisper model for the whole run, and a real server per test."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.inference import LoadedModels
from server.settings import Settings
from server.state import STATE
from tests.support.offline import Offline
from tests.support.redis_server import RedisServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARTIFACTS = Path(__file__).parent / "artifacts"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test and fixture runs on the event loop the server runs on in production:
    uvloop (``NOVA_TEST_LOOP=asyncio`` runs the suite on asyncio's own, the fallback)."""
    from server.eventloop import loop_factory

    name = os.environ.get("NOVA_TEST_LOOP", "uvloop")
    return {name: loop_factory(name)}


@pytest.fixture(scope="session")
def inference() -> LoadedModels:
    """tiny.en loaded once for the whole run; every app builds its own schedulers around it."""
    from server.inference import load_models

    return load_models(Settings(device="cpu"))


@pytest.fixture(scope="session")
def offline(inference: LoadedModels) -> Offline:
    """Offline transcripts of whole streams, shared by the tests that compare against them."""
    return Offline(inference.model.path)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (no persistence), killed at teardown."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


StartServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def nova(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    inference: LoadedModels,
    tmp_path: Path,
) -> AsyncIterator[StartServer]:
    """Start a real Nova Voice server on 127.0.0.1 with the shared model and given settings."""
    from server.__main__ import connection_limits
    from server.app import create_app

    started: list[web.Application] = []

    async def start(**overrides: object) -> TestServer:
        settings = Settings(**{"data_dir": str(tmp_path / "data"), **overrides})  # type: ignore[arg-type]
        app: web.Application = create_app(settings, inference)
        started.append(app)
        return await aiohttp_server(app, host="127.0.0.1", **connection_limits(settings))

    yield start
    # No exception may escape a task unretrieved in any test (each is a defect the server only
    # counts and logs once): collected now, so that a task dropped with one reports it.
    gc.collect()
    escaped = {
        sample.labels["kind"]: sample.value
        for app in started
        for metric in app[STATE].metrics.loop_errors.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }
    assert not escaped, f"exceptions escaped a task unretrieved: {escaped} (see the log)"


@pytest.fixture(autouse=True)
def dump_tasks_when_stuck() -> Iterator[None]:
    """If a test is still running after NOVA_TEST_DUMP_AFTER seconds (default 240, before
    pytest-timeout's 300), print every asyncio task's stack: a hang then says where it waits
    (pytest-timeout shows only threads, and there the loop thread is merely idle)."""
    import asyncio.tasks
    import sys
    import threading

    def dump() -> None:
        # From the timer thread: reading the tasks' frames is racy but only ever diagnostic.
        for task in list(asyncio.tasks._all_tasks):  # noqa: SLF001 - the only cross-thread view
            if not task.done():
                print(f"--- {task.get_name()}: {task.get_coro()}", file=sys.stderr)
                task.print_stack(file=sys.stderr)

    timer = threading.Timer(float(os.environ.get("NOVA_TEST_DUMP_AFTER", "240")), dump)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
