"""Several publishers at once share one batched model and get what each would get alone."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import numpy as np

from bench.corpus import LIBRIVOX, silence, write_wav
from bench.scoring import wer
from pipeline.audio import read_audio
from tests.support.whip_client import WhipPublisher


def batch_counts(metrics: str) -> tuple[float, float]:
    """(batches of size 1, all batches) from the nova_whisper_batch_size histogram."""
    ones = float(re.search(r'nova_whisper_batch_size_bucket\{le="1.0"\} (\S+)', metrics).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"nova_whisper_batch_size_count (\S+)", metrics).group(1))  # type: ignore[union-attr]
    return ones, total


async def publish_all(base: str, wavs: list[Path], rooms: list[str]) -> list[str]:
    async with aiohttp.ClientSession() as http:
        pubs = [WhipPublisher(base, room, str(wav)) for room, wav in zip(rooms, wavs, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(p.start(http) for p in pubs)), 30)
        await asyncio.gather(*(p.ended(timeout=40) for p in pubs))
        await asyncio.gather(*(p.log.wait_for(lambda log: len(log.finals()) >= 2, 20) for p in pubs))
        await asyncio.wait_for(asyncio.gather(*(p.stop(http) for p in pubs)), 60)
    return [p.log.final_text() for p in pubs]


async def test_sessions_together_match_sessions_alone_and_batch(nova, tmp_path: Path) -> None:
    clips = [read_audio(str(c.path)) for c in (LIBRIVOX[3], LIBRIVOX[4])]
    audio = np.concatenate([silence(0.5), clips[0], silence(1.2), clips[1], silence(1.5)])
    # The same speech at slightly different offsets, as independent speakers would be.
    wavs = [write_wav(tmp_path / f"s{i}.wav", np.concatenate([silence(0.1 * i), audio])) for i in range(4)]

    server = await nova()
    base = str(server.make_url("")).rstrip("/")
    (alone,) = await publish_all(base, wavs[:1], ["alone"])
    together = await publish_all(base, wavs, [f"together{i}" for i in range(4)])

    for text in together:
        assert wer(alone, text) <= 0.1, (alone, text)
    async with aiohttp.ClientSession() as http:
        metrics = await (await http.get(f"{base}/metrics")).text()
    ones, total = batch_counts(metrics)
    assert total > ones, "with four speakers at once some Whisper calls must carry more than one request"
    assert "nova_queue_delay_seconds_count" in metrics
