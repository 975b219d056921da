"""Safe on the open internet (issue #9): ghost peers expire, slots and descriptors come back,
bodies arrive whole, rooms cannot be created by other sites or taken over, foreign Host names
are refused, and private rooms need their view token. Real server, real aiortc peers."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from yarl import URL

from bench.corpus import LIBRIVOX, silence, write_wav
from pipeline.audio import read_audio
from server.messages import CaptionMessage
from server.state import STATE
from tests.support.probes import ghost_offer, open_fds, raw_request, wait_until
from tests.support.whip_client import Viewer, WhipPublisher

SDP = {"Content-Type": "application/sdp"}


async def connected_publisher(
    base: str, room: str, token: str | None = None
) -> tuple[RTCPeerConnection, str]:
    """A publisher that really connects (silence as audio); returns its peer and Location."""
    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.createDataChannel("captions")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {**SDP, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/whip/{room}", data=pc.localDescription.sdp, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            answer, location = await resp.text(), resp.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await wait_until(lambda: pc.connectionState == "connected", 20, "the publisher connects")
    return pc, location


async def test_offers_that_never_connect_are_closed_by_the_deadline_and_free_everything(nova) -> None:
    server = await nova(connect_timeout=2.0, max_pending=64, offers_per_minute=0, max_sessions=25)
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    pub_sdp, view_sdp = await ghost_offer(publisher=True), await ghost_offer(publisher=False)
    async with aiohttp.ClientSession(base) as http:
        created = await (await http.post("/rooms", json={"name": "ghosts"})).json()
    auth = {**SDP, "Authorization": f"Bearer {created['publish_token']}"}
    fds_before, tasks_before = open_fds(), set(asyncio.all_tasks())
    async with aiohttp.ClientSession(base) as http:

        async def publish() -> int:
            async with http.post("/whip/ghosts", data=pub_sdp, headers=auth) as resp:
                return resp.status

        async def view() -> int:
            async with http.post("/rooms/ghosts/viewers", json={"sdp": view_sdp}) as resp:
                return resp.status

        statuses = await asyncio.gather(*[publish() for _ in range(25)], *[view() for _ in range(25)])
        assert statuses == [201] * 25 + [200] * 25
        room = state.rooms.get("ghosts")
        assert room is not None
        assert len(state.peers) == 50
        assert len(state.publishers) == 25 and len(room.viewers) == 25
        assert open_fds() > fds_before + 50  # each ghost holds sockets...
        # ...and a slot: the 26th publisher is refused while they wait.
        assert (await http.post("/whip/ghosts", data=pub_sdp, headers=auth)).status == 503

        await wait_until(lambda: len(state.peers) == 0, 30, "every ghost peer is closed")
        assert state.peers.pending() == 0
        await wait_until(lambda: not state.publishers, 30, "every ghost publisher is forgotten")
        assert room.viewers == set() and room.publishers == set() and room.listeners == {}
        assert state.backend.stats().sessions == 0
        assert state.admission.peers == 0 and state.admission.pending() == 0
    # Our client's connections closed too: what is left open is what the ghosts did not free.
    await wait_until(lambda: open_fds() <= fds_before + 2, 10, "the ghosts' descriptors are freed")

    # Their media tasks ended too (a track of a peer that never connected never ends by itself).
    # (The app's VAD pump, started by its first session, lives as long as the app.)
    def ghost_tasks() -> list[asyncio.Task[object]]:
        left = {t for t in asyncio.all_tasks() if not t.done()} - tasks_before
        return [t for t in left if getattr(t.get_coro(), "__qualname__", "") != "VadPump._run"]

    await wait_until(lambda: not ghost_tasks(), 10, "the ghosts' tasks have ended")

    # The slots are free again: a real publisher gets in and connects.
    pc, location = await connected_publisher(base, "ghosts", created["publish_token"])
    await wait_until(lambda: state.peers.pending() == 0, 20, "the server's side connects too")
    assert len(state.publishers) == 1
    async with aiohttp.ClientSession() as http:
        assert (await http.delete(base + location)).status == 200
    await pc.close()


async def test_one_address_may_hold_only_a_few_pending_peers_and_offer_at_a_bounded_rate(nova) -> None:
    server = await nova(max_pending=3, offers_per_minute=0)
    state = server.app[STATE]
    pub_sdp = await ghost_offer(publisher=True)
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        for _ in range(3):
            assert (await http.post("/whip/open", data=pub_sdp, headers=SDP)).status == 201
        refused = await http.post("/whip/open", data=pub_sdp, headers=SDP)
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert (await refused.json())["error"] == "too_many_pending"
        viewer = await http.post("/rooms/open/viewers", json={"sdp": await ghost_offer(publisher=False)})
        assert viewer.status == 429 and (await viewer.json())["error"] == "too_many_pending"
        assert len(state.peers) == 3 and len(state.publishers) == 3  # the refused left nothing behind

    limited = await nova(offers_per_minute=6)
    async with aiohttp.ClientSession(str(limited.make_url(""))) as http:
        statuses = []
        for _ in range(5):
            async with http.post("/whip/open", data=pub_sdp, headers=SDP) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    body, retry = await resp.json(), int(resp.headers["Retry-After"])
        assert statuses == [201, 201, 201, 201, 429]  # a burst of 4, then one every 10 s
        assert body["error"] == "too_many_offers" and 1 <= retry <= 10
        rooms = await http.post("/rooms", json={})  # room creations count against the same budget
        assert rooms.status == 429


async def test_an_offer_arriving_in_small_pieces_is_read_whole(nova) -> None:
    server = await nova()
    state = server.app[STATE]
    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")  # like OBS: a video section too, never sent
    pc.createDataChannel("captions")
    await pc.setLocalDescription(await pc.createOffer())
    body = pc.localDescription.sdp.encode()
    assert len(body) > 2 * 1400  # three pieces or more
    head = (
        f"POST /whip/pieces HTTP/1.1\nHost: 127.0.0.1:{server.port}\nContent-Type: application/sdp\n"
        f"Content-Length: {len(body)}\nConnection: close"
    )
    resp = await raw_request("127.0.0.1", server.port, head, body, piece=1400, pause=0.05)
    assert resp.status == 201, resp.body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.body.decode(), type="answer"))
    await wait_until(lambda: pc.connectionState == "connected", 20, "the publisher connects")
    # Chunked transfer encoding, in pieces too.
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:1000], body[1000:])) + b"0\r\n\r\n"
    head_chunked = head.replace(f"Content-Length: {len(body)}", "Transfer-Encoding: chunked")
    resp2 = await raw_request("127.0.0.1", server.port, head_chunked, chunked, piece=700, pause=0.05)
    assert resp2.status == 201, resp2.body
    assert len(state.publishers) == 2
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        for r in (resp, resp2):
            assert (await http.delete(r.headers["location"])).status == 200
    await pc.close()


async def test_room_creation_is_deliberate_and_never_takes_a_room_in_use(nova, tmp_path: Path) -> None:
    server = await nova(allow_origin="https://studio.example")
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        # A CORS "simple request" (no preflight) from any page: refused.
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            resp = await http.post("/rooms", data=b'{"name": "drive-by"}', headers={"Content-Type": ctype})
            assert resp.status == 415 and (await resp.json())["error"] == "unsupported_media_type"
        assert state.rooms.get("drive-by") is None
        # The preflight a JSON request needs: only for our own pages and --allow-origin.
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        evil = await http.options("/rooms", headers={**preflight, "Origin": "https://evil.example"})
        assert evil.status == 403 and "Access-Control-Allow-Origin" not in evil.headers
        studio = await http.options("/rooms", headers={**preflight, "Origin": "https://studio.example"})
        assert studio.status == 204
        assert studio.headers["Access-Control-Allow-Origin"] == "https://studio.example"
        forged = await http.post("/rooms", json={}, headers={"Origin": "https://evil.example"})
        assert forged.status == 403 and (await forged.json())["error"] == "origin_not_allowed"
        own = await http.post("/rooms", json={}, headers={"Origin": base})
        assert own.status == 201 and own.headers["Cache-Control"] == "no-store"
        # Viewing stays open to any origin: widgets are embedded everywhere.
        view = await http.options("/rooms/x/viewers", headers={**preflight, "Origin": "https://blog.example"})
        assert view.status == 204 and view.headers["Access-Control-Allow-Origin"] == "*"

    # An open room with a live publisher cannot be claimed: it keeps its publisher, unprotected.
    pc, location = await connected_publisher(base, "live")
    async with aiohttp.ClientSession(base) as http:
        claim = await http.post("/rooms", json={"name": "live"})
        assert claim.status == 409 and (await claim.json())["error"] == "room_exists"
        room = state.rooms.get("live")
        assert room is not None and room.token_hash is None and not room.created
        assert len(state.publishers) == 1 and pc.connectionState == "connected"
        second = await http.post("/whip/live", data=await ghost_offer(publisher=True), headers=SDP)
        assert second.status == 201  # still open to publishers, as before the claim
        await http.delete(second.headers["Location"])
        await http.delete(base + location)
    await pc.close()

    # A room with a transcript (from before a restart) cannot be claimed either.
    state.transcripts.append(
        CaptionMessage(room="said", seq=1, segment=0, final=True, text="hello", start=0.0, end=1.0, lang="en")
    )
    # The write goes through the transcript thread (with an fsync); a read there waits for it, as
    # a restart would find the file already written. Without it a busy disk loses the race.
    state.transcripts.history("said")
    async with aiohttp.ClientSession(base) as http:
        assert (await http.post("/rooms", json={"name": "said"})).status == 409
    saved = json.loads((Path(state.settings.data_path) / "rooms.json").read_text())
    assert "live" not in saved and "said" not in saved


async def test_a_foreign_host_header_is_refused(nova) -> None:
    server = await nova(public_host="captions.example.org")
    port = server.port
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        for host in (
            f"attacker.example:{port}",
            "attacker.example",
            "127.0.0.1.nip.example",
            "localhost.evil",
        ):
            for path in ("/", "/health", "/rooms/x/transcript.txt", "/ice", "/static/viewer.js"):
                resp = await http.get(path, headers={"Host": host})
                assert resp.status == 421, (host, path)
                assert (await resp.json())["error"] == "unknown_host"
            resp = await http.post("/rooms", json={}, headers={"Host": host})
            assert resp.status == 421
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            "captions.example.org",
            "CAPTIONS.example.org.",
            "[::1]:1",
        ):
            assert (await http.get("/health", headers={"Host": host})).status == 200, host
    no_host = await raw_request("127.0.0.1", port, "GET /health HTTP/1.0\nConnection: close")
    assert no_host.status == 400 and json.loads(no_host.body)["error"] == "missing_host"


async def test_room_names_with_a_trailing_newline_are_refused_everywhere(nova) -> None:
    server = await nova()
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    sdp = await ghost_offer(publisher=True)
    async with aiohttp.ClientSession() as http:
        for method, path, kwargs in (
            ("POST", "/whip/nl%0A", {"data": sdp, "headers": SDP}),
            ("POST", "/rooms/nl%0A/viewers", {"json": {"sdp": sdp}}),
            ("GET", "/rooms/nl%0A/transcript.txt", {}),
            ("GET", "/overlay/nl%0A", {}),
            ("POST", "/whip/nl%0D%0ASet-Cookie:x", {"data": sdp, "headers": SDP}),
        ):
            resp = await http.request(method, URL(base + path, encoded=True), **kwargs)
            assert resp.status == 400, (method, path)
            assert (await resp.json())["error"] == "invalid_room", path
        resp = await http.post(base + "/rooms", json={"name": "newline\n"})
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_room"
    assert state.publishers == {} and len(state.peers) == 0
    assert not any("\n" in name for name in state.rooms.rooms)
    rooms_json = Path(state.settings.data_path) / "rooms.json"
    assert not rooms_json.exists() or "newline" not in rooms_json.read_text()


async def test_deeply_nested_json_is_a_400_not_a_500(nova) -> None:
    server = await nova()
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        await http.post("/whip/deep", data=await ghost_offer(publisher=True), headers=SDP)
        for depth in (9, 1000, 50_000):
            body = '{"sdp": ' + "[" * depth + "]" * depth + "}"
            for path in ("/rooms", "/rooms/deep/viewers"):
                resp = await http.post(path, data=body, headers={"Content-Type": "application/json"})
                assert resp.status in (400, 413), (path, depth)
                assert resp.headers["Content-Type"].startswith("application/json")
                assert (await resp.json())["error"] in ("json_too_deep", "body_too_large")
        # Brackets inside strings are text, not nesting; NaN is not JSON.
        ok = await http.post("/rooms", json={"name": "brackets", "note": "[[[[[[[[[[[[[[[[[[[["})
        assert ok.status == 201
        nan = await http.post("/rooms", data='{"name": NaN}', headers={"Content-Type": "application/json"})
        assert nan.status == 400 and (await nan.json())["error"] == "bad_json"


def stopping_clip(tmp_path: Path) -> Path:
    """Speech with almost no trailing silence: after it, the sender goes quiet for good."""
    audio = read_audio(str(LIBRIVOX[1].path))
    return write_wav(tmp_path / "then-nothing.wav", np.concatenate([silence(0.5), audio, silence(0.2)]))


async def test_a_publisher_whose_media_stops_frees_its_slot_within_5_s_of_its_final(
    nova, tmp_path: Path
) -> None:
    server = await nova(max_sessions=1)
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        # The client stays up (it answers ICE consent checks) but its media stops: the
        # file ends and no more RTP is sent, and no DELETE ever comes.
        pub = WhipPublisher(base, "quiet", str(stopping_clip(tmp_path)))
        await pub.start(http)
        await pub.log.wait_for(lambda log: len(log.finals()) >= 1, 30)
        final_at = time.monotonic()
        released = await wait_until(
            lambda: not state.publishers and len(state.peers) == 0, 15, "the silent publisher is released"
        )
        assert released < 5.0, f"released {released:.1f} s after its final"
        assert state.backend.stats().sessions == 0
        assert time.monotonic() - final_at < 15
        # Its slot is free: under --max-sessions 1 the next publisher gets in.
        nxt = await http.post("/whip/quiet", data=await ghost_offer(publisher=True), headers=SDP)
        assert nxt.status == 201
        await http.delete(nxt.headers["Location"])
        # The client's late DELETE still gets its 200 (once): the server ended it already.
        assert await pub.stop(http) == 200
        assert (await http.delete(base + str(pub.location))).status == 404


async def test_ice_credentials_are_short_lived_and_only_for_allowed_origins(nova) -> None:
    server = await nova(turn_secret="s3cret", turn_urls="turn:turn.example:3478", ice_ttl=120)
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        before = time.time()
        resp = await http.get("/ice")
        body = await resp.json()
        assert resp.status == 200 and body["ttl"] == 120
        expiry = int(body["iceServers"][0]["username"].split(":")[0])
        assert before + 100 <= expiry <= time.time() + 140
        assert resp.headers["Cache-Control"] == "no-store"
        same = await http.get("/ice", headers={"Origin": base})
        assert same.status == 200
        foreign = await http.get("/ice", headers={"Origin": "https://evil.example"})
        assert foreign.status == 403 and (await foreign.json())["error"] == "origin_not_allowed"
        assert "iceServers" not in await foreign.json()

    allowed = await nova(turn_secret="s", turn_urls="turn:t:3478", allow_origin="https://blog.example")
    async with aiohttp.ClientSession(str(allowed.make_url(""))) as http:
        resp = await http.get("/ice", headers={"Origin": "https://blog.example"})
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://blog.example"


async def test_a_view_token_guards_viewers_transcripts_and_ice(nova) -> None:
    server = await nova(view_token="watch-me")
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        created = await (await http.post("/rooms", json={"name": "hall"})).json()
        assert "view_token" not in created  # the server's token already guards every room
        offer = await ghost_offer(publisher=False)
        missing = await http.post("/rooms/hall/viewers", json={"sdp": offer})
        assert missing.status == 401 and (await missing.json())["error"] == "view_token_required"
        assert "Bearer" in missing.headers["WWW-Authenticate"]
        unknown = await http.post("/rooms/nowhere/viewers", json={"sdp": offer})
        assert unknown.status == 401  # not even whether a room exists, without the token
        wrong = await http.post(
            "/rooms/hall/viewers", json={"sdp": offer}, headers={"Authorization": "Bearer no"}
        )
        assert wrong.status == 403
        assert (await http.get("/rooms/hall/transcript.txt")).status == 401
        assert (await http.get("/rooms/hall/transcript.txt?token=watch-me")).status == 200
        assert (await http.get("/ice")).status == 401
        assert (await http.get("/ice", headers={"Authorization": "Bearer watch-me"})).status == 200
        # A publisher may fetch ICE servers with its room's publish token.
        pub_ice = await http.get(
            "/ice?room=hall", headers={"Authorization": f"Bearer {created['publish_token']}"}
        )
        assert pub_ice.status == 200

        viewer = Viewer(base, "hall")
        sdp = await viewer.offer()
        ok = await http.post(
            "/rooms/hall/viewers", json={"sdp": sdp}, headers={"Authorization": "Bearer watch-me"}
        )
        assert ok.status == 200
        await viewer.pc.setRemoteDescription(
            RTCSessionDescription(sdp=(await ok.json())["sdp"], type="answer")
        )
        await asyncio.wait_for(viewer.open.wait(), 20)
        await viewer.close()


async def test_a_private_room_has_a_view_token_of_its_own_kept_across_restarts(nova, tmp_path: Path) -> None:
    data = str(tmp_path / "keep")
    server = await nova(data_dir=data)
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        private = await (await http.post("/rooms", json={"name": "board", "private": True})).json()
        token = private["view_token"]
        assert len(token) >= 32 and token != private["publish_token"]
        assert private["overlay_url"].endswith(f"/overlay/board?token={token}")
        assert f'data-token="{token}"' in private["widget_snippet"]
        assert private["transcripts"]["vtt"].endswith(f"?token={token}")
        public = await (await http.post("/rooms", json={"name": "lobby"})).json()
        assert "view_token" not in public and "token=" not in public["overlay_url"]
        offer = await ghost_offer(publisher=False)
        assert (await http.post("/rooms/board/viewers", json={"sdp": offer})).status == 401
        assert (await http.post("/rooms/lobby/viewers", json={"sdp": offer})).status == 200
        assert (await http.get(f"/rooms/board/transcript.json?token={token}")).status == 200
        assert (await http.get(f"/rooms/lobby/transcript.json?token={token}")).status == 200  # public anyway
        assert (await http.post("/rooms", json={"private": "yes"})).status == 400
    kept = (Path(data) / "rooms.json").read_text()
    assert token not in kept and json.loads(kept)["board"]["view_hash"]  # kept hashed, with the room

    again = await nova(data_dir=data)
    async with aiohttp.ClientSession(str(again.make_url(""))) as http:
        assert (await http.get("/rooms/board/transcript.txt")).status == 401
        assert (await http.get(f"/rooms/board/transcript.txt?token={token}")).status == 200


async def test_overlay_and_widget_pass_the_view_token_of_a_private_room(nova, aiohttp_server) -> None:
    from aiohttp import web

    from tests.support.browser import chromium

    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        room = await (await http.post("/rooms", json={"name": "vip", "private": True})).json()
    host = web.Application()
    page_html = f"<!doctype html><html><body><p>Embedded:</p>{room['widget_snippet']}</body></html>"
    host.router.add_get("/", lambda request: web.Response(text=page_html, content_type="text/html"))
    other = await aiohttp_server(host, host="127.0.0.1")
    state = server.app[STATE]
    async with chromium() as browser:
        overlay = await browser.new_page()
        await overlay.goto(room["overlay_url"])
        await overlay.wait_for_function("document.body.dataset.state === 'live'", timeout=20_000)
        widget = await browser.new_page()
        await widget.goto(str(other.make_url("/")))
        await widget.wait_for_function(
            "document.querySelector('.nova-captions-widget')?.dataset.state === 'live'", timeout=20_000
        )
        assert len(state.rooms.get("vip").viewers) == 2  # type: ignore[union-attr]
        # Without the token the overlay is refused, and keeps retrying quietly.
        refused = await browser.new_page()
        await refused.goto(f"{base}/overlay/vip")
        await refused.wait_for_function("document.body.dataset.state === 'reconnecting'", timeout=20_000)
        assert len(state.rooms.get("vip").viewers) == 2  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def low_fd_limit() -> None:
    """In the child before exec: 256 descriptors, as a small container or `ulimit -n 256` gives."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


