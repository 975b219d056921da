"""Requests and results as Redis stream entries: self-contained, versioned, nothing pickled.

An entry is three fields: ``v`` (the format version), ``h`` (a JSON header: who asked, what,
and where the answer goes) and ``b`` (raw bytes: int16 little-endian PCM for Whisper). What an
engine's request and result look like inside the header is its ``Codec``'s business, so a new
engine (NLLB, speaker embeddings) adds a codec, not a format. A reader refuses any entry it
cannot fully check (``WireError``) instead of guessing, and a newer version is refused rather than misread.

Version 2 (issue 29) is a Whisper request whose audio is not in the entry but named by its
header's ``audio`` (``AudioRef``: a Redis hash the gateway fills as the utterance grows,
pipeline/audio_refs.py). A worker of version 1 refuses it instead of reading an empty entry as
silence, and gateways send it only while every live Whisper worker's heartbeat says it reads it
(``audio_refs``); every version-1 request reads as before. Results stay version 1, with one
more status, ``miss``, sent only in answer to a version-2 request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

import numpy as np

from pipeline.types import (
    DecodeOptions,
    Embeddings,
    EmbedRequest,
    SpeakRequest,
    Speech,
    TranscribeRequest,
    Transcript,
    TranslateRequest,
    Translation,
    Word,
)

VERSION = 1
REF_VERSION = 2  # a request whose audio is named, not carried (AudioRef)
# 30 s of 16 kHz int16 is what Whisper can take; a little over that is still an honest request.
MAX_BLOB = 40 * 16_000 * 2
MAX_HEADER = 64 * 1024
# A spoken sentence (the piper engine's result): 1000 characters at a slow 10 a second, 48 kHz.
MAX_RESULT_BLOB = 100 * 48_000 * 2

Status = Literal["ok", "dropped", "failed", "miss"]
STATUSES = ("ok", "dropped", "failed", "miss")


class WireError(ValueError):
    """An entry that is not a request or result of a version this code understands."""


class Codec(Protocol):
    """How one engine's request and result objects travel: JSON-able header parts plus bytes."""

    def request_body(self, request: Any) -> tuple[dict[str, Any], bytes]: ...

    def read_request(self, body: Mapping[str, Any], blob: bytes) -> Any: ...

    def result_body(self, result: Any) -> dict[str, Any]: ...

    def read_result(self, body: Mapping[str, Any]) -> Any: ...


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    # bool is an int in Python; a flag must not pass for a number nor a number for a flag.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise WireError(f"field {key!r} missing or not {kind}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _number(data: Mapping[str, Any], key: str) -> float:
    return float(_get(data, key, (int, float)))


