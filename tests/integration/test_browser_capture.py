"""A person's view: headless Chromium with a fake microphone shares it on the capture page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.browser import captured_finals, chromium
from tests.support.speech import ESPEAK_TEXT, espeak, silence, wer, write_wav


async def test_the_capture_page_shows_the_spoken_words(nova, tmp_path: Path, artifacts: Path) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    speech = espeak(ESPEAK_TEXT, tmp_path / "mic.wav")
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([silence(1.0), speech, silence(3.0)]))

    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        await page.goto(f"{base}/?room=browser")
        assert await page.input_value("#room") == "browser"
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        finals = await captured_finals(page, ESPEAK_TEXT)
        assert wer(ESPEAK_TEXT, " ".join(finals)) <= 0.15, finals
        assert await page.is_visible("#share-links")
        assert await page.input_value("#overlay-url") == f"{base}/overlay/browser"
        assert 'data-room="browser"' in await page.input_value("#widget-snippet")
        assert await page.is_hidden("#error")
        await page.screenshot(path=str(artifacts / "capture.png"), full_page=True)
        await page.click("#stop")
        await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)


async def test_a_refused_microphone_is_explained(nova) -> None:
    server = await nova()
    async with chromium(grant_microphone=False) as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/")))
        await page.click("#share")
        await page.wait_for_selector("#error:not([hidden])", timeout=5_000)
        assert "refused" in (await page.text_content("#error") or "").lower()


async def test_an_unreachable_server_is_explained(nova, tmp_path: Path) -> None:
    server = await nova()
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/")))
        await server.close()  # the page is loaded; now the server goes away
        await page.click("#share")
        await page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "reach" in (await page.text_content("#error") or "").lower()
