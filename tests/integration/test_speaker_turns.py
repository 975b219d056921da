"""Speaker turns on one microphone (issue 31), through the real server, Whisper and the
speaker model, on real voices (bench/panel.py: Asterisk's Allison and the LibriVox reader).

A room with ``"speakers": "auto"`` enrols Allison's voice from other recordings of hers, then
one WebRTC publisher (no name) carries both people: Allison, the reader 0.25 s later (one
utterance for the VAD, so the final must be cut at the change), a pause, the reader again
(the same label after a silence), Allison again. The viewer's finals each carry one speaker:
Allison by her enrolled name, the reader as "Ben", the name PATCH gave the label "Speaker 1";
the transcript exports name the reader "Ben" throughout.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from bench.corpus import silence, write_wav
from bench.panel import allison, available, named_mic, reader
from tests.support.whip_client import Viewer, WhipPublisher

pytestmark = pytest.mark.skipif(
    not available(), reason="needs asterisk-core-sounds-en-wav (install.sh --dev)"
)


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(audio.astype("<i2").tobytes())
    return out.getvalue()


def words_right(finals: list[dict], spans: list[tuple[float, float, str]]) -> float:
    """The share of caption text (by characters of words, timed by their caption) said by the
    speaker the caption names, after the names the test expects."""
    right = total = 0
    for m in finals:
        mid = (m["start"] + m["end"]) / 2
        who = min(spans, key=lambda s: 0 if s[0] <= mid <= s[1] else min(abs(mid - s[0]), abs(mid - s[1])))[2]
        n = len(m["text"].split())
        total += n
        right += n * (m.get("speaker") == who)
    return right / max(1, total)


async def test_one_microphone_two_voices_cut_named_and_renamed(nova, tmp_path: Path) -> None:
    a1, r1, r2, a2 = allison("demo-thanks"), reader(3), reader(1), allison("vm-nobox")
    lead = 1.0
    parts = [silence(lead), a1.audio, silence(0.25), r1.audio, silence(1.5), r2.audio, silence(1.2), a2.audio]
    spans, t = [], lead
    for clip, gap_after in ((a1, 0.25), (r1, 1.5), (r2, 1.2), (a2, 0.0)):
        spans.append((t, t + len(clip.audio) / 16_000, "Allison" if clip.person == "Allison" else "Ben"))
        t += len(clip.audio) / 16_000 + gap_after
    wav = write_wav(tmp_path / "panel.wav", np.concatenate([*parts, silence(2.0)]))

    # Labels that do not hang on this machine's load: a final may wait 5 s for its windows
    # (0.3 s by default; bench/results/diarization.md measures that in real time).
    server = await nova(speaker_hold_ms=5000)
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/rooms", json={"name": "panel", "speakers": "auto"}) as resp:
            assert resp.status == 201, await resp.text()
            room = await resp.json()
        token = room["publish_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert room["speaker_turns"] == "auto" and room["voices"] == []

        # Enrolment: a few seconds of Allison's voice, from recordings not in the stream.
        enrol = wav_bytes(np.concatenate([c.audio for c in named_mic()]))
        url = "/rooms/panel/voices?name=Allison"
        async with http.post(url, data=enrol, headers={"Content-Type": "audio/wav"}) as resp:
            assert resp.status == 401
        async with http.post(url, data=enrol[:20_000], headers={**auth, "Content-Type": "audio/wav"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "too_little_voice"
        async with http.post(url, data=enrol, headers={**auth, "Content-Type": "audio/wav"}) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["voices"] == ["Allison"]

        viewer = Viewer(base, "panel")
        await viewer.connect(http)
        shared = WhipPublisher(base, "panel", str(wav), token=token)
        await shared.start(http)
        # The voice heard second will be "Speaker 1" (the first unnamed one): the room names
        # it before anyone speaks, and every caption of that voice from then on says "Ben".
        async with http.patch(
            "/rooms/panel", json={"speaker_names": {"Speaker 1": "Ben"}}, headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["speaker_names"] == {"Speaker 1": "Ben"}
        await viewer.log.wait_for(lambda log: any(m["type"] == "settings" for m in log.messages), 10)
        await shared.ended()
        await shared.stop(http)
        try:
            await viewer.log.wait_for(lambda log: any(m.get("speaker") == "Ben" for m in log.finals()), 20)
        except TimeoutError:
            raise AssertionError([(m.get("speaker"), m["text"]) for m in viewer.log.finals()]) from None

        finals = [m for m in viewer.log.finals() if m["text"]]
        # Every caption has exactly one speaker; the change 0.25 s after Allison is a cut.
        assert all(isinstance(m.get("speaker"), str) for m in finals), finals
        assert {m["speaker"] for m in finals} == {"Allison", "Ben"}, finals
        assert words_right(finals, spans) >= 0.8, (finals, spans)
        allison_first = [m for m in finals if m["start"] < spans[0][1] and m["speaker"] == "Allison"]
        # The cut lands on a word boundary near the change (a word either side of it).
        reader_next = [m for m in finals if spans[1][0] - 1.2 <= m["start"] < spans[1][1] - 1.0]
        assert allison_first and reader_next and reader_next[0]["speaker"] == "Ben", finals

        async with http.get("/rooms/panel/transcript.vtt") as resp:
            vtt = await resp.text()
        async with http.get("/rooms/panel/transcript.json") as resp:
            data = await resp.json()
        assert "<v Ben>" in vtt and "<v Allison>" in vtt and "Speaker 1" not in vtt, vtt
        assert {c["speaker"] for c in data["captions"]} == {"Allison", "Ben"}, data
        await viewer.close()