def pcm16(audio: np.ndarray) -> bytes:
    """float32 audio as int16 little-endian PCM. The policy makes float32 from int16
    (x / 32768), so the round trip back is exact."""
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class WhisperCodec:
    """``TranscribeRequest`` as int16 PCM plus prompt and decode options; ``Transcript`` as words."""

    def request_body(self, request: TranscribeRequest) -> tuple[dict[str, Any], bytes]:
        o = request.options
        options = {
            "beam_size": o.beam_size,
            "temperature": o.temperature,
            "word_timestamps": o.word_timestamps,
            "min_window_frames": o.min_window_frames,
            "no_speech_threshold": o.no_speech_threshold,
            "log_prob_threshold": o.log_prob_threshold,
            "compression_ratio_threshold": o.compression_ratio_threshold,
            "language": o.language,
        }
        if o.task != "transcribe":
            options["task"] = o.task  # a gateway before issue 33 only ever transcribed
        body: dict[str, Any] = {"prompt": request.prompt, "options": options}
        if request.hotwords:
            body["hotwords"] = request.hotwords
        return body, pcm16(request.audio)

    def read_request(self, body: Mapping[str, Any], blob: bytes) -> TranscribeRequest:
        if len(blob) % 2:
            raise WireError("PCM is int16: an even number of bytes")
        o = _get(body, "options", dict)
        language = o.get("language")
        if language is not None and not isinstance(language, str):
            raise WireError("language must be a string or null")
        task = _get(o, "task", str) if "task" in o else "transcribe"
        if task not in ("transcribe", "translate"):
            raise WireError("task is transcribe or translate")
        # Fields added by issue 12 (partials without alignment, smaller windows, the sampling
        # fallback): an entry from a gateway without them asks for what they defaulted to.
        defaults = DecodeOptions()
        options = DecodeOptions(
            beam_size=int(_get(o, "beam_size", int)),
            temperature=_number(o, "temperature") if "temperature" in o else defaults.temperature,
            word_timestamps=_get(o, "word_timestamps", bool)
            if "word_timestamps" in o
            else defaults.word_timestamps,
            min_window_frames=int(_get(o, "min_window_frames", int))
            if "min_window_frames" in o
            else defaults.min_window_frames,
            no_speech_threshold=_number(o, "no_speech_threshold"),
            log_prob_threshold=_number(o, "log_prob_threshold"),
            compression_ratio_threshold=_number(o, "compression_ratio_threshold"),
            language=language,
            task=task,
        )
        audio = from_pcm16(blob)
        # A room's vocabulary (issue 21); a gateway from before it sends none.
        hotwords = _get(body, "hotwords", str) if "hotwords" in body else ""
        return TranscribeRequest(
            audio=audio, prompt=_get(body, "prompt", str), options=options, hotwords=hotwords
        )

    def result_body(self, result: Transcript) -> dict[str, Any]:
        return {
            "words": [[w.text, w.start, w.end, w.probability] for w in result.words],
            "language": result.language,
            "no_speech_prob": result.no_speech_prob,
            "avg_logprob": result.avg_logprob,
            "compression_ratio": result.compression_ratio,
            "timed": result.timed,
            "sentence_end": result.sentence_end,
        }

    def read_result(self, body: Mapping[str, Any]) -> Transcript:
        words = []
        for item in _get(body, "words", list):
            if not (isinstance(item, list) and len(item) == 4 and isinstance(item[0], str)):
                raise WireError("a word is [text, start, end, probability]")
            try:
                words.append(Word(item[0], float(item[1]), float(item[2]), float(item[3])))
            except (TypeError, ValueError) as exc:
                raise WireError(f"bad word {item!r}") from exc
        return Transcript(
            words=tuple(words),
            language=_get(body, "language", str),
            no_speech_prob=_number(body, "no_speech_prob"),
            avg_logprob=_number(body, "avg_logprob"),
            compression_ratio=_number(body, "compression_ratio"),
            # Issue 12 fields; a worker without them aligned every item and gave no sentence-end
            # probability (the policy then waits its sentence wait after each final).
            timed=_get(body, "timed", bool) if "timed" in body else True,
            sentence_end=_number(body, "sentence_end") if "sentence_end" in body else 0.0,
        )


MAX_LINE = 4096  # characters of one line to translate (a caption line is far shorter)


class TranslationCodec:
    """``TranslateRequest`` and ``Translation`` as JSON: a line of text and its languages; the
    same for every translation engine (Apertium, NLLB)."""

    def request_body(self, request: TranslateRequest) -> tuple[dict[str, Any], bytes]:
        body = {"text": request.text, "source": request.source, "target": request.target}
        return {**body, "prefix": request.prefix}, b""

    def read_request(self, body: Mapping[str, Any], blob: bytes) -> TranslateRequest:
        text = _get(body, "text", str)
        if len(text) > MAX_LINE:
            raise WireError(f"a line to translate is at most {MAX_LINE} characters")
        return TranslateRequest(
            text=text,
            source=_get(body, "source", str),
            target=_get(body, "target", str),
            prefix=_get(body, "prefix", str) if "prefix" in body else "",
        )

    def result_body(self, result: Translation) -> dict[str, Any]:
        return {"text": result.text, "source": result.source, "target": result.target}

    def read_result(self, body: Mapping[str, Any]) -> Translation:
        return Translation(
            text=_get(body, "text", str), source=_get(body, "source", str), target=_get(body, "target", str)
        )


MAX_EMBED_SAMPLES = 16_000 * 40  # a window, or an enrolled voice (at most MAX_BLOB too)


