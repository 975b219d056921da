"""Captions through a real browser's audio path are as accurate as offline transcription allows.

Headless Chromium plays LibriVox (then the espeak passage, so the WER is pooled over enough
words to bound) into the capture page's microphone with the page's own getUserMedia
constraints; Chromium's audio processing, its Opus encoder and WebRTC sit between the file and
the server. Issue 12: with echo cancellation, noise suppression and gain control all on, words at
the pauses got lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.corpus import espeak_passage, librivox, silence, write_wav
from bench.scoring import wer
from tests.support.browser import chromium
from tests.support.offline import Offline

RATE = 16_000


async def test_captions_through_chromium_are_within_1_5x_of_offline_wer(
    nova, offline: Offline, tmp_path: Path, artifacts: Path
) -> None:
    streams = [librivox(), espeak_passage()]
    reference = " ".join(s.reference for s in streams)
    offline_wer = wer(reference, " ".join(offline.text(s.name, s.audio) for s in streams))
    # The fake microphone stops behaving like a silent one when the file ends: pad it.
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([*(s.audio for s in streams), silence(4.0)]))

    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/?room=accuracy")
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        # Until the last sentence is final: its last word is in, or the passage has had time to
        # play and be finalised twice over (a misheard last word must not hang the test).
        last = streams[-1].reference.split()[-1].lower()
        played_ms = int(1000 * 2 * (sum(len(s.audio) for s in streams) / RATE + 5))
        await page.evaluate(f"window.novaUntil = performance.now() + {played_ms}")
        await page.wait_for_function(
            f"window.novaCapture.finals().join(' ').toLowerCase().includes({last!r})"
            " || performance.now() > window.novaUntil",
            timeout=played_ms + 30_000,
        )
        finals = await page.evaluate("window.novaCapture.finals()")
        await page.screenshot(path=str(artifacts / "capture-accuracy.png"), full_page=True)
        await page.click("#stop")

    streamed_wer = wer(reference, " ".join(finals))
    assert streamed_wer <= 1.5 * offline_wer + 0.02, (streamed_wer, offline_wer, finals)
