"""A real WHIP publisher and viewer built on aiortc, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


@dataclass
class CaptionLog:
    """Every message a data channel received, with helpers to wait on them."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, raw: str) -> None:
        self.messages.append(json.loads(raw))
        async with self._changed:
            self._changed.notify_all()

    def captions(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "caption"]

    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.captions() if m["final"] and m["text"]]

    def final_text(self) -> str:
        return " ".join(m["text"] for m in self.finals())

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)


class WhipPublisher:
    """Publishes a media file (played at real-time pace) to ``POST /whip/{room}``."""

    def __init__(self, base_url: str, room: str, path: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.room = room
        self.path = path
        self.token = token
        self.log = CaptionLog()
        self.pc = RTCPeerConnection()
        self.location: str | None = None
        self.channel_open = asyncio.Event()
        self._player: MediaPlayer | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._player = MediaPlayer(self.path)
        self.pc.addTransceiver(self._player.audio, direction="sendonly")
        channel = self.pc.createDataChannel("captions")
        channel.on("open", self.channel_open.set)

        @channel.on("message")
        async def on_message(message: str) -> None:
            await self.log.add(message)

        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with session.post(
            f"{self.base_url}/whip/{self.room}", data=self.pc.localDescription.sdp, headers=headers
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHIP answered {resp.status}: {body}")
            self.location = resp.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def ended(self, timeout: float = 120.0) -> None:
        """Until the file has been played out entirely (real-time pace, so bounded by its length)."""
        assert self._player is not None and self._player.audio is not None
        track = self._player.audio
        done = asyncio.Event()
        track.on("ended", done.set)
        if track.readyState == "ended":
            return
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.path} did not finish playing; peer connection {self.pc.connectionState}, "
                f"ICE {self.pc.iceConnectionState}"
            ) from None

    async def stop(self, session: aiohttp.ClientSession) -> int:
        assert self.location is not None
        async with session.delete(self.base_url + self.location) as resp:
            status = resp.status
        await self.pc.close()
        return status

    async def close(self) -> None:
        await self.pc.close()


class Viewer:
    """A receive-only aiortc viewer of ``POST /rooms/{room}/viewers``."""

    def __init__(self, base_url: str, room: str, lang: str | None = None) -> None:
        self.base_url = base_url
        self.room = room
        self.lang = lang
        self.log = CaptionLog()
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("captions")
        self.open = asyncio.Event()
        self.channel.on("open", self.open.set)

        @self.channel.on("message")
        async def on_message(message: str) -> None:
            await self.log.add(message)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def connect(self, session: aiohttp.ClientSession) -> None:
        sdp = await self.offer()
        query = f"?lang={self.lang}" if self.lang else ""
        async with session.post(
            f"{self.base_url}/rooms/{self.room}/viewers{query}", json={"sdp": sdp}
        ) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"viewer signaling answered {resp.status}: {body}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        await asyncio.wait_for(self.open.wait(), 10)

    async def close(self) -> None:
        await self.pc.close()
