"""The OBS overlay and the embeddable widget, in headless Chromium, fed by a real publisher."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

from pipeline.audio import read_audio
from server.app import create_app
from server.settings import Settings
from tests.support.browser import chromium
from tests.support.png import decode_rgba
from tests.support.speech import LIBRIVOX, silence, write_wav
from tests.support.whip_client import WhipPublisher

OVERLAY_FINAL = "document.querySelector('#captions .line.final')?.textContent || ''"
WIDGET_FINAL = (
    "document.querySelector('.nova-captions-widget')?.shadowRoot"
    "?.querySelector('.line.final')?.textContent || ''"
)


def clip_wav(tmp_path: Path) -> Path:
    audio = read_audio(str(LIBRIVOX[1].path))  # "he was not an ill disposed young man"
    return write_wav(tmp_path / "clip.wav", np.concatenate([silence(0.5), audio, silence(1.5)]))


async def create_room(base: str, room: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/rooms", json={"name": room}) as resp:
            assert resp.status == 201
            return str((await resp.json())["publish_token"])


async def publish(base: str, room: str, wav: Path, token: str | None = None) -> WhipPublisher:
    async with aiohttp.ClientSession() as http:
        pub = WhipPublisher(base, room, str(wav), token=token)
        await pub.start(http)
        await pub.log.wait_for(lambda log: log.finals(), 20)
        await pub.stop(http)
    return pub


async def test_overlay_draws_captions_over_a_transparent_page(nova, tmp_path: Path, artifacts: Path) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    token = await create_room(base, "show")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 640, "height": 360})
        await page.goto(
            f"{base}/overlay/show?size=34&color=%23ffe14d&outline=2&lines=2&fade=0&bg=%23000&bg_opacity=0.5"
        )
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
        pub = await publish(base, "show", clip_wav(tmp_path), token)
        await page.wait_for_function(f"({OVERLAY_FINAL}).length > 0", timeout=10_000)
        assert await page.evaluate(OVERLAY_FINAL) == pub.log.finals()[-1]["text"]
        # No scrollbars, transparent page, styled text.
        assert await page.evaluate("document.documentElement.scrollHeight <= innerHeight")
        assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgba(0, 0, 0, 0)"
        assert (
            await page.evaluate("getComputedStyle(document.querySelector('.line')).color")
            == "rgb(255, 225, 77)"
        )
        # A final fades in from the partial's dimmer look: wait until it is fully drawn.
        await page.wait_for_function(
            "getComputedStyle(document.querySelector('#captions .line.final')).opacity === '1'", timeout=5_000
        )
        png = await page.screenshot(omit_background=True)
        (artifacts / "overlay.png").write_bytes(png)
    rgba = decode_rgba(png)
    alpha = rgba[..., 3]
    assert alpha[:100].max() == 0, "the top of the overlay must be fully transparent"
    assert (alpha[200:] == 255).sum() > 500, "the captions at the bottom must be drawn opaque"


async def test_widget_embedded_in_another_origin_shows_captions(
    nova, aiohttp_server, tmp_path: Path, artifacts: Path
) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    host = web.Application()
    page_html = f"""<!doctype html><html><head><style>.line {{ color: red !important }}</style></head>
<body style="font-family: serif; background: #f4efe6"><h1>A blog post</h1>
<p>Live from the conference:</p>
<script src="{base}/widget.js" data-room="blog" data-lines="2" data-size="22" async></script>
<p id="after">Text after the widget.</p></body></html>"""
    host.router.add_get("/", lambda request: web.Response(text=page_html, content_type="text/html"))
    other = await aiohttp_server(host, host="127.0.0.1")
    assert other.port != server.port

    token = await create_room(base, "blog")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 800, "height": 400})
        await page.goto(str(other.make_url("/")))
        await page.wait_for_function("window.NovaCaptions && NovaCaptions.last", timeout=10_000)
        await page.evaluate("window.seen = []; NovaCaptions.last.on('caption', m => seen.push(m))")
        await page.wait_for_function(
            "document.querySelector('.nova-captions-widget').dataset.state === 'live'", timeout=10_000
        )
        pub = await publish(base, "blog", clip_wav(tmp_path), token)
        said = pub.log.finals()[-1]["text"]
        await page.wait_for_function(f"({WIDGET_FINAL}).length > 0", timeout=10_000)
        assert await page.evaluate(WIDGET_FINAL) == said
        # The widget stands where its tag stood, and the page's CSS does not reach inside it.
        assert (
            await page.evaluate("document.querySelector('.nova-captions-widget').nextElementSibling.tagName")
            == "SCRIPT"
        )
        color = await page.evaluate(
            "getComputedStyle(document.querySelector('.nova-captions-widget').shadowRoot.querySelector('.line')).color"
        )
        assert color != "rgb(255, 0, 0)"
        assert await page.evaluate("(said) => seen.some(m => m.final && m.text === said)", said)
        # Screenshot once the final has faded in from the partial's dimmer look.
        await page.wait_for_function(
            "getComputedStyle(document.querySelector('.nova-captions-widget').shadowRoot"
            ".querySelector('.line.final')).opacity === '1'",
            timeout=5_000,
        )
        await page.screenshot(path=str(artifacts / "widget.png"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_overlay_reconnects_after_the_server_restarts(inference, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(port=port, data_dir=str(tmp_path / "data"))

    async def start() -> web.AppRunner:
        runner = web.AppRunner(create_app(settings, inference))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = await start()
    wav = clip_wav(tmp_path)
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 640, "height": 360})
        await page.goto(f"{base}/overlay/again?fade=0&lines=3")
        first = await publish(base, "again", wav)
        await page.wait_for_function(f"({OVERLAY_FINAL}).length > 0", timeout=15_000)
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)

        await runner.cleanup()  # the server goes away...
        await page.wait_for_function("document.body.dataset.state === 'reconnecting'", timeout=15_000)
        runner = await start()  # ...and comes back
        try:
            await page.wait_for_function("document.body.dataset.state === 'live'", timeout=30_000)
            # The restarted server replays the room's last finals from its transcript: not blank.
            await page.wait_for_function(
                f"({OVERLAY_FINAL}) === {json.dumps(first.log.finals()[-1]['text'])}", timeout=5_000
            )
            await publish(base, "again", wav)
            await page.wait_for_function(
                "document.querySelectorAll('#captions .line.final').length === 2", timeout=15_000
            )
        finally:
            await runner.cleanup()
