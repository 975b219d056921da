"""Audio sent once (pipeline/audio_refs.py): what a worker assembles from the chunks a gateway
wrote and what it held is always exactly the request's audio, or a miss; never other audio."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio_refs import (
    DEFLATED,
    AudioCache,
    AudioChains,
    ChunkError,
    Planned,
    decode_chunk,
    encode_chunk,
)
from pipeline.clock import FakeClock

int16 = st.integers(-32768, 32767)


@given(st.lists(int16, max_size=3000), st.integers(0, 3))
def test_a_chunk_round_trips_exactly_whatever_the_samples(values: list[int], quiet: int) -> None:
    samples = np.array(values, dtype="<i2") >> quiet  # loud and quiet alike
    pcm = samples.astype("<i2").tobytes()
    assert decode_chunk(encode_chunk(pcm), len(pcm)) == pcm


def test_speech_and_silence_shrink_and_a_bomb_is_refused() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    voice = (3000 * np.sin(2 * np.pi * 180 * t) + rng.normal(0, 200, t.size)).astype("<i2").tobytes()
    silence = bytes(32_000)
    for pcm, most in ((voice, 0.85), (silence, 0.01)):
        chunk = encode_chunk(pcm)
        assert chunk[:1] == DEFLATED and len(chunk) <= most * len(pcm)
    # A chunk that inflates past what the request says it holds is refused, not inflated.
    with pytest.raises(ChunkError):
        decode_chunk(encode_chunk(silence), 1000)
    with pytest.raises(ChunkError):
        decode_chunk(DEFLATED + zlib.compress(bytes(10**7)), 32_000)
    with pytest.raises(ChunkError):
        decode_chunk(b"X" + silence, 32_000)


class Redis:
    """The hashes a gateway writes, as a dict (pure logic: no Redis needed to test the books)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[int, bytes]] = {}

    def write(self, planned: Planned) -> None:
        for key in planned.expired:
            self.hashes.pop(key, None)
        if planned.chunk is not None:
            self.hashes.setdefault(planned.key, {})[planned.chunk.index] = planned.chunk.data

    def read(self, cache: AudioCache, planned: Planned) -> bytes | None:
        """What a worker does with a request naming ``planned``."""
        start = cache.wanted(planned.key, planned.chunks)
        held = self.hashes.get(planned.key, {})
        read = [held.get(i) for i in range(start, planned.chunks)]
        if any(c is None for c in read):
            return None
        return cache.assemble(planned.key, start, planned.chunks, planned.samples, planned.crc, read)  # type: ignore[arg-type]


# A step: (session, what its next request's audio is, a loss that strikes first)
#   audio: "grow" the current utterance by n samples, "new" utterance of n samples, "again"
#   the same audio, "part": a stretch of the current utterance (a repair)
#   loss: None, "hash" (Redis lost it), "cache" (the worker forgot it), "worker" (another worker
#   reads it), "stale" (the hash holds other audio of the same length: a replica that lagged,
#   two gateways under one name; the CRC is what catches it)
steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["grow", "new", "again", "part"]),
        st.integers(1, 4000),
        st.sampled_from([None, None, None, "hash", "cache", "worker", "stale"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps, st.integers(0, 2**32 - 1))
def test_a_worker_assembles_exactly_the_requests_audio_or_misses(script: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    chains = AudioChains("nova:audio:gw:")
    redis = Redis()
    workers = [AudioCache(), AudioCache()]
    audio: dict[str, bytes] = {}
    misses_without_loss = 0
    for session, kind, n, loss in script:
        fresh = rng.integers(-32768, 32767, n, dtype=np.int16).astype("<i2").tobytes()
        current = audio.get(session, b"")
        if kind == "grow" or not current:
            pcm = current + fresh
        elif kind == "new":
            pcm = fresh
        elif kind == "again":
            pcm = current
        else:
            pcm = current[: 2 * (len(current) // 4)] or fresh
        audio[session] = pcm if kind != "part" else current
        planned = chains.plan(session, pcm)
        redis.write(planned)
        worker = workers[0]
        if loss == "hash":
            redis.hashes.pop(planned.key, None)
        elif loss == "cache":
            worker.drop(planned.key)
        elif loss == "worker":
            worker = workers[1]
        elif loss == "stale" and planned.chunk is not None:
            size = len(decode_chunk(planned.chunk.data, len(pcm)))
            other = rng.integers(-32768, 32767, size // 2, dtype=np.int16).astype("<i2").tobytes()
            redis.hashes[planned.key][planned.chunk.index] = encode_chunk(other)
        got = redis.read(worker, planned)
        assert got is None or got == pcm  # never other audio than the request's
        if got is None and loss is None:
            misses_without_loss += 1
        chains.release(session, planned.key)
        # What the gateway sends after a miss: a new utterance, so the next one starts afresh.
        if got is None:
            chains.forget(session, planned.key)
    assert misses_without_loss == 0


def test_a_growing_utterance_sends_only_what_is_new_and_old_utterances_are_deleted() -> None:
    chains = AudioChains("nova:audio:gw:")
    one = bytes(range(200)) * 10
    first = chains.plan("s", one[:1000])
    chains.release("s", first.key)
    second = chains.plan("s", one)
    assert second.key == first.key and second.chunks == 2 and second.chunk is not None
    assert decode_chunk(second.chunk.data, 2000) == one[1000:]  # the new part only
    assert second.samples == 1000 and second.crc == zlib.crc32(one)
    # A final of the first utterance still on its way while the second starts: it stays.
    other = chains.plan("s", b"\x01\x00" * 700)
    assert other.key != first.key and other.expired == ()
    chains.release("s", second.key)
    chains.release("s", other.key)
    third = chains.plan("s", b"\x02\x00" * 700)
    assert set(third.expired) == {first.key, other.key}  # nothing waits for them any more
    assert chains.close("s") == []  # the session left while a request still names its audio
    assert chains.release("s", third.key) == third.key  # answered: now it can go


def test_the_cache_is_bounded_and_forgets_what_nobody_asks_about() -> None:
    clock = FakeClock()
    cache = AudioCache(max_bytes=10_000, ttl=60, clock=clock)
    chains = AudioChains("nova:audio:gw:")
    redis = Redis()
    for i in range(8):
        planned = chains.plan(f"s{i}", bytes([i]) * 4000)
        redis.write(planned)
        assert redis.read(cache, planned) == bytes([i]) * 4000
        assert cache.nbytes <= 10_000
    assert len(cache) == 2  # the least recently used went first
    clock.advance(61)
    assert cache.wanted(planned.key, planned.chunks) == 0 and len(cache) == 0
