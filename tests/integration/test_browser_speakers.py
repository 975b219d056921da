"""Named speakers in one room, in headless Chromium: Ana shares her microphone on the capture page,
Ben publishes over WHIP; the overlay and the widget say who said what, and a second tab with
Ana's name is offered to take over. Needs the server's speaker names (issue 22)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from playwright.async_api import Page

from bench.corpus import LIBRIVOX, espeak, silence, write_wav
from pipeline.audio import read_audio
from tests.support.browser import chromium
from tests.support.whip_client import WhipPublisher

ANA_FIRST = "Welcome to the weekly team meeting."
ANA_SECOND = "Today we will talk about the new release and the budget for next year."

# Each line's speaker label (or None) and words, in the order shown.
LINES = """(root) => [...root.querySelectorAll('.line')].map((l) => [
  l.querySelector(':scope > .speaker')?.textContent ?? null,
  l.querySelector(':scope > .text').textContent,
  l.classList.contains('final'),
])"""
OVERLAY_LINES = f"({LINES})(document.querySelector('#captions'))"
WIDGET_LINES = f"({LINES})(document.querySelector('.nova-captions-widget').shadowRoot)"
CAPTURE_LINES = f"({LINES})(document.querySelector('#captions'))"


async def lines(page: Page, script: str) -> list[list]:
    return list(await page.evaluate(script))


async def test_named_speakers_on_the_page_the_overlay_and_the_widget(
    nova, aiohttp_server, tmp_path: Path, artifacts: Path
) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    ana_mic = np.concatenate(
        [silence(1.5), espeak(ANA_FIRST, tmp_path / "a1.wav"), silence(2.0)]
        + [espeak(ANA_SECOND, tmp_path / "a2.wav"), silence(3.0)]
    )
    mic = write_wav(tmp_path / "ana.wav", ana_mic)
    ben = write_wav(
        tmp_path / "ben.wav", np.concatenate([read_audio(str(LIBRIVOX[1].path)), silence(1.5)])
    )  # "he was not an ill disposed young man"
    quiet = write_wav(tmp_path / "quiet.wav", silence(20.0))

    embedder = web.Application()
    html = f"""<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<script src="{base}/widget.js" data-room="panel" data-lines="4" data-names="always" async></script>
