"""A data channel as a room listener: captions go out while its buffer has room."""

from __future__ import annotations

from aiortc import RTCDataChannel

# Messages pile up in SCTP buffers when a listener's network is slower than the captions;
# past this a listener is skipped until it drains rather than growing memory without end.
MAX_BUFFERED = 1 << 20


class DataChannelListener:
    def __init__(self, channel: RTCDataChannel) -> None:
        self.channel = channel

    def send(self, message: str) -> None:
        if self.channel.readyState == "open" and self.channel.bufferedAmount < MAX_BUFFERED:
            self.channel.send(message)
