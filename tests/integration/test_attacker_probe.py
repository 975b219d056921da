"""An attacker's probe of rooms, outputs and the edge (issue 27), run against a real server on
loopback. Outputs are requests to a URL someone else chose: here they may reach 127.0.0.2 (the
test's "public" listener, allowed with --outputs-allow) and nothing else; a victim listener on
127.0.0.1 stands for everything an output must never reach (loopback services, the metadata
address, the LAN). No request leaves 127.0.0.0/8: the refusal of link-local and private
networks is proved by the address check's own tests (tests/unit/test_outbound.py).

The finals are numbered into the server's rooms as a publisher's would be (the speech path to
outputs is tests/integration/test_room_outputs.py's); these tests are about where they may go."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.types import Caption
from server.state import STATE
from tests.support.probes import ghost_offer, rss_kib, wait_until

KEY = "STREAMKEY"
PASSWORD = "obs password"
HOOK_SECRET = "a webhook secret of 32 characters"


class Listener:
    """An HTTP (and obs-websocket) endpoint that keeps every request it gets."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []  # (path, body)
        self.captions: list[str] = []
        self.huge_written = 0
        self.huge_done = asyncio.Event()
        self.handshakes = 0

    def app(self, victim_port: int = 0) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/redirect", self.redirect(f"http://127.0.0.1:{victim_port}/stolen"))
        app.router.add_get("/obs-redirect", self.redirect(f"http://127.0.0.1:{victim_port}/obs"))
        app.router.add_post("/huge", self.huge)
        app.router.add_get("/obs", self.obs)
        app.router.add_route("*", "/{tail:.*}", self.keep)
        return app

    async def keep(self, request: web.Request) -> web.Response:
        self.hits.append((request.path, await request.text()))
        return web.Response(text="ok")

    def redirect(self, to: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self.hits.append((request.path, ""))
            raise web.HTTPTemporaryRedirect(to)

        return handler

    async def huge(self, request: web.Request) -> web.StreamResponse:
        """A 200 MB answer: an output must read a little of it and hang up."""
        self.hits.append((request.path, await request.text()))
        response = web.StreamResponse(headers={"Content-Length": str(200 << 20)})
        await response.prepare(request)
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(200):
                await response.write(chunk)
                self.huge_written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.huge_done.set()
        return response

    async def obs(self, request: web.Request) -> web.WebSocketResponse:
        """obs-websocket 5 whose first Hello is malformed (a hostile or broken peer); the
        output must count that, retry, and deliver on the next connection."""
        ws = web.WebSocketResponse(protocols=("obswebsocket.json",))
        await ws.prepare(request)
        self.handshakes += 1
        if self.handshakes == 1:
            await ws.send_json({"op": 0, "d": ["not", "a", "hello"]})
            await ws.close()
            return ws
        await ws.send_json({"op": 0, "d": {"rpcVersion": 1}})
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"negotiatedRpcVersion": 1}})
        async for msg in ws:
            d = msg.json()["d"]
            self.captions.append(d["requestData"]["captionText"])
            await ws.send_json(
                {"op": 7, "d": {"requestId": d["requestId"], "requestStatus": {"result": True}}}
            )
        return ws


def final(room: Any, segment: int, text: str) -> None:
    """A final of publisher "pub", numbered into the room as a live publisher's would be."""
    if "pub" not in room.publishers:
        room.join_publisher("pub")
    room.caption(
        "pub",
        Caption(
            segment=segment, final=True, text=text, start=segment * 2.0, end=segment * 2.0 + 1.5, lang="en"
        ),
    )


async def start(aiohttp_server: Any, app: web.Application, host: str) -> Any:
    return await aiohttp_server(app, host=host)