class SpeakerCodec:
    """``EmbedRequest`` as int16 PCM; ``Embeddings`` as little-endian float32 rows (base64)."""

    def request_body(self, request: EmbedRequest) -> tuple[dict[str, Any], bytes]:
        audio = request.audio
        if audio.dtype != np.int16:
            audio = np.clip(np.rint(audio * 32768.0), -32768, 32767)
        return {}, audio.astype("<i2").tobytes()

    def read_request(self, body: Mapping[str, Any], blob: bytes) -> EmbedRequest:
        if len(blob) % 2 or not blob or len(blob) > 2 * MAX_EMBED_SAMPLES:
            raise WireError("PCM is int16, 1 sample to a minute")
        return EmbedRequest(np.frombuffer(blob, dtype="<i2").copy())

    def result_body(self, result: Embeddings) -> dict[str, Any]:
        rows, dim = result.vectors.shape if result.vectors.ndim == 2 else (0, 0)
        data = base64.b64encode(result.vectors.astype("<f4").tobytes()).decode("ascii")
        return {"rows": rows, "dim": dim, "vectors": data, "step": result.step, "span": result.span}

    def read_result(self, body: Mapping[str, Any]) -> Embeddings:
        rows, dim = int(_get(body, "rows", int)), int(_get(body, "dim", int))
        try:
            raw = base64.b64decode(_get(body, "vectors", str), validate=True)
        except ValueError as exc:
            raise WireError("vectors are base64") from exc
        if rows < 0 or dim < 0 or rows * dim * 4 != len(raw) or rows * dim > 1 << 20:
            raise WireError("vectors do not match rows x dim")
        vectors = np.frombuffer(raw, dtype="<f4").reshape(rows, dim).astype(np.float32)
        return Embeddings(vectors, _number(body, "step"), _number(body, "span"))


class BlobResult(Protocol):
    """A codec whose results carry bytes beside the header (speech): the result entry's ``b``."""

    def result_blob(self, result: Any) -> bytes: ...

    def read_result_blob(self, body: Mapping[str, Any], blob: bytes) -> Any: ...


MAX_SPOKEN = 1000  # characters of one sentence to speak


class SpeechCodec:
    """``SpeakRequest`` as JSON (text, language, speed); ``Speech`` as int16 little-endian PCM in
    the result's bytes, its rate, language and voice in the header."""

    def request_body(self, request: SpeakRequest) -> tuple[dict[str, Any], bytes]:
        return {"text": request.text, "lang": request.lang, "speed": request.speed}, b""

    def read_request(self, body: Mapping[str, Any], blob: bytes) -> SpeakRequest:
        text = _get(body, "text", str)
        if len(text) > MAX_SPOKEN:
            raise WireError(f"a sentence to speak is at most {MAX_SPOKEN} characters")
        speed = _number(body, "speed")
        if not 0.5 <= speed <= 2.0:
            raise WireError("speed is from 0.5 to 2")
        return SpeakRequest(text=text, lang=_get(body, "lang", str), speed=speed)

    def result_body(self, result: Speech) -> dict[str, Any]:
        return {"rate": result.rate, "lang": result.lang, "voice": result.voice}

    def result_blob(self, result: Speech) -> bytes:
        return result.pcm.astype("<i2").tobytes()

    def read_result(self, body: Mapping[str, Any]) -> Speech:
        return self.read_result_blob(body, b"")

    def read_result_blob(self, body: Mapping[str, Any], blob: bytes) -> Speech:
        if len(blob) % 2:
            raise WireError("PCM is int16: an even number of bytes")
        rate = _get(body, "rate", int)
        if not 8000 <= rate <= 48_000:
            raise WireError("rate is from 8000 to 48000")
        pcm = np.frombuffer(blob, dtype="<i2").astype(np.int16)
        return Speech(pcm=pcm, rate=rate, lang=_get(body, "lang", str), voice=_get(body, "voice", str))


# Read-only: one codec per engine that travels over Redis.
CODECS: Mapping[str, Codec] = MappingProxyType(
    {
        "whisper": WhisperCodec(),
        "apertium": TranslationCodec(),
        "nllb": TranslationCodec(),
        "speaker": SpeakerCodec(),
        "piper": SpeechCodec(),
    }
)


