"""Issue 12 benchmark: which getUserMedia constraints the capture page asks for.

    python -m bench.browser [--out bench/results/browser.md] [--repeats 2]

Headless Chromium plays LibriVox, then the espeak passage, into the capture page's fake
microphone, through Chromium's audio processing (AEC3, noise suppression, AGC2 as the
constraints ask), its Opus encoder and WebRTC to a real server process (default flags), once
per constraint set and repeat. WER of the finals the page shows, and the aiortc WHIP publisher
of the same files for reference (no browser audio path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import Stream, espeak_passage, librivox, silence, write_wav
from bench.e2e import start_server
from bench.harness import write_report
from bench.scoring import wer
from tests.support.browser import chromium
from tests.support.whip_client import WhipPublisher

COMBOS = {
    "all on (before)": dict(echoCancellation=True, noiseSuppression=True, autoGainControl=True),
    "all off": dict(echoCancellation=False, noiseSuppression=False, autoGainControl=False),
    "echo cancellation only (now)": dict(
        echoCancellation=True, noiseSuppression=False, autoGainControl=False
    ),
    "noise suppression only": dict(echoCancellation=False, noiseSuppression=True, autoGainControl=False),
    "gain control only": dict(echoCancellation=False, noiseSuppression=False, autoGainControl=True),
}


async def through_chromium(
    base: str, wav: Path, stream: Stream, room: str, constraints: dict[str, bool]
) -> str:
    async with chromium(fake_audio=wav) as browser:
        page = await browser.new_page()
        # The page's own call, with these constraints instead of its own.
        await page.add_init_script(
            "(() => { const get = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);"
            f" navigator.mediaDevices.getUserMedia = () => get({{audio: {json.dumps(constraints)}}}); }})();"
        )
        await page.goto(f"{base}/?room={room}")
        await page.click("#share")
        await page.wait_for_function("window.novaCapture.state() === 'live'", timeout=15_000)
        enough = int(len(stream.reference.split()) * 0.97)
        try:
            await page.wait_for_function(
                f"window.novaCapture.finals().join(' ').split(/\\s+/).length >= {enough}",
                timeout=int(1000 * (len(stream.audio) / 16_000 + 30)),
            )
        except Exception:  # noqa: BLE001 - fewer words than expected: scored as they are
            pass
        await asyncio.sleep(4)  # a last final may still be on its way
        return " ".join(await page.evaluate("window.novaCapture.finals()"))


async def through_aiortc(base: str, wav: Path, stream: Stream, room: str) -> str:
    async with aiohttp.ClientSession() as http:
        pub = WhipPublisher(base, room, str(wav))
        await pub.start(http)
        await pub.ended()
        last = stream.utterances[-1].end
        try:
            await pub.log.wait_for(lambda log: any(m["end"] >= last - 1 for m in log.finals()), 20)
        except TimeoutError:
            pass
        await pub.stop(http)
        return pub.log.final_text()


async def main(out: Path, repeats: int) -> None:
    streams = [librivox(), espeak_passage()]
    wavs = {
        s.name: write_wav(Path(f"/tmp/nova-browser-{s.name}.wav"), np.concatenate([s.audio, silence(4.0)]))
        for s in streams
    }
    server, base = start_server([])
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for rep in range(repeats):
            for s in streams:
                for name, constraints in COMBOS.items():
                    room = f"b{rep}{s.name}{list(COMBOS).index(name)}"
                    w = wer(s.reference, await through_chromium(base, wavs[s.name], s, room, constraints))
                    results.setdefault(name, {}).setdefault(s.name, []).append(w)
                    print(rep, s.name, name, round(w, 3), flush=True)
                w = wer(s.reference, await through_aiortc(base, wavs[s.name], s, f"a{rep}{s.name}"))
                results.setdefault("aiortc publisher (no browser)", {}).setdefault(s.name, []).append(w)
                print(rep, s.name, "aiortc", round(w, 3), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)
    names = [s.name for s in streams]
    lines = [
        "# The capture page's getUserMedia constraints, measured through headless Chromium",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python -m bench.browser --repeats {repeats}`: WER of the finals",
        "shown by the capture page, each run one value, per stream (LibriVox 71 words, espeak 81).",
        "",
        "| audio path | " + " | ".join(names) + " | mean |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for name, per in results.items():
        cells = [", ".join(f"{w:.3f}" for w in per[n]) for n in names]
        mean = statistics.mean(w for n in names for w in per[n])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines.append("")
    write_report(out, lines, show=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/browser.md"))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    asyncio.run(main(args.out, args.repeats))
