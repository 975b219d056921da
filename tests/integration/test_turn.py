"""TURN end to end: a publisher and a viewer that may only use a relay still get captions."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import ESPEAK_TEXT, espeak, silence, write_wav
from bench.scoring import wer
from tests.integration.test_rooms import audio_offer
from tests.support.browser import captured_finals, chromium
from tests.support.coturn import coturn

# What a browser behind a symmetric NAT or a strict firewall can do: talk through TURN only.
RELAY_ONLY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (config) {
    const pc = new Native(Object.assign({}, config, { iceTransportPolicy: "relay" }));
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""

SELECTED_CANDIDATES = """
async () => {
  const types = [];
  for (const pc of window.__pcs) {
    if (pc.connectionState !== "connected") continue;
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type !== "transport" || !r.selectedCandidatePairId) return;
      const pair = stats.get(r.selectedCandidatePairId);
      const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
      types.push([local.candidateType, remote.candidateType]);
    });
  }
  return types;
}
"""


async def test_relay_only_publisher_and_viewer_get_captions_through_coturn(
    nova, tmp_path: Path, artifacts: Path
) -> None:
    speech = espeak(ESPEAK_TEXT, tmp_path / "mic.wav")
    mic = write_wav(tmp_path / "mic.wav", np.concatenate([silence(1.0), speech, silence(3.0)]))
    with coturn(tmp_path / "turn") as turn:
        server = await nova(turn_urls=turn.url, turn_secret=turn.secret)
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            ice = await (await http.get(f"{base}/ice")).json()
            # The server's own peers gather a relay candidate too, for peers only a relay can reach.
            resp = await http.post(
                f"{base}/whip/probe", data=await audio_offer(), headers={"Content-Type": "application/sdp"}
            )
            answer = await resp.text()
            await http.delete(base + resp.headers["Location"])
        assert ice["iceServers"][0]["urls"] == [turn.url] and ice["iceServers"][0]["username"]
        assert resp.status == 201 and " typ relay" in answer, answer

        async with chromium(fake_audio=mic) as browser:
            context = await browser.new_context()
            await context.add_init_script(RELAY_ONLY)
            overlay = await context.new_page()
            await overlay.goto(f"{base}/overlay/relayed?fade=0&lines=3")
            await overlay.wait_for_function("document.body.dataset.state === 'live'", timeout=20_000)
            capture = await context.new_page()
            await capture.goto(f"{base}/?room=relayed")
            await capture.click("#share")
            await capture.wait_for_function("window.novaCapture.state() === 'live'", timeout=20_000)
            finals = await captured_finals(capture, ESPEAK_TEXT)
            await overlay.wait_for_function(
                "document.querySelectorAll('#captions .line.final').length >= 1", timeout=10_000
            )
            shown = await overlay.evaluate(
                "[...document.querySelectorAll('#captions .line.final')].map(e => e.textContent)"
            )
            publisher_path = await capture.evaluate(SELECTED_CANDIDATES)
            viewer_path = await overlay.evaluate(SELECTED_CANDIDATES)
            await capture.click("#stop")
            await context.close()
        await server.close()  # before coturn goes: closing a relay allocation needs the relay
    assert wer(ESPEAK_TEXT, " ".join(finals)) <= 0.15, finals
    assert shown and all(line in finals for line in shown), (shown, finals)
    # Both browsers reached the server through their relay candidates, nothing else.
    assert publisher_path and all(local == "relay" for local, _ in publisher_path), publisher_path
    assert viewer_path and all(local == "relay" for local, _ in viewer_path), viewer_path