@dataclass(frozen=True)
class AudioRef:
    """Where a version-2 request's audio is: the first ``chunks`` chunks of the Redis hash
    ``key``, ``samples`` int16 samples in all whose bytes have the CRC-32 ``crc``."""

    key: str
    chunks: int
    samples: int
    crc: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "chunks": self.chunks, "samples": self.samples, "crc": self.crc}

    @classmethod
    def read(cls, data: Any) -> AudioRef:
        if not isinstance(data, dict):
            raise WireError("audio is a JSON object")
        ref = cls(
            key=_get(data, "key", str),
            chunks=_get(data, "chunks", int),
            samples=_get(data, "samples", int),
            crc=_get(data, "crc", int),
        )
        if not 0 < ref.chunks <= 4096 or not 0 <= ref.samples <= MAX_BLOB // 2 or not 0 <= ref.crc < 2**32:
            raise WireError("audio reference out of range")
        return ref


@dataclass(frozen=True)
class WireRequest:
    """One engine request on its way to a worker.

    rid: request id, unique per send, carried into every log line on both sides.
    gateway, session, ticket: who asked; (session, ticket) is what results are deduplicated by.
    reply: the stream the result goes to (the asking gateway's).
    ttl_ms: for partials, how long after the entry was added (its stream id's time, Redis's
        clock, so gateways and workers need not agree on the time) the answer is still worth
        computing; 0 for finals, which never expire.
    context: ids for logs (room, publisher), passed through untouched.
    audio: where the audio is when it is not in the entry (version 2); the payload then
        arrives without it, and the worker fills it in (``with_audio``).
    """

    rid: str
    gateway: str
    session: str
    ticket: int
    final: bool
    engine: str
    payload: Any
    reply: str
    ttl_ms: int = 0
    context: Mapping[str, str] = field(default_factory=dict)
    background: bool = False  # a file job's chunk: the worker's scheduler runs it below live work
    audio: AudioRef | None = None


@dataclass(frozen=True)
class WireResult:
    """A worker's answer: ``ok`` with a payload, ``dropped`` (a partial too late or replaced),
    ``failed`` (dead-lettered after its deliveries; a final then closes with what it has), or
    ``miss`` (the audio a version-2 request names could not be read: send it whole)."""

    rid: str
    session: str
    ticket: int
    status: Status
    engine: str
    payload: Any = None
    error: str = ""
    worker: str = ""
    run_ms: float = 0.0
    wait_ms: float = 0.0  # how long it waited in Redis before a worker took it


def _header(
    fields: Mapping[bytes, bytes], versions: tuple[int, ...] = (VERSION,)
) -> tuple[int, dict[str, Any]]:
    version = fields.get(b"v")
    if version is None or b"h" not in fields:
        raise WireError("not a Nova Voice entry (no version or header)")
    try:
        v = int(version)
    except ValueError as exc:
        raise WireError(f"bad version {version!r}") from exc
    if v not in versions:
        raise WireError(
            f"wire version {v} is not {' or '.join(map(str, versions))}; "
            "run the same release on gateways and workers"
        )
    raw = fields[b"h"]
    if len(raw) > MAX_HEADER:
        raise WireError("header too large")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError("header is not JSON") from exc
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    return v, header


def _codec(codecs: Mapping[str, Codec], engine: str) -> Codec:
    codec = codecs.get(engine)
    if codec is None:
        raise WireError(f"no codec for engine {engine!r}")
    return codec


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_request(
    req: WireRequest, codecs: Mapping[str, Codec] = CODECS, parts: tuple[dict[str, Any], bytes] | None = None
) -> dict[bytes, bytes]:
    """The entry's fields; ``parts`` is the codec's ``request_body`` when the caller has it
    already. With ``req.audio`` the audio stays out of the entry (version 2)."""
    body, blob = parts or _codec(codecs, req.engine).request_body(req.payload)
    if req.audio is not None:
        blob = b""
    if len(blob) > MAX_BLOB:
        raise WireError(f"request of {len(blob)} bytes is over {MAX_BLOB}")
    header = {
        "rid": req.rid,
        "gw": req.gateway,
        "session": req.session,
        "ticket": req.ticket,
        "final": req.final,
        "engine": req.engine,
        "reply": req.reply,
        "ttl_ms": req.ttl_ms,
        "ctx": dict(req.context),
        "body": body,
    }
    if req.background:
        header["bg"] = True  # a reader from before issue 33 ignores it (and runs it as a final)
    version = VERSION
    if req.audio is not None:
        header["audio"] = req.audio.to_dict()
        version = REF_VERSION
    return {b"v": str(version).encode(), b"h": _dumps(header), b"b": blob}