async def test_running_low_on_descriptors_is_a_503_logged_once_never_a_flood(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-m",
                "server",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "d"),
            ],
            *["--connect-timeout", "4", "--offers-per-minute", "0", "--max-pending", "0"],
            *["--max-viewers-per-address", "1000"],
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=low_fd_limit,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def healthy() -> bool:
                try:
                    async with http.get("/health") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 120
            while not await healthy():
                assert proc.returncode is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not come up"
                await asyncio.sleep(0.2)  # polling a server that is still loading its model
            assert (await http.post("/rooms", json={"name": "r"})).status == 201
            offer = await ghost_offer(publisher=False)
            seen: dict[int, int] = {}
            for _ in range(120):  # ghost viewers: 3 descriptors each, and they never connect
                async with http.post("/rooms/r/viewers", json={"sdp": offer}) as resp:
                    seen[resp.status] = seen.get(resp.status, 0) + 1
                    if resp.status != 200:
                        assert (await resp.json())["error"] == "low_on_resources"
                        assert resp.headers["Retry-After"]
            assert set(seen) == {200, 503} and seen[503] > 10, seen
            rooms = await http.post("/rooms", json={})
            assert rooms.status == 503 and (await rooms.json())["error"] == "low_on_resources"

            # Idle connections beyond the limit: the event loop cannot accept them. asyncio's
            # logs that (once, below); uvloop's libuv accepts each on a spare descriptor it keeps
            # and closes it at once, silently (the client sees its connection closed).
            async def idle_connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
                try:
                    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                except (OSError, TimeoutError):
                    return None

            async def closed_by_server(reader: asyncio.StreamReader) -> bool:
                try:
                    return await asyncio.wait_for(reader.read(1), 0.5) == b""
                except TimeoutError:
                    return False
                except OSError:
                    return True  # reset: closed too

            connections = [c for c in await asyncio.gather(*(idle_connection() for _ in range(100))) if c]
            if "(uvloop event loop)" in log_path.read_text():
                dropped = await asyncio.gather(*(closed_by_server(reader) for reader, _ in connections))
                assert sum(dropped) >= 10, f"{sum(dropped)} of {len(connections)} closed by the server"
            else:
                await wait_until(lambda: "out of system resource" in log_path.read_text(), 20, "accept fails")
            for _, writer in connections:
                writer.close()

            # Once the ghosts' deadline has passed, descriptors are back and viewers get in.
            async def viewer_gets_in() -> bool:
                async with http.post("/rooms/r/viewers", json={"sdp": offer}) as resp:
                    assert resp.status in (200, 503)
                    return resp.status == 200

            deadline = time.monotonic() + 30
            while not await viewer_gets_in():
                assert time.monotonic() < deadline, "descriptors did not come back"
                await asyncio.sleep(0.5)  # polling for the ghosts' deadline, bounded above

            async def ghosts_gone() -> bool:
                async with http.get("/health/full") as resp:
                    return int((await resp.json())["peers"]) <= 1  # the viewer that just got in

            while not await ghosts_gone():
                assert time.monotonic() < deadline + 30, "the ghosts were not all closed"
                await asyncio.sleep(0.5)  # polling for the last ghosts' deadline, bounded above
            # Plenty free again: the next admitted request ends the episode (one line).
            assert (await http.post("/rooms", json={})).status == 201
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    text = log_path.read_text()
    assert text.count("file descriptors running low") == 1, text[-3000:]
    assert text.count("file descriptors recovered") == 1
    assert text.count("out of system resource") <= 2
    assert text.count("Traceback") <= 2 and text.count("Too many open files") <= 2
    assert len(text) < 200_000


