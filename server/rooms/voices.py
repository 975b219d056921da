"""A room's voice-over: its finals spoken in the languages of its ``voice`` list.

One ``RoomVoices`` per room listens to the room's finals (the source's and each translation's,
numbered by the room), and for every final in a voice language asks the inference backend's
``piper`` engine to speak it (on the device's scheduler, batched with every other room's
sentences; on gateways, on a ``nova-voice worker --engines piper``). The spoken sentence goes
to that language's ``VoiceLine`` (pipeline/voiceline.py), the timeline that every listener of
the language reads: a viewer's audio track, a WHEP player. Its pacing speeds a voice that falls
behind and drops the oldest unstarted sentences past the bound, and each start and drop is
counted (``nova_voice_sentences_total``, ``nova_voice_dropped_total``).

A sentence is spoken from the moment its caption reached the viewers: ``shown_at`` is the wall
time at which the room delivered the final, so the voice never runs ahead of the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.backend import InferenceBackend, SchedulerClosed, Superseded
from pipeline.languages import UnknownLanguage, parse_list
from pipeline.pacing import Drop, PacingOptions, Start
from pipeline.types import SpeakRequest, Speech
from pipeline.voiceline import Spoken, VoiceLine
from server.messages import CaptionMessage
from server.rooms.bus import RoomBus
from server.rooms.registry import RoomsUnavailable
from server.rooms.room import Room
from server.rooms.translations import Offers

log = logging.getLogger(__name__)

ENGINE = "piper"


class VoiceLanguageError(ValueError):
    """A voice list a room cannot speak; the message says why, for a clear 400."""


class Voices(Protocol):
    """What the server asks of the text-to-speech engine: which languages it speaks."""

    @property
    def languages(self) -> frozenset[str]: ...


@dataclass
class RemoteVoices:
    """The voices of ``nova-voice worker --engines piper``: what the live workers' heartbeats
    offer, read as rooms ask (none while no voice worker runs)."""

    workers: Offers

    @property
    def languages(self) -> frozenset[str]:
        offer = self.workers.offered(ENGINE)
        return offer[0] if offer else frozenset()


class VoiceCounter(Protocol):
    def voice_event(self, lang: str, outcome: str, late: float | None = None) -> None: ...


@dataclass
class VoiceService:
    """The app's voice-over: which languages rooms may speak, and one driver per room."""

    voices: Voices
    backend: InferenceBackend
    metrics: VoiceCounter
    options: PacingOptions = field(default_factory=PacingOptions)
    timeout: float = 10.0
    clock: Callable[[], float] = time.time
    # Gateways: sentences go through the room's voice stream in Redis to every gateway's listeners.
    bus: RoomBus | None = None

    @property
    def always(self) -> bool:
        """Speak even when no listener of this process hears it (a gateway: they may be on others)."""
        return self.bus is not None

    def __post_init__(self) -> None:
        self.rooms: dict[str, RoomVoices] = {}
        self._logged: set[str] = set()

    def check(self, raw: Any, carried: tuple[str, ...], spoken: str | None) -> tuple[str, ...]:
        """A room's voice languages from a request (a list or "es,en"), normalised: each must be
        one the room shows (a translation, or its spoken language) and one a voice speaks."""
        if not isinstance(raw, list | tuple | str):
            raise VoiceLanguageError('"voice" must be a list of language codes, such as ["es"]')
        try:
            langs = parse_list(raw)
        except UnknownLanguage as exc:
            raise VoiceLanguageError(str(exc)) from exc
        shown = (*([spoken] if spoken else []), *carried)
        for lang in langs:
            if lang not in shown:
                names = ", ".join(shown) if shown else "none yet"
                raise VoiceLanguageError(
                    f"the room shows no {lang!r} captions to speak; add it to its languages (shows: {names})"
                )
            if not self.voices.languages and self.bus is not None:
                raise VoiceLanguageError("no voice worker is running (nova-voice worker --engines piper)")
            if lang not in self.voices.languages:
                raise VoiceLanguageError(
                    f"no voice speaks {lang!r} (no Piper voice file for it, and espeak-ng does not know it)"
                )
        return langs

    def attach(self, room: Room) -> None:
        """Speak this room's finals in its voice languages (again, if they changed)."""
        driver = self.rooms.get(room.name)
        if driver is not None and driver.room is room:
            driver.retune()
            return
        if driver is not None:
            driver.cancel()
        driver = RoomVoices(room, self)
        self.rooms[room.name] = driver
        room.on_final.append(driver.on_final)

    def detach(self, room: Room) -> None:
        driver = self.rooms.get(room.name)
        if driver is not None and driver.room is room:
            del self.rooms[room.name]
            driver.cancel()

    def line(self, room: Room, lang: str) -> VoiceLine | None:
        """The timeline a listener of ``lang`` in ``room`` reads, or None if the room does not speak it."""
        driver = self.rooms.get(room.name)
        if driver is None or driver.room is not room:
            self.attach(room)
            driver = self.rooms[room.name]
        return driver.lines.get(lang)

    def failed(self, room: str, lang: str, exc: BaseException) -> None:
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning(
                "voice %s in room %s failed (%s: %s); its captions still go out, further %s errors "
                "are only counted",
                lang,
                room,
                reason,
                exc,
                reason,
            )

    def counted(self, event: Spoken) -> None:
        if isinstance(event.event, Start):
            self.metrics.voice_event(event.lang, "spoken", event.event.late)
        elif isinstance(event.event, Drop):
            self.metrics.voice_event(event.lang, event.event.reason)

    async def aclose(self) -> None:
        await asyncio.gather(*(r.aclose() for r in self.rooms.values()), return_exceptions=True)


