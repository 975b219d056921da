"""Room-level translation: the async shell around ``pipeline.translation``'s policy.

One ``RoomTranslations`` per room listens to the room's source captions, runs the policy's
``Translate`` actions on the app's inference backend (the translator is an engine on each
device's scheduler, batched with every other room's lines, never on the event loop), and
hands the policy's ``Emit`` actions back to the room, which numbers them and sends them to
the viewers of that language. A translator that fails or times out costs only the
translation: the source caption has already gone out; the error is counted and logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.backend import InferenceBackend, SchedulerClosed, Superseded
from pipeline.clock import Clock, MonotonicClock
from pipeline.languages import UnknownLanguage, normalize, parse_list
from pipeline.translation import (
    Action,
    Emit,
    SourceLine,
    Translate,
    TranslationOptions,
    TranslationPolicy,
)
from pipeline.types import Translation
from server.messages import CaptionMessage
from server.rooms.room import Room

log = logging.getLogger(__name__)
# Source lines remembered for their translations' speaker: far more than are ever in flight.
SOURCES_KEPT = 256


class Translator(Protocol):
    """What the server asks of a translation engine before a room may carry a language."""

    name: str
    languages: frozenset[str]

    def supports(self, source: str, target: str) -> bool: ...


class Offers(Protocol):
    def offered(self, engine: str) -> tuple[frozenset[str], frozenset[tuple[str, str]] | None] | None: ...


@dataclass
class RemoteTranslator:
    """A translation engine that runs on workers (``nova-voice worker --engines apertium``): what
    it can do is what the live workers offer in their heartbeats, read as rooms ask."""

    name: str
    workers: Offers

    @property
    def languages(self) -> frozenset[str]:
        offer = self.workers.offered(self.name)
        return offer[0] if offer else frozenset()

    def supports(self, source: str, target: str) -> bool:
        offer = self.workers.offered(self.name)
        if offer is None:
            return False
        languages, pairs = offer
        try:
            s, t = normalize(source), normalize(target)
        except UnknownLanguage:
            return False
        return (s, t) in pairs if pairs is not None else s in languages and t in languages


class ErrorCounter(Protocol):
    def translation_error(self, engine: str, reason: str) -> None: ...


class LanguageError(ValueError):
    """A language list a room cannot carry; the message says why, for a clear 400."""


@dataclass
class TranslationService:
    """The app's translator: which languages rooms may carry, and one driver per room."""

    translator: Translator
    backend: InferenceBackend
    metrics: ErrorCounter
    options: TranslationOptions = field(default_factory=TranslationOptions)
    timeout: float = 10.0
    max_languages: int = 8
    clock: Clock = field(default_factory=MonotonicClock)

    def __post_init__(self) -> None:
        self.rooms: dict[str, RoomTranslations] = {}
        self._logged: set[tuple[str, str]] = set()

    @property
    def engine(self) -> str:
        return self.translator.name

    def check(self, raw: Any, source: str | None) -> tuple[str, ...]:
        """Room languages from a request (a list or "es,fr"), normalised; LanguageError if not."""
        if not isinstance(raw, list | tuple | str):
            raise LanguageError('"languages" must be a list of language codes, such as ["es", "fr"]')
        try:
            langs = parse_list(raw)
        except UnknownLanguage as exc:
            raise LanguageError(str(exc)) from exc
        if len(langs) > self.max_languages:
            raise LanguageError(
                f"a room carries at most {self.max_languages} languages; asked for {len(langs)}"
            )
        if langs and not self.translator.languages:
            raise LanguageError(
                f"no {self.engine} translation worker is running (nova-voice worker --engines {self.engine})"
            )
        for lang in langs:
            if lang not in self.translator.languages or (
                source and not self.translator.supports(source, lang)
            ):
                pairs = sorted(self.translator.languages)
                what = f"from {source!r} to {lang!r}" if source else f"into {lang!r}"
                raise LanguageError(
                    f"the {self.engine} translator cannot translate {what}; it knows: {', '.join(pairs)}"
                )
        return langs

    def attach(self, room: Room) -> None:
        """Translate this room's captions into its languages (again, if they changed)."""
        existing = self.rooms.get(room.name)
        if existing is not None and existing.room is room:
            existing.policy.targets = room.languages
            return
        if existing is not None:
            existing.cancel()  # an idle room was forgotten and is back as a new object
        driver = RoomTranslations(room, self)
        self.rooms[room.name] = driver
        room.on_caption.append(driver.on_caption)

    def detach(self, room: Room) -> None:
        """An idle room was forgotten: so is its translation state (names are free to invent)."""
        driver = self.rooms.get(room.name)
        if driver is not None and driver.room is room:
            del self.rooms[room.name]
            # Finals already asked for still land (a gateway forgets a room as its last
            # publisher leaves, while that publisher's last line is being translated).
            driver.retire()

    def failed(self, room: str, exc: BaseException) -> None:
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        self.metrics.translation_error(self.engine, reason)
        if (self.engine, reason) not in self._logged:
            self._logged.add((self.engine, reason))
            log.warning(
                "%s translation failed in room %s (%s: %s); source captions still go out, "
                "further %s errors are only counted",
                self.engine,
                room,
                reason,
                exc,
                reason,
            )

    async def aclose(self) -> None:
        await asyncio.gather(*(r.aclose() for r in self.rooms.values()), return_exceptions=True)


