"""A streamer's evening in headless Chromium (issue 30): a two-speaker panel on the default
overlay keeps every final up long enough to read; and on a phone-like origin that is not
loopback (https://nova.test, served with ``--tls self-signed``), the capture page gets the
microphone and captions, catches a typo in the room's name, and sets up YouTube and OBS outputs
whose state it shows live."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.corpus import ESPEAK_TEXT, espeak, silence, write_wav
from bench.scoring import wer
from pipeline.types import Caption
from server.rooms.webhook import verify
from server.state import STATE
from tests.support.browser import captured_finals, chromium
from tests.support.probes import wait_until
from tests.support.server_process import ServerProcess, free_port

# Every final line's time on screen, as the overlay's reader sees it (faded lines are gone).
HOOK_SECRET = "a-webhook-secret-of-32-characters"
WATCH = """() => {
  window.seen = {};
  const tick = () => {
    const now = performance.now();
    for (const l of document.querySelectorAll('#captions .line.final:not(.gone)')) {
      const k = l.dataset.key;
      const e = window.seen[k] || (window.seen[k] = {text: l.querySelector('.text').textContent, first: now});
      e.last = now;
    }
  };
  setInterval(tick, 50);
}"""


async def test_two_speakers_on_the_default_overlay_keep_every_final_up_for_four_seconds(
    nova, artifacts: Path
) -> None:
    """Ana and Ben talk over each other, each finishing a sentence every 2.4 s (one final every
    1.2 s in the room) while the other's partial keeps growing: the pace at which the default
    overlay (``lines=2``) used to push each final off within 1.5-2.8 s. The captions go through
    the server's own room and a real data channel; only their words are scripted."""
    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    room = server.app[STATE].rooms.ensure("panel")
    room.join_publisher("ana", "Ana")
    room.join_publisher("ben", "Ben")
    lines = {
        "ana": ["Welcome back to the evening panel.", "The budget for the new line is settled.",
                "We start with the timetable tonight.", "Questions come at the very end.",
                "Let us hear from the audience."],
        "ben": ["Thanks Ana, glad to be here again.", "Trains will run every ten minutes.",
                "Weekends get a later last train.", "Tickets stay at the same price.",
                "That is all from me."],
    }  # fmt: skip
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        await page.goto(f"{base}/overlay/panel")  # the defaults: lines=2, fade=8
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
        await page.evaluate(WATCH)
        segment = {"ana": 0, "ben": 0}
        heard = {"ana": 0, "ben": 0}
        t = 0.0
        for step in range(24):  # a step every 0.4 s: both partials grow, every third a final
            for who in ("ana", "ben"):
                sentence = lines[who][segment[who]].split()
                heard[who] += 1
                closing = step % 6 == (2 if who == "ana" else 5)
                text = " ".join(sentence if closing else sentence[: min(heard[who], len(sentence) - 1)])
                room.caption(who, Caption(segment[who], closing, text, t, t + 1.0, "en"))
                if closing:
                    segment[who] += 1
                    heard[who] = 0
            t += 0.4
            await asyncio.sleep(0.4)  # the panel's pace, in real time: what the test is about
        await page.evaluate("document.documentElement.style.background = '#2b3a4a'")
        await page.screenshot(path=str(artifacts / "overlay-two-speakers.png"))
        await asyncio.sleep(4.2)  # the last final's four seconds
        seen = await page.evaluate("window.seen")
    assert len(seen) == 8, seen
    shown = {e["text"]: round((e["last"] - e["first"]) / 1000, 2) for e in seen.values()}
    assert all(seconds >= 3.9 for seconds in shown.values()), shown


def spki_hash(cert: Path) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list takes: base64 SHA-256 of the key."""
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class CaptionUrl:
    """YouTube's caption ingestion endpoint as the test sees it: every post kept."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append({"query": dict(request.query), "body": await request.text()})
        return web.Response(text="ok")


