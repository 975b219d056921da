"""Deepgram's speech-to-text API: ``POST /v1/listen`` (pre-recorded) and the live WebSocket
``/v1/listen``, as ``deepgram-sdk`` (7.16) sends them.

Pre-recorded: the body is the whole file (``Content-Type: application/octet-stream`` or any
audio type; raw PCM with ``encoding=linear16&sample_rate=...``), or ``{"url": ...}`` when the
server allows fetching (``--api-urls``; only where outputs may reach, no redirects, within the
size limit). Query values come as strings (``punctuate=true``). ``keywords`` (``term:boost``)
and ``keyterm`` become the vocabulary; ``utterances=true`` adds the utterances; ``diarize``
marks every word speaker 0 until speaker turns are told apart.

Live: ``encoding=linear16`` with ``sample_rate`` and ``channels``, or ``encoding=opus`` (Ogg
Opus), or no encoding (any container: WebM from a browser's MediaRecorder, WAV, ...);
``interim_results``, ``endpointing`` (ms of silence that end an utterance, 200-5000; ``false``:
the server's), ``utterance_end_ms``, ``vad_events``. Answers ``Results`` (``is_final``,
``speech_final``, words with times and confidence), ``SpeechStarted``, ``UtteranceEnd`` and, at
the end, ``Metadata``; ``KeepAlive``, ``Finalize`` and ``CloseStream`` are honoured; ten seconds
without audio or a KeepAlive close the socket (1011, as Deepgram does). Errors are Deepgram's
``{"err_code", "err_msg", "request_id"}``; a bad query is refused before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from multidict import MultiMapping

from pipeline.filejob import FileOptions
from pipeline.languages import UnknownLanguage, base, normalize
from pipeline.session import Event
from pipeline.types import Caption, DecodeOptions
from server.api.files import FILE_JOBS, RawAudio, discard, keepalive, spool
from server.api.formats import confidence, deepgram_body, deepgram_transcript, deepgram_words
from server.api.keys import API_KEYS, KEY_LIMITS, ApiRefused, Caller, authenticate, refusals_as
from server.api.live import LiveAudio, LiveSession, vocabulary
from server.edge.http import read_json, shown
from server.edge.outbound import outbound_session
from server.state import STATE

log = logging.getLogger(__name__)

IDLE_S = 10.0  # Deepgram closes a live socket that hears neither audio nor KeepAlive this long
MAX_MESSAGE = 1 << 20  # one binary message of audio
URL_TIMEOUT_S = 60.0


def deepgram_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"err_code": code.upper(), "err_msg": message, "request_id": str(uuid.uuid4())}
    return web.json_response(body, status=status, headers=headers)


deepgram_errors = refusals_as(deepgram_error)


def flag(query: MultiMapping[str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiRefused(400, "bad_request", f"{name} is true or false")


def number(query: MultiMapping[str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiRefused(400, "bad_request", f"{name} is a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise ApiRefused(400, "bad_request", f"{name} is a whole number from {low} to {high}")
    return value


@dataclass(frozen=True)
class Query:
    """What a /v1/listen query asks for, checked."""

    model: str
    language: str | None
    punctuate: bool
    utterances: bool
    diarize: bool
    terms: list[str]
    encoding: str | None
    rate: int | None
    channels: int
    interim: bool
    endpointing: int | None
    utterance_end_ms: int | None
    vad_events: bool


def query_of(request: web.Request) -> Query:
    q = request.query
    if q.get("callback"):
        raise ApiRefused(400, "bad_request", "callbacks are not supported: wait for the answer")
    language = None
    raw_language = q.get("language")
    if raw_language and raw_language != "multi":
        try:
            language = base(normalize(raw_language))
        except UnknownLanguage as exc:
            raise ApiRefused(400, "bad_request", str(exc)) from exc
        state = request.app[STATE]
        if language != "en" and not state.multilingual:
            raise ApiRefused(
                400, "bad_request", f"the model {state.settings.model!r} hears only English (--model base)"
            )
    encoding = q.get("encoding")
    if encoding not in (None, "linear16", "opus"):
        raise ApiRefused(400, "bad_request", "encoding is linear16 or opus (or none, for a container)")
    rate = number(q, "sample_rate", 8000, 192000)
    if encoding == "linear16" and rate is None:
        raise ApiRefused(400, "bad_request", "encoding=linear16 needs sample_rate (8000-192000)")
    endpointing: int | None = None
    if q.get("endpointing", "").lower() not in ("", "false", "true"):
        endpointing = number(q, "endpointing", 0, 60000)
        endpointing = None if endpointing is None else max(200, min(5000, endpointing))
    smart = flag(q, "smart_format")
    return Query(
        model=shown(q.get("model", "nova-3")),
        language=language,
        punctuate=flag(q, "punctuate") or smart,
        utterances=flag(q, "utterances"),
        diarize=flag(q, "diarize") or bool(q.get("diarize_model")),
        terms=[*q.getall("keywords", []), *q.getall("keyterm", [])],
        encoding=encoding,
        rate=rate,
        channels=number(q, "channels", 1, 8) or 1,
        interim=flag(q, "interim_results"),
        endpointing=endpointing,
        utterance_end_ms=number(q, "utterance_end_ms", 1000, 5000),
        vad_events=flag(q, "vad_events"),
    )


def caller_of(request: web.Request) -> Caller:
    caller = authenticate(request, request.app[API_KEYS])
    request.app[KEY_LIMITS].request(caller)
    return caller


async def listen(request: web.Request) -> web.StreamResponse:
    """``/v1/listen``: a WebSocket upgrade is the live API, a POST the pre-recorded one."""
    if request.method == "GET":
        return await live(request)
    caller = caller_of(request)
    query = query_of(request)
    jobs = request.app[FILE_JOBS]
    async with jobs.slot(caller):
        if request.content_type == "application/json":
            path = await fetch_url(request)
        else:
            path = await spool(
                lambda: request.content.read(1 << 16), jobs.folder, jobs.max_bytes, request.content_length
            )
        try:
            raw = RawAudio(query.rate or 16000, query.channels) if query.encoding == "linear16" else None
            audio = await jobs.decode(path, raw)
        finally:
            discard(path)
        s = request.app[STATE].settings
        decode = DecodeOptions(beam_size=s.final_beam_size, word_timestamps=True, language=query.language)
        options = FileOptions(decode=decode, hotwords=vocabulary(query.terms).prompt)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        done = []
        try:
            async with contextlib.aclosing(jobs.transcribe(audio, options)) as segments:
                async for segment in keepalive(response, segments):
                    done.append(segment)
            body = deepgram_body(
                done, len(audio) / 16000, query.model, query.punctuate, query.utterances, query.language
            )
            if query.diarize:
                for channel in body["results"]["channels"]:
                    for word in channel["alternatives"][0]["words"]:
                        word["speaker"] = 0
        except ApiRefused as exc:
            body = {"err_code": exc.code.upper(), "err_msg": exc.message, "request_id": str(uuid.uuid4())}
        await response.write(json.dumps(body, ensure_ascii=False).encode())
        await response.write_eof()
        return response


async def fetch_url(request: web.Request) -> Any:
    """Deepgram's ``{"url": ...}``: refused unless ``--api-urls``; then fetched only where room
    outputs may reach (``outbound_session``: no private addresses, no redirects), within the
    upload limits."""
    body = await read_json(request)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise ApiRefused(400, "bad_request", 'send the audio as the body, or {"url": "https://..."}')
    state = request.app[STATE]
    if not state.settings.api_urls or state.outputs is None:
        raise ApiRefused(
            400, "url_not_allowed", "this server does not fetch URLs (--api-urls); send the audio as the body"
        )
    jobs = request.app[FILE_JOBS]
    async with outbound_session(state.outputs.policy) as session:
        try:
            async with asyncio.timeout(URL_TIMEOUT_S), session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise ApiRefused(400, "remote_content_error", f"the URL answered {resp.status}")
                return await spool(
                    lambda: resp.content.read(1 << 16), jobs.folder, jobs.max_bytes, resp.content_length
                )
        except ApiRefused:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ApiRefused(
                400, "remote_content_error", f"the URL could not be fetched ({type(exc).__name__})"
            ) from exc


@dataclass
class UtteranceEnds:
    """Deepgram's ``UtteranceEnd``: once ``gap`` seconds of audio pass after the last word of
    the last final with no new words, one message with that word's end. Pure: stream time in."""

    gap: float
    last_word_end: float | None = None
    speaking: bool = False

    def words(self, end: float, final: bool) -> None:
        self.speaking = not final
        if final:
            self.last_word_end = end

    def due(self, now: float) -> float | None:
        if self.last_word_end is None or self.speaking or now - self.last_word_end < self.gap:
            return None
        end, self.last_word_end = self.last_word_end, None
        return end


