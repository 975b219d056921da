"""The bad-input corpus (tests/data/bad_inputs.json) against every endpoint of a real server:
never a 500, always a JSON error, nothing left behind, and the server still serves."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from server.state import STATE
from tests.support.probes import ghost_offer

CORPUS = json.loads((Path(__file__).parents[1] / "data" / "bad_inputs.json").read_text())
ROOM = "probe-room"


def expand(text: str, port: int) -> str:
    """``{65 x}`` is 65 x's; ``{port}`` the server's port."""
    text = re.sub(r"\{(\d+) (\w)\}", lambda m: m.group(2) * int(m.group(1)), text)
    return text.replace("{port}", str(port))


def body_of(probe: dict[str, Any]) -> bytes:
    if "base64" in probe:
        return base64.b64decode(probe["base64"])
    if "repeat" in probe:
        unit, count = probe["repeat"]
        return str(unit).encode() * int(count)
    return str(probe["text"]).encode()


def path_of(endpoint: dict[str, Any], port: int, room: str = ROOM, session: str = "nope") -> str:
    path = str(endpoint["path"]).replace("{room}", room).replace("{session}", session)
    return expand(path.replace("{format}", "vtt"), port)


async def send(
    http: aiohttp.ClientSession,
    base: str,
    endpoint: dict[str, Any],
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    all_headers = {"Content-Type": endpoint["content_type"]} if "content_type" in endpoint else {}
    all_headers.update(headers or {})
    async with http.request(
        endpoint["method"], URL(base + path, encoded=True), data=body or None, headers=all_headers
    ) as resp:
        raw = await resp.read()
        if resp.status >= 400 and not endpoint.get("html"):
            # Every refusal of the API is JSON that says what and why (pages answer people).
            assert resp.headers.get("Content-Type", "").startswith("application/json"), (path, raw[:200])
            parsed = json.loads(raw)
            assert parsed["error"] and parsed["message"], (path, parsed)
            return resp.status, parsed
        return resp.status, raw


async def test_every_probe_against_every_endpoint_is_a_clear_4xx_and_leaves_nothing(nova) -> None:
    server = await nova(offers_per_minute=0, max_pending=0)
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    port = server.port
    failures: list[str] = []
    sent = 0
    async with aiohttp.ClientSession() as http:
        created = await http.post(base + "/rooms", json={"name": ROOM})
        assert created.status == 201
        auth = {"Authorization": f"Bearer {(await created.json())['publish_token']}"}

        def check(what: str, status: int, expected: list[int]) -> None:
            nonlocal sent
            sent += 1
            if status >= 500 or status not in expected:
                failures.append(f"{what}: {status} (expected one of {expected})")

        for endpoint in CORPUS["endpoints"]:
            name = f"{endpoint['method']} {endpoint['path']}"
            ok = endpoint.get("ok", [])
            if "{room}" in endpoint["path"]:
                for probe in CORPUS["rooms"]:
                    path = path_of(endpoint, port, room=expand(probe["room"], port))
                    status, _ = await send(http, base, endpoint, path)
                    check(f"{name} room {probe['name']}", status, [*probe["expect"], *ok, 405, 204])
            if "{session}" in endpoint["path"]:
                for session in CORPUS["sessions"]:
                    status, _ = await send(http, base, endpoint, path_of(endpoint, port, session=session))
                    check(f"{name} session {session}", status, [400, 404, 405])
            if "body" in endpoint:
                for probe in CORPUS["bodies"]:
                    path = path_of(endpoint, port)
                    status, _ = await send(http, base, endpoint, path, body_of(probe), auth)
                    check(f"{name} body {probe['name']}", status, [*probe["expect"], *ok, 405])
            for probe in CORPUS["headers"]:
                headers = {k: expand(v, port) for k, v in probe["headers"].items()}
                status, _ = await send(http, base, endpoint, path_of(endpoint, port), b"", headers)
                expected = probe["expect"] if probe.get("only") else [*probe["expect"], *ok, 401, 404, 405]
                check(f"{name} header {probe['name']}", status, expected)

        assert not failures, "\n".join(failures)
        assert sent > 350
        # Nothing was left behind, and the server still does its job.
        assert len(state.peers) == 0 and state.publishers == {}
        assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name) for name in state.rooms.rooms)
        assert (await http.get(base + "/health")).status == 200
        created = await (await http.get(base + "/health/full")).json()
        assert created["peers"] == 0
        saved = json.loads((Path(state.settings.data_path) / "rooms.json").read_text())
        assert ROOM in saved and all(re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in saved)
        offer = await ghost_offer(publisher=False)
        viewer = await http.post(base + f"/rooms/{ROOM}/viewers", json={"sdp": offer})
        assert viewer.status == 200
