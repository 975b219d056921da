"""Opus decoded where its packets arrive, at 16 kHz mono: aiortc's decoder thread stood aside.

aiortc gives every receiver a decoder thread: each 20 ms frame goes to it through a
``queue.Queue`` and comes back decoded to the event loop through ``run_coroutine_threadsafe``,
two thread switches a frame, as 48 kHz stereo that the publisher then resampled to the 16 kHz
mono Whisper and the VAD take. Profiled on a gateway with 16 live sessions (py-spy,
bench/results/gateway.md), the hand-offs (queue put and notify, thread wake-ups, the loop's
self-pipe) and the resampling were about a third of its CPU. An Opus decoder may output any of
8-48 kHz (RFC 6716 section 4): libopus decodes straight to 16 kHz mono in a few tens of
microseconds (FFmpeg's wrappers always give 48 kHz), so each frame is decoded on the event loop
through libopus itself (ctypes; the system's, else the copy PyAV's wheel carries), as it
completes, and its samples queued on the track.

Where the track's consumer asks for them (``deliver_to``: the publisher does), decoded frames
are handed to it at once instead of through the track's ``asyncio.Queue``: a queue put, a task
wake-up and a per-frame timeout a 20 ms frame fewer (at 16 sessions, ~800 of each a second on
the gateway's loop). The track then carries only its end (aiortc's thread puts ``None``) and
frames of other codecs.

This reaches into aiortc 1.16's receiver (its name-mangled decoder queue; aiortc is pinned in
constraints.txt). Where that is not found, or libopus cannot be loaded, aiortc's own thread
decodes, as before; ``tests/unit/test_inline_audio.py`` fails so that an upgrade is noticed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import queue
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCRtpReceiver

from pipeline.types import SAMPLE_RATE
from server.media.rtp_inline import handle_rtp_inline

log = logging.getLogger(__name__)

QUEUE_ATTRIBUTE = "_RTCRtpReceiver__decoder_queue"
RTP_CLOCK = 48_000  # Opus's RTP clock, whatever the rate it is decoded at (RFC 7587)
MAX_FRAME = SAMPLE_RATE * 120 // 1000  # the longest Opus frame, 120 ms


@functools.cache
def libopus() -> ctypes.CDLL | None:
    """libopus, or None when neither the system nor PyAV's wheel has one."""
    import av

    candidates = [ctypes.util.find_library("opus")]
    candidates += sorted(
        glob.glob(os.path.join(os.path.dirname(av.__file__), "..", "av.libs", "libopus*.so*"))
    )
    for name in filter(None, candidates):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        ]  # fmt: skip
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        return lib
    return None


@dataclass(frozen=True)
class Decoded:
    """One decoded frame: 16 kHz mono int16 ``pcm``, ``pts`` in 16 kHz samples (what the
    publisher reads of an ``av.AudioFrame``: its gaps are counted from ``pts``)."""

    pcm: np.ndarray
    pts: int
    sample_rate: int = SAMPLE_RATE

    @property
    def samples(self) -> int:
        return len(self.pcm)


