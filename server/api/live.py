"""A live API socket's captioning, shared by Deepgram's live ``/v1/listen`` and OpenAI's Realtime
transcription session: audio in pieces (raw PCM at any rate, or a container PyAV decodes), one
caption session on the server's streaming policy and scheduler, exactly as a WHIP publisher's,
and its partials and finals handed to the socket's own message shapes.

Stream time is the audio's own: seconds of samples received, so caption times line up with
what the client sent whatever the network did.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import numpy as np

from pipeline.audio import ContainerStream, PcmStream
from pipeline.backend import BackendUnavailable, SchedulerFull
from pipeline.session import CaptionSession, Event
from pipeline.types import SAMPLE_RATE
from pipeline.vocabulary import Vocabulary
from server.api.keys import ApiRefused
from server.state import AppState

log = logging.getLogger(__name__)

FINALISE_TIMEOUT = 15.0
MAX_TERMS = 100


class LiveAudio:
    """Turns the socket's binary messages into 16 kHz mono int16 for the session: raw PCM
    (``rate``, ``channels``) in place, anything else through a container decoder thread."""

    def __init__(
        self,
        push: Callable[[np.ndarray], None],
        failed: Callable[[str], None],
        rate: int | None = None,
        channels: int = 1,
        container: str | None = None,
    ) -> None:
        self._push = push
        self._pcm = PcmStream(rate, channels) if rate is not None else None
        self._container: ContainerStream | None = None
        self.samples = 0
        if self._pcm is None:
            loop = asyncio.get_running_loop()
            self._container = ContainerStream(
                lambda audio: loop.call_soon_threadsafe(self._take, audio),
                lambda message: loop.call_soon_threadsafe(failed, message),
                format=container,
            )

    def _take(self, audio: np.ndarray) -> None:
        if len(audio):
            self.samples += len(audio)
            self._push(audio)

    def feed(self, data: bytes) -> None:
        if self._pcm is not None:
            self._take(self._pcm.convert(data))
        elif self._container is not None:
            self._container.feed(data)

    def stop(self) -> None:
        """The socket is gone: the decoder thread ends without waiting for more."""
        if self._container is not None:
            self._container.close()

    async def end(self) -> None:
        """No more audio: the decoder's last samples are pushed before this returns."""
        if self._pcm is not None:
            self._take(self._pcm.flush())
        elif self._container is not None:
            self._container.close()
            await asyncio.to_thread(self._container.join, 10.0)
            await asyncio.sleep(0)  # the samples it handed over with call_soon_threadsafe

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE


def vocabulary(terms: list[str]) -> Vocabulary:
    """Keywords (Deepgram's ``word:boost``, OpenAI's keywords) as the room vocabulary is heard."""
    clean = []
    for term in terms[:MAX_TERMS]:
        word = term.rsplit(":", 1)[0] if ":" in term else term
        word = " ".join(word.split())[:64]
        if word and word.isprintable():
            clean.append(word)
    return Vocabulary(tuple(dict.fromkeys(clean)))


class LiveSession:
    """One socket's caption session: admitted on the backend, fed, finalised, closed once."""

    def __init__(
        self,
        state: AppState,
        on_event: Callable[[Event], None],
        spoken: str | None = None,
        end_silence_ms: int | None = None,
        terms: list[str] | None = None,
    ) -> None:
        self.state = state
        self.key = f"api-{uuid.uuid4().hex[:12]}"
        try:
            state.backend.open_session(self.key)
        except BackendUnavailable as exc:
            log.warning("live API session refused: inference unavailable: %s", exc)
            raise ApiRefused(503, "inference_unavailable", "captioning is unavailable right now", 5) from exc
        except SchedulerFull as exc:
            raise ApiRefused(503, "server_full", str(exc), 10) from exc
        policy = state.caption_policy(spoken, end_silence_ms)
        if terms:
            policy.vocabulary = vocabulary(terms)
        self.session = CaptionSession(self.key, policy, state.backend, on_event, state.metrics.voice_account)
        self._closed = False

    @property
    def end_silence(self) -> float:
        return self.session.policy.vad.options.end_silence_ms / 1000

    def push(self, samples: np.ndarray) -> None:
        self.session.push(samples)

    def pause(self) -> None:
        """Close the utterance in progress now, as if the speaker stopped (Deepgram's
        ``Finalize``, OpenAI's ``commit``): silence long enough for the VAD and the sentence
        wait, which also moves stream time on by that much."""
        options = self.state.settings
        seconds = options.end_silence_ms / 1000 + options.sentence_wait_ms / 1000 + 0.3
        self.session.push(np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16))

    async def close(self) -> None:
        """The last words become finals (and are handed over) before this returns."""
        if self._closed:
            return
        self._closed = True
        await self.session.close(FINALISE_TIMEOUT)

    async def abort(self) -> None:
        if not self._closed:
            self._closed = True
            await self.session.abort()