class DeepgramSocket:
    """One live socket: its messages, built from the caption session's events."""

    def __init__(self, ws: web.WebSocketResponse, query: Query, model: str) -> None:
        self.ws = ws
        self.query = query
        self.request_id = str(uuid.uuid4())
        self.model = model
        self.model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, "nova-voice:" + model))
        self.ends = UtteranceEnds(query.utterance_end_ms / 1000) if query.utterance_end_ms else None
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.audio: LiveAudio | None = None
        self.error: str | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, Caption):
            if event.final or self.query.interim:
                self.outbox.put_nowait(self.results(event))
            if self.ends is not None and (event.text or event.final):
                self.ends.words(event.end, event.final)
        elif event.speaking and self.query.vad_events:
            self.outbox.put_nowait(
                {"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(event.at, 3)}
            )

    def results(self, caption: Caption) -> dict[str, Any]:
        words = list(caption.words)
        punctuate = self.query.punctuate
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(max(0.0, caption.end - caption.start), 3),
            "start": round(caption.start, 3),
            "is_final": caption.final,
            "speech_final": caption.final,
            "from_finalize": False,
            "channel": {
                "alternatives": [
                    {
                        "transcript": deepgram_transcript(words, punctuate) if words else caption.text,
                        "confidence": confidence(words),
                        "words": deepgram_words(words, punctuate, 0 if self.query.diarize else None),
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": self.model, "version": "nova-voice", "arch": "whisper"},
                "model_uuid": self.model_uuid,
            },
        }

    def metadata(self, seconds: float) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "",
            "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "duration": round(seconds, 3),
            "channels": self.query.channels,
            "models": [self.model_uuid],
            "model_info": {self.model_uuid: {"name": self.model, "version": "nova-voice", "arch": "whisper"}},
        }

    async def send_all(self) -> None:
        """Sends what the session says, in order, until told to stop (None)."""
        while (message := await self.outbox.get()) is not None:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(message, ensure_ascii=False))


