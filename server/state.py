"""The typed state of one app: settings, inference backend, rooms, peers, publishers, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiortc import RTCDataChannel

from pipeline.backend import InferenceBackend
from server.access import ViewAccess
from server.limits import Admission, DescriptorFloor
from server.metrics import Metrics
from server.outputs import Outputs
from server.peers import PeerSet
from server.rooms import Room, RoomRegistry
from server.settings import Settings
from server.transcripts import TranscriptStore

if TYPE_CHECKING:
    from server.publisher import Publisher
    from server.translations import TranslationService

# Messages pile up in SCTP buffers when a listener's network is slower than the captions;
# past this a listener is skipped until it drains rather than growing memory without end.
MAX_BUFFERED = 1 << 20


class DataChannelListener:
    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel

    def send(self, message: str) -> None:
        if self.channel.readyState == "open" and self.channel.bufferedAmount < MAX_BUFFERED:
            self.channel.send(message)


@dataclass
class AppState:
    settings: Settings
    backend: InferenceBackend
    metrics: Metrics
    peers: PeerSet
    transcripts: TranscriptStore
    rooms: RoomRegistry = field(default_factory=RoomRegistry)
    publishers: dict[str, Publisher] = field(default_factory=dict)
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
    outputs: Outputs | None = None  # where rooms' finals go besides listeners (embedded server)

    def spoken(self, room: Room) -> str | None:
        """The language a room is spoken in, when known before anyone speaks."""
        return room.source_language or (None if self.multilingual else "en")


STATE = web.AppKey("state", AppState)
