"""The Listen control in headless Chromium: silent until clicked, then an audio element with a
live track whose samples (read through WebAudio) are not silence; another language's button
switches the voice."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from server.state import STATE
from tests.integration.test_voice import metric, speech
from tests.support.browser import chromium
from tests.support.whip_client import WhipPublisher

AUDIO = "document.querySelector('#listen audio.nova-voice')"
# The loudest sample the page's WebAudio analyser read from the audio element's stream since
# the sampler was (re)started; the sampler runs on a timer in the page.
SAMPLER = """
(() => {
  const audio = document.querySelector('#listen audio.nova-voice');
  window.__peak = 0;
  if (window.__sampler) clearInterval(window.__sampler);
  const ctx = window.__ctx || (window.__ctx = new AudioContext());
  ctx.resume();
  const source = ctx.createMediaStreamSource(audio.srcObject);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  window.__sampler = setInterval(() => {
    analyser.getFloatTimeDomainData(data);
    for (const v of data) window.__peak = Math.max(window.__peak, Math.abs(v));
  }, 20);
})()
"""


async def heard(page: Page, http: aiohttp.ClientSession, timeout_ms: int) -> None:
    """Until the page's analyser reads sound; on a timeout, the server's voice metrics say why."""
    try:
        await page.wait_for_function("window.__peak > 0.05", timeout=timeout_ms)
    except PlaywrightTimeout:
        text = await (await http.get("/metrics")).text()
        said = [
            line for line in text.splitlines() if line.startswith("nova_voice") and "_created" not in line
        ]
        raise AssertionError("the page heard nothing; the server counted:\n" + "\n".join(said)) from None


async def test_listen_plays_the_voice_after_a_click_and_switches_language(
    nova, tmp_path: Path, artifacts: Path
) -> None:
    # A generous lag bound: this tests the control, not the pacing (tests/unit/test_pacing.py and
    # the held-out check in test_voice.py do), and on a loaded CI machine a sentence's synthesis
    # may wait seconds behind Whisper's batches on the shared scheduler.
    server = await nova(translate_engine="apertium", voice_max_lag=20.0)
    state = server.app[STATE]
    base = str(server.make_url("")).rstrip("/")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = speech(tmp_path / "a", ["Welcome to the weekly team meeting."])
    second = speech(tmp_path / "b", ["Thank you all for your hard work."])
    async with aiohttp.ClientSession(base) as http, chromium() as browser:
        resp = await http.post("/rooms", json={"name": "hall", "languages": ["es"], "voice": ["es", "en"]})
        room = await resp.json()
        page = await browser.new_page(viewport={"width": 800, "height": 300})
        await page.goto(f"{base}/overlay/hall?lang=es&voice=es,en&fade=0")
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=15_000)
        # Muted by default: no stream, muted element, no button pressed, nothing synthesised.
        assert await page.evaluate(f"{AUDIO}.muted && !{AUDIO}.srcObject")
        assert await page.locator("#listen button[aria-pressed='true']").count() == 0
        await page.click("#listen button[data-lang='es']")
        live = f"{AUDIO}.srcObject && {AUDIO}.srcObject.getAudioTracks()[0].readyState === 'live'"
        await page.wait_for_function(f"{live} && !{AUDIO}.muted", timeout=15_000)
        es_track = await page.evaluate(f"{AUDIO}.srcObject.getAudioTracks()[0].id")
        await page.evaluate(SAMPLER)
        pub = WhipPublisher(base, "hall", str(first), token=room["publish_token"])
        await pub.start(http)
        await heard(page, http, 45_000)
        await pub.stop(http)
        (artifacts / "overlay-listen.png").write_bytes(await page.screenshot())
        assert [s.lang for s in state.listening.values()] == ["es"]

        # Another language: the Spanish player ends, the English one plays the next sentence.
        await page.click("#listen button[data-lang='en']")
        await page.wait_for_function(
            f"{AUDIO}.srcObject && {AUDIO}.srcObject.getAudioTracks()[0].id !== {es_track!r}"
            f" && {AUDIO}.srcObject.getAudioTracks()[0].readyState === 'live'",
            timeout=15_000,
        )
        assert await page.get_attribute("#listen button[data-lang='en']", "aria-pressed") == "true"
        assert await page.get_attribute("#listen button[data-lang='es']", "aria-pressed") == "false"
        await page.evaluate(SAMPLER)
        pub = WhipPublisher(base, "hall", str(second), token=room["publish_token"])
        await pub.start(http)
        await heard(page, http, 45_000)
        await pub.stop(http)
        text = await (await http.get("/metrics")).text()
        assert metric(text, "nova_voice_sentences_total", lang="en", outcome="spoken") >= 1
        assert [s.lang for s in state.listening.values()] == ["en"]
        # A second click on the language playing mutes it.
        await page.click("#listen button[data-lang='en']")
        await page.wait_for_function(f"{AUDIO}.muted && !{AUDIO}.srcObject", timeout=5_000)
