"""Streaming captions are as right as offline transcription of the same audio with the same model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
from faster_whisper import WhisperModel

from tests.support.corpus import Stream, espeak_passage, librivox
from tests.support.speech import silence, wer, write_wav
from tests.support.whip_client import CaptionLog, WhipPublisher


def offline_text(model: WhisperModel, stream: Stream) -> str:
    segments, _ = model.transcribe(stream.audio.astype(np.float32) / 32768, language="en", beam_size=5)
    return " ".join(s.text.strip() for s in segments)


async def test_streamed_finals_are_within_1_3x_of_offline_wer(nova, inference, tmp_path: Path) -> None:
    streams = [librivox(), espeak_passage()]
    offline = WhisperModel(inference.model.path, device="cpu", compute_type="int8")
    offline_texts = {s.name: offline_text(offline, s) for s in streams}
    offline_wer = {s.name: wer(s.reference, offline_texts[s.name]) for s in streams}

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
        await asyncio.gather(*(p.stop(http) for p in pubs))

    # One WER over every clip of both streams: a bound on one short clip would be a bound on one
    # or two words, and Whisper's int8 words vary between CPUs.
    reference = " ".join(s.reference for s in streams)
    offline_all = wer(reference, " ".join(offline_texts[s.name] for s in streams))
    streaming_all = wer(reference, " ".join(p.log.final_text() for p in pubs))
    assert streaming_all <= 1.3 * offline_all + 0.01, (streaming_all, offline_all, offline_wer)
    for s, p in zip(streams, pubs, strict=True):
        # Every utterance got a final of its own, timed in stream time near the true speech.
        finals = p.log.finals()
        for utt in s.utterances:
            assert any(abs(f["start"] - utt.start) < 0.6 for f in finals), (utt, finals)


def _closed(log: CaptionLog, t: float) -> bool:
    return any(m["end"] >= t - 1.0 for m in log.finals())
