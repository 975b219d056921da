"""Where every voiced second went: the accounting behind "nothing said is ever lost".

The caption policy reports each voiced frame the VAD passed into an utterance, and each span
of stream time that a final closed or that was dropped on purpose (noise, a session shed). A
voiced sample that falls behind the policy's horizon (the start of the oldest audio that may
still become a final) without being inside one of those spans was lost: the ledger counts it
and hands the gap out once, for the caller to log and export. A voiced sample inside two
finals' spans was said twice.

Pure bookkeeping over sample counts; no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.types import SAMPLE_RATE

Span = tuple[int, int]  # [start, end) in stream samples


def _merge(spans: list[Span], new: Span) -> list[Span]:
    """Insert ``new`` into sorted, disjoint ``spans``, merging what touches."""
    start, end = new
    # Voiced frames come in stream order, once per frame of every session: they extend the last
    # span or follow it, without a pass over (and a sort of) the whole list.
    if not spans or start > spans[-1][1]:
        spans.append(new)
        return spans
    if start >= spans[-1][0]:
        spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        return spans
    out: list[Span] = []
    for a, b in spans:
        if b < start or a > end:
            out.append((a, b))
        else:
            start, end = min(a, start), max(b, end)
    out.append((start, end))
    out.sort()
    return out


def _subtract(spans: list[Span], cut: Span) -> tuple[list[Span], int]:
    """``spans`` less ``cut``, and how many samples were removed."""
    c0, c1 = cut
    out: list[Span] = []
    removed = 0
    for a, b in spans:
        if b <= c0 or a >= c1:
            out.append((a, b))
            continue
        removed += min(b, c1) - max(a, c0)
        if a < c0:
            out.append((a, c0))
        if b > c1:
            out.append((c1, b))
    return out, removed


def _overlap(spans: list[Span], span: Span) -> int:
    return sum(max(0, min(b, span[1]) - max(a, span[0])) for a, b in spans)


@dataclass(frozen=True)
class Gap:
    """Voiced audio that reached no final: stream seconds, and why when the policy knows."""

    start: float
    end: float
    voiced: float
    reason: str


@dataclass(frozen=True)
class VoiceReport:
    """What changed since the last report: seconds voiced, in two finals, decoded again because
    a final's words skipped them (``repairs`` stretches), and the gaps found."""

    voiced: float = 0.0
    doubled: float = 0.0
    repaired: float = 0.0
    repairs: int = 0
    gaps: tuple[Gap, ...] = ()


@dataclass
class VoiceLedger:
    """Voiced samples in, finals and deliberate drops out; what is left behind is a gap."""

    voiced_samples: int = 0
    finalised_samples: int = 0
    dropped_samples: dict[str, int] = field(default_factory=dict)
    unfinalised_samples: int = 0
    doubled_samples: int = 0
    repaired_samples: int = 0  # voiced samples a final's words skipped, decoded once more
    repairs: int = 0
    _open: list[Span] = field(default_factory=list)  # voiced, not yet in a final
    _closed: list[Span] = field(default_factory=list)  # final spans still near the horizon
    _heard: list[Span] = field(default_factory=list)  # voiced spans still near the horizon
    _gaps: list[Gap] = field(default_factory=list)

    def voiced(self, start: int, end: int) -> None:
        if end > start:
            self.voiced_samples += end - start
            self._open = _merge(self._open, (start, end))
            self._heard = _merge(self._heard, (start, end))

    def finalised(self, start: int, end: int) -> None:
        """A final closed the stream's audio in [start, end)."""
        if end <= start:
            return
        # Finals may share unvoiced audio (a pause is the next utterance's pre-roll); a voiced
        # sample in two finals was said twice.
        for a, b in self._closed:
            both = (max(a, start), min(b, end))
            if both[1] > both[0]:
                self.doubled_samples += _overlap(self._heard, both)
        self._closed = _merge(self._closed, (start, end))
        self._open, removed = _subtract(self._open, (start, end))
        self.finalised_samples += removed

    def dropped(self, start: int, end: int, reason: str) -> None:
        """[start, end) will never be a final, on purpose; its voiced part is counted under ``reason``."""
        self._open, removed = _subtract(self._open, (start, end))
        if removed:
            self.dropped_samples[reason] = self.dropped_samples.get(reason, 0) + removed
            self._gaps.append(Gap(start / SAMPLE_RATE, end / SAMPLE_RATE, removed / SAMPLE_RATE, reason))

    def settle(self, horizon: int) -> None:
        """No audio before ``horizon`` can become a final any more: what is still open there is lost."""
        lost, self._open = (
            [s for s in self._open if s[0] < horizon],
            [s for s in self._open if s[0] >= horizon],
        )
        for a, b in lost:
            if b > horizon:
                self._open.insert(0, (horizon, b))
                b = horizon
            self.unfinalised_samples += b - a
            self._gaps.append(Gap(a / SAMPLE_RATE, b / SAMPLE_RATE, (b - a) / SAMPLE_RATE, "unfinalised"))
        # Finals far behind the horizon can no longer overlap a new one.
        keep = horizon - 120 * SAMPLE_RATE
        self._closed = [s for s in self._closed if s[1] >= keep]
        self._heard = [s for s in self._heard if s[1] >= keep]

    def repaired(self, start: int, end: int) -> None:
        """A final's words skipped [start, end): it is decoded once more on its own."""
        self.repairs += 1
        self.repaired_samples += self.voiced_in(start, end)

    def report(self) -> VoiceReport:
        """Totals so far, with the gaps not handed out yet (each once)."""
        return VoiceReport(
            self.voiced_samples / SAMPLE_RATE,
            self.doubled_samples / SAMPLE_RATE,
            self.repaired_samples / SAMPLE_RATE,
            self.repairs,
            tuple(self.take_gaps()),
        )

    def voiced_in(self, start: int, end: int) -> int:
        """Voiced samples in [start, end) (of audio not yet far behind the horizon)."""
        return _overlap(self._heard, (start, end)) if end > start else 0

    def take_gaps(self) -> list[Gap]:
        """Gaps and drops not handed out yet (each once)."""
        gaps, self._gaps = self._gaps, []
        return gaps

    @property
    def unfinalised_seconds(self) -> float:
        return self.unfinalised_samples / SAMPLE_RATE

    @property
    def doubled_seconds(self) -> float:
        return self.doubled_samples / SAMPLE_RATE
