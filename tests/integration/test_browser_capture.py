"""A person's view: headless Chromium with a fake microphone shares it on the capture page."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
from playwright.async_api import Page

from bench.corpus import ESPEAK_TEXT, espeak, silence, write_wav
from bench.scoring import wer
from tests.support.browser import captured_finals, chromium

GREEN = "rgb(30, 138, 76)"  # --ok in capture.css: good news only


def watch_problems(page: Page) -> list[str]:
    """Console errors and failed requests (a favicon's 404 among them) of ``page``, as they come."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return problems


async def create_room(base: str, room: str, **options: object) -> str:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{base}/rooms", json={"name": room, **options})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["publish_token"])


async def test_the_capture_page_shows_the_spoken_words(nova, tmp_path: Path, artifacts: Path) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    speech = espeak(ESPEAK_TEXT, tmp_path / "mic.wav")
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([silence(1.0), speech, silence(3.0)]))

    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        problems = watch_problems(page)
        await page.goto(f"{base}/?room=browser")
        assert await page.input_value("#room") == "browser"
        # The page's own icon, also where browsers look without being told.
        assert await page.get_attribute("link[rel=icon]", "href") == "/static/favicon.svg"
        icon = await page.request.get(f"{base}/favicon.ico")
        assert icon.ok and icon.headers["content-type"] == "image/svg+xml"
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        # An open room has no publish token: its vocabulary is shown fixed, and the page says why.
        await page.click("#vocab summary")
        assert await page.is_disabled("#vocabulary") and await page.is_disabled("#vocab-apply")
        assert "without a publish token" in (await page.text_content("#vocab-hint") or "")
        finals = await captured_finals(page, ESPEAK_TEXT)
        assert wer(ESPEAK_TEXT, " ".join(finals)) <= 0.15, finals
        assert await page.is_visible("#share-links")
        assert await page.input_value("#overlay-url") == f"{base}/overlay/browser"
        assert 'data-room="browser"' in await page.input_value("#widget-snippet")
        assert await page.is_hidden("#error")
        await page.screenshot(path=str(artifacts / "capture.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "capture-phone.png"), full_page=True)
        await page.click("#stop")
        await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)
        assert not problems, problems


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
    server = await nova(translate_engine="apertium")
    base = str(server.make_url("")).rstrip("/")
    text = "Ask not what your country can do for you. Ask what you can do for your country."
    mic = write_wav(
        tmp_path / "mic.wav", np.concatenate([silence(1.0), espeak(text, tmp_path / "s.wav"), silence(4.0)])
    )
    token = await create_room(base, "speech", languages=["es"])
    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        await page.goto(f"{base}/?room=speech")
        await page.fill("#token", token)
        await page.click("#share")
        await page.wait_for_selector("#watch-row:not([hidden])", timeout=15_000)
        # Languages by name, then code.
        assert await page.text_content("#watch-lang option[value=es]") == "Español (es)"
        # A line spoken before the switch...
        await page.wait_for_function("window.novaCapture.finals().length > 0", timeout=30_000)
        before = await page.evaluate("window.novaCapture.finals()")
        await page.select_option("#watch-lang", "es")
        assert await page.evaluate("window.novaCapture.watching()") == "es"
        await page.wait_for_function(
            "window.novaCapture.finals().join(' ').toLowerCase().includes('país')", timeout=60_000
        )
        assert await page.input_value("#overlay-url") == f"{base}/overlay/speech?lang=es"
        assert 'data-lang="es"' in await page.input_value("#widget-snippet")
        await page.screenshot(path=str(artifacts / "capture-es.png"), full_page=True)
        spanish = await page.evaluate("window.novaCapture.finals()")
        # ...is still there after switching back, with those spoken meanwhile; and back in
        # Spanish, the Spanish lines are too.
        await page.select_option("#watch-lang", "")
        back = await page.evaluate("window.novaCapture.finals()")
        assert back[: len(before)] == before, (before, back)
        await page.wait_for_function("window.novaCapture.finals().join(' ').split('country').length > 2")
        await page.select_option("#watch-lang", "es")
        assert (await page.evaluate("window.novaCapture.finals()"))[: len(spanish)] == spanish
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "capture-es-phone.png"), full_page=True)
        await page.click("#stop")
        await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)


