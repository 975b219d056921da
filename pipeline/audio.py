"""Audio conversion: the one module that imports PyAV.

WebRTC hands us 48 kHz Opus decoded to s16 frames, often stereo; Whisper and webrtcvad want
16 kHz mono. PyAV's resampler (libswresample) does the work. PyAV is imported where media is
decoded, not with this module: a benchmark host (a bare CUDA box) runs without it.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pipeline.types import SAMPLE_RATE

if TYPE_CHECKING:
    import av


class Resampler:
    """Turns any PyAV audio frame into 16 kHz mono int16 samples, keeping filter state."""

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        import av

        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)

    def flush(self) -> np.ndarray:
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, dtype=np.int16)


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def read_audio(path: str, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any file PyAV can open to mono int16 at ``rate``."""
    import av

    resampler = Resampler(rate)
    parts: list[np.ndarray] = []
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            parts.append(resampler.convert(frame))
    parts.append(resampler.flush())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class GapTracker:
    """Counts the samples lost between frames (from their pts), so stream time stays media time.

    WebRTC drops packets and senders pause; feeding silence for the gap keeps caption times in
    line with the audio instead of drifting earlier with every loss.
    """

    def __init__(self, max_gap: float = 2.0) -> None:
        self._next_pts: int | None = None
        self._max_gap = max_gap

    def gap(self, pts: int | None, samples: int, sample_rate: int, rate: int = SAMPLE_RATE) -> int:
        """Samples at ``rate`` missing before a frame at ``pts`` (in 1/sample_rate units)."""
        if pts is None:
            return 0
        missing = 0 if self._next_pts is None else pts - self._next_pts
        self._next_pts = pts + samples
        if missing <= 0:
            return 0
        return int(min(missing / sample_rate, self._max_gap) * rate)


class AudioFileError(ValueError):
    """A file that is not audio this server can hear, or too long: ``code`` says which
    (``not_audio``, ``no_audio``, ``too_long``) for the caller's error answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def decode_file(path: str, max_seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any file PyAV decodes, as mono int16 at ``rate``, refused (``AudioFileError``) when it is
    not audio or lasts more than ``max_seconds``: by the duration its container declares before
    anything is decoded, and by the samples decoded, for containers that declare none or lie."""
    import av

    limit = int(max_seconds * rate)
    resampler = Resampler(rate)
    parts: list[np.ndarray] = []
    total = 0
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioFileError("no_audio", "the file has no audio track")
            stream = container.streams.audio[0]
            declared = container.duration / 1_000_000 if container.duration else 0.0
            if stream.duration and stream.time_base:
                declared = max(declared, float(stream.duration * stream.time_base))
            if declared > max_seconds:
                raise AudioFileError(
                    "too_long", f"the audio lasts {declared:.0f} s, over {max_seconds:.0f} s"
                )
            for frame in container.decode(stream):
                chunk = resampler.convert(frame)
                total += len(chunk)
                if total > limit:
                    raise AudioFileError("too_long", f"the audio lasts over {max_seconds:.0f} s")
                parts.append(chunk)
        parts.append(resampler.flush())
    except AudioFileError:
        raise
    except (av.FFmpegError, ValueError, IndexError) as exc:
        raise AudioFileError("not_audio", "the file could not be decoded as audio") from exc
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
    if not len(audio):
        raise AudioFileError("no_audio", "the file holds no audio samples")
    return audio


class PcmStream:
    """Raw little-endian int16 PCM (``channels`` interleaved, at ``rate``) as it arrives in
    pieces, to 16 kHz mono int16 through libswresample, whose filter state carries across pieces."""

    def __init__(self, rate: int, channels: int = 1) -> None:
        if not 8000 <= rate <= 192_000 or not 1 <= channels <= 8:
            raise ValueError("PCM of 8-192 kHz and 1-8 channels")
        self.rate, self.channels = rate, channels
        self._resampler = Resampler()
        self._rest = b""
        self._pts = 0

    def convert(self, data: bytes) -> np.ndarray:
        import av

        data = self._rest + data
        whole = len(data) - len(data) % (2 * self.channels)
        self._rest = data[whole:]
        if not whole:
            return np.zeros(0, dtype=np.int16)
        samples = np.frombuffer(data[:whole], dtype="<i2")
        if self.channels > 2:  # libswresample's layouts by count are ambiguous past stereo: mix here
            samples = samples.reshape(-1, self.channels).mean(axis=1).astype("<i2")
        channels = min(self.channels, 2)
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout="stereo" if channels == 2 else "mono"
        )
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(samples) // channels
        return self._resampler.convert(frame)

    def flush(self) -> np.ndarray:
        return self._resampler.flush()


def pcm_to_mono(data: bytes, rate: int, channels: int) -> np.ndarray:
    """A whole raw PCM recording as 16 kHz mono int16 (``PcmStream`` in one piece)."""
    stream = PcmStream(rate, channels)
    return np.concatenate([stream.convert(data), stream.flush()])


class ContainerStream:
    """Containerised audio (Ogg Opus, WebM, WAV, MP3, ...) that arrives in pieces, decoded by
    PyAV on a thread of its own, which reads the pieces as a file. ``deliver`` gets 16 kHz mono
    int16 samples and ``failed`` a message, both called from that thread."""

    def __init__(
        self,
        deliver: Callable[[np.ndarray], None],
        failed: Callable[[str], None],
        format: str | None = None,
    ) -> None:
        import threading

        self._closed = False
        self._pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=256)
        self._buffer = b""
        self._deliver, self._failed, self._format = deliver, failed, format
        self._thread = threading.Thread(target=self._run, name="container-stream", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        """Hand a piece over; never blocks: audio that arrives faster than the thread decodes it
        (256 pieces behind) is a failure, said through ``failed``."""
        if data and not self._closed:
            try:
                self._pieces.put_nowait(data)
            except queue.Full:
                self._closed = True
                self._failed("the audio arrives faster than it can be decoded")

    def close(self) -> None:
        """No more pieces: the thread decodes what it has and ends."""
        if not self._closed:
            self._closed = True
            self._pieces.put(None)  # the thread drains the queue, so this finds room

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def read(self, size: int = -1) -> bytes:
        """The file PyAV reads: blocks until a piece comes; b"" at the end."""
        while not self._buffer:
            piece = self._pieces.get()
            if piece is None:
                self._pieces.put(None)  # stays at the end for later reads
                return b""
            self._buffer = piece
        n = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _run(self) -> None:
        import av

        try:
            resampler = Resampler()
            with av.open(self, format=self._format, metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise ValueError("no audio track")
                for frame in container.decode(container.streams.audio[0]):
                    self._deliver(resampler.convert(frame))
            self._deliver(resampler.flush())
        except Exception as exc:  # noqa: BLE001 - whatever the bytes are, the socket says so and goes on
            self._failed(f"the audio could not be decoded ({type(exc).__name__})")
            while self._pieces.get() is not None:  # drain, so a feeder never blocks on a dead reader
                pass
