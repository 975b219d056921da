"""One language's voice-over of a room as a timeline of 20 ms audio frames on the wall clock.

Every listener of the voice (a viewer's audio track, a WHEP player) reads the same timeline:
frame ``k`` covers ``[t0 + k * 0.02, t0 + (k + 1) * 0.02)`` of wall-clock time, rendered once
and kept a moment for listeners reading it a little later. So all of them hear the same words
at the same time, and nothing drifts: the timeline is tied to the clock, not to how many
frames a listener has taken. Which sentence plays when is the ``Pacer``'s decision; this
module turns its ``Start`` events into samples: each sentence resampled to 48 kHz with a few
milliseconds of fade at both ends (no click where speech meets silence), silence between.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.pacing import Drop, Event, Pacer, PacingOptions, Start

RATE = 48_000
FRAME = 960  # 20 ms at 48 kHz: one Opus frame
FRAME_SECONDS = FRAME / RATE
FADE = 96  # 2 ms: below what is heard as a fade, enough to remove the step of a cut waveform
KEPT_FRAMES = 100  # 2 s: how far behind the newest frame a listener may read
CATCH_UP_FRAMES = 50  # beyond this many unrendered frames, jump to now instead of rendering each


def to_48k(pcm: np.ndarray, rate: int) -> np.ndarray:
    """int16 mono at ``rate`` to int16 mono at 48 kHz (libswresample when PyAV is there)."""
    if rate == RATE or pcm.size == 0:
        return pcm.astype(np.int16, copy=False)
    try:
        import av
    except ImportError:  # a bare benchmark host: linear interpolation is enough to measure
        positions = np.arange(math.ceil(pcm.size * RATE / rate)) * (rate / RATE)
        return np.interp(positions, np.arange(pcm.size), pcm.astype(np.float32)).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(pcm.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


def faded(pcm: np.ndarray) -> np.ndarray:
    """The sentence with short linear fades in and out, so it starts and ends at zero."""
    out = pcm.astype(np.float32)
    n = min(FADE, out.size // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class Spoken:
    """What the timeline reports as it plays: a ``Start`` or ``Drop`` of the pacer, with the
    sentence's language and (for starts) how long it lasts."""

    lang: str
    event: Event
    duration: float = 0.0


class VoiceLine:
    """A language's voice: sentences in, 20 ms frames out, paced by a ``Pacer``."""

    def __init__(
        self,
        lang: str,
        options: PacingOptions | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[Spoken], None] | None = None,
    ) -> None:
        self.lang = lang
        self.pacer = Pacer(options)
        self.clock = clock
        self.on_event = on_event
        self.t0 = clock()
        self._audio: dict[int, np.ndarray] = {}
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._rendered = self.index(self.t0) - 1
        self._current: np.ndarray | None = None
        self._pos = 0
        self.listeners = 0  # tracks reading this voice now (the media side counts them)

    def index(self, now: float) -> int:
        """The frame that plays at ``now``."""
        return math.floor((now - self.t0) / FRAME_SECONDS + 1e-6)  # 1e-6: float sums of 0.02

    def at(self, index: int) -> float:
        return self.t0 + index * FRAME_SECONDS

    # -- sentences ------------------------------------------------------------------------

    def expect(self, key: int, shown_at: float, chars: int) -> float:
        """A sentence of ``chars`` characters shown at ``shown_at`` is on its way; returns the
        speed to speak it at (ValueError if ``key`` is expected already)."""
        now = self.clock()
        self.advance(now)
        return self.pacer.expect(key, shown_at, chars, now)

    def speed(self, shown_at: float) -> float:
        """The speed a sentence shown at ``shown_at`` would be spoken at, were it expected now."""
        now = self.clock()
        self.advance(now)
        return self.pacer.speed(shown_at, now)

    def deliver(self, key: int, pcm: np.ndarray, rate: int) -> None:
        """Its audio (int16 mono at ``rate``) arrived."""
        audio = faded(to_48k(pcm, rate))
        if self.pacer.ready(key, audio.size / RATE):
            self._audio[key] = audio

    def fail(self, key: int) -> None:
        self.pacer.fail(key)

    # -- frames ---------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Render up to the frame playing at ``now`` (no listener need be reading)."""
        self.frame(self.index(now))

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as 960 int16 samples; rendered on first ask, shared by every reader.
        A frame older than what is kept is silence (that reader fell too far behind)."""
        if index - self._rendered > CATCH_UP_FRAMES:
            self._rendered = index - 1  # nobody read for a while: what played unheard is skipped
            self._current = None
        while self._rendered < index:
            self._rendered += 1
            self._frames[self._rendered] = self._render(self._rendered)
            while len(self._frames) > KEPT_FRAMES:
                self._frames.popitem(last=False)
        kept = self._frames.get(index)
        return kept if kept is not None else np.zeros(FRAME, np.int16)

    def _render(self, index: int) -> np.ndarray:
        out = np.zeros(FRAME, np.int16)
        if self._current is None:
            self._begin(self.at(index))
        if self._current is not None:
            part = self._current[self._pos : self._pos + FRAME]
            out[: part.size] = part
            self._pos += part.size
            if self._pos >= self._current.size:
                self._current = None
        return out

    def _begin(self, now: float) -> None:
        for event in self.pacer.poll(now):
            duration = 0.0
            if isinstance(event, Start):
                self._current = self._audio.pop(event.key, None)
                self._pos = 0
                duration = 0.0 if self._current is None else self._current.size / RATE
            elif isinstance(event, Drop):
                self._audio.pop(event.key, None)
            if self.on_event is not None:
                self.on_event(Spoken(self.lang, event, duration))
