"""File jobs of the APIs: an upload spooled to disk within a size and a pace, decoded within a
duration, and transcribed at file priority (pipeline/filejob.py) within a deadline.

Limits, each a clear error in the asking API's shape, never a hung request: ``--max-file-mb``
(413 while the body arrives, or at once from its Content-Length), ``--max-file-duration`` (413,
by the container's declared duration before decoding, and by what is decoded), ``--max-file-jobs``
of the server at once (429 with Retry-After) and ``--max-file-jobs-per-key``, a body that stops
arriving for ``IDLE_S`` (408), and ``--file-timeout`` for the job (504; what was streamed stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from aiohttp import web

from pipeline.audio import AudioFileError, decode_file, pcm_to_mono
from pipeline.backend import InferenceBackend
from pipeline.filejob import FileJob, FileJobFailed, FileOptions, Segment
from pipeline.threads import lower_priority
from pipeline.types import SAMPLE_RATE
from server.api.keys import ApiRefused, Caller, KeyLimits
from server.metrics import Metrics
from server.settings import ConfigError, Settings

log = logging.getLogger(__name__)

KEEPALIVE_S = 10.0  # a long job's JSON answer sends a space this often, so no read timeout passes
IDLE_S = 30.0  # an upload that sends nothing for this long is answered 408
WRITE_BLOCK = 1 << 20  # bytes gathered before each write to disk (off the event loop)

Chunks = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class RawAudio:
    """A headerless PCM body (Deepgram's ``encoding=linear16&sample_rate=...``)."""

    rate: int
    channels: int = 1


async def spool(read: Chunks, folder: Path, max_bytes: int, declared: int | None = None) -> Path:
    """Write what ``read()`` returns (until it returns b"") to a new file in ``folder``, refusing
    more than ``max_bytes`` (413) and a body that stalls for ``IDLE_S`` (408). The caller
    removes the file (``discard``)."""
    if declared is not None and declared > max_bytes:
        raise ApiRefused(413, "file_too_large", f"the file is over {max_bytes // (1 << 20)} MB")
    fd, name = await asyncio.to_thread(_new_file, folder)
    path = Path(name)
    total = 0
    try:
        with os.fdopen(fd, "wb") as out:
            block = bytearray()
            while True:
                try:
                    async with asyncio.timeout(IDLE_S):
                        chunk = await read()
                except TimeoutError:
                    raise ApiRefused(
                        408, "upload_timeout", f"the upload stalled for {IDLE_S:.0f} s"
                    ) from None
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ApiRefused(413, "file_too_large", f"the file is over {max_bytes // (1 << 20)} MB")
                block += chunk
                if len(block) >= WRITE_BLOCK:
                    await asyncio.to_thread(out.write, bytes(block))
                    block.clear()
            if block:
                await asyncio.to_thread(out.write, bytes(block))
    except BaseException:
        discard(path)
        raise
    if total == 0:
        discard(path)
        raise ApiRefused(400, "empty_file", "the file is empty (0 bytes)")
    return path


def _new_file(folder: Path) -> tuple[int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=folder, prefix="upload-")


def discard(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def read_raw(path: Path, raw: RawAudio, max_seconds: float) -> np.ndarray:
    data = path.read_bytes()
    seconds = len(data) / (2 * raw.channels * raw.rate)
    if seconds > max_seconds:
        raise AudioFileError("too_long", f"the audio lasts {seconds:.0f} s, over {max_seconds:.0f} s")
    return pcm_to_mono(data, raw.rate, raw.channels)


class FileJobs:
    """The server's file jobs: admission, decoding, the job itself, and its counts."""

    def __init__(
        self, backend: InferenceBackend, settings: Settings, limits: KeyLimits, metrics: Metrics | None = None
    ) -> None:
        if not 2.0 <= settings.file_chunk <= 28.0:
            raise ConfigError("--file-chunk is 2 to 28 seconds (Whisper hears at most 30 s at once)")
        self.backend = backend
        self.metrics = metrics
        self.settings = settings
        self.limits = limits
        self.running = 0
        self.folder = settings.data_path / "uploads"
        # Decoding and the VAD of uploads run on low-priority threads: live sessions' audio
        # work (Opus decoding, their VAD) keeps the CPU first on a busy host.
        self.executor = ThreadPoolExecutor(2, thread_name_prefix="file-job", initializer=lower_priority)
        self.counts: dict[str, float] = {"jobs": 0, "failed": 0, "audio_seconds": 0.0, "run_seconds": 0.0}

    @property
    def max_bytes(self) -> int:
        return self.settings.max_file_mb << 20

    @contextlib.asynccontextmanager
    async def slot(self, caller: Caller) -> AsyncIterator[None]:
        """A job's place: within the server's and the caller's number of jobs at once."""
        if self.settings.max_file_jobs and self.running >= self.settings.max_file_jobs:
            raise ApiRefused(
                429,
                "server_busy",
                f"{self.settings.max_file_jobs} file jobs are running; try again shortly",
                10,
            )
        self.limits.hold(caller, "job")
        self.running += 1
        if self.metrics is not None:
            self.metrics.file_jobs_running.set(self.running)
        try:
            yield
        finally:
            self.running -= 1
            self.limits.release(caller, "job")
            if self.metrics is not None:
                self.metrics.file_jobs_running.set(self.running)

    async def decode(self, path: Path, raw: RawAudio | None = None) -> np.ndarray:
        """The upload as 16 kHz mono int16, or ApiRefused: 400 not audio, 413 too long."""
        limit = self.settings.max_file_duration
        try:
            loop = asyncio.get_running_loop()
            if raw is not None:
                return await loop.run_in_executor(self.executor, read_raw, path, raw, limit)
            return await loop.run_in_executor(self.executor, decode_file, str(path), limit)
        except AudioFileError as exc:
            if exc.code == "too_long":
                raise ApiRefused(
                    413, "audio_too_long", f"{exc}; this server takes at most {limit:.0f} s"
                ) from exc
            raise ApiRefused(400, "invalid_audio", f"{exc}: send audio in a format ffmpeg reads") from exc

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def options(self, base: FileOptions) -> FileOptions:
        """The server's chunk length; on a GPU four chunks in flight (width is nearly free there,
        and each chunk is still prompted with the text of the chunks finished before it), on a
        CPU one, which keeps the previous text as every chunk's prompt."""
        gpu = any("cuda" in d.device for d in self.backend.stats().devices)
        return replace(base, max_chunk=self.settings.file_chunk, window=4 if gpu else 1)

    async def transcribe(self, audio: np.ndarray, options: FileOptions) -> AsyncIterator[Segment]:
        """Segments as the job makes them, within ``--file-timeout``; ApiRefused when it fails."""
        job = FileJob(self.backend, self.options(options), executor=self.executor)
        started = time.perf_counter()
        self.counts["jobs"] += 1
        finished = False
        try:
            async with asyncio.timeout(self.settings.file_timeout):
                async for segment in job.run(audio):
                    yield segment
            finished = True
        except TimeoutError:
            raise ApiRefused(
                504,
                "job_timeout",
                f"the transcription did not finish within {self.settings.file_timeout:.0f} s",
            ) from None
        except FileJobFailed as exc:
            raise ApiRefused(503, "transcription_failed", str(exc), 5) from exc
        finally:
            if not finished:
                self.counts["failed"] += 1
            seconds = time.perf_counter() - started
            self.counts["audio_seconds"] += len(audio) / SAMPLE_RATE
            self.counts["run_seconds"] += seconds
            if self.metrics is not None:
                self.metrics.file_jobs.labels("done" if finished else "failed").inc()
                if finished:
                    self.metrics.file_audio_seconds.inc(len(audio) / SAMPLE_RATE)
            log.info(
                "file job: %.1f s of audio in %d chunks, %.1f s (%s)",
                len(audio) / SAMPLE_RATE, job.chunks, seconds, "done" if finished else "stopped",
            )  # fmt: skip


async def keepalive(response: web.StreamResponse, segments: AsyncIterator[Segment]) -> AsyncIterator[Segment]:
    """The segments, while a space goes out every ``KEEPALIVE_S`` that none comes (JSON allows
    leading white space, so the body that follows still parses)."""
    iterator = aiter(segments)
    pending: asyncio.Task[Segment] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                await response.write(b" ")
                continue
            try:
                segment = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield segment
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(BaseException):
            await iterator.aclose()  # type: ignore[attr-defined]


FILE_JOBS = web.AppKey("file_jobs", FileJobs)
