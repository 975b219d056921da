"""Whisper audio sent once: a gateway puts each utterance's new audio into Redis as it grows,
requests name it, and workers read only the part they have not read yet.

A partial re-reads its whole utterance, so before this every request carried the utterance so
far: a 6 s utterance asked about every second sent 2 + 3 + 4 + 5 + 6 s of audio, and on the
LibriVox stream 29 requests put 103 KB each into Redis and took as much out again, 2.9 times
the audio itself (bench/results/scale.md). Now:

- The gateway (``AudioChains``) keeps, per session, the int16 PCM it last sent of each of its
  newest utterances (two at most: a final may still be on its way while the next utterance
  starts). A request whose audio starts with exactly that PCM sends only the new samples, as
  one more *chunk* in a Redis hash ``{prefix}:audio:{gateway}:{n}`` (field ``0``, ``1``, ...;
  fields, not a list, so two sends of one session on two connections cannot reorder it), and
  names the hash, its chunk count, its sample count and the CRC-32 of the whole audio. Audio
  that extends nothing (a new utterance, a repaired stretch) starts a new hash.
- A worker (``AudioCache``) keeps the PCM it has read of each hash, bounded in bytes and
  expiring when idle, and asks Redis (HMGET) only for the chunks it lacks: after the first
  request of an utterance, just the new second. Another worker that takes the next request
  reads the whole hash once and follows from there.
- Correctness never depends on either cache: the worker checks the sample count and the CRC of
  what it assembled, and anything missing or different (the hash expired, Redis restarted
  empty, a send that failed half-way) is a *miss*: the worker answers ``miss`` unrun and the
  gateway sends the same request again with its whole audio inline, as before.

Chunks are lossless: first differences of the int16 samples (wrapping), split into a high- and
a low-byte plane and deflated at level 1; speech from LibriVox shrinks to ~0.68 of its PCM at
~0.4 ms of one core per second of audio, and silence to almost nothing.
"""

from __future__ import annotations

import itertools
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.clock import Clock, MonotonicClock

RAW = b"P"  # a chunk of plain int16 little-endian PCM
DEFLATED = b"Z"  # first differences, byte planes, deflate level 1
# Chunks smaller than this are sent plain: deflate's own overhead would eat the gain.
MIN_DEFLATE = 256


class ChunkError(ValueError):
    """A chunk this code cannot read back into PCM."""


def encode_chunk(pcm: bytes) -> bytes:
    """int16 LE PCM as one chunk: deflated differences where that is smaller, else plain."""
    if len(pcm) < MIN_DEFLATE:
        return RAW + pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    # Differences wrap modulo 2**16, and so does the running sum that undoes them: exact.
    diff = np.diff(samples, prepend=np.int16(0)).astype("<i2")
    planes = np.ascontiguousarray(diff.view(np.uint8).reshape(-1, 2).T)
    packed = zlib.compress(planes.tobytes(), 1)
    return DEFLATED + packed if len(packed) + 1 < len(pcm) + 1 else RAW + pcm


def decode_chunk(chunk: bytes, max_bytes: int) -> bytes:
    """The PCM of a chunk, refusing one that would be over ``max_bytes`` once inflated."""
    kind, body = chunk[:1], chunk[1:]
    if kind == RAW:
        if len(body) % 2 or len(body) > max_bytes:
            raise ChunkError("plain chunk of an odd or too large size")
        return bytes(body)
    if kind != DEFLATED:
        raise ChunkError(f"unknown chunk kind {kind!r}")
    inflater = zlib.decompressobj()
    try:
        planes = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ChunkError(f"bad deflate data: {exc}") from exc
    if len(planes) > max_bytes or inflater.unconsumed_tail or len(planes) % 2:
        raise ChunkError("deflated chunk too large or of an odd size")
    diff = np.frombuffer(planes, dtype=np.uint8).reshape(2, -1).T.copy().view("<i2").ravel()
    return np.cumsum(diff, dtype=np.int16).astype("<i2").tobytes()


@dataclass(frozen=True)
class Chunk:
    """One HSET a send makes: chunk ``index`` of the hash ``key``."""

    key: str
    index: int
    data: bytes


@dataclass(frozen=True)
class Planned:
    """How one request's audio travels: the reference it carries (``key``, ``chunks``,
    ``samples``, ``crc``), the chunk to write first (None when no new audio), and the hashes
    of this session that nothing needs any more (to delete)."""

    key: str
    chunks: int
    samples: int
    crc: int
    chunk: Chunk | None
    expired: tuple[str, ...] = ()


@dataclass
class _Chain:
    key: str
    pcm: bytes  # what the hash holds, as PCM
    chunks: int
    crc: int
    users: int = 0  # requests sent that name it and are not answered yet


@dataclass
class _Session:
    chains: list[_Chain] = field(default_factory=list)  # newest last