async def test_the_page_says_which_field_to_fill(nova, tmp_path: Path, artifacts: Path) -> None:
    """In the page's words, pointing at the field: a wrong room name (no browser bubble), a
    protected room without its token; and a lost server is retried in a neutral colour."""
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    token = await create_room(base, "guarded")
    speech = espeak(ESPEAK_TEXT, tmp_path / "s.wav")
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([silence(1.0), speech, silence(2.0)]))
    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        problems = watch_problems(page)
        await page.goto(f"{base}/?room=guarded")

        await page.fill("#room", "my room!")
        await page.click("#share")
        await page.wait_for_selector("#error:not([hidden])", timeout=5_000)
        assert "Room names are 1-64 letters" in (await page.text_content("#error-text") or "")
        assert await page.evaluate("document.activeElement.id") == "room"
        assert await page.get_attribute("#room", "aria-invalid") == "true"
        assert await page.evaluate("window.novaCapture.state()") == "idle"  # the mic was never asked for
        await page.screenshot(path=str(artifacts / "capture-bad-room.png"))

        await page.fill("#room", "guarded")
        await page.click("#share")
        await page.wait_for_function(
            "document.querySelector('#error-text').textContent.includes('protected')", timeout=10_000
        )
        protected = "This room is protected: paste its publish token above."
        assert await page.text_content("#error-text") == protected
        assert await page.evaluate("document.activeElement.id") == "token"
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "capture-protected-phone.png"), full_page=True)
        await page.set_viewport_size({"width": 1000, "height": 700})
        # The refusal was the server's 401, and nothing else failed.
        assert [p for p in problems if "401" not in p] == [], problems

        await page.fill("#token", token)
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        assert await page.is_hidden("#error")
        # The server goes away while it hears speech (the activity in green)...
        await page.wait_for_function("document.querySelector('#activity').dataset.speech === 'true'")
        await server.close()
        await page.wait_for_function(
            "document.querySelector('#activity').textContent.startsWith('Reconnecting')", timeout=10_000
        )
        # ...and waiting to reconnect is not good news.
        colour = await page.evaluate("getComputedStyle(document.querySelector('#activity')).color")
        assert colour != GREEN and colour == "rgb(107, 107, 107)", colour
        await page.screenshot(path=str(artifacts / "capture-reconnecting.png"))


async def test_the_vocabulary_field_changes_the_room_live(nova, tmp_path: Path, artifacts: Path) -> None:
    """Needs PATCH /rooms/{room} on the server (issue 21)."""
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    token = await create_room(base, "terms", vocabulary=["Mastodon"])
    mic = write_wav(tmp_path / "mic.wav", silence(20.0))
    async with chromium(fake_audio=mic) as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        await page.goto(f"{base}/?room=terms")
        await page.click("#vocab summary")
        assert await page.is_disabled("#vocab-apply")  # not sharing yet
        await page.fill("#token", token)
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        # The room's vocabulary as it stands, then changed while it runs.
        await page.wait_for_function("document.querySelector('#vocabulary').value === 'Mastodon'")
        await page.fill("#vocabulary", "Niamh Okonkwo, Elasticsearch\nDatabricks, elasticsearch")
        await page.fill("#replacements", "elastic search = Elasticsearch\n  damn ->  \nnot a replacement")
        await page.click("#vocab-apply")
        await page.wait_for_function(
            "document.querySelector('#vocab-hint').textContent.includes('3 terms and shows 2 replacements')",
            timeout=5_000,
        )
        async with aiohttp.ClientSession() as http:
            resp = await http.get(f"{base}/rooms/terms", headers={"Authorization": f"Bearer {token}"})
            info = await resp.json()
        assert info["vocabulary"] == ["Niamh Okonkwo", "Elasticsearch", "Databricks"]
        assert info["replacements"] == {"elastic search": "Elasticsearch", "damn": ""}
        assert await page.input_value("#vocabulary") == "Niamh Okonkwo, Elasticsearch, Databricks"
        assert await page.input_value("#replacements") == "elastic search = Elasticsearch\ndamn = "
        await page.screenshot(path=str(artifacts / "capture-vocabulary.png"))
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "capture-vocabulary-phone.png"))
        await page.click("#stop")
        await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)
