"""The OBS overlay and the embeddable widget, in headless Chromium, fed by a real publisher."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

from bench.corpus import LIBRIVOX, silence, write_wav
from pipeline.audio import read_audio
from tests.support.browser import chromium
from tests.support.png import decode_rgba
from tests.support.whip_client import WhipPublisher

OVERLAY_FINAL = "document.querySelector('#captions .line.final')?.textContent || ''"
WIDGET_FINAL = (
    "document.querySelector('.nova-captions-widget')?.shadowRoot"
    "?.querySelector('.line.final')?.textContent || ''"
)


# Every peer connection of the page may use relay candidates only, and has no relay.
BLOCK_WEBRTC = """
(() => {
  const Real = window.RTCPeerConnection;
  function Blocked(config) {
    return new Real(Object.assign({}, config, { iceServers: [], iceTransportPolicy: "relay" }));
  }
  Blocked.prototype = Real.prototype;
  window.RTCPeerConnection = Blocked;
})();
"""


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
    # The embedding site's own icon: its console is then the widget's alone.
    page_html = f"""<!doctype html><html><head><link rel="icon" href="data:,">
<style>.line {{ color: red !important }}</style></head>
<body style="font-family: serif; font-style: italic; font-weight: 900; letter-spacing: 4px;
 text-transform: uppercase; background: #f4efe6"><h1>A blog post</h1>
<p>Live from the conference:</p>
<script src="{base}/widget.js" data-room="blog" data-lines="2" data-size="22" async></script>
<p id="after">Text after the widget.</p></body></html>"""
    host.router.add_get("/", lambda request: web.Response(text=page_html, content_type="text/html"))
    other = await aiohttp_server(host, host="127.0.0.1")
    assert other.port != server.port

    token = await create_room(base, "blog")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 800, "height": 400})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        async with page.expect_response(lambda r: r.url.startswith(f"{base}/rooms/blog/ice")) as ice:
            await page.goto(str(other.make_url("/")))
        # ICE servers asked where every origin may read the answer (no CORS error in the
        # embedding site's console), and, with no --allow-origin, no TURN credentials in it.
        assert (await (await ice.value).json())["iceServers"] == []
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
        style = await page.evaluate(
            "(() => { const s = getComputedStyle(document.querySelector('.nova-captions-widget')"
            ".shadowRoot.querySelector('.line.final'));"
            " return [s.color, s.fontStyle, s.letterSpacing, s.textTransform, s.fontFamily]; })()"
        )
        # The page's italics, weight, spacing and capitals stop at the widget: a final still looks final.
        assert style[:4] == ["rgb(255, 255, 255)", "normal", "normal", "none"], style
        assert "serif" != style[4].split(",")[0].strip(), style
        assert await page.evaluate("(said) => seen.some(m => m.final && m.text === said)", said)
        # Screenshot once the final has faded in from the partial's dimmer look.
        await page.wait_for_function(
            "getComputedStyle(document.querySelector('.nova-captions-widget').shadowRoot"
            ".querySelector('.line.final')).opacity === '1'",
            timeout=5_000,
        )
        await page.screenshot(path=str(artifacts / "widget.png"))
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "widget-phone.png"))
    assert errors == [], errors


async def test_room_ice_gives_turn_credentials_only_where_ice_would(nova) -> None:
    """``/rooms/{room}/ice`` answers every origin (the widget anywhere), but TURN credentials go
    only to requests without an Origin, the server's own pages and --allow-origin, as on /ice."""
    server = await nova(
        turn_urls="turn:127.0.0.1:3478", turn_secret="s3cret", allow_origin="https://blog.example"
    )
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:

        async def ice(origin: str | None) -> tuple[dict, dict]:
            headers = {"Origin": origin} if origin else {}
            async with http.get(f"{base}/rooms/hall/ice", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json(), dict(resp.headers)

        for origin in (None, base, "https://blog.example"):
            body, headers = await ice(origin)
            assert body["iceServers"][0]["urls"] == ["turn:127.0.0.1:3478"], origin
            assert body["iceServers"][0]["credential"], origin
            assert headers["Cache-Control"] == "no-store" and "Origin" in headers.get("Vary", "")
        body, headers = await ice("https://evil.example")
        assert body["iceServers"] == [] and "s3cret" not in str(body) and "username" not in str(body)
        assert headers["Access-Control-Allow-Origin"] == "*"
        # /ice itself still refuses that origin outright.
        async with http.get(f"{base}/ice", headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        async with http.get(f"{base}/rooms/bad%20name/ice") as resp:
            assert resp.status == 400


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB pixels."""
    c = rgb.astype(np.float64) / 255
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * c[..., 0] + 0.7152 * c[..., 1] + 0.0722 * c[..., 2]


async def test_the_default_overlay_is_legible_over_a_bright_scene(
    nova, tmp_path: Path, artifacts: Path
) -> None:
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 640, "height": 360})
        await page.goto(f"{base}/overlay/bright?fade=0")  # no style parameters at all
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
        await publish(base, "bright", clip_wav(tmp_path))
        await page.wait_for_function(f"({OVERLAY_FINAL}).length > 0", timeout=10_000)
        await page.wait_for_function(
            "getComputedStyle(document.querySelector('#captions .line.final')).opacity === '1'", timeout=5_000
        )
        # What OBS composes the overlay onto: here a white, sunlit scene.
        await page.evaluate("document.documentElement.style.background = '#ffffff'")
        box = await page.evaluate(
            "(() => { const r = document.querySelector('#captions .line.final').getBoundingClientRect();"
            " return [r.left, r.top, r.right, r.bottom].map(Math.round); })()"
        )
        png = await page.screenshot(omit_background=True)  # RGBA; the white set above is painted
        (artifacts / "overlay-default-bright.png").write_bytes(png)
    left, top, right, bottom = box
    lum = luminance(decode_rgba(png)[top:bottom, left:right, :3])
    light, dark = np.percentile(lum, 99), np.percentile(lum, 3)
    # The white glyphs are set off from the white scene by a dark edge: WCAG AA contrast (4.5:1)
    # between the text's fill and its outline. Plain white text on white would measure 1:1.
    assert light > 0.85, light
    assert (light + 0.05) / (dark + 0.05) >= 4.5, (light, dark)


async def test_overlay_falls_back_to_the_http_feed_where_webrtc_is_blocked(nova, tmp_path: Path) -> None:
    """A network that lets HTTP through and no WebRTC (a corporate proxy): here the page's peer
    connections may use only relays and get none, so the data channel never opens; the overlay
    reads the same captions from /rooms/{room}/events, and says so."""
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    token = await create_room(base, "proxied")
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 640, "height": 360})
        await page.add_init_script(BLOCK_WEBRTC)
        said: list[str] = []
        page.on("console", lambda msg: said.append(msg.text))
        await page.goto(f"{base}/overlay/proxied?fade=0")
        await page.wait_for_function("document.body.dataset.transport === 'sse'", timeout=30_000)
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
        pub = await publish(base, "proxied", clip_wav(tmp_path), token)
        await page.wait_for_function(f"({OVERLAY_FINAL}).length > 0", timeout=10_000)
        assert await page.evaluate(OVERLAY_FINAL) == pub.log.finals()[-1]["text"]
        assert await page.evaluate("document.body.title") == "captions over the HTTP feed"
    assert any("HTTP feed" in line for line in said), said