class OpusDecoder16k:
    """A libopus decoder at 16 kHz mono."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        error = ctypes.c_int(0)
        self._state = lib.opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(error))
        if not self._state or error.value:
            raise OSError(f"opus_decoder_create failed ({error.value})")
        self._buffer = np.zeros(MAX_FRAME, dtype=np.int16)
        self._pointer = self._buffer.ctypes.data  # once: ``.ctypes`` builds an object each time

    def decode(self, data: bytes) -> np.ndarray:
        n = self._lib.opus_decode(self._state, data, len(data), self._pointer, MAX_FRAME, 0)
        if n < 0:
            raise ValueError(f"opus_decode failed ({n})")
        return self._buffer[:n].copy()

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.opus_decoder_destroy(self._state)
            self._state = None


Sink = Callable[[Decoded], None]

# A track's consumer, where it takes decoded frames directly. Weak both ways: the consumer
# (a publisher's feed) reaches its track through its peer, and a strong value would keep the
# key, and the whole publisher, alive for good.
_sinks: weakref.WeakKeyDictionary[MediaStreamTrack, weakref.WeakMethod[Sink]] = weakref.WeakKeyDictionary()


def deliver_to(track: MediaStreamTrack, sink: Sink) -> None:
    """Hand ``track``'s frames decoded inline to ``sink`` (a bound method, held weakly: its
    object must live as long as the frames should go to it) as they are decoded, on the event
    loop inside aiortc's packet handling: ``sink`` must be quick and must not raise (if it does,
    the error is logged and later frames go through the track again). A track whose audio is
    not decoded inline (another codec, no libopus) still yields its frames."""
    _sinks[track] = weakref.WeakMethod(sink)  # type: ignore[arg-type]


class InlineOpus:
    """Stands in for a receiver's decoder queue: ``put((codec, frame))`` decodes at once.

    The decoder thread aiortc started still waits on the original queue; ``None`` (the
    receiver stopping) goes there, so the thread ends and ends the track, as before.
    """

    def __init__(
        self,
        original: queue.Queue[Any],
        track_queue: asyncio.Queue[Any],
        lib: ctypes.CDLL,
        track: MediaStreamTrack | None = None,
    ) -> None:
        self._original = original
        self._out = track_queue
        self._decoder = OpusDecoder16k(lib)
        self._track = weakref.ref(track) if track is not None else None
        self._sink: Sink | None = None
        self.failed = 0
        self.direct = 0  # frames handed to the track's consumer directly
        self.queued = 0  # frames put on the track's queue

    def put(self, item: Any) -> None:
        if item is None:
            self._original.put(None)
            return
        codec, encoded = item
        if codec.mimeType.lower() != "audio/opus":
            self._original.put(item)  # not ours to decode: aiortc's thread does it
            return
        try:
            pcm = self._decoder.decode(encoded.data)
        except ValueError as exc:
            self.failed += 1
            if self.failed == 1:
                log.warning("an Opus frame could not be decoded (%s); later ones are counted", exc)
            return
        frame = Decoded(pcm, encoded.timestamp * SAMPLE_RATE // RTP_CLOCK)
        sink = self._sink or self._find_sink()
        if sink is not None:
            try:
                sink(frame)
                self.direct += 1
                return
            except Exception:
                # Raised inside aiortc's packet handling, it would end the peer's transport: the
                # consumer hears of it through its track instead, where this frame goes now.
                log.exception("a frame sink failed; frames go through the track from now on")
                self._track = None
                self._sink = None
        self.queued += 1
        self._out.put_nowait(frame)

    def _find_sink(self) -> Sink | None:
        track = self._track() if self._track is not None else None
        found = _sinks.get(track) if track is not None else None
        # Kept strongly from here on: a cycle through the peer, no root, collected with it.
        self._sink = found() if found is not None else None
        return self._sink


def decode_inline(receiver: RTCRtpReceiver) -> None:
    """From when ``receiver`` starts (aiortc starts it once the peer connects), its Opus frames
    are decoded on the event loop at 16 kHz mono instead of on its thread at 48 kHz stereo, and
    its transport's RTP packets are handled as they arrive (rtp_inline.py)."""
    original = receiver.receive

    async def receive(parameters: Any) -> None:
        await original(parameters)
        handle_rtp_inline(receiver.transport)  # its packets too, without the DTLS task's queue
        current = getattr(receiver, QUEUE_ATTRIBUTE, None)
        track_queue = getattr(receiver.track, "_queue", None)
        lib = libopus()
        if isinstance(current, queue.Queue) and isinstance(track_queue, asyncio.Queue) and lib is not None:
            setattr(receiver, QUEUE_ATTRIBUTE, InlineOpus(current, track_queue, lib, receiver.track))
        else:
            log.warning("aiortc's receiver or libopus is not as expected: aiortc's thread decodes the audio")

    receiver.receive = receive  # type: ignore[method-assign]
