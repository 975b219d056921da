"""A room's voice-over as an aiortc audio track: 20 ms frames of a ``VoiceLine`` at real-time pace.

Each track reads the shared timeline (pipeline/voiceline.py) at the frame that plays now on
the wall clock, so every listener of a language hears the same sentence at the same moment
and a track never drifts: it waits for each frame's own time rather than counting sleeps. A
track whose task was held up (a busy event loop) past what the timeline keeps jumps to now.
aiortc's Opus encoder takes the 48 kHz mono frames as they are.

The offer side: ``send_voice`` answers a WHEP player's or a viewer's receiving audio section
with this track (Opus only) and every other section inactive, as ``offers.receive_first_audio``
does for publishers.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from pipeline.voiceline import FRAME, KEPT_FRAMES, RATE, VoiceLine
from server.media.offers import answerable

TIME_BASE = fractions.Fraction(1, RATE)


class VoiceTrack(MediaStreamTrack):
    """One listener's audio: the voice of one language of one room."""

    kind = "audio"

    def __init__(
        self,
        line: VoiceLine,
        clock: Callable[[], float] = time.time,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.line = line
        self.clock = clock
        self._on_end = on_end
        self._next: int | None = None
        self._pts = 0
        line.listeners += 1

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self.clock()
        if self._next is None or self._next < self.line.index(now) - KEPT_FRAMES // 2:
            self._next = self.line.index(now)
        wait = self.line.at(self._next) - now
        if wait > 0:
            await asyncio.sleep(wait)  # the frame's own time on the wall clock: pacing, not syncing
        samples = self.line.frame(self._next)
        self._next += 1
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += FRAME
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            self.line.listeners -= 1
            if self._on_end is not None:
                self._on_end()
        super().stop()


def wants_audio(parsed: SessionDescription) -> bool:
    """Whether an offer has an audio section that receives (recvonly or sendrecv) with Opus."""
    return any(
        m.kind == "audio"
        and m.port != 0
        and m.direction in ("recvonly", "sendrecv", None)
        and any(c.mimeType.lower() == "audio/opus" for c in m.rtp.codecs)
        for m in parsed.media
    )


def send_voice(pc: RTCPeerConnection, parsed: SessionDescription, track: VoiceTrack) -> None:
    """Transceivers for the answerable sections, in offer order, before setRemoteDescription:
    the first receiving audio section gets ``track`` (Opus), every other audio or video section
    an inactive transceiver (nothing sent, nothing decoded)."""
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    sent = False
    for media in parsed.media:
        if media.kind not in ("audio", "video") or not answerable(media):
            continue
        receives = media.direction in ("recvonly", "sendrecv", None)
        if media.kind == "audio" and receives and not sent:
            sent = True
            pc.addTransceiver(track, direction="sendonly").setCodecPreferences(opus)
        else:
            pc.addTransceiver(media.kind, direction="inactive")


@dataclass
class Listening:
    """A WHEP player of a room's voice: its peer, to close on DELETE."""

    id: str
    room: str
    lang: str
    pc: RTCPeerConnection
