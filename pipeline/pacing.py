"""When each spoken sentence of a voice-over starts, how fast it is spoken, and which are dropped.

A room's voice speaks its finals one after another, in the order their captions were shown.
Speech can take longer than the speaker did (a translation runs longer than its source, a
synthetic voice is slower than a fast talker), so a voice would fall further behind with every
sentence. Three rules keep it in step, all decided here without I/O, with time passed in:

1. **Speed up.** A sentence is synthesised at a speed chosen from how late it would start
   (``speed_for``): 1.0 up to ``speed_from`` seconds of lag, rising linearly to ``max_speed``
   at ``max_lag``. 1.3 at most: Whisper base reads espeak-ng's Spanish back about as well at
   1.25x as at 1.0x, and 1.35x cost words in one of two runs (bench/results/voice.md).
2. **Drop the oldest.** A sentence that cannot start within ``max_lag`` seconds of its
   caption is dropped unstarted, oldest first, and reported (``Drop``), so the delay of what
   is spoken never grows past the bound: late is acceptable, an ever-growing delay is not.
3. **Silence between.** Sentences never overlap; ``gap`` seconds of silence separate them.

Invariants (tests/unit/test_pacing.py checks them with Hypothesis): every expected sentence
ends in exactly one ``Start`` or ``Drop``; starts keep the order sentences were expected in;
a start is at most ``max_lag`` after its caption; a start is never before the previous
sentence's end plus the gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PacingOptions:
    """How a voice keeps up.

    max_lag: seconds after its caption within which a sentence must start, or it is dropped.
    speed_from: lag (seconds) under which sentences are spoken at normal speed.
    max_speed: the fastest a sentence is spoken when far behind.
    gap: seconds of silence between two sentences.
    chars_per_second: what a voice says at speed 1, to estimate the length of sentences still
        being synthesised (espeak-ng and Piper both speak about 14-16 characters a second).
    """

    max_lag: float = 4.0
    speed_from: float = 0.5
    max_speed: float = 1.3
    gap: float = 0.2
    chars_per_second: float = 15.0


@dataclass(frozen=True)
class Start:
    """Start sentence ``key`` at ``at``; ``late``: seconds after its caption was shown."""

    key: int
    at: float
    late: float


@dataclass(frozen=True)
class Drop:
    """Sentence ``key`` will not be spoken: ``late`` (it could not start within ``max_lag``)
    or ``failed`` (its synthesis failed)."""

    key: int
    reason: Literal["late", "failed"]


Event = Start | Drop


def speed_for(lag: float, options: PacingOptions) -> float:
    """The speed to synthesise a sentence at that would start ``lag`` seconds after its caption."""
    span = max(options.max_lag - options.speed_from, 1e-9)
    share = min(max((lag - options.speed_from) / span, 0.0), 1.0)
    return round(1.0 + (options.max_speed - 1.0) * share, 3)


@dataclass
class _Line:
    key: int
    shown_at: float
    chars: int
    speed: float
    duration: float | None = None
    failed: bool = False

    def estimate(self, options: PacingOptions) -> float:
        if self.duration is not None:
            return self.duration
        return self.chars / options.chars_per_second / self.speed


class Pacer:
    """One voice's queue of sentences: expected (being synthesised), ready, started or dropped."""

    def __init__(self, options: PacingOptions | None = None) -> None:
        self.options = options or PacingOptions()
        self._queue: deque[_Line] = deque()
        self._keys: set[int] = set()
        self.free_at = float("-inf")  # when the sentence now playing, and its gap, are over

    def __len__(self) -> int:
        return len(self._queue)

    def lag(self, now: float) -> float:
        """How late a sentence whose caption is shown ``now`` would start, by current estimates."""
        start = max(now, self.free_at)
        for line in self._queue:
            if line.failed:
                continue
            # A sentence that will be dropped as late by then takes no time of its own.
            if start - line.shown_at <= self.options.max_lag:
                start += line.estimate(self.options) + self.options.gap
        return start - now

    def expect(self, key: int, shown_at: float, chars: int, now: float) -> float:
        """A sentence whose caption was shown at ``shown_at`` is being synthesised; returns the
        speed to synthesise it at. Sentences are spoken in the order they are expected."""
        if key in self._keys:
            raise ValueError(f"sentence {key} is already expected")
        speed = self.speed(shown_at, now)
        self._queue.append(_Line(key, shown_at, max(chars, 1), speed))
        self._keys.add(key)
        return speed

    def speed(self, shown_at: float, now: float) -> float:
        """The speed for a sentence shown at ``shown_at``, were it expected ``now``."""
        return speed_for(self.lag(now) + (now - shown_at), self.options)

    def ready(self, key: int, duration: float) -> bool:
        """Its audio is here, ``duration`` seconds long. False if it is no longer waited for."""
        line = self._find(key)
        if line is None:
            return False
        line.duration = max(duration, 0.0)
        return True

    def fail(self, key: int) -> None:
        line = self._find(key)
        if line is not None:
            line.failed = True

    def _find(self, key: int) -> _Line | None:
        return next((line for line in self._queue if line.key == key), None) if key in self._keys else None

    def poll(self, now: float) -> list[Event]:
        """What happens at ``now``: drops of sentences that can no longer start in time or
        failed, and at most one start (while nothing plays)."""
        events: list[Event] = []
        if now < self.free_at:
            return events
        while self._queue:
            head = self._queue[0]
            if head.failed:
                events.append(self._pop_drop("failed"))
                continue
            if now - head.shown_at > self.options.max_lag:
                events.append(self._pop_drop("late"))
                continue
            if head.duration is None:
                break  # still being synthesised: the ones after it wait, in order
            self._queue.popleft()
            self._keys.discard(head.key)
            self.free_at = now + head.duration + self.options.gap
            events.append(Start(head.key, now, now - head.shown_at))
            break
        return events

    def _pop_drop(self, reason: Literal["late", "failed"]) -> Drop:
        line = self._queue.popleft()
        self._keys.discard(line.key)
        return Drop(line.key, reason)

    def next_due(self, now: float) -> float | None:
        """Seconds until ``poll`` may have something to do, or None while nothing is queued."""
        if not self._queue:
            return None
        head = self._queue[0]
        if head.failed or now - head.shown_at > self.options.max_lag:
            return max(self.free_at - now, 0.0)
        waits = [self.free_at - now]
        if head.duration is None:
            waits.append(head.shown_at + self.options.max_lag - now)
        return max(min(waits) if head.duration is None else waits[0], 0.0)
