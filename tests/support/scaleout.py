"""Helpers for tests on Redis Streams: a worker in this process or in its own, a gateway backend,
and waiting on a condition with a deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from pipeline.batching import BatchOptions
from pipeline.engines import Engine
from pipeline.redis_backend import RedisBackend, RedisOptions
from pipeline.session import CaptionSession
from pipeline.streams import connect
from pipeline.worker import Worker, WorkerOptions
from tests.support.redis_server import free_port

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


async def eventually(predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Wait until ``predicate()`` is truthy (checked every 20 ms), or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.02)  # polling a condition under a deadline


async def speak(session: CaptionSession, audio: np.ndarray, chunk: int = 320) -> None:
    """Push int16 16 kHz audio into a caption session at real-time pace, as a live speaker would."""
    t0 = time.monotonic()
    for i in range(0, len(audio), chunk):
        session.push(audio[i : i + chunk])
        ahead = t0 + (i + chunk) / 16_000 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)  # the speaker's pace, not synchronisation


@asynccontextmanager
async def worker_in_process(
    url: str,
    engines: dict[str, Engine[Any, Any]],
    options: WorkerOptions | None = None,
    batch: BatchOptions | None = None,
) -> AsyncIterator[Worker]:
    client = connect(url)
    options = options or WorkerOptions(model="tiny.en")
    worker = Worker(client, engines, batch or BatchOptions(max_batch=4, max_wait=0.01), "cpu", options)
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        yield worker
    finally:
        worker.drain()
        async with asyncio.timeout(60):
            await task
        await client.aclose()


@asynccontextmanager
async def gateway_backend(url: str, **options: Any) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(url, RedisOptions(**{"probe_interval": 0.1, "stats_interval": 0.2, **options}))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


class WorkerProcess:
    """``python -m server worker`` as its own process, as an operator would run it."""

    def __init__(self, redis_url: str, *extra: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "worker", "--redis", redis_url, "--device", "cpu",
             "--cpu-threads", "1", "--port", str(self.port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )  # fmt: skip
        self.id = ""
        self.output: list[str] = []

    async def ready(self, timeout: float = 90.0) -> None:
        """Until it says it reads (its startup line names its consumer id)."""
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def wait_line() -> None:
            for line in stdout:
                self.output.append(line)
                if line.startswith("Nova Voice worker "):
                    self.id = line.split()[3]
                    return
            raise AssertionError("worker exited before it was ready:\n" + "".join(self.output))

        async with asyncio.timeout(timeout):
            await asyncio.to_thread(wait_line)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.stdout is not None:
                self.output += self.proc.stdout.readlines()
                self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