async def test_a_publish_token_alone_cannot_point_a_private_rooms_captions_anywhere(
    nova, aiohttp_server: Any
) -> None:
    guest, owner = Listener(), Listener()
    guest_at = await start(aiohttp_server, guest.app(), "127.0.0.1")
    owner_at = await start(aiohttp_server, owner.app(), "127.0.0.1")
    server = await nova(outputs_allow="127.0.0.1", admin_token="admin-secret")
    state = server.app[STATE]
    async with aiohttp.ClientSession(server.make_url("")) as http:
        async with http.post("/rooms", json={"name": "panel", "private": True}) as resp:
            made = await resp.json()
        publish, view = made["publish_token"], made["view_token"]
        steal = {"outputs": [{"type": "youtube", "url": f"http://127.0.0.1:{guest_at.port}/cc?cid=x"}]}
        as_guest = {"Authorization": f"Bearer {publish}"}
        async with http.patch("/rooms/panel", json=steal, headers=as_guest) as resp:
            assert resp.status == 403 and (await resp.json())["error"] == "view_token_required"
        async with http.patch("/rooms/panel?token=wrong", json=steal, headers=as_guest) as resp:
            assert resp.status == 403
        assert state.rooms.get("panel").outputs == ()  # type: ignore[union-attr]
        # Her vocabulary still goes through: a publish token changes what the room hears.
        async with http.patch("/rooms/panel", json={"vocabulary": ["Niamh"]}, headers=as_guest) as resp:
            assert resp.status == 200
        # The owner, who holds the view token too, points it at the stream.
        mine = {"outputs": [{"type": "youtube", "url": f"http://127.0.0.1:{owner_at.port}/cc?cid={KEY}"}]}
        headers = {**as_guest, "Nova-View-Token": view}
        async with http.patch("/rooms/panel", json=mine, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        final(state.rooms.get("panel"), 0, "Only for the room's readers.")
        await wait_until(lambda: len(owner.hits) == 1, 10, "the owner's output to post")
        # The operator's admin token may move outputs of any room.
        admin = {"Authorization": "Bearer admin-secret"}
        async with http.patch("/rooms/panel", json={"outputs": []}, headers=admin) as resp:
            assert resp.status == 200
    assert guest.hits == [] and "Only for the room's readers." in owner.hits[0][1]


async def test_outputs_reach_only_allowed_addresses_and_never_follow_a_redirect_inward(
    nova, aiohttp_server: Any
) -> None:
    victim, allowed = Listener(), Listener()
    victim_at = await start(aiohttp_server, victim.app(), "127.0.0.1")
    allowed_at = await start(aiohttp_server, allowed.app(victim_at.port), "127.0.0.2")
    server = await nova(outputs_allow="127.0.0.2", offers_per_minute=0)
    state = server.app[STATE]
    v, a = victim_at.port, allowed_at.port
    inward = [
        f"http://127.0.0.1:{v}/x",
        f"http://2130706433:{v}/x",
        f"http://0x7f000001:{v}/x",
        f"http://127.1:{v}/x",
        f"http://localhost.:{v}/x",
        f"http://[::1]:{v}/x",
        f"http://[::ffff:127.0.0.1]:{v}/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        f"http://user:pass@127.0.0.2:{a}/x",
        "http://[::1",
    ]
    async with aiohttp.ClientSession(server.make_url("")) as http:
        for url in inward:
            for output in (
                {"type": "youtube", "url": url},
                {"type": "obs", "url": "ws" + url[4:]},
                {"type": "webhook", "url": url, "secret": HOOK_SECRET},
            ):
                async with http.post("/rooms", json={"outputs": [output]}) as resp:
                    body = await resp.json()
                    assert resp.status == 400 and body["error"] == "bad_output", (url, body)
        outputs = [
            {"type": "youtube", "url": f"http://127.0.0.2:{a}/cc?cid={KEY}"},
            {"type": "youtube", "url": f"http://127.0.0.2:{a}/redirect"},
            {"type": "obs", "url": f"ws://127.0.0.2:{a}/obs-redirect", "password": PASSWORD},
            {"type": "youtube", "url": f"http://127.0.0.2:{a}/huge"},
        ]
        async with http.post("/rooms", json={"name": "show", "outputs": outputs}) as resp:
            assert resp.status == 201, await resp.text()
            shown = (await resp.json())["outputs"]
        assert {o["url"] for o in shown} == {f"http://127.0.0.2:{a}/***", f"ws://127.0.0.2:{a}/***"}
        async with http.post("/rooms", json={"name": "obs", "outputs": [
            {"type": "obs", "url": f"ws://127.0.0.2:{a}/obs", "password": PASSWORD}
        ]}) as resp:  # fmt: skip
            assert resp.status == 201
        hook = {"type": "webhook", "url": f"http://127.0.0.2:{a}/redirect", "secret": HOOK_SECRET}
        async with http.post("/rooms", json={"name": "hook", "outputs": [hook]}) as resp:
            assert resp.status == 201
        before = rss_kib()
        room = state.rooms.get("show")
        said = ["First words.", "Second words.", "Third words."]
        for i, text in enumerate(said):
            final(room, i, text)
            final(state.rooms.get("hook"), i, text)
        final(state.rooms.get("obs"), 0, "Through a broken handshake.")
        await wait_until(lambda: sum(p == "/cc" for p, _ in allowed.hits) == 3, 15, "every final posted")
        await wait_until(lambda: allowed.huge_done.is_set(), 15, "the huge answer to be hung up on")
        grown = rss_kib() - before
        await wait_until(
            lambda: {p for p, _ in allowed.hits} >= {"/redirect", "/obs-redirect"}, 15, "redirects"
        )
        # Both the YouTube output and the webhook met the redirect with every final.
        await wait_until(lambda: sum(p == "/redirect" for p, _ in allowed.hits) >= 6, 15, "both redirected")
        await wait_until(lambda: allowed.captions == ["Through a broken handshake."], 20, "OBS's retry")

        async def metrics() -> str:
            async with http.get("/metrics") as resp:
                return await resp.text()

        text = await metrics()
        for _ in range(100):
            if 'reason="refused_destination",type="obs"' in text:
                break
            await asyncio.sleep(0.1)  # the OBS output's redirect is refused as it is followed
            text = await metrics()
    posted = [body for path, body in allowed.hits if path == "/cc"]
    assert [b.split("\n", 1)[1].strip() for b in posted] == said
    assert victim.hits == [] and victim.handshakes == 0  # nothing ever reached the inside
    assert allowed.huge_written < 100 << 20 and grown < 50 * 1024, (allowed.huge_written, grown)
    assert 'nova_output_failures_total{reason="refused_destination",type="obs"}' in text
    assert re.search(r'nova_output_failures_total\{reason="(handshake|protocol)",type="obs"\}', text)
    assert KEY not in text


async def test_an_early_feed_does_not_switch_off_a_rooms_default_youtube_output(
    nova, aiohttp_server: Any
) -> None:
    listener = Listener()
    at = await start(aiohttp_server, listener.app(), "127.0.0.1")
    server = await nova(outputs_allow="127.0.0.1", youtube_caption_url=f"http://127.0.0.1:{at.port}/cc?cid=K")
    state = server.app[STATE]
    async with aiohttp.ClientSession(server.make_url("")) as http:
        async with http.get("/rooms/stage/events") as resp:
            assert resp.status == 200
            assert re.fullmatch(rb"retry: [1-4][0-9]{3}\n\n", await resp.content.readuntil(b"\n\n"))
        await wait_until(lambda: state.rooms.get("stage") is None, 10, "the idle room to be forgotten")
        final(state.rooms.ensure("stage"), 0, "The show starts.")
        await wait_until(lambda: len(listener.hits) == 1, 10, "the default output to post")
    assert "The show starts." in listener.hits[0][1]


async def test_one_address_cannot_take_every_viewer_slot_of_a_room(nova) -> None:
    server = await nova(max_viewers=6, max_viewers_per_address=2)
    base = str(server.make_url("")).rstrip("/")
    first = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.1", 0)))
    second = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    held: list[aiohttp.ClientResponse] = []
    try:
        for _ in range(2):
            resp = await first.get(f"{base}/rooms/keynote/events")
            assert resp.status == 200
            held.append(resp)
        async with first.get(f"{base}/rooms/keynote/events") as resp:
            assert resp.status == 429 and (await resp.json())["error"] == "too_many_viewers_from_address"
        offer = await ghost_offer(publisher=False)
        async with first.post(f"{base}/rooms/keynote/viewers", json={"sdp": offer}) as resp:
            assert resp.status == 429
        async with second.get(f"{base}/rooms/keynote/events") as resp:
            assert resp.status == 200
            assert re.fullmatch(rb"retry: [1-4][0-9]{3}\n\n", await resp.content.readuntil(b"\n\n"))
    finally:
        for resp in held:
            resp.close()
        await first.close()
        await second.close()


async def test_malformed_ids_and_urls_are_a_4xx_never_a_500(nova) -> None:
    server = await nova()
    async with aiohttp.ClientSession(server.make_url("")) as http:
        for value in ("\u00b2", "\u0663", "12\u00b3", "-1", "1e3", "9" * 20):
            async with http.get("/rooms/r/events", headers={"Last-Event-ID": value}) as resp:
                assert resp.status == 400 and (await resp.json())["error"] == "bad_last_event_id", value
        async with http.get("/rooms/r/events?last_event_id=%C2%B2") as resp:
            assert resp.status == 400
        for url in ("http://[::1", "http://x:99999/", "http://x:port/", "ws://[fe80::1%eth0]:1/"):
            async with http.post("/rooms", json={"outputs": [{"type": "youtube", "url": url}]}) as resp:
                assert resp.status == 400, url


async def test_idle_and_unfinished_connections_are_closed_after_the_idle_timeout(nova) -> None:
    """The slow-client probe: connections that send nothing, or their headers a byte at a time,
    are closed by the server after --idle-timeout instead of held for an hour."""
    server = await nova(idle_timeout=1.0)
    head = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Slow: "

    async def held_for(slow: bool) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        opened = loop.time()
        try:
            if slow:
                writer.write(head.encode())
                await writer.drain()

            async def trickle() -> None:
                while slow:
                    await asyncio.sleep(0.2)  # the attacker's pace, not a synchronisation
                    writer.write(b"a")
                    await writer.drain()

            dripping = asyncio.ensure_future(trickle())
            try:
                # Closed by the server: an end of file, or a reset where our bytes were unread.
                with contextlib.suppress(ConnectionResetError):
                    assert await asyncio.wait_for(reader.read(), 10) == b""
            finally:
                dripping.cancel()
                await asyncio.gather(dripping, return_exceptions=True)
            return loop.time() - opened
        finally:
            writer.close()

    held = await asyncio.gather(*(held_for(slow=i % 2 == 0) for i in range(40)))
    assert max(held) < 5.0, held
    async with aiohttp.ClientSession() as http, http.get(server.make_url("/health")) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_room_info_and_changes_answer_alike_for_unknown_rooms_and_rooms_one_may_not_touch(
    nova, token: str | None
) -> None:
    server = await nova()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(server.make_url("")) as http:
        async with http.post("/rooms", json={"name": "hidden", "private": True}):
            pass
        async with http.post("/rooms", json={"name": "known"}):
            pass

        async def answer(method: str, room: str) -> tuple[int, str]:
            async with http.request(
                method, f"/rooms/{room}", json={"vocabulary": []}, headers=headers
            ) as resp:
                body = await resp.json()
                return resp.status, body["error"] + ":" + body["message"].replace(room, "ROOM")

        assert await answer("GET", "hidden") == await answer("GET", "nowhere")
        assert (await answer("GET", "nowhere"))[0] == 404
        assert await answer("PATCH", "known") == await answer("PATCH", "nowhere")
        assert await answer("PATCH", "hidden") == await answer("PATCH", "nowhere")
        assert (await answer("PATCH", "nowhere"))[0] == (403 if token else 401)
