"""When a room's captions are translated: the pure policy between source lines and the translator.

One policy per room, fed the room's numbered captions; it returns ``Translate`` actions (run
them on the inference backend, answer with ``on_result`` / ``on_failure``) and ``Emit``
actions (translated lines for the viewers of one language). Rules:

- a final is translated always, once per (segment, language), whatever the viewer count;
- a partial only through its ``stable`` prefix (the words that will not change), only when
  that prefix grew, at most every ``partial_interval`` seconds per (segment, language) and
  one at a time: a translation never changes more often than its source;
- with ``force_prefix`` the translation already shown is passed as the target prefix, so an
  engine that can force it (NLLB) continues the line rather than rewriting it
  (NoLanguageLeftWaiting);
- a late partial result never overwrites its segment's final; a target equal to the spoken
  language passes the source through untouched.

Time is an input (``now``); the caller owns the timer (``next_due``) and the I/O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from pipeline.languages import base
from pipeline.types import TranslateRequest, Translation


@dataclass(frozen=True)
class TranslationOptions:
    """How partial lines are translated.

    partials: translate partials at all (finals always are).
    partial_interval: least seconds between two partial translations of one (segment, language).
    force_prefix: continue from the translation already shown (NLLB), rather than rewrite it.
    max_open: lines whose final never came (their publisher vanished) are forgotten beyond this.
    """

    partials: bool = True
    partial_interval: float = 1.0
    force_prefix: bool = True
    max_open: int = 256


@dataclass(frozen=True)
class SourceLine:
    """A caption of the room, as numbered by it: what the policy translates."""

    segment: int
    final: bool
    text: str
    start: float
    end: float
    lang: str
    stable: str = ""


@dataclass(frozen=True)
class Translate:
    ticket: int
    segment: int
    lang: str
    final: bool
    request: TranslateRequest


@dataclass(frozen=True)
class Emit:
    """A translated line for the viewers of ``lang``; ``segment``/``start``/``end`` are the source's."""

    segment: int
    lang: str
    final: bool
    text: str
    source_lang: str
    start: float
    end: float
    stable: str = ""


Action = Translate | Emit


def same_language(a: str, b: str) -> bool:
    return base(a) == base(b) and (a == b or "-" not in a + b)


@dataclass
class _Line:
    """One (segment, language) being translated."""

    source: SourceLine
    shown: str = ""  # translated partial text the viewers have
    shown_source: str = ""  # the stable source text it translates
    pending: str = ""  # newest stable source text not yet sent
    in_flight: int | None = None
    in_flight_source: str = ""
    last_submit: float = float("-inf")