def decode_request(fields: Mapping[bytes, bytes], codecs: Mapping[str, Codec] = CODECS) -> WireRequest:
    """A request; one of version 2 comes with its payload's audio empty and ``audio`` set."""
    version, h = _header(fields, (VERSION, REF_VERSION))
    blob = fields.get(b"b", b"")
    if len(blob) > MAX_BLOB:
        raise WireError("request body too large")
    engine = _get(h, "engine", str)
    audio = None
    if version == REF_VERSION:
        if engine != "whisper" or blob:
            raise WireError("only a Whisper request without inline audio names its audio")
        audio = AudioRef.read(h.get("audio"))
    elif "audio" in h:
        raise WireError("a version 1 request carries its audio")
    ctx = _get(h, "ctx", dict)
    try:
        payload = _codec(codecs, engine).read_request(_get(h, "body", dict), blob)
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad {engine} request: {exc}") from exc
    return WireRequest(
        rid=_get(h, "rid", str),
        gateway=_get(h, "gw", str),
        session=_get(h, "session", str),
        ticket=_get(h, "ticket", int),
        final=_get(h, "final", bool),
        engine=engine,
        payload=payload,
        reply=_get(h, "reply", str),
        ttl_ms=_get(h, "ttl_ms", int),
        context={str(k): str(v) for k, v in ctx.items()},
        background=_get(h, "bg", bool) if "bg" in h else False,
        audio=audio,
    )


def with_audio(req: WireRequest, pcm: bytes) -> WireRequest:
    """A version-2 Whisper request with the audio its reference named filled in."""
    return replace(req, payload=replace(req.payload, audio=from_pcm16(pcm)), audio=None)


def encode_result(res: WireResult, codecs: Mapping[str, Codec] = CODECS) -> dict[bytes, bytes]:
    header: dict[str, Any] = {
        "rid": res.rid,
        "session": res.session,
        "ticket": res.ticket,
        "status": res.status,
        "engine": res.engine,
        "error": res.error,
        "worker": res.worker,
        "run_ms": round(res.run_ms, 1),
        "wait_ms": round(res.wait_ms, 1),
    }
    fields = {b"v": str(VERSION).encode()}
    if res.status == "ok":
        codec = _codec(codecs, res.engine)
        header["body"] = codec.result_body(res.payload)
        if hasattr(codec, "result_blob"):
            blob = codec.result_blob(res.payload)
            if len(blob) > MAX_RESULT_BLOB:
                raise WireError(f"result of {len(blob)} bytes is over {MAX_RESULT_BLOB}")
            fields[b"b"] = blob
    return {**fields, b"h": _dumps(header)}


def decode_result(fields: Mapping[bytes, bytes], codecs: Mapping[str, Codec] = CODECS) -> WireResult:
    _, h = _header(fields)
    status = _get(h, "status", str)
    if status not in STATUSES:
        raise WireError(f"unknown status {status!r}")
    engine = _get(h, "engine", str)
    payload = None
    if status == "ok":
        codec = _codec(codecs, engine)
        blob = fields.get(b"b", b"")
        if len(blob) > MAX_RESULT_BLOB:
            raise WireError("result body too large")
        try:
            body = _get(h, "body", dict)
            reader = getattr(codec, "read_result_blob", None)
            payload = reader(body, blob) if reader is not None else codec.read_result(body)
        except (TypeError, ValueError) as exc:
            raise WireError(f"bad {engine} result: {exc}") from exc
    return WireResult(
        rid=_get(h, "rid", str),
        session=_get(h, "session", str),
        ticket=_get(h, "ticket", int),
        status=status,  # type: ignore[arg-type]  # checked against the statuses above
        engine=engine,
        payload=payload,
        error=_get(h, "error", str),
        worker=_get(h, "worker", str),
        run_ms=_number(h, "run_ms"),
        wait_ms=_number(h, "wait_ms") if "wait_ms" in h else 0.0,
    )
