"""Bad input to WHIP gets a clear 4xx with a JSON body, and the server keeps serving."""

from __future__ import annotations

import re

import aiohttp
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from server.state import STATE


async def offer(audio: bool = True, channel: bool = True) -> str:
    pc = RTCPeerConnection()
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    if channel:
        pc.createDataChannel("captions")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def without_opus(sdp: str) -> str:
    opus_pt = re.search(r"a=rtpmap:(\d+) opus/", sdp, re.I).group(1)  # type: ignore[union-attr]
    lines = []
    for line in sdp.splitlines():
        if line.startswith("m=audio"):
            parts = line.split()
            line = " ".join(p for i, p in enumerate(parts) if i < 3 or p != opus_pt)
        if re.match(rf"a=(rtpmap|fmtp|rtcp-fb):{opus_pt}\b", line):
            continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


async def post(client, body: str | bytes, content_type: str = "application/sdp", room: str = "demo"):  # type: ignore[no-untyped-def]
    resp = await client.post(f"/whip/{room}", data=body, headers={"Content-Type": content_type})
    return resp.status, await resp.json(content_type=None)


async def test_every_bad_offer_is_refused_with_a_reason(nova) -> None:
    server = await nova()
    async with aiohttp.ClientSession(str(server.make_url(""))) as client:
        cases = {
            "empty": (b"", "application/sdp", 400, "empty_sdp"),
            "garbage": (b"hello, I am not SDP", "application/sdp", 400, "malformed_sdp"),
            "broken": (b"v=0\r\nm=audio xx yy\r\n", "application/sdp", 400, "malformed_sdp"),
            "no audio": (await offer(audio=False), "application/sdp", 400, "no_audio"),
            "no opus": (without_opus(await offer()), "application/sdp", 400, "unsupported_codec"),
            "too big": (b"v=0\r\n" + b"a=x\r\n" * 20_000, "application/sdp", 413, "body_too_large"),
            "wrong type": (await offer(), "application/json", 415, "unsupported_media_type"),
            "binary": (b"v=0\r\n\xff\xfe\x00", "application/sdp", 400, "bad_encoding"),
        }
        for name, (body, ctype, status, code) in cases.items():
            got_status, got = await post(client, body, ctype)
            assert (got_status, got["error"]) == (status, code), name
            assert got["message"], name
        status, body = await post(client, await offer(), room="../etc")
        assert status in (400, 404)
        status, body = await post(client, await offer(), room="bad name!")
        assert (status, body["error"]) == (400, "invalid_room")

        # Nothing leaked, and a good offer still gets an answer.
        state = server.app[STATE]
        assert len(state.peers) == 0 and state.publishers == {}
        resp = await client.post(
            "/whip/demo", data=await offer(), headers={"Content-Type": "application/sdp"}
        )
        assert resp.status == 201
        assert resp.headers["Content-Type"].startswith("application/sdp")
        location = resp.headers["Location"]
        assert location.startswith("/whip/demo/")
        assert "a=rtpmap" in (answer := await resp.text()) and "opus" in answer.lower()
        assert "PCMU" not in answer  # audio answered with Opus only
        assert " 127.0.0.1 " in answer  # a loopback candidate, so same-machine peers always meet

        assert (await client.delete(location)).status == 200
        assert (await client.delete(location)).status == 404
        assert (await client.delete("/whip/demo/nope")).status == 404
        assert (await client.patch(location, data="a=candidate")).status == 405
        assert len(state.peers) == 0 and state.publishers == {}


async def test_cors_lets_other_origins_publish(nova) -> None:
    server = await nova()
    async with aiohttp.ClientSession(str(server.make_url(""))) as client:
        resp = await client.options(
            "/whip/demo",
            headers={
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization",
            },
        )
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Location" in resp.headers["Access-Control-Expose-Headers"]
        status, _ = await post(client, b"")
        resp = await client.post("/whip/demo", data=b"", headers={"Content-Type": "application/sdp"})
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_full_server_answers_503_with_retry_after(nova) -> None:
    server = await nova(max_sessions=1)
    async with aiohttp.ClientSession(str(server.make_url(""))) as client:
        first = await client.post(
            "/whip/demo", data=await offer(), headers={"Content-Type": "application/sdp"}
        )
        assert first.status == 201
        second = await client.post(
            "/whip/demo", data=await offer(), headers={"Content-Type": "application/sdp"}
        )
        assert second.status == 503
        assert second.headers["Retry-After"]
        assert (await second.json())["error"] == "server_full"
        await client.delete(first.headers["Location"])
        third = await client.post(
            "/whip/demo", data=await offer(), headers={"Content-Type": "application/sdp"}
        )
        assert third.status == 201
        await client.delete(third.headers["Location"])


async def test_health_and_metrics(nova) -> None:
    server = await nova()
    async with aiohttp.ClientSession(str(server.make_url(""))) as client:
        assert (await (await client.get("/health")).json())["status"] == "ok"
        full = await (await client.get("/health/full")).json()
        assert full["model"]["loaded"] and full["model"]["name"] == "tiny.en"
        assert {"sessions", "queue_depth", "queue_delay"} <= set(full)
        text = await (await client.get("/metrics")).text()
        assert "nova_whisper_batch_size" in text and "nova_sessions" in text
