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


async def test_the_speaker_can_watch_a_translation(nova, tmp_path: Path, artifacts: Path) -> None:
    import aiohttp

    server = await nova(translate_engine="apertium")
    base = str(server.make_url("")).rstrip("/")
    text = "Ask not what your country can do for you. Ask what you can do for your country."
    mic = write_wav(
        tmp_path / "mic.wav", np.concatenate([silence(1.0), espeak(text, tmp_path / "s.wav"), silence(4.0)])
    )
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{base}/rooms", json={"name": "speech", "languages": ["es"]})
        token = (await resp.json())["publish_token"]
    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        await page.goto(f"{base}/?room=speech")
        await page.fill("#token", token)
        await page.click("#share")
        await page.wait_for_selector("#watch-row:not([hidden])", timeout=15_000)
        await page.select_option("#watch-lang", "es")
        assert await page.evaluate("window.novaCapture.watching()") == "es"
        await page.wait_for_function(
            "window.novaCapture.finals().join(' ').toLowerCase().includes('país')", timeout=60_000
        )
        assert await page.input_value("#overlay-url") == f"{base}/overlay/speech?lang=es"
        assert 'data-lang="es"' in await page.input_value("#widget-snippet")
        await page.screenshot(path=str(artifacts / "capture-es.png"), full_page=True)
        await page.click("#stop")
        await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)