async def live(request: web.Request) -> web.StreamResponse:
    caller = caller_of(request)
    query = query_of(request)
    state = request.app[STATE]
    limits = request.app[KEY_LIMITS]
    limits.hold(caller, "socket")
    try:
        ws = web.WebSocketResponse(
            max_msg_size=MAX_MESSAGE, heartbeat=20.0,
            protocols=("token",) if "token" in request.headers.get("Sec-WebSocket-Protocol", "") else (),
        )  # fmt: skip
        socket = DeepgramSocket(ws, query, query.model)
        session = LiveSession(state, socket.on_event, query.language, query.endpointing, query.terms)
        try:
            await ws.prepare(request)
            await run_socket(ws, socket, session, query)
        finally:
            await session.abort()
        return ws
    finally:
        limits.release(caller, "socket")


async def run_socket(
    ws: web.WebSocketResponse, socket: DeepgramSocket, session: LiveSession, query: Query
) -> None:
    loop = asyncio.get_running_loop()

    def failed(message: str) -> None:
        socket.error = message

    socket.audio = audio = LiveAudio(
        session.push, failed, rate=query.rate if query.encoding == "linear16" else None,
        channels=query.channels, container="ogg" if query.encoding == "opus" else None,
    )  # fmt: skip
    sender = loop.create_task(socket.send_all())
    heard = time.monotonic()
    try:
        while not ws.closed:
            try:
                async with asyncio.timeout(max(0.1, heard + IDLE_S - time.monotonic())):
                    msg = await ws.receive()
            except TimeoutError:
                await ws.close(code=1011, message=b"NET-0001: no audio or KeepAlive for 10 s")
                return
            if msg.type == aiohttp.WSMsgType.BINARY:
                heard = time.monotonic()
                if msg.data:
                    audio.feed(msg.data)
                else:
                    break  # an empty message ends the stream (Deepgram's older CloseStream)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                kind = control(msg.data)
                heard = time.monotonic()
                if kind == "CloseStream":
                    break
                if kind == "Finalize":
                    session.pause()
                elif kind != "KeepAlive":
                    socket.outbox.put_nowait(
                        {
                            "type": "Error",
                            "description": "unknown message",
                            "message": "",
                            "variant": "warning",
                        }
                    )  # noqa: E501
            else:
                return  # closed by the client: no more answers wanted
            if socket.error is not None:
                await ws.close(code=1008, message=f"DATA-0000: {socket.error}".encode()[:120])
                return
            if socket.ends is not None:
                end = socket.ends.due(audio.seconds)
                if end is not None:
                    socket.outbox.put_nowait(
                        {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(end, 3)}
                    )  # noqa: E501
        # CloseStream: the last words, then Metadata, then a normal close.
        await audio.end()
        await session.close()
        if socket.ends is not None and socket.ends.last_word_end is not None:
            socket.outbox.put_nowait(
                {
                    "type": "UtteranceEnd",
                    "channel": [0, 1],
                    "last_word_end": round(socket.ends.last_word_end, 3),
                }
            )
        socket.outbox.put_nowait(socket.metadata(audio.seconds))
    finally:
        audio.stop()
        socket.outbox.put_nowait(None)
        try:
            await asyncio.gather(sender, return_exceptions=True)
            if not ws.closed:
                await ws.close()
        finally:
            sender.cancel()  # a handler cancelled above (the client went) must not leave it pending


def control(text: str) -> str | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if isinstance(kind, str) else None


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/listen", deepgram_errors(listen)),
        web.get("/v1/listen", deepgram_errors(listen)),
    ]
