"""A real redis-server on a free loopback port, that tests may stop, restart and kill: with no
persistence (it comes back empty, as after a crash), or with an append-only file (it comes back
with what it had written, at most a second behind, as `appendfsync everysec` promises)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, workdir: Path, appendonly: bool = False) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server (Debian package redis-server) is a test dependency"
        self.exe = exe
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start (on the same port as before, if it ran before) and wait until it answers PING."""
        for _ in range(5):
            port = self.port or free_port()
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "yes" if self.appendonly else "no",
                    "--dir", str(self.workdir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._answers(port, timeout):
                self.port = port
                return
            self.stop()
            if self.port:
                break  # the port it must keep is taken: nothing else to try
        raise RuntimeError("redis-server did not start")

    def _answers(self, port: int, timeout: float) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    return False  # exited: most likely the port was taken meanwhile
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.05)  # polling a socket that is not yet listening, bounded by the deadline
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)
