"""Opus decoded on the event loop at 16 kHz mono (server/media/inline_audio.py): the same speech
as aiortc's 48 kHz decode resampled, timed in 16 kHz samples, and installed in the receiver of
the pinned aiortc (this fails when an upgrade moves what it reaches into)."""

from __future__ import annotations

import asyncio
import queue
from types import SimpleNamespace

import av
import numpy as np
from aiortc import RTCRtpReceiver
from aiortc.codecs.opus import OpusDecoder
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from bench.corpus import LIBRIVOX
from pipeline.audio import Resampler, read_audio
from server.media.inline_audio import QUEUE_ATTRIBUTE, Decoded, InlineOpus, decode_inline, libopus


def opus_packets(samples: np.ndarray) -> list[tuple[bytes, int]]:
    """16 kHz int16 speech as 20 ms Opus packets (48 kHz RTP timestamps), as a browser sends."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 48_000, "mono", "s16"
    codec.bit_rate = 32_000
    up = av.AudioResampler(format="s16", layout="mono", rate=48_000, frame_size=960)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 16_000
    packets = []
    for chunk in [*up.resample(frame), *up.resample(None), None]:
        packets += [bytes(p) for p in codec.encode(chunk)]
    return [(data, 960 * i) for i, data in enumerate(packets)]  # 20 ms apart on the 48 kHz clock


def test_opus_decoded_at_16_khz_is_the_speech_aiortc_decodes_and_resamples() -> None:
    speech = read_audio(str(LIBRIVOX[1].path))[: 3 * 16_000]
    packets = opus_packets(speech)
    out: asyncio.Queue[Decoded] = asyncio.Queue()
    lib = libopus()
    assert lib is not None
    inline = InlineOpus(queue.Queue(), out, lib)
    theirs, resampler_48 = OpusDecoder(), Resampler()
    mine_pcm, their_pcm, pts = [], [], []
    for data, timestamp in packets:
        encoded = SimpleNamespace(data=data, timestamp=timestamp)
        inline.put((SimpleNamespace(mimeType="audio/opus"), encoded))
        while not out.empty():
            frame = out.get_nowait()
            assert frame.sample_rate == 16_000 and frame.pcm.dtype == np.int16
            pts.append(frame.pts)
            mine_pcm.append(frame.pcm)
        for frame in theirs.decode(encoded):  # type: ignore[arg-type]
            their_pcm.append(resampler_48.convert(frame))
    mine, their = np.concatenate(mine_pcm).astype(float), np.concatenate(their_pcm).astype(float)
    n = min(len(mine), len(their))
    # Two decoders of one stream: not sample-exact (one resamples, the other decodes at 16 kHz),
    # the same speech within a few samples' delay.
    lag = max(range(-40, 41), key=lambda k: np.dot(mine[100 : n - 100], np.roll(their, k)[100 : n - 100]))
    aligned = np.roll(their, lag)[:n]
    error = np.linalg.norm(mine[:n] - aligned) / np.linalg.norm(aligned)
    assert error < 0.25, error
    assert pts == sorted(pts) and pts[1] - pts[0] == 320  # 20 ms in 16 kHz samples: gaps stay right
    assert inline.failed == 0


async def test_a_started_receiver_decodes_inline_and_its_thread_still_ends_the_track() -> None:
    transport = SimpleNamespace(state="new")
    receiver = RTCRtpReceiver("audio", transport)  # type: ignore[arg-type]
    receiver._track = RemoteStreamTrack("audio")  # noqa: SLF001 - as the peer connection sets it
    original = getattr(receiver, QUEUE_ATTRIBUTE)
    assert isinstance(original, queue.Queue)  # aiortc still keeps its decoder queue here
    started: list[object] = []

    async def receive(parameters: object) -> None:  # aiortc's own: starts the thread and RTCP
        started.append(parameters)

    receiver.receive = receive  # type: ignore[method-assign]
    decode_inline(receiver)
    await receiver.receive("parameters")
    inline = getattr(receiver, QUEUE_ATTRIBUTE)
    assert started == ["parameters"] and isinstance(inline, InlineOpus)
    inline.put(None)  # the receiver stopping: its thread hears it on its own queue
    assert original.get_nowait() is None
