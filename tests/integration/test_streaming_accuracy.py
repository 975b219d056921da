"""Real speech over real WebRTC: aiortc publishers of LibriVox and espeak, the real server and
tiny.en. The captions are live (partials, then finals in order, with the caption fields), and
the finals are as right as offline transcription of the same audio with the same model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import espeak_passage, librivox, silence, write_wav
from bench.scoring import wer
from server.state import STATE
from tests.support.offline import Offline
from tests.support.whip_client import CaptionLog, WhipPublisher

CAPTION_KEYS = {"type", "room", "seq", "segment", "final", "text", "start", "end", "lang"}


async def test_streamed_finals_are_live_and_within_1_3x_of_offline_wer(
    nova, offline: Offline, tmp_path: Path
) -> None:
    streams = [librivox(), espeak_passage()]
    offline_texts = {s.name: offline.text(s.name, s.audio) for s in streams}

    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        pubs = []
        for s in streams:
            wav = write_wav(tmp_path / f"{s.name}.wav", np.concatenate([s.audio, silence(1.0)]))
            pubs.append(WhipPublisher(base, s.name, str(wav)))
        await asyncio.gather(*(p.start(http) for p in pubs))
        await asyncio.gather(*(p.ended() for p in pubs))
        for s, p in zip(streams, pubs, strict=True):
            last_end = s.utterances[-1].end
            await p.log.wait_for(lambda log, t=last_end: _closed(log, t), timeout=30)
        assert await asyncio.gather(*(p.stop(http) for p in pubs)) == [200, 200]
    state = server.app[STATE]
    assert state.publishers == {} and len(state.peers) == 0
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        metrics = await resp.text()
    # Where the voiced audio went (issue 16): every voiced second in a final, none in two.
    voiced = sum(len(s.audio) for s in streams) / 16_000
    assert 0.5 * voiced < metric(metrics, "nova_voiced_seconds_total") < voiced
    assert metric(metrics, "nova_voiced_seconds_unfinalised_total") == 0
    assert metric(metrics, "nova_voiced_seconds_doubled_total") == 0
    assert "nova_voiced_seconds_dropped_total{" not in metrics  # nothing dropped on purpose either

    # One WER over every clip of both streams: a bound on one short clip would be a bound on one
    # or two words, and Whisper's int8 words vary between CPUs.
    reference = " ".join(s.reference for s in streams)
    offline_all = wer(reference, " ".join(offline_texts[s.name] for s in streams))
    streaming_all = wer(reference, " ".join(p.log.final_text() for p in pubs))
    assert streaming_all <= 1.3 * offline_all + 0.01, (streaming_all, offline_all, offline_texts)
    for s, p in zip(streams, pubs, strict=True):
        assert wer(s.reference, p.log.final_text()) <= 0.15, (s.name, p.log.final_text())
        # Every utterance got a final of its own, timed in stream time near the true speech.
        finals = p.log.finals()
        for utt in s.utterances:
            assert any(abs(f["start"] - utt.start) < 0.6 for f in finals), (utt, finals)
        assert [f["start"] for f in finals] == sorted(f["start"] for f in finals)

        captions = p.log.captions()
        assert all(CAPTION_KEYS <= set(m) and m["room"] == s.name for m in captions)
        seqs = [m["seq"] for m in captions]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # Live: partials come before the first final, and the speech indicator was on.
        assert any(not m["final"] for m in captions[: captions.index(finals[0])])
        assert any(m["type"] == "status" and m["speech"] for m in p.log.messages)


def metric(text: str, name: str) -> float:
    (value,) = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return value


def _closed(log: CaptionLog, t: float) -> bool:
    return any(m["end"] >= t - 1.0 for m in log.finals())