@dataclass
class TranslationPolicy:
    targets: tuple[str, ...]
    options: TranslationOptions = field(default_factory=TranslationOptions)

    def __post_init__(self) -> None:
        self._lines: dict[tuple[int, str], _Line] = {}
        self._tickets: dict[int, tuple[tuple[int, str], bool]] = {}
        self._counter = itertools.count(1)
        self._finals: set[tuple[int, str]] = set()

    # -- inputs -----------------------------------------------------------------------------

    def on_caption(self, line: SourceLine, now: float) -> list[Action]:
        out: list[Action] = []
        for lang in self.targets:
            if same_language(lang, line.lang):
                out.append(self._passthrough(line, lang))
            elif line.final:
                out.extend(self._final(line, lang))
            elif self.options.partials:
                out.extend(self._partial(line, lang, now))
        return out

    def on_result(self, ticket: int, translation: Translation, now: float) -> list[Action]:
        known = self._tickets.pop(ticket, None)
        if known is None:
            return []
        key, final = known
        if final:
            line = self._lines.pop(key, None)
            self._finals.discard(key)
            src = line.source if line is not None else None
            if src is None:
                return []
            return [self._emit(src, key[1], True, translation.text)]
        line = self._lines.get(key)
        if line is None or key in self._finals or line.in_flight != ticket:
            return []  # its final went ahead: a late partial must not overwrite it
        line.in_flight = None
        out: list[Action] = []
        if translation.text and translation.text != line.shown:
            stable = (
                line.shown if self.options.force_prefix and translation.text.startswith(line.shown) else ""
            )
            line.shown, line.shown_source = translation.text, line.in_flight_source
            out.append(self._emit(line.source, key[1], False, translation.text, stable))
        out.extend(self._submit_partial(key, line, now))
        return out

    def on_failure(self, ticket: int, now: float) -> list[Action]:
        """The translator failed or timed out: a final still closes the line, with what was shown."""
        known = self._tickets.pop(ticket, None)
        if known is None:
            return []
        key, final = known
        if final:
            line = self._lines.pop(key, None)
            self._finals.discard(key)
            return [self._emit(line.source, key[1], True, line.shown)] if line is not None else []
        line = self._lines.get(key)
        if line is None or line.in_flight != ticket:
            return []
        line.in_flight = None
        return self._submit_partial(key, line, now)

    def due(self, now: float) -> list[Action]:
        """Partials held back by the interval whose time has come."""
        out: list[Action] = []
        for key, line in list(self._lines.items()):
            if key not in self._finals:
                out.extend(self._submit_partial(key, line, now))
        return out

    def next_due(self, now: float) -> float | None:
        """Seconds until ``due`` has something to do, or None while nothing waits on the clock."""
        waits = [
            max(0.0, line.last_submit + self.options.partial_interval - now)
            for key, line in self._lines.items()
            if key not in self._finals and line.in_flight is None and line.pending != line.shown_source
        ]
        return min(waits, default=None)

    def open_lines(self) -> int:
        return len(self._lines)

    # -- rules ------------------------------------------------------------------------------

    def _emit(self, src: SourceLine, lang: str, final: bool, text: str, stable: str = "") -> Emit:
        return Emit(src.segment, lang, final, text, src.lang, src.start, src.end, stable)

    def _passthrough(self, line: SourceLine, lang: str) -> Emit:
        return Emit(line.segment, lang, line.final, line.text, line.lang, line.start, line.end, line.stable)

    def _ticket(self, key: tuple[int, str], final: bool) -> int:
        ticket = next(self._counter)
        self._tickets[ticket] = (key, final)
        return ticket

    def _final(self, src: SourceLine, lang: str) -> list[Action]:
        key = (src.segment, lang)
        if key in self._finals:
            return []  # each (segment, language) once
        line = self._lines.get(key)
        if line is not None and line.in_flight is not None:
            self._tickets.pop(line.in_flight, None)  # its answer would come after the final
        if not src.text.strip():
            self._lines.pop(key, None)
            return [self._emit(src, lang, True, "")]
        line = _Line(src, shown=line.shown if line else "")
        self._lines[key] = line
        self._finals.add(key)
        ticket = self._ticket(key, True)
        return [Translate(ticket, src.segment, lang, True, TranslateRequest(src.text, src.lang, lang))]

    def _partial(self, src: SourceLine, lang: str, now: float) -> list[Action]:
        key = (src.segment, lang)
        if key in self._finals:
            return []
        stable = src.stable.strip()
        line = self._lines.get(key)
        if line is None:
            if not stable:
                return []
            self._forget_oldest()
            line = self._lines[key] = _Line(src)
        line.source = src
        if stable:
            line.pending = stable
        return self._submit_partial(key, line, now)

    def _submit_partial(self, key: tuple[int, str], line: _Line, now: float) -> list[Action]:
        if line.in_flight is not None or not line.pending or line.pending == line.shown_source:
            return []
        if now - line.last_submit < self.options.partial_interval:
            return []
        prefix = ""
        if self.options.force_prefix and line.shown and line.pending.startswith(line.shown_source):
            prefix = line.shown
        ticket = self._ticket(key, False)
        line.in_flight, line.in_flight_source, line.last_submit = ticket, line.pending, now
        request = TranslateRequest(line.pending, line.source.lang, key[1], prefix)
        return [Translate(ticket, key[0], key[1], False, request)]

    def _forget_oldest(self) -> None:
        while len(self._lines) >= self.options.max_open:
            oldest = min((k for k in self._lines if k not in self._finals), default=None)
            if oldest is None:
                return
            line = self._lines.pop(oldest)
            if line.in_flight is not None:
                self._tickets.pop(line.in_flight, None)
