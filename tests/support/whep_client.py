"""A real WHEP player built on aiortc: takes a room's voice-over and records it, with the wall
time at which each 20 ms of sound arrived (to time a spoken sentence against its caption)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from pipeline.audio import Resampler

LOUD = 500  # int16 peak above which a 20 ms block counts as sound, not silence or Opus noise


class WhepPlayer:
    """``POST /whep/{room}?lang=...`` with a receive-only audio offer; ``recorded()`` gives the
    sound so far (16 kHz mono int16, for Whisper) and ``onsets()`` the wall times speech began."""

    def __init__(self, base_url: str, room: str, lang: str | None = None, token: str | None = None) -> None:
        self.base_url = base_url
        self.room = room
        self.lang = lang
        self.token = token
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver("audio", direction="recvonly")
        self.location: str | None = None
        self.answer = ""
        self._chunks: list[np.ndarray] = []
        self._times: list[tuple[float, int]] = []  # (wall time a frame arrived, its peak)
        self._resampler = Resampler()
        self._task: asyncio.Task[None] | None = None
        self.receiving = asyncio.Event()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._task = asyncio.get_running_loop().create_task(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.receiving.set()
            pcm = self._resampler.convert(frame)
            self._chunks.append(pcm)
            self._times.append((time.time(), int(np.abs(pcm).max()) if pcm.size else 0))

    async def start(self, session: aiohttp.ClientSession, expect: int = 201) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        params = {"lang": self.lang} if self.lang else {}
        url, offer = f"{self.base_url}/whep/{self.room}", self.pc.localDescription.sdp
        async with session.post(url, data=offer, headers=headers, params=params) as resp:
            body = await resp.text()
            if resp.status != expect:
                raise RuntimeError(f"WHEP answered {resp.status}: {body}")
            if resp.status != 201:
                await self.pc.close()
                return body
            self.location = resp.headers["Location"]
        self.answer = body
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        await asyncio.wait_for(self.receiving.wait(), 15)
        return body

    def recorded(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def onsets(self, pause: float = 0.15) -> list[float]:
        """Wall times at which sound starts after at least ``pause`` seconds of silence."""
        out: list[float] = []
        quiet_since: float | None = 0.0
        for at, peak in self._times:
            if peak >= LOUD:
                if quiet_since is not None and (not out or at - quiet_since >= pause):
                    out.append(at)
                quiet_since = None
            elif quiet_since is None:
                quiet_since = at
        return out

    async def stop(self, session: aiohttp.ClientSession) -> int:
        assert self.location is not None
        async with session.delete(self.base_url + self.location) as resp:
            status = resp.status
        await self.close()
        return status

    async def close(self) -> None:
        await self.pc.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
