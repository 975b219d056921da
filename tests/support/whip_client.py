"""A real WHIP publisher and viewer built on aiortc, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from aiortc.contrib.media import MediaPlayer
from av import VideoFrame


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


class MovingPicture(VideoStreamTrack):
    """Video that changes every frame, as a camera or a game capture does (so it cannot be skipped)."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self._frame = np.zeros((height, width, 3), dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._frame = np.roll(self._frame, 4, axis=1)
        self._frame[:, :4] = np.random.default_rng(pts).integers(0, 255, (self._frame.shape[0], 4, 3))
        frame = VideoFrame.from_ndarray(self._frame, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


SdpFilter = Callable[[str], str]


class WhipPublisher:
    """Publishes a media file (played at real-time pace) to ``POST /whip/{room}``.

    ``video`` adds a moving picture sent with that codec (``"video/H264"``, ``"video/VP8"``), as
    OBS does; ``edit_offer``/``edit_answer`` change the SDP on the wire, to play publishers that
    behave differently from aiortc (no candidates in the offer, other codecs).
    """

    def __init__(
        self,
        base_url: str,
        room: str,
        path: str,
        token: str | None = None,
        video: str | None = None,
        edit_offer: SdpFilter | None = None,
        edit_answer: SdpFilter | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.room = room
        self.params = params or {}
        self.path = path
        self.token = token
        self.video = video
        self.edit_offer = edit_offer or (lambda sdp: sdp)
        self.edit_answer = edit_answer or (lambda sdp: sdp)
        self.log = CaptionLog()
        self.pc = RTCPeerConnection()
        self.location: str | None = None
        self.answer: str = ""
        self.channel_open = asyncio.Event()
        self._player: MediaPlayer | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._player = MediaPlayer(self.path)
        self.pc.addTransceiver(self._player.audio, direction="sendonly")
        if self.video:
            transceiver = self.pc.addTransceiver(MovingPicture(), direction="sendonly")
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == self.video])
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
            f"{self.base_url}/whip/{self.room}",
            data=self.edit_offer(self.pc.localDescription.sdp),
            headers=headers,
            params=self.params,
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHIP answered {resp.status}: {body}")
            self.location = resp.headers["Location"]
        self.answer = body
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.edit_answer(body), type="answer"))

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

    def __init__(self, base_url: str, room: str, lang: str | None = None, token: str | None = None) -> None:
        self.base_url = base_url
        self.room = room
        self.lang = lang
        self.token = token
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
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with session.post(
            f"{self.base_url}/rooms/{self.room}/viewers{query}", json={"sdp": sdp}, headers=headers
        ) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"viewer signaling answered {resp.status}: {body}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        await asyncio.wait_for(self.open.wait(), 10)

    async def refused(self, session: aiohttp.ClientSession) -> str:
        """Connect, expecting to be turned away; returns the refusal (status and body)."""
        try:
            await self.connect(session)
        except RuntimeError as exc:
            return str(exc)
        finally:
            await self.close()
        raise AssertionError("the viewer was let in")

    async def close(self) -> None:
        await self.pc.close()


class TimedViewer(Viewer):
    """A viewer that notes when the first final of each segment arrived (monotonic seconds)."""

    def __init__(self, base_url: str, room: str, lang: str | None = None, token: str | None = None) -> None:
        super().__init__(base_url, room, lang, token)
        self.final_at: dict[int, float] = {}
        original = self.log.add

        async def timed(raw: str) -> None:
            await original(raw)
            m = self.log.messages[-1]
            if m.get("type") == "caption" and m["final"] and m["text"]:
                self.final_at.setdefault(m["segment"], time.monotonic())

        self.log.add = timed  # type: ignore[method-assign]