async def test_a_phone_over_https_captions_catches_a_typo_and_sets_up_outputs(
    tmp_path: Path, artifacts: Path, aiohttp_server: Any
) -> None:
    """``serve --tls self-signed`` on an origin Chromium does not count as secure without TLS
    (nova.test, mapped to 127.0.0.1 as a phone's DNS would map a LAN name; its certificate
    trusted by its key, as a user accepts it once). Over plain http:// the same origin has no
    microphone at all (navigator.mediaDevices is undefined), which is what the issue saw."""
    youtube = CaptionUrl()
    endpoint = web.Application()
    endpoint.router.add_post("/closedcaption", youtube.handle)
    hooks: list[tuple[str, bytes]] = []

    async def webhook(request: web.Request) -> web.Response:
        hooks.append((request.headers.get("Nova-Signature", ""), await request.read()))
        return web.Response(status=204)

    endpoint.router.add_post("/hook", webhook)
    receiver = await aiohttp_server(endpoint, host="127.0.0.1")
    port = free_port()
    args = ("--tls", "self-signed", "--public-host", "nova.test", "--outputs-allow", "127.0.0.1")
    speech = espeak(ESPEAK_TEXT, tmp_path / "mic.wav")
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([silence(1.0), speech, silence(3.0)]))
    with ServerProcess(tmp_path / "data", port, *args) as server:
        await wait_until(lambda: any("fingerprint" in line for line in server.lines), 10, "the fingerprint")
        printed = "".join(server.lines)
        assert f"Open https://127.0.0.1:{port}" in printed and "SHA-256 fingerprint" in printed, printed
        cert = tmp_path / "data" / "tls" / "cert.pem"
        base = f"https://nova.test:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
            async with http.post(f"https://127.0.0.1:{port}/rooms", json={"name": "stage"}) as resp:
                assert resp.status == 201, await resp.text()
                token = (await resp.json())["publish_token"]
        flags = [
            "--host-resolver-rules=MAP nova.test 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={spki_hash(cert)}",
        ]
        async with chromium(fake_audio=mic, extra_args=flags) as browser:
            page = await browser.new_page(viewport={"width": 1000, "height": 900})
            await page.goto(f"{base}/?room=stgae")
            assert await page.evaluate("window.isSecureContext && location.hostname === 'nova.test'")
            idle_hint = await page.get_attribute("#dictation", "placeholder")
            assert idle_hint is not None and idle_hint.startswith("Press Share microphone")

            # A typo of the room's name, with its token: refused, named, and put right.
            await page.fill("#token", token)
            await page.click("#share")
            await page.wait_for_selector("#error-action:not([hidden])", timeout=10_000)
            said = await page.text_content("#error-text") or ""
            assert 'no room called "stgae"' in said and 'Did you mean "stage"' in said, said
            assert await page.text_content("#error-other") == 'Create "stgae"'
            await page.screenshot(path=str(artifacts / "capture-typo.png"))
            await page.click("#error-action")  # Use "stage"
            await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
            live_hint = await page.get_attribute("#dictation", "placeholder")
            assert live_hint is not None and not live_hint.startswith("Press Share"), live_hint

            # Outputs from the page: YouTube with a test caption, and OBS where nothing listens.
            await page.click("#outputs summary")
            await page.click("#output-add")
            await page.select_option("#output-type", "youtube")
            assert await page.get_attribute("#output-url", "type") == "password"  # the key is masked
            await page.fill("#output-url", f"{receiver.make_url('/closedcaption')}?cid=STREAMKEY")
            await page.click("#output-save")
            await page.wait_for_selector("#output-list li[data-state]", timeout=5_000)
            await page.click("#output-list li button[data-act=test]")
            await page.wait_for_selector("#output-list li[data-state=connected] .output-note", timeout=10_000)
            assert "Test caption sent" in (await page.text_content("#output-list .output-note") or "")
            assert youtube.posts and youtube.posts[0]["query"]["cid"] == "STREAMKEY"
            assert "Nova Voice test caption" in youtube.posts[0]["body"]
            await page.click("#output-add")
            await page.select_option("#output-type", "obs")
            await page.fill("#output-url", f"ws://127.0.0.1:{free_port()}")
            await page.fill("#output-password", "secret")
            await page.click("#output-save")
            # A dead OBS address says so within seconds, in words.
            obs = "#output-list li:nth-child(2)"
            await page.wait_for_selector(f"{obs}[data-state=retrying]", timeout=10_000)
            assert "nothing answers" in (await page.text_content(f"{obs} .output-detail") or "")
            # A webhook: its URL shown as typed, its secret in the second field; its test is signed.
            await page.click("#output-add")
            await page.select_option("#output-type", "webhook")
            assert await page.get_attribute("#output-url", "type") == "text"
            assert "Signing secret" in (await page.text_content("#output-password-label") or "")
            await page.fill("#output-url", str(receiver.make_url("/hook")))
            await page.fill("#output-password", HOOK_SECRET)
            await page.click("#output-save")
            hook = "#output-list li:nth-child(3)"
            await page.click(f"{hook} button[data-act=test]")
            await page.wait_for_selector(f"{hook}[data-state=connected] .output-note", timeout=10_000)
            signature, body = hooks[0]
            assert verify(HOOK_SECRET, signature, body, time.time()), signature
            assert json.loads(body)["text"] == "Nova Voice test caption"

            finals = await captured_finals(page, ESPEAK_TEXT)
            assert wer(ESPEAK_TEXT, " ".join(finals)) <= 0.25, finals
            # Every final also went to YouTube, after the test caption.
            await wait_until(lambda: len(youtube.posts) >= 2, 20, "a final posted to YouTube")
            links = await page.eval_on_selector_all("#transcripts a", "(as) => as.map((a) => a.href)")
            assert len(links) == 4 and all(link.endswith("download=1") for link in links), links
            await page.screenshot(path=str(artifacts / "capture-outputs.png"), full_page=True)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(path=str(artifacts / "capture-outputs-phone.png"), full_page=True)
            read = (
                "(t) => fetch('/rooms/stage', {headers: {Authorization: `Bearer ${t}`}})"
                ".then((r) => r.text())"
            )
            info = json.loads(await page.evaluate(read, token))
            assert [o["state"] for o in info["outputs"]] == ["connected", "retrying", "connected"], info
            shown = json.dumps(info)
            assert "STREAMKEY" not in shown and "secret" not in shown and HOOK_SECRET not in shown
            await page.click("#stop")
            await page.wait_for_function("window.novaCapture.state() === 'idle'", timeout=10_000)
