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

from server.inference import LoadedModels
from server.state import STATE
from tests.support.probes import ghost_offer
from tests.support.redis_server import RedisServer
from tests.support.scaleout import worker_in_process

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
            shape = endpoint.get("errors") if resp.status != 421 else None  # the edge's own: ours
            if shape == "openai":
                assert parsed["error"]["message"] and parsed["error"]["code"], (path, parsed)
            elif shape == "deepgram":
                assert parsed["err_code"] and parsed["err_msg"], (path, parsed)
            else:
                assert parsed["error"] and parsed["message"], (path, parsed)
            return resp.status, parsed
        return resp.status, raw


async def probe_everything(
    http: aiohttp.ClientSession, base: str, port: int, auth: dict[str, str], private: bool = False
) -> tuple[list[str], int]:
    """Every probe against every endpoint; (what went wrong, how many requests were sent).
    ``private``: the room is private and the probes hold no view token, so nothing of it may be
    read: a 2xx from a GET of the room (its info, transcripts, ICE for it) is a leak."""
    failures: list[str] = []
    sent = 0

    def check(what: str, status: int, expected: list[int], endpoint: dict[str, Any], path: str) -> None:
        nonlocal sent
        sent += 1
        if status >= 500 or status not in expected:
            failures.append(f"{what}: {status} (expected one of {expected})")
        reads_room = endpoint["method"] == "GET" and ROOM in path and not endpoint.get("html")
        if private and reads_room and status < 300:
            failures.append(f"{what}: {status}, the private room was read without its view token")

    for endpoint in CORPUS["endpoints"]:
        name = f"{endpoint['method']} {endpoint['path']}"
        ok = endpoint.get("ok", [])
        if "{room}" in endpoint["path"]:
            for probe in CORPUS["rooms"]:
                path = path_of(endpoint, port, room=expand(probe["room"], port))
                status, _ = await send(http, base, endpoint, path)
                check(
                    f"{name} room {probe['name']}", status, [*probe["expect"], *ok, 405, 204], endpoint, path
                )
        if "{session}" in endpoint["path"]:
            for session in CORPUS["sessions"]:
                path = path_of(endpoint, port, session=session)
                status, _ = await send(http, base, endpoint, path)
                check(f"{name} session {session}", status, [400, 404, 405, *ok], endpoint, path)
        refused = [401, 403] if private else []  # 403: the publish token is no view token
        if "body" in endpoint:
            for probe in CORPUS["bodies"]:
                path = path_of(endpoint, port)
                status, _ = await send(http, base, endpoint, path, body_of(probe), auth)
                expected = [*probe["expect"], *ok, 405, *refused]
                if probe.get("decodable") and endpoint.get("transcribes"):
                    expected.append(200)  # real audio: what it heard is an answer
                check(f"{name} body {probe['name']}", status, expected, endpoint, path)
        for probe in CORPUS["headers"]:
            headers = {k: expand(v, port) for k, v in probe["headers"].items()}
            path = path_of(endpoint, port)
            status, _ = await send(http, base, endpoint, path, b"", headers)
            expected = probe["expect"] if probe.get("only") else [*probe["expect"], *ok, 401, 404, 405]
            check(f"{name} header {probe['name']}", status, expected, endpoint, path)
    return failures, sent


async def test_every_probe_against_every_endpoint_is_a_clear_4xx_and_leaves_nothing(nova) -> None:
    server = await nova(offers_per_minute=0, max_pending=0, api_requests_per_minute=0)
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        created = await http.post(base + "/rooms", json={"name": ROOM})
        assert created.status == 201
        auth = {"Authorization": f"Bearer {(await created.json())['publish_token']}"}
        failures, sent = await probe_everything(http, base, server.port, auth)
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


async def test_every_probe_on_a_second_gateway_of_a_private_room_reads_nothing_and_leaves_nothing(
    nova, redis_server: RedisServer, inference: LoadedModels
) -> None:
    """The room is made private on gateway A; the whole corpus goes to gateway B (issue 17)."""
    async with worker_in_process(redis_server.url, dict(inference.devices[0][1])):
        a = await nova(redis=redis_server.url)
        b = await nova(redis=redis_server.url, offers_per_minute=0, max_pending=0, api_requests_per_minute=0)
        state = b.app[STATE]
        base = str(b.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            created = await http.post(str(a.make_url("/rooms")), json={"name": ROOM, "private": True})
            assert created.status == 201
            tokens = await created.json()
            auth = {"Authorization": f"Bearer {tokens['publish_token']}"}
            failures, sent = await probe_everything(http, base, b.port, auth, private=True)
            assert not failures, "\n".join(failures)
            assert sent > 350
            assert len(state.peers) == 0 and state.publishers == {}
            # The view token made on A opens the room on B.
            offer = await ghost_offer(publisher=False)
            watch = {"Authorization": f"Bearer {tokens['view_token']}"}
            assert (await http.post(base + f"/rooms/{ROOM}/viewers", json={"sdp": offer})).status == 401
            viewer = await http.post(base + f"/rooms/{ROOM}/viewers", json={"sdp": offer}, headers=watch)
            assert viewer.status == 200
