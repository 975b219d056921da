"""The typed state of one app: settings, inference backend, rooms, peers, publishers, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from pipeline.backend import InferenceBackend
from pipeline.policy import CaptionPolicy
from pipeline.session import CaptionSession, caption_policy
from pipeline.vad_pump import VadPump
from server.edge.limits import Admission, DescriptorFloor
from server.media.peers import PeerSet
from server.media.voice import Listening
from server.metrics import Metrics
from server.rooms.access import ViewAccess
from server.rooms.outputs import Outputs
from server.rooms.registry import RoomRegistry
from server.rooms.room import Room
from server.rooms.transcripts import TranscriptStore
from server.rooms.translations import TranslationService
from server.rooms.voices import VoiceService
from server.settings import Settings


class LivePublisher(Protocol):
    """What the app asks of a live publisher (server/media/publisher.py's ``Publisher``, which
    itself reads this state: the protocol keeps the two modules out of each other's imports)."""

    id: str
    room: Room
    session: CaptionSession

    async def stop(self, deleted: bool = True) -> None: ...


@dataclass
class AppState:
    settings: Settings
    backend: InferenceBackend
    metrics: Metrics
    peers: PeerSet
    transcripts: TranscriptStore
    rooms: RoomRegistry = field(default_factory=RoomRegistry)
    publishers: dict[str, LivePublisher] = field(default_factory=dict)
    # Shared with ``peers``, which reports each peer's pending, connected and closed to it.
    admission: Admission = field(default_factory=Admission)
    descriptors: DescriptorFloor = field(default_factory=DescriptorFloor)
    access: ViewAccess = field(default_factory=ViewAccess)
    # Publishers the server ended (media stopped, peer gone) by id, with their room: a DELETE
    # that comes later still gets its 200 once. Oldest dropped past ENDED_KEPT.
    ended: dict[str, str] = field(default_factory=dict)
    # Set on SIGTERM: no new publishers, the current ones finalise, then the process exits.
    draining: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    translation: TranslationService | None = None  # None: translation is off
    multilingual: bool = False  # whether Whisper can hear other languages than English
    diarize: bool = False  # whether the speaker engine runs (speaker turns, voice enrolment)
    outputs: Outputs | None = None  # where rooms' finals go besides listeners (embedded server)
    voice: VoiceService | None = None  # None: no voice-over (no text-to-speech engine)
    listening: dict[str, Listening] = field(default_factory=dict)  # WHEP players by session id
    # Every publisher's Silero VAD in one hop to a thread a tick (pipeline/vad_pump.py).
    vad_pump: VadPump = field(default_factory=VadPump)

    def caption_policy(self, spoken: str | None, end_silence_ms: int | None = None) -> CaptionPolicy:
        """A live session's policy from the server's settings (WHIP publishers, the APIs' live
        sockets); ``spoken`` None lets a multilingual Whisper detect the language."""
        s = self.settings
        return caption_policy(
            vad=s.vad,
            vad_aggressiveness=s.vad_aggressiveness,
            end_silence_ms=s.end_silence_ms if end_silence_ms is None else end_silence_ms,
            partial_interval=s.partial_interval,
            max_utterance=s.max_utterance,
            sentence_wait=s.sentence_wait_ms / 1000,
            stale_after=s.stale_after,
            beam_size=s.beam_size,
            final_beam_size=s.final_beam_size,
            legacy_partials=s.legacy_partials,
            language=spoken or "en",
            # A multilingual Whisper told the language skips detection; None lets it detect.
            decode_language=spoken if self.multilingual else None,
        )

    def spoken(self, room: Room) -> str | None:
        """The language a room is spoken in, when known before anyone speaks."""
        return room.source_language or (None if self.multilingual else "en")


STATE = web.AppKey("state", AppState)
