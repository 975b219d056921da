"""What ``nova-voice dictate`` sends: the microphone (PyAV's device input) or a file played in real
time, as one aiortc audio track per connection, paced by the clock, silent while muted."""

from __future__ import annotations

import asyncio
import fractions
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

RATE = 48_000
FRAME = 960  # 20 ms, one Opus packet
TIME_BASE = fractions.Fraction(1, RATE)
DEVICE_FORMATS = ("alsa", "pulse", "oss", "jack", "avfoundation", "dshow")
SYSTEM_ALSA = "/usr/share/alsa"
TAIL = 1.5  # seconds of silence after the last words, so the server's VAD ends that utterance


class AudioError(Exception):
    """A microphone or file that cannot be read; said in one line, exit code 2."""


def default_device() -> str:
    if sys.platform == "darwin":
        return "avfoundation::0"
    if sys.platform == "win32":
        return "dshow:audio=default"
    return "alsa:default"


def parse_device(spec: str) -> tuple[str, str]:
    """``FORMAT:NAME`` (``alsa:hw:1,0``, ``pulse:default``) or an ALSA name (``plughw:1``)."""
    fmt, sep, name = spec.partition(":")
    if sep and fmt in DEVICE_FORMATS:
        return fmt, name or "default"
    return "alsa", spec


def _use_system_alsa() -> None:
    """PyAV's wheels carry an alsa-lib that looks for its configuration where it was built; point
    it at the system's (unless the user already chose), or even ``default`` is unknown to it."""
    if os.path.exists(os.path.join(SYSTEM_ALSA, "alsa.conf")):
        os.environ.setdefault("ALSA_CONFIG_DIR", SYSTEM_ALSA)
        os.environ.setdefault("ALSA_CONFIG_PATH", os.path.join(SYSTEM_ALSA, "alsa.conf"))


def _samples(frames: Iterator[av.AudioFrame]) -> Iterator[np.ndarray]:
    """Any decoded audio as 48 kHz mono int16 chunks."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    for frame in frames:
        frame.pts = None  # device timestamps jump; the resampler needs none
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)


class FileSource:
    """A file PyAV decodes, read as fast as the track asks (so: in real time)."""

    live = False

    def __init__(self, path: str) -> None:
        try:
            self._container = av.open(path)
            if not self._container.streams.audio:
                raise AudioError(f"{path} has no audio stream")
        except (av.FFmpegError, OSError) as exc:
            raise AudioError(f"cannot play {path}: {exc}") from exc
        self._chunks = _samples(self._container.decode(audio=0))
        self._buffer = np.zeros(0, np.int16)
        self.ended = False

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` samples; fewer only once the file has ended."""
        while len(self._buffer) < n and not self.ended:
            try:
                self._buffer = np.concatenate([self._buffer, next(self._chunks)])
            except StopIteration:
                self.ended = True
            except av.FFmpegError as exc:
                raise AudioError(f"cannot decode the input: {exc}") from exc
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def close(self) -> None:
        self._container.close()


class DeviceSource:
    """A capture device, read by a thread of its own into a short queue (the device keeps time)."""

    live = True
    ended = False

    def __init__(self, spec: str) -> None:
        fmt, name = parse_device(spec)
        if fmt == "alsa":
            _use_system_alsa()
        try:
            self._container = av.open(name, format=fmt, options={"sample_rate": str(RATE), "channels": "1"})
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise AudioError(
                f"cannot open the microphone {name!r} ({fmt}): {exc}; choose one with --device "
                "(e.g. alsa:plughw:1,0) or play a file with --input"
            ) from exc
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=25)  # ~0.5 s at most behind
        self._buffer = np.zeros(0, np.int16)
        self._closed = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._capture, name="dictate-capture", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        try:
            for chunk in _samples(self._container.decode(audio=0)):
                while not self._closed.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._closed.is_set():
                    break
        except (av.FFmpegError, OSError) as exc:
            self.error = f"the microphone stopped: {exc}"
        finally:
            self.ended = True
            self._container.close()  # here: closing it under a read in progress is not safe

    def read(self, n: int) -> np.ndarray:
        """``n`` samples: what the device gave, then silence if it is late."""
        while len(self._buffer) < n:
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                break
            if chunk is not None:
                self._buffer = np.concatenate([self._buffer, chunk])
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        if self.ended and len(out) < n:
            return out  # the device is gone: the feed ends
        return np.pad(out, (0, n - len(out)))

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2.0)


Source = FileSource | DeviceSource


class Feed:
    """The audio every connection sends, shared across reconnects: a file resumes where it was.

    ``gate`` (push-to-talk) says when the microphone may be heard; ``mute()`` ends sending for
    good (Ctrl-C); once muted or once the file ended, ``tail_sent`` is set after ``TAIL`` seconds
    of silence, enough for the server's VAD to close the last utterance.
    """

    def __init__(self, source: Source, gate: object | None = None) -> None:
        self.source = source
        self.gate = gate
        self.muted = False
        self.silence_sent = 0.0
        self.ended = asyncio.Event()
        self.tail_sent = asyncio.Event()

    def talking(self) -> bool:
        return self.gate is None or bool(getattr(self.gate, "held", True))

    def mute(self) -> None:
        self.muted = True

    def next_samples(self) -> np.ndarray:
        if self.muted or self.ended.is_set():
            self.silence_sent += FRAME / RATE
            if self.silence_sent >= TAIL:
                self.tail_sent.set()
            return np.zeros(FRAME, np.int16)
        if not self.talking():
            if self.source.live:
                self.source.read(FRAME)  # heard while released: dropped, never sent later
            return np.zeros(FRAME, np.int16)
        samples = self.source.read(FRAME)
        if self.source.ended and len(samples) < FRAME:
            self.ended.set()
        return np.pad(samples, (0, FRAME - len(samples)))


class FeedTrack(MediaStreamTrack):
    """One connection's audio track: 20 ms frames of the feed, paced in real time."""

    kind = "audio"

    def __init__(self, feed: Feed) -> None:
        super().__init__()
        self.feed = feed
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self.feed.next_samples()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._pts, TIME_BASE
        return frame
