"""Real speech over real WebRTC: an aiortc publisher, the real server, the real tiny.en model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np

from server.state import STATE
from tests.support.speech import ESPEAK_TEXT, LIBRIVOX, espeak, joined_librivox, silence, wer, write_wav
from tests.support.whip_client import CaptionLog, WhipPublisher

CAPTION_KEYS = {"type", "room", "seq", "segment", "final", "text", "start", "end", "lang"}


class Probe:
    """A listener placed straight into a room: hears what any data channel of the room hears."""

    def __init__(self) -> None:
        self.log = CaptionLog()

    def send(self, message: str) -> None:
        asyncio.get_running_loop().create_task(self.log.add(message))  # noqa: RUF006 - awaited via wait_for


async def test_librivox_and_espeak_are_captioned_live(nova, tmp_path: Path) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    book, book_ref = joined_librivox(gap=1.0)
    book_wav = write_wav(tmp_path / "book.wav", np.concatenate([book, silence(1.5)]))
    speech = espeak(ESPEAK_TEXT, tmp_path / "espeak.wav")
    speech_wav = write_wav(tmp_path / "espeak.wav", np.concatenate([silence(0.5), speech, silence(1.5)]))

    async with aiohttp.ClientSession() as http:
        book_pub = WhipPublisher(base, "book", str(book_wav))
        robot_pub = WhipPublisher(base, "robot", str(speech_wav))
        await asyncio.gather(book_pub.start(http), robot_pub.start(http))
        await asyncio.gather(book_pub.ended(), robot_pub.ended())
        # Wait for the final that closes the last utterance of each stream.
        book_end = (len(book)) / 16_000 - 1.0
        robot_end = 0.5 + len(speech) / 16_000
        await book_pub.log.wait_for(lambda log: _final_until(log, book_end - 1.5), timeout=20)
        await robot_pub.log.wait_for(lambda log: _final_until(log, robot_end - 1.5), timeout=20)

        book_wer = wer(book_ref, book_pub.log.final_text())
        robot_wer = wer(ESPEAK_TEXT, robot_pub.log.final_text())
        assert book_wer <= 0.15, (book_wer, book_pub.log.final_text())
        assert robot_wer <= 0.15, (robot_wer, robot_pub.log.final_text())

        captions = book_pub.log.captions()
        assert all(CAPTION_KEYS <= set(m) for m in captions)
        assert all(m["room"] == "book" for m in captions)
        seqs = [m["seq"] for m in captions]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # Partials come before the final of their segment, and finals are in stream order.
        first_final = captions.index(book_pub.log.finals()[0])
        assert any(not m["final"] for m in captions[:first_final])
        starts = [m["start"] for m in book_pub.log.finals()]
        assert starts == sorted(starts) and 0.5 < starts[0] < 2.0
        assert any(m["type"] == "status" and m["speech"] for m in book_pub.log.messages)

        assert await book_pub.stop(http) == 200
        assert await robot_pub.stop(http) == 200
    state = server.app[STATE]
    assert state.publishers == {}
    assert len(state.peers) == 0


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


def _final_until(log: CaptionLog, t: float) -> bool:
    return any(m["end"] >= t for m in log.finals())
