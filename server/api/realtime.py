"""OpenAI's Realtime API, transcription sessions only: WebSocket ``/v1/realtime?intent=transcription``
(the ``openai`` SDK's ``client.realtime.connect(extra_query={"intent": "transcription"})``, or a
browser with the ``openai-insecure-api-key.<key>`` subprotocol).

The client configures with ``transcription_session.update`` (the beta shape: ``input_audio_format``
pcm16, ``input_audio_transcription`` with ``language``, ``prompt``, ``keywords``,
``turn_detection`` server_vad with ``silence_duration_ms``) or ``session.update`` (the GA shape,
``session.type`` transcription, ``audio.input.format`` audio/pcm at 24 kHz), sends
``input_audio_buffer.append`` of base64 PCM16 (24 kHz mono), and may ``commit`` (the utterance in
progress ends now) or ``clear``. The audio goes through the same streaming policy and scheduler
as a WHIP publisher's; the server answers ``input_audio_buffer.speech_started`` /
``speech_stopped``, ``conversation.item.input_audio_transcription.delta`` (words that will no
longer change, appended as they firm up) and ``.completed`` (the final text of the item), and
``error`` events in OpenAI's shape. Turn detection is always the server's VAD: ``null`` keeps it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from pipeline.actions import SpeechChange
from pipeline.audio import PcmStream
from pipeline.languages import UnknownLanguage, base, normalize
from pipeline.session import Event
from pipeline.text import normalize as normalize_word
from pipeline.types import Caption
from server.api.keys import API_KEYS, KEY_LIMITS, ApiRefused, authenticate
from server.api.live import LiveSession, vocabulary
from server.api.openai import openai_errors
from server.state import STATE, AppState

log = logging.getLogger(__name__)

RATE = 24_000  # the Realtime API's PCM16
MAX_MESSAGE = 4 << 20  # one event (base64 audio is 4/3 of its PCM)


def after(sent: str, final: str) -> str:
    """What a final adds to the deltas already sent when it does not simply extend them (its
    decode of the whole item heard a word the partials missed): the words after the sent ones,
    found among the final's words; nothing when they are not there."""
    words = final.split()
    sent_words = [normalize_word(w) for w in sent.split()]
    keys = [normalize_word(w) for w in words]
    n = len(sent_words)
    for i in range(len(keys) - n + 1):
        if keys[i : i + n] == sent_words:
            rest = words[i + n :]
            return (" " if sent else "") + " ".join(rest) if rest else ""
    return ""


def event_id() -> str:
    return "event_" + uuid.uuid4().hex[:20]


