"""Speaker turns on one microphone: who said each final, and where a final changes voice.

While the VAD hears speech, the voiced audio is cut into windows (0.8 s every 0.4 s, the
embedding model's own) that are embedded as they fill, so that by the time a final arrives
almost all of its windows are known: the final waits at most ``hold`` seconds (0.3) for the
last ones, and is labelled with what has come by then.

A final is cut where its voice changes: at word boundaries where the mean embedding of the
windows just before and just after (``context`` seconds each side) differ (cosine below
``change``), most different first, ``min_turn`` seconds apart; each piece then goes to the
clusterer (pipeline/clusterer.py) as one stretch, and neighbouring pieces given the same voice
are joined again. So every caption has exactly one speaker. A partial shows the voice its
embedded windows are closest to, else the previous turn's: the final corrects it.

Pure logic: VAD frames and embeddings in, embedding requests and labelled captions out; the
caption session (pipeline/session.py) runs the requests and holds finals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.clusterer import VoiceClusterer, unit
from pipeline.text import join_words
from pipeline.types import SAMPLE_RATE, Caption, EmbedRequest, Word
from pipeline.vad import VadFrame

# Cut pieces of a final need segment numbers the policy never gives out.
SPLIT_SEGMENTS = 1 << 40


@dataclass(frozen=True)
class TurnOptions:
    """Where turns change.

    window, stride: seconds of audio per embedding and between two (the model's: 0.815, 0.4).
    change: cosine between the two sides of a candidate cut below which the voice changed
        (through WebRTC's Opus a true change scored 0.58 and no boundary inside one voice
        under 0.68, on the integration test's recording; 0.55 before that was seen).
    min_turn: seconds of voice each side of a cut needs (shorter turns follow their neighbours).
    context: seconds of windows each side of a candidate cut that are compared.
    hold: the longest a final waits for its windows' embeddings.
    kept: seconds of windows kept behind the newest (finals never look further back).
    """

    window: float = 0.815
    stride: float = 0.4
    change: float = 0.62
    min_turn: float = 1.0
    context: float = 2.0
    hold: float = 0.3
    kept: float = 60.0
    learn_seconds: float = 30.0


@dataclass(frozen=True)
class WindowRequest:
    """One window of voiced audio to embed; ``start`` is its first stream sample."""

    start: int
    request: EmbedRequest


@dataclass
class _Window:
    start: float
    end: float
    vector: np.ndarray

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


@dataclass
class SpeakerTurns:
    """One session's speaker turns: feed it VAD frames, embeddings and captions."""

    clusterer: VoiceClusterer = field(default_factory=VoiceClusterer)
    options: TurnOptions = field(default_factory=TurnOptions)
    # Learn only (a speaker's own named microphone): embed up to ``learn_seconds`` of voice
    # for the room to recognise it elsewhere, and label nothing.
    learning: bool = False
    _learnt: list[np.ndarray] = field(default_factory=list)
    _pos: int = 0
    _run: list[np.ndarray] = field(default_factory=list)
    _run_start: int = 0  # stream sample of _run's first sample
    _run_len: int = 0
    _next: int = 0  # stream sample where the next window starts
    _last_end: int = 0  # end of the last window asked for
    pending: set[int] = field(default_factory=set)  # window starts asked for, not yet answered
    _windows: list[_Window] = field(default_factory=list)
    previous: str | None = None
    _splits: int = 0
    late: int = 0  # finals labelled before all their windows were embedded (the hold ran out)

    @property
    def _w(self) -> int:
        return int(round(self.options.window * SAMPLE_RATE))

    @property
    def _s(self) -> int:
        return int(round(self.options.stride * SAMPLE_RATE))

    # -- audio ----------------------------------------------------------------------------

    def on_frames(self, frames: list[VadFrame]) -> list[WindowRequest]:
        """The VAD's frames, in stream order: the windows that filled and are to be embedded."""
        out: list[WindowRequest] = []
        if self.learning and self.learnt_seconds() >= self.options.learn_seconds:
            return out
        for frame in frames:
            self._pos += len(frame.samples)
            if frame.started is not None:
                self._close_run(out)
                self._run = [frame.started]
                self._run_len = len(frame.started)
                self._run_start = self._pos - self._run_len
                self._next = self._run_start
            elif self._run_len and (frame.speaking or frame.ended):
                self._run.append(frame.samples)
                self._run_len += len(frame.samples)
            else:
                continue
            self._fill(out)
            if frame.ended:
                self._close_run(out)
        return out

    def _audio(self, start: int, end: int) -> np.ndarray:
        run = np.concatenate(self._run) if len(self._run) > 1 else self._run[0]
        self._run = [run]
        return run[start - self._run_start : end - self._run_start]

    def _fill(self, out: list[WindowRequest]) -> None:
        end = self._run_start + self._run_len
        while self._next + self._w <= end:
            out.append(self._ask(self._next))
            self._next += self._s
        # Audio before the next window is no longer needed, but for a run's last window.
        drop = min(self._next, end - self._w) - self._run_start
        if drop > 0 and self._run:
            run = np.concatenate(self._run)[drop:]
            self._run, self._run_start, self._run_len = [run], self._run_start + drop, len(run)

    def _ask(self, start: int) -> WindowRequest:
        self.pending.add(start)
        self._last_end = start + self._w
        return WindowRequest(start, EmbedRequest(self._audio(start, start + self._w).copy()))

    def flush(self) -> list[WindowRequest]:
        """End of the stream: the last window of a run still open."""
        out: list[WindowRequest] = []
        self._close_run(out)
        return out

    def _close_run(self, out: list[WindowRequest]) -> None:
        """A speaking run ends: a last window flush with its end covers its tail."""
        end = self._run_start + self._run_len
        if self._run_len and end - self._last_end > self._s // 2:
            start = end - self._w
            if start >= self._run_start:
                out.append(self._ask(start))
        self._run, self._run_len = [], 0

    def on_embeddings(self, start: int, vectors: np.ndarray, step: float, span: float) -> None:
        """The answer for the window asked at ``start`` (or a failure: no vectors)."""
        self.pending.discard(start)
        if self.learning:
            self._learnt.extend(unit(v) for v in vectors)
            return
        t = start / SAMPLE_RATE
        for i, v in enumerate(vectors):
            self._windows.append(_Window(t + i * step, t + i * step + span, unit(v)))
        newest = max((w.end for w in self._windows), default=0.0)
        self._windows = [w for w in self._windows if w.end >= newest - self.options.kept]

    def ready(self, until: float) -> bool:
        """Whether every window that starts before ``until`` (stream seconds) is answered."""
        return not any(s / SAMPLE_RATE < until for s in self.pending)

    def learnt_seconds(self) -> float:
        return len(self._learnt) * self.options.stride

    def voiceprint(self) -> np.ndarray | None:
        """The mean of the windows learnt (a named microphone's voice), or None."""
        return unit(np.mean(self._learnt, axis=0)) if self._learnt else None

    # -- captions -------------------------------------------------------------------------

    def _inside(self, start: float, end: float) -> list[_Window]:
        return sorted((w for w in self._windows if start <= w.centre <= end), key=lambda w: w.start)

    def partial(self, caption: Caption) -> Caption:
        """A partial's label: the voice its recent windows are closest to, else the last turn's."""
        windows = self._inside(caption.start - 0.2, caption.end + 0.2)[-4:]
        label = None
        if len(windows) >= 2:
            label = self.clusterer.peek(np.mean([w.vector for w in windows], axis=0))
        return replace(caption, speaker=label or self.previous)

    def final(self, caption: Caption) -> list[Caption]:
        """A final as one caption per speaker turn, each with its label."""
        if not self.ready(caption.end):
            self.late += 1
        words = list(caption.words)
        windows = self._inside(caption.start - 0.2, caption.end + 0.2)
        if not windows or not words:
            label = self._label(windows)
            return [replace(caption, speaker=label)]
        cuts = self._cuts(words, windows, 0, len(words))
        pieces = [(a, b) for a, b in zip([0, *cuts], [*cuts, len(words)], strict=True)]
        labelled: list[tuple[str | None, list[Word]]] = []
        for a, b in pieces:
            part = words[a:b]
            label = self._label(self._inside(part[0].start - 0.2, part[-1].end + 0.2) if part else [])
            if labelled and labelled[-1][0] == label:
                labelled[-1][1].extend(part)
            else:
                labelled.append((label, list(part)))
        out = []
        for i, (label, part) in enumerate(labelled):
            segment = caption.segment if i == 0 else self._split_segment()
            out.append(
                replace(
                    caption,
                    segment=segment,
                    text=join_words(part),
                    start=part[0].start,
                    end=part[-1].end,
                    words=tuple(part),
                    speaker=label,
                )
            )
        return out

    def _split_segment(self) -> int:
        self._splits += 1
        return SPLIT_SEGMENTS + self._splits

    def _label(self, windows: list[_Window]) -> str | None:
        if not windows:
            return self.previous
        seconds = max(0.0, windows[-1].end - windows[0].start)
        label = self.clusterer.assign(np.mean([w.vector for w in windows], axis=0), seconds, self.previous)
        self.previous = label
        return label

    def _cuts(self, words: list[Word], windows: list[_Window], a: int, b: int) -> list[int]:
        """Word indexes in ``(a, b)`` where the voice changes: at each word boundary, the mean
        of the windows wholly before it (up to ``context`` seconds) against those wholly after;
        the most different boundaries under ``change`` win, ``min_turn`` apart. Local means,
        not whole sides: a final of three turns has a middle that looks like neither end."""
        o = self.options
        scored: list[tuple[float, int]] = []
        for k in range(a + 1, b):
            at = (words[k - 1].end + words[k].start) / 2
            if at - words[a].start < o.min_turn or words[b - 1].end - at < o.min_turn:
                continue
            left = [w.vector for w in windows if at - o.context <= w.start and w.end <= at + 0.1]
            right = [w.vector for w in windows if at - 0.1 <= w.start and w.end <= at + o.context]
            if not left or not right:
                continue
            scored.append((float(unit(np.mean(left, axis=0)) @ unit(np.mean(right, axis=0))), k))
        # Only a boundary more different than both its neighbours: next to a change, the
        # windows of a boundary one word off mix both voices and score low too.
        local = {k: v for v, k in scored}
        minima = [(v, k) for v, k in scored if v <= local.get(k - 1, 2.0) and v <= local.get(k + 1, 2.0)]
        cuts: list[int] = []
        for score, k in sorted(minima):
            if score >= o.change:
                break
            at = words[k].start
            # Two changes need a turn between them: time, and a window of its own voice.
            if all(
                abs(at - words[c].start) >= o.min_turn and self._heard_between(windows, at, words[c].start)
                for c in cuts
            ):
                cuts.append(k)
        return sorted(cuts)

    @staticmethod
    def _heard_between(windows: list[_Window], a: float, b: float) -> bool:
        lo, hi = min(a, b), max(a, b)
        return any(lo - 0.1 <= w.start and w.end <= hi + 0.1 for w in windows)
