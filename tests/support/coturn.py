"""A real coturn on loopback, with the TURN REST API secret Nova Voice hands credentials for."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.server_process import free_port


@dataclass(frozen=True)
class Turn:
    port: int
    secret: str

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _answers_stun(port: int) -> bool:
    """A STUN Binding request (RFC 5389) on UDP: coturn answers once it is serving."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(request, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except TimeoutError:
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == request[8:20]


@contextmanager
def coturn(workdir: Path, secret: str = "nova-test-secret") -> Iterator[Turn]:
    """``--allow-loopback-peers`` is for this loopback test only; production denies loopback."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    low = random.randrange(40000, 60000, 200)
    cmd = [
        "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
        f"--min-port={low}", f"--max-port={low + 199}", "--use-auth-secret", f"--static-auth-secret={secret}",
        "--realm=nova", "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
        "--log-file=stdout", "--simple-log", f"--pidfile={workdir / 'turn.pid'}",
        f"--userdb={workdir / 'turndb'}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=(workdir / "coturn.log").open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not _answers_stun(port):  # each try waits up to 0.2 s for the answer
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("coturn did not start: " + (workdir / "coturn.log").read_text()[-2000:])
        yield Turn(port, secret)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