class RoomVoices:
    """One room's timelines, one per voice language, and the syntheses on their way to them.

    Embedded, a sentence goes from the engine straight to this process's timeline. On gateways
    (``bus`` set) the gateway that wrote the final synthesises it once for the room and sends
    each step to the room's voice stream (``expect`` as it starts, then ``audio`` or ``fail``);
    every gateway with the room, this one included, applies the stream to its own timelines,
    so listeners anywhere hear the same sentences, paced alike.
    """

    def __init__(self, room: Room, service: VoiceService) -> None:
        self.room = room
        self.service = service
        self.lines: dict[str, VoiceLine] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.retune()

    def retune(self) -> None:
        """The room's voice list changed: a timeline for each language it speaks now."""
        for lang in self.room.voice:
            if lang not in self.lines:
                self.lines[lang] = VoiceLine(lang, self.service.options, clock=self.service.clock)
                self.lines[lang].on_event = self._counter(self.lines[lang])
        for lang in [lang for lang in self.lines if lang not in self.room.voice]:
            del self.lines[lang]
        bus = self.service.bus
        if bus is not None and self.room.voice:
            task = asyncio.get_running_loop().create_task(self._watch(bus))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _watch(self, bus: RoomBus) -> None:
        try:
            await bus.watch_voice(self.room.name, self.apply)
        except RoomsUnavailable as exc:
            log.warning("room %s: its voice stream cannot be followed now: %s", self.room.name, exc)

    def _counter(self, line: VoiceLine) -> Callable[[Spoken], None]:
        def count(event: Spoken) -> None:
            # What played where nobody listened (a gateway that only synthesises) is not counted.
            if line.listeners:
                self.service.counted(event)

        return count

    def on_final(self, message: CaptionMessage) -> None:
        line = self.lines.get(message.lang)
        if line is None or not message.text.strip():
            return
        if line.listeners == 0 and not self.service.always:
            # Nobody hears this language now: nothing is synthesised, and that is counted.
            self.service.metrics.voice_event(message.lang, "unheard")
            return
        shown_at = self.service.clock()  # the room delivered it to the viewers just now
        chars = len(message.text)
        bus = self.service.bus
        if bus is None:
            speed = line.expect(message.seq, shown_at, chars)
        else:
            speed = line.speed(shown_at)
            fields = {
                "k": "expect",
                "lang": message.lang,
                "key": message.seq,
                "shown": shown_at,
                "chars": chars,
            }
            bus.send_voice(self.room.name, fields)
        request = SpeakRequest(message.text, message.lang, speed)
        task = asyncio.get_running_loop().create_task(self._speak(message.seq, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _speak(self, key: int, request: SpeakRequest) -> None:
        # Keyed per sentence: a final is never superseded by another.
        session: Hashable = ("voice", self.room.name, request.lang, key)
        speech: Speech | None = None
        try:
            async with asyncio.timeout(self.service.timeout):
                speech = await self.service.backend.submit(ENGINE, session, request, True)
        except (Superseded, SchedulerClosed):
            pass
        except Exception as exc:  # noqa: BLE001 - a failed voice costs only that sentence's sound
            self.service.failed(self.room.name, request.lang, exc)
        bus = self.service.bus
        if bus is not None:
            fields: dict[str, Any] = {"k": "fail", "lang": request.lang, "key": key}
            if speech is not None:
                fields.update(k="audio", rate=speech.rate, pcm=speech.pcm.astype("<i2").tobytes())
            bus.send_voice(self.room.name, fields)
            return
        line = self.lines.get(request.lang)
        if line is None:
            return
        if speech is None:
            line.fail(key)
        else:
            line.deliver(key, speech.pcm, speech.rate)

    def apply(self, fields: dict[bytes, bytes]) -> None:
        """An entry of the room's voice stream (gateways): applied to this gateway's timeline."""
        line = self.lines.get(fields[b"lang"].decode())
        if line is None:
            return
        kind, key = fields[b"k"].decode(), int(fields[b"key"])
        if kind == "expect":
            with contextlib.suppress(ValueError):  # read twice (a re-watch): expected once
                line.expect(key, float(fields[b"shown"]), int(fields[b"chars"]))
        elif kind == "audio":
            line.deliver(
                key, np.frombuffer(fields[b"pcm"], dtype="<i2").astype(np.int16), int(fields[b"rate"])
            )
        elif kind == "fail":
            line.fail(key)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.service.bus is not None:
            self.service.bus.unwatch_voice(self.room.name)

    async def aclose(self) -> None:
        self.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