class RoomTranslations:
    """One room's policy, its tasks on the backend, and the timer for held-back partials."""

    def __init__(self, room: Room, service: TranslationService) -> None:
        self.room = room
        self.service = service
        self.policy = TranslationPolicy(room.languages, service.options)
        self._tasks: dict[asyncio.Task[None], bool] = {}  # task -> whether it translates a final
        self._timer: asyncio.TimerHandle | None = None
        # Each recent source line by segment: its translations carry its speaker.
        self._sources: dict[int, CaptionMessage] = {}

    def on_caption(self, message: CaptionMessage) -> None:
        if not self.policy.targets:
            return
        self._sources[message.segment] = message
        while len(self._sources) > SOURCES_KEPT:
            del self._sources[next(iter(self._sources))]
        line = SourceLine(
            segment=message.segment,
            final=message.final,
            text=message.text,
            start=message.start,
            end=message.end,
            lang=message.lang,
            stable=message.stable or "",
        )
        self._apply(self.policy.on_caption(line, self.service.clock.now()))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Translate):
                task = asyncio.get_running_loop().create_task(self._run(action))
                self._tasks[task] = action.final
                task.add_done_callback(lambda done: self._tasks.pop(done, None))
            elif isinstance(action, Emit):
                self.room.translated(action, credit=self._sources.get(action.segment))
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wait = self.policy.next_due(self.service.clock.now())
        if wait is not None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._due)

    def _due(self) -> None:
        self._timer = None
        self._apply(self.policy.due(self.service.clock.now()))

    async def _run(self, job: Translate) -> None:
        # One key per (room, segment, language): a newer partial replaces a waiting one of the
        # same line only, and the batch mixes every room's and language's lines.
        key: Hashable = ("translate", self.room.name, job.segment, job.lang)
        try:
            async with asyncio.timeout(self.service.timeout):
                result: Translation = await self.service.backend.submit(
                    self.service.engine, key, job.request, job.final
                )
        except (Superseded, SchedulerClosed):
            self._apply(self.policy.on_failure(job.ticket, self.service.clock.now()))
            return
        except Exception as exc:  # noqa: BLE001 - any translator failure costs only the translation
            self.service.failed(self.room.name, exc)
            self._apply(self.policy.on_failure(job.ticket, self.service.clock.now()))
            return
        self._apply(self.policy.on_result(job.ticket, result, self.service.clock.now()))

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()

    def retire(self) -> None:
        """No more lines: held-back partials and their translations go, finals in flight stay."""
        self.policy.targets = ()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task, final in list(self._tasks.items()):
            if not final:
                task.cancel()

    async def aclose(self) -> None:
        self.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def viewer_language(room: Room, raw: str, spoken: str | None) -> str | None:
    """The stream a viewer asking for ``raw`` reads: None for the source, else a target.

    Raises LanguageError naming the room's languages when the room does not carry it.
    """
    carried = list(room.languages)
    if spoken and spoken not in carried:
        carried.insert(0, spoken)
    try:
        lang = normalize(raw)
    except UnknownLanguage:
        lang = raw
    if lang in room.languages:
        return lang
    if spoken and lang == spoken:
        return None
    names = ", ".join(carried) if carried else "only its spoken language"
    said = raw if len(raw) <= 32 else raw[:31] + "…"  # echoed to the client: cut when long
    raise LanguageError(f"room {room.name!r} does not carry {said!r}; it carries: {names}")