class AudioChains:
    """The gateway's side: what each session has put into Redis, and what to put next.

    Pure bookkeeping; the caller writes the chunk, then the request, and calls ``release``
    once the request is answered (or given up), ``forget`` when a hash proved unusable.
    """

    def __init__(self, base: str, keep: int = 2) -> None:
        """``base`` starts every hash name (``Keys.audio(gateway)``); ``keep``: utterances of a
        session kept while requests still name them."""
        self._base = base
        self._keep = keep
        self._numbers = itertools.count(1)
        self._sessions: dict[str, _Session] = {}
        self._orphans: dict[str, _Chain] = {}  # dropped from their session, still named by a request

    def plan(self, session: str, pcm: bytes) -> Planned:
        """The reference and the chunk for a request of ``session`` carrying ``pcm``."""
        state = self._sessions.setdefault(session, _Session())
        for chain in reversed(state.chains):
            if len(pcm) >= len(chain.pcm) and pcm.startswith(chain.pcm):
                return self._extend(state, chain, pcm)
        chain = _Chain(f"{self._base}{next(self._numbers)}", b"", 0, 0)
        state.chains.append(chain)
        planned = self._extend(state, chain, pcm)
        # Older utterances nothing waits for are done with; of the rest, the newest few stay
        # (a final on its way while the next utterance starts), the others wait to be deleted.
        expired = [old.key for old in state.chains[:-1] if old.users == 0]
        state.chains = [c for c in state.chains if c.key not in expired]
        while len(state.chains) > self._keep:
            old = state.chains.pop(0)
            self._orphans[old.key] = old
        return replace(planned, expired=tuple(expired))

    def _extend(self, state: _Session, chain: _Chain, pcm: bytes) -> Planned:
        tail = pcm[len(chain.pcm) :]
        chunk = None
        if tail or chain.chunks == 0:
            chunk = Chunk(chain.key, chain.chunks, encode_chunk(tail))
            chain.chunks += 1
            chain.crc = zlib.crc32(tail, chain.crc)
            chain.pcm = pcm
        # Newest last: the chain just used is the one the next request most likely extends.
        state.chains.remove(chain)
        state.chains.append(chain)
        chain.users += 1
        return Planned(chain.key, chain.chunks, len(pcm) // 2, chain.crc, chunk)

    def release(self, session: str, key: str) -> str | None:
        """A request naming ``key`` is done; returns the key if nothing needs the hash now."""
        chain = self._find(session, key)
        if chain is None:
            return None
        chain.users = max(0, chain.users - 1)
        if chain.users == 0 and key in self._orphans:
            del self._orphans[key]
            return key
        return None

    def forget(self, session: str, key: str) -> str | None:
        """The hash is unusable (a worker missed it): later requests start a new one. Returns
        the key if nothing needs the hash now."""
        state = self._sessions.get(session)
        for chain in list(state.chains if state else ()):
            if chain.key == key:
                state.chains.remove(chain)  # type: ignore[union-attr]  # found in it
                if not chain.users:
                    return key
                self._orphans[key] = chain
        return None

    def close(self, session: str) -> list[str]:
        """The session is gone: every hash of it that no request still names."""
        state = self._sessions.pop(session, None)
        if state is None:
            return []
        out = []
        for chain in state.chains:
            if chain.users:
                self._orphans[chain.key] = chain
            else:
                out.append(chain.key)
        return out

    def reset(self) -> None:
        """Redis restarted: nothing it held can be named any more."""
        self._sessions.clear()
        self._orphans.clear()

    def _find(self, session: str, key: str) -> _Chain | None:
        state = self._sessions.get(session)
        for chain in state.chains if state else ():
            if chain.key == key:
                return chain
        return self._orphans.get(key)


@dataclass
class _Held:
    pcm: bytes
    chunks: int
    crc: int
    used: float


class AudioCache:
    """A worker's side: the PCM read of each hash, at most ``max_bytes`` in all (least recently
    used first out), and none idle longer than ``ttl`` seconds."""

    def __init__(self, max_bytes: int = 256 << 20, ttl: float = 60.0, clock: Clock | None = None) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock or MonotonicClock()
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._bytes = 0

    def wanted(self, key: str, chunks: int) -> int:
        """The first chunk of ``key`` to read from Redis for a request naming ``chunks`` of it
        (``chunks`` itself: nothing to read)."""
        self._expire()
        held = self._held.get(key)
        return min(held.chunks, chunks) if held is not None else 0

    def assemble(
        self, key: str, start: int, chunks: int, samples: int, crc: int, read: list[bytes]
    ) -> bytes | None:
        """The request's PCM from what is held and the chunks ``read`` (``start`` onwards), or
        None when it does not add up to ``samples`` samples with CRC-32 ``crc``: a miss."""
        want = 2 * samples
        held = self._held.get(key)
        if held is not None and held.chunks >= chunks and len(held.pcm) >= want:
            # All of it is here already (an older request of an utterance read further).
            exact = len(held.pcm) == want
            pcm = held.pcm if exact else held.pcm[:want]
            if (held.crc if exact else zlib.crc32(pcm)) != crc:
                return None
            self._touch(key, held)
            return pcm
        if start:
            if held is None or held.chunks != start:
                return None  # the cache moved meanwhile: let the gateway send it whole
            base, base_crc = held.pcm, held.crc
        else:
            base, base_crc = b"", 0
        try:
            tail = b"".join(decode_chunk(c, want) for c in read)
        except ChunkError:
            self.drop(key)
            return None
        if len(base) + len(tail) != want or zlib.crc32(tail, base_crc) != crc:
            self.drop(key)
            return None
        pcm = base + tail
        self._put(key, _Held(pcm, chunks, crc, self._clock.now()))
        return pcm

    def drop(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._bytes -= len(held.pcm)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._held)

    def _touch(self, key: str, held: _Held) -> None:
        held.used = self._clock.now()
        self._held.move_to_end(key)

    def _put(self, key: str, held: _Held) -> None:
        self.drop(key)
        if len(held.pcm) > self.max_bytes:
            return
        self._held[key] = held
        self._bytes += len(held.pcm)
        while self._bytes > self.max_bytes:
            _, old = self._held.popitem(last=False)
            self._bytes -= len(old.pcm)

    def _expire(self) -> None:
        cutoff = self._clock.now() - self.ttl
        while self._held:
            key, oldest = next(iter(self._held.items()))
            if oldest.used >= cutoff:
                break
            self.drop(key)