class RealtimeSocket:
    """One transcription session: configuration, audio, and the events its captions make."""

    def __init__(self, ws: web.WebSocketResponse, state: AppState) -> None:
        self.ws = ws
        self.state = state
        self.id = "sess_" + uuid.uuid4().hex[:20]
        self.language: str | None = None
        self.terms: list[str] = []
        self.silence_ms: int | None = None
        self.model = "whisper-1"
        self.live: LiveSession | None = None
        self.pcm = PcmStream(RATE)
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.sent: dict[int, str] = {}  # segment -> text already sent as deltas
        self.last_item: str | None = None
        self.next_segment = 0

    # -- configuration --------------------------------------------------------------------

    def session_object(self) -> dict[str, Any]:
        transcription = {"model": self.model, "language": self.language, "prompt": "", "keywords": self.terms}
        turn = {
            "type": "server_vad",
            "silence_duration_ms": self.silence_ms or self.state.settings.end_silence_ms,
        }
        return {
            "type": "transcription",
            "id": self.id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": transcription,
                    "turn_detection": turn,
                    "noise_reduction": None,
                }
            },
            "include": [],
        }

    def configure(self, session: Any) -> None:
        """Either shape of the session's settings; what cannot change once audio flows is kept."""
        if not isinstance(session, dict):
            raise ApiRefused(400, "invalid_value", "session is an object")
        audio_in = (session.get("audio") or {}).get("input") or {}
        fmt = audio_in.get("format") or session.get("input_audio_format")
        if fmt is not None:
            kind = fmt.get("type") if isinstance(fmt, dict) else fmt
            rate = fmt.get("rate", RATE) if isinstance(fmt, dict) else RATE
            if kind not in ("audio/pcm", "pcm16") or rate != RATE:
                raise ApiRefused(
                    400, "unsupported_audio_format", "the audio is PCM16, 24 kHz mono (pcm16, audio/pcm)"
                )
        transcription = audio_in.get("transcription") or session.get("input_audio_transcription") or {}
        if isinstance(transcription, dict):
            self.model = str(transcription.get("model") or self.model)[:64]
            language = transcription.get("language")
            if language:
                self.language = self._language(str(language))
            keywords = [*(transcription.get("keywords") or [])]
            if transcription.get("prompt"):
                keywords.append(str(transcription["prompt"]))
            if keywords:
                self.terms = [str(k) for k in keywords if isinstance(k, str)]
                if self.live is not None:
                    self.live.session.policy.vocabulary = vocabulary(self.terms)
        turn = audio_in.get("turn_detection", session.get("turn_detection"))
        if isinstance(turn, dict) and isinstance(turn.get("silence_duration_ms"), int):
            self.silence_ms = max(200, min(5000, turn["silence_duration_ms"]))

    def _language(self, raw: str) -> str:
        try:
            lang = base(normalize(raw))
        except UnknownLanguage as exc:
            raise ApiRefused(400, "invalid_value", str(exc)) from exc
        if lang != "en" and not self.state.multilingual:
            raise ApiRefused(
                400, "invalid_value", f"the model {self.state.settings.model!r} hears only English"
            )
        return lang

    # -- audio and captions ---------------------------------------------------------------

    def append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise ApiRefused(400, "invalid_value", "audio is base64 PCM16")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ApiRefused(400, "invalid_value", "audio is not valid base64") from None
        if self.live is None:
            self.live = LiveSession(self.state, self.on_event, self.language, self.silence_ms, self.terms)
        self.live.push(self.pcm.convert(data))

    def item(self, segment: int) -> str:
        return f"item_{self.id[5:17]}_{segment}"

    def on_event(self, event: Event) -> None:
        if isinstance(event, SpeechChange):
            ms = int(event.at * 1000)
            if event.speaking:
                self.emit(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=ms,
                    item_id=self.item(self.next_segment),
                )
            else:
                self.emit(
                    "input_audio_buffer.speech_stopped", audio_end_ms=ms, item_id=self.item(self.next_segment)
                )
            return
        caption: Caption = event
        self.next_segment = max(self.next_segment, caption.segment + (1 if caption.final else 0))
        item = self.item(caption.segment)
        sent = self.sent.get(caption.segment, "")
        firm = caption.text if caption.final else caption.stable
        delta = firm[len(sent) :] if firm.startswith(sent) else after(sent, firm) if caption.final else ""
        if delta:
            self.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item,
                content_index=0,
                delta=delta,
            )
            self.sent[caption.segment] = firm
        if caption.final:
            self.sent.pop(caption.segment, None)
            if not caption.text:
                return  # no speech after all: no item
            self.emit("input_audio_buffer.committed", item_id=item, previous_item_id=self.last_item)
            self.emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item, content_index=0, transcript=caption.text,
                usage={"type": "duration", "seconds": round(caption.end - caption.start, 3)},
            )  # fmt: skip
            self.last_item = item

    def emit(self, kind: str, **fields: Any) -> None:
        self.outbox.put_nowait({"type": kind, "event_id": event_id(), **fields})

    def error(self, exc: ApiRefused, client_event: str | None) -> None:
        error = {"type": "invalid_request_error", "code": exc.code, "message": exc.message, "param": None}
        self.emit("error", error={**error, "event_id": client_event})

    async def send_all(self) -> None:
        while (message := await self.outbox.get()) is not None:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(message, ensure_ascii=False))

    async def handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self.error(ApiRefused(400, "invalid_json", "an event is a JSON object"), None)
            return
        if not isinstance(message, dict):
            self.error(ApiRefused(400, "invalid_json", "an event is a JSON object"), None)
            return
        kind, client_event = message.get("type"), message.get("event_id")
        try:
            if kind in ("transcription_session.update", "session.update"):
                self.configure(message.get("session"))
                updated = (
                    "transcription_session.updated" if kind.startswith("transcription") else "session.updated"
                )
                self.emit(updated, session=self.session_object())
            elif kind == "input_audio_buffer.append":
                self.append(message.get("audio"))
            elif kind == "input_audio_buffer.commit":
                if self.live is not None:
                    self.live.pause()
            elif kind == "input_audio_buffer.clear":
                self.emit("input_audio_buffer.cleared")
            else:
                raise ApiRefused(
                    400, "unknown_event", f"{str(kind)[:64]!r} is not an event of a transcription session"
                )
        except ApiRefused as exc:
            self.error(exc, client_event if isinstance(client_event, str) else None)


async def realtime(request: web.Request) -> web.StreamResponse:
    caller = authenticate(request, request.app[API_KEYS])
    limits = request.app[KEY_LIMITS]
    limits.request(caller)
    if request.query.get("intent") != "transcription":
        raise ApiRefused(
            400, "unsupported_intent", "this server serves transcription sessions: ?intent=transcription"
        )
    limits.hold(caller, "socket")
    try:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        ws = web.WebSocketResponse(
            max_msg_size=MAX_MESSAGE, heartbeat=20.0, protocols=("realtime",) if "realtime" in offered else ()
        )
        socket = RealtimeSocket(ws, request.app[STATE])
        await ws.prepare(request)
        sender = asyncio.get_running_loop().create_task(socket.send_all())
        socket.emit("session.created", session=socket.session_object())
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await socket.handle(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    socket.error(ApiRefused(400, "invalid_event", "events are JSON text"), None)
        except ApiRefused as exc:  # the session could not open (inference unavailable, full)
            socket.error(exc, None)
        finally:
            socket.outbox.put_nowait(None)
            try:
                if socket.live is not None:
                    await socket.live.abort()
                await asyncio.gather(sender, return_exceptions=True)
            finally:
                sender.cancel()  # a handler cancelled above (the client went) must not leave it pending
        return ws
    finally:
        limits.release(caller, "socket")


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/realtime", openai_errors(realtime))]