async def test_behind_a_proxy_limits_apply_to_the_forwarded_client(nova) -> None:
    sdp = await ghost_offer(publisher=True)

    def from_(address: str) -> dict[str, str]:
        return {**SDP, "X-Forwarded-For": f"198.51.100.77, {address}"}

    proxied = await nova(trust_proxy=True, max_pending=1)
    async with aiohttp.ClientSession(str(proxied.make_url(""))) as http:
        assert (await http.post("/whip/a", data=sdp, headers=from_("203.0.113.1"))).status == 201
        assert (await http.post("/whip/a", data=sdp, headers=from_("203.0.113.2"))).status == 201
        assert (await http.post("/whip/a", data=sdp, headers=from_("203.0.113.1"))).status == 429
        # The first address of the header is whatever the client wrote: it is not what counts.
        spoofed = {**SDP, "X-Forwarded-For": "192.0.2.9, 203.0.113.2"}
        assert (await http.post("/whip/a", data=sdp, headers=spoofed)).status == 429

    direct = await nova(max_pending=1)  # without --trust-proxy the header is ignored
    async with aiohttp.ClientSession(str(direct.make_url(""))) as http:
        assert (await http.post("/whip/a", data=sdp, headers=from_("203.0.113.1"))).status == 201
        assert (await http.post("/whip/a", data=sdp, headers=from_("203.0.113.2"))).status == 429