</body></html>"""
    embedder.router.add_get("/", lambda request: web.Response(text=html, content_type="text/html"))
    other = await aiohttp_server(embedder, host="127.0.0.1")

    async with aiohttp.ClientSession() as http, chromium(fake_audio=mic) as browser:
        context = await browser.new_context(viewport={"width": 1000, "height": 700})
        overlay = await context.new_page()
        await overlay.goto(f"{base}/overlay/panel?names=auto&fade=0&lines=4")
        widget = await context.new_page()
        await widget.goto(str(other.make_url("/")))
        await overlay.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
        await widget.wait_for_function(
            "document.querySelector('.nova-captions-widget')?.dataset.state === 'live'", timeout=10_000
        )

        # Names and words are text, never markup, wherever a view shows them; each publisher's
        # partials keep a line of their own even where segment numbers meet.
        hostile = '<img src=x onerror="window.pwned=1">'
        drawn = await overlay.evaluate(
            """(hostile) => {
              const box = document.createElement('div');
              const v = new NovaCaptionView(box, { names: 'always' });
              const m = (publisher, speaker, text) => ({ type: 'caption', segment: 7, final: false,
                text, start: 0, end: 1, lang: 'en', publisher, speaker });
              v.apply(m('p1', hostile, 'one <b>two</b>'));
              v.apply(m('p2', 'Ben', 'three'));
              v.apply(m('p1', hostile, 'one <b>two</b> four'));
              return [box.querySelectorAll('img, b').length, v.texts(),
                      [...box.querySelectorAll('.speaker')].map((e) => e.textContent)];
            }""",
            hostile,
        )
        assert drawn == [0, ["one <b>two</b> four", "three"], [hostile, "Ben"]], drawn

        # Ana, remembered by the page for next time.
        ana = await context.new_page()
        await ana.goto(f"{base}/?room=panel")
        await ana.fill("#speaker", "Ana")
        await ana.click("#share")
        await ana.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        await overlay.wait_for_function(f"{OVERLAY_LINES}.some((l) => l[2])", timeout=30_000)
        # One speaker so far: the overlay (names=auto) shows no name, the widget (always) does.
        assert all(name is None for name, _, _ in await lines(overlay, OVERLAY_LINES))
        await widget.wait_for_function(f"{WIDGET_LINES}.some((l) => l[2])", timeout=10_000)
        assert {name for name, _, _ in await lines(widget, WIDGET_LINES)} == {"Ana"}

        # Ben joins while Ana goes on speaking.
        pub = WhipPublisher(base, "panel?speaker=Ben", str(ben))  # the room's URL, with his name
        await pub.start(http)
        await pub.log.wait_for(lambda log: any(m.get("speaker") == "Ben" for m in log.finals()), 30)
        ben_said = " ".join(m["text"] for m in pub.log.finals() if m.get("speaker") == "Ben")
        await pub.stop(http)
        await overlay.wait_for_function(
            f"(() => {{ const ls = {OVERLAY_LINES}; return ['Ana', 'Ben'].every((n) =>"
            " ls.some((l) => l[0] === n && l[2])); })()",
            timeout=20_000,
        )
        # Two speakers: every line is named, Ana's earlier ones too, and Ben's words are his.
        shown = await lines(overlay, OVERLAY_LINES)
        assert all(name in ("Ana", "Ben") for name, _, _ in shown), shown
        assert " ".join(t for name, t, final in shown if name == "Ben" and final) in ben_said, shown
        assert await ana.evaluate(f"{CAPTURE_LINES}.some((l) => l[0] === 'Ben')")

        await overlay.evaluate("document.documentElement.style.background = '#2b3a4a'")
        await overlay.screenshot(path=str(artifacts / "overlay-names.png"))
        await overlay.set_viewport_size({"width": 390, "height": 844})
        await overlay.screenshot(path=str(artifacts / "overlay-names-phone.png"))
        await widget.screenshot(path=str(artifacts / "widget-names.png"))
        await widget.set_viewport_size({"width": 390, "height": 844})
        await widget.screenshot(path=str(artifacts / "widget-names-phone.png"))
        await ana.screenshot(path=str(artifacts / "capture-speakers.png"), full_page=True)

        # A second tab: Ana's name is remembered, and is live elsewhere; she may take it over.
        second = await context.new_page()
        await second.goto(f"{base}/?room=panel")
        assert await second.input_value("#speaker") == "Ana"
        await second.fill("#speaker", "ana")  # typed in lower case this time: the same name
        await second.click("#share")
        await second.wait_for_selector("#error-action:not([hidden])", timeout=10_000)
        assert "ana is already speaking here" in (await second.text_content("#error-text") or "")
        assert await second.text_content("#error-action") == "Take over as ana"
        await second.set_viewport_size({"width": 390, "height": 844})
        await second.screenshot(path=str(artifacts / "capture-takeover-phone.png"), full_page=True)
        await second.click("#error-action")
        await second.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        # The first tab's session ended; it says who has the name now, and does not take it back.
        await ana.wait_for_function(
            "document.querySelector('#error-text').textContent.includes('now speaking here')", timeout=15_000
        )
        assert await ana.evaluate("window.novaCapture.state()") == "idle"
        assert await ana.text_content("#activity") == ""  # no "Reconnecting…" left behind
        # The take-over keeps the room's spelling of the name: one voice, one name in the transcript.
        await second.wait_for_function(
            "document.querySelector('#activity').textContent.includes('speaking here: Ana')", timeout=5_000
        )
        await ana.screenshot(path=str(artifacts / "capture-taken-over.png"))

        # A room that allows one speaker turns a second away, in the page's words.
        async with http.post(f"{base}/rooms", json={"name": "duo", "max_speakers": 1}) as resp:
            token = (await resp.json())["publish_token"]
        first = WhipPublisher(base, "duo?speaker=Cleo", str(quiet), token=token)
        await first.start(http)
        third = await context.new_page()
        await third.goto(f"{base}/?room=duo")
        await third.fill("#speaker", "Dee")
        await third.fill("#token", token)
        await third.click("#share")
        await third.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "as many speakers as it allows" in (await third.text_content("#error-text") or "")
        await first.stop(http)
