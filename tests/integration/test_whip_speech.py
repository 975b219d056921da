"""A publisher that vanishes mid-sentence: real WebRTC, the real server, the real tiny.en model;
its audio taken the short way, packet and frame. (Live captions of whole streams are proven in
test_streaming_accuracy.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bench.corpus import LIBRIVOX
from bench.scoring import wer
from server.media.inline_audio import QUEUE_ATTRIBUTE, InlineOpus
from server.media.rtp_inline import inline_rtp
from server.state import STATE
from tests.support.whip_client import CaptionLog, WhipPublisher


class Probe:
    """A listener placed straight into a room: hears what any data channel of the room hears."""

    def __init__(self) -> None:
        self.log = CaptionLog()

    def send(self, message: str) -> None:
        asyncio.get_running_loop().create_task(self.log.add(message))  # noqa: RUF006 - awaited via wait_for


async def test_a_publisher_that_vanishes_mid_sentence_still_gets_its_words_finalised(
    nova, tmp_path: Path
) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    clip = LIBRIVOX[0]  # "and mister john dashwood had then leisure to consider ..."
    async with aiohttp.ClientSession() as http:
        pub = WhipPublisher(base, "vanish", str(clip.path))
        await pub.start(http)
        probe = Probe()
        server.app[STATE].rooms.get("vanish").listeners["probe"] = probe  # type: ignore[union-attr]
        # Mid-sentence: some words are on screen as a partial.
        await pub.log.wait_for(lambda log: any(len(m["text"].split()) >= 4 for m in log.captions()), 15)
        state = server.app[STATE]
        (publisher,) = state.publishers.values()
        # The audio came the short way (rtp_inline.py, inline_audio.py): each packet handled in
        # its datagram callback, not through aioice's queue and the DTLS task, and each frame
        # handed to the publisher's feed, not through the track's queue.
        (receiver,) = publisher.pc.getReceivers()
        packets, frames = inline_rtp(receiver.transport), getattr(receiver, QUEUE_ATTRIBUTE)
        assert packets is not None and packets.packets >= 100 and packets.refused == packets.failed == 0
        assert isinstance(frames, InlineOpus) and frames.direct >= 100 and frames.queued == 0
        await pub.close()  # no DELETE, no goodbye: the peer is simply gone mid-sentence
        await probe.log.wait_for(lambda log: log.finals(), timeout=15)
        # The media task ends with the session's cleanup: nothing of the publisher outlives it.
        await asyncio.wait_for(asyncio.gather(*publisher.tasks), 15)
    # What was said up to the cut is finalised: compare with as many words of the reference.
    heard = probe.log.final_text().split()
    assert len(heard) >= 3, heard
    assert wer(" ".join(clip.text.split()[: len(heard)]), " ".join(heard)) <= 0.4, heard
    assert state.publishers == {}
    assert state.backend.stats().sessions == 0
    assert publisher.id not in state.rooms.get("vanish").listeners  # type: ignore[union-attr]
