"""OpenAI's audio API: ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations`` and
``GET /v1/models``, as the ``openai`` SDK (3.51) sends them.

A multipart form: ``file`` (anything PyAV decodes), ``model`` (any name: ``whisper-1`` and every
other name mean the model this server runs; ``GET /v1/models`` lists it), ``language``,
``prompt``, ``temperature``, ``response_format`` (json, text, srt, vtt, verbose_json),
``timestamp_granularities[]`` (word, segment; the SDK's brackets) and ``stream`` (true: Server-Sent
Events ``transcript.text.delta`` per segment, then ``transcript.text.done``). Errors are OpenAI's
``{"error": {"message", "type", "param", "code"}}``.

Long files answer as they go, so no client's read timeout passes while the device works:
stream=true sends each segment as it is done; text, srt and vtt stream their lines; json and
verbose_json send a space every ``KEEPALIVE_S`` (JSON allows leading white space) and then the
body. A failure after the answer has started is the last thing sent (an SSE error event, or an
error object in place of the body).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web

from pipeline.filejob import FileOptions, Segment
from pipeline.languages import UnknownLanguage, base, normalize
from pipeline.types import DecodeOptions
from server.api.files import FILE_JOBS, FileJobs, discard, keepalive, spool
from server.api.formats import OPENAI_FORMATS, full_text, openai_body
from server.api.keys import API_KEYS, KEY_LIMITS, ApiRefused, Caller, authenticate, refusals_as
from server.edge.http import shown
from server.rooms.subtitles import cues_of
from server.state import STATE

log = logging.getLogger(__name__)

MAX_FIELDS = 32
MAX_FIELD = 16 * 1024
MAX_PROMPT = 4000

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error"}


def openai_error(
    status: int, code: str, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = _TYPES.get(status, "rate_limit_error" if status == 429 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


# Refusals of this API and of the shared edge helpers, in OpenAI's error shape.
openai_errors = refusals_as(
    lambda status, code, message, headers: openai_error(status, code, message, None, headers)
)


def caller_of(request: web.Request) -> Caller:
    """Authenticate and count one request against its caller's rate."""
    caller = authenticate(request, request.app[API_KEYS])
    request.app[KEY_LIMITS].request(caller)
    return caller


@dataclass
class Form:
    """The multipart form: its text fields (repeated ones as lists) and the spooled file."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    file: Path | None = None
    filename: str = ""

    def one(self, name: str, default: str = "") -> str:
        values = self.fields.get(name) or self.fields.get(name + "[]") or []
        return values[-1] if values else default

    def many(self, name: str) -> list[str]:
        return [*self.fields.get(name, []), *self.fields.get(name + "[]", [])]


async def read_form(request: web.Request, jobs: FileJobs) -> Form:
    if request.content_type != "multipart/form-data":
        raise ApiRefused(400, "invalid_content_type", "send the file as multipart/form-data")
    form = Form()
    try:
        reader = await request.multipart()
        count = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            count += 1
            if count > MAX_FIELDS or isinstance(part, MultipartReader):
                raise ApiRefused(400, "invalid_form", "the form has too many or nested parts")
            assert isinstance(part, BodyPartReader)
            name = part.name or ""
            if name == "file":
                if form.file is not None:
                    raise ApiRefused(400, "invalid_form", "send one file")
                form.filename = shown(part.filename or "")
                form.file = await spool(part.read_chunk, jobs.folder, jobs.max_bytes, request.content_length)
                continue
            value = bytearray()
            while chunk := await part.read_chunk():
                value += chunk
                if len(value) > MAX_FIELD:
                    raise ApiRefused(400, "invalid_form", f"the field {shown(name)!r} is too long")
            try:
                form.fields.setdefault(name, []).append(value.decode())
            except UnicodeDecodeError:
                raise ApiRefused(400, "invalid_form", f"the field {shown(name)!r} is not UTF-8") from None
    except (ValueError, AssertionError) as exc:
        discard(form.file)
        raise ApiRefused(
            400, "invalid_form", f"the multipart form could not be read: {shown(str(exc))}"
        ) from exc
    except BaseException:
        discard(form.file)
        raise
    return form


@dataclass(frozen=True)
class Ask:
    """What one transcription or translation request asks for, checked."""

    response_format: str
    words: bool
    stream: bool
    options: FileOptions
    task: str


def truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def check_language(request: web.Request, raw: str) -> str | None:
    if not raw:
        return None
    try:
        lang = base(normalize(raw))
    except UnknownLanguage as exc:
        raise ApiRefused(400, "unsupported_language", str(exc)) from exc
    state = request.app[STATE]
    if lang != "en" and not state.multilingual:
        raise ApiRefused(
            400,
            "unsupported_language",
            f"the model {state.settings.model!r} hears only English; run a multilingual model (--model base)",
        )
    return lang


def ask_of(request: web.Request, form: Form, task: str) -> Ask:
    if form.file is None:
        raise ApiRefused(400, "missing_file", "the form has no 'file'")
    if not form.one("model"):
        raise ApiRefused(400, "missing_model", "the form has no 'model' (any name: the server runs one)")
    response_format = form.one("response_format", "json")
    if response_format not in OPENAI_FORMATS:
        raise ApiRefused(
            400, "unsupported_response_format", f"response_format is one of {', '.join(OPENAI_FORMATS)}"
        )
    granularities = set(form.many("timestamp_granularities"))
    if granularities - {"word", "segment"}:
        raise ApiRefused(
            400, "invalid_timestamp_granularities", "timestamp_granularities are word and segment"
        )
    try:
        temperature = float(form.one("temperature", "0"))
    except ValueError:
        raise ApiRefused(400, "invalid_temperature", "temperature is a number from 0 to 1") from None
    if not 0.0 <= temperature <= 1.0:
        raise ApiRefused(400, "invalid_temperature", "temperature is a number from 0 to 1")
    prompt = form.one("prompt")
    if len(prompt) > MAX_PROMPT:
        raise ApiRefused(400, "prompt_too_long", f"the prompt is at most {MAX_PROMPT} characters")
    language = check_language(request, form.one("language")) if task == "transcribe" else None
    s = request.app[STATE].settings
    decode = DecodeOptions(
        beam_size=s.final_beam_size if temperature == 0 else 1,
        temperature=temperature,
        word_timestamps=True,
        language=language,
        task=task,
    )
    return Ask(
        response_format=response_format,
        words="word" in granularities,
        stream=truthy(form.one("stream", "false")),
        options=FileOptions(decode=decode, prompt=prompt),
        task=task,
    )


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _audio(request, "transcribe")


async def translations(request: web.Request) -> web.StreamResponse:
    return await _audio(request, "translate")


async def _audio(request: web.Request, task: str) -> web.StreamResponse:
    caller = caller_of(request)
    jobs = request.app[FILE_JOBS]
    async with jobs.slot(caller):
        form = await read_form(request, jobs)
        try:
            ask = ask_of(request, form, task)
            assert form.file is not None
            audio = await jobs.decode(form.file)
        finally:
            discard(form.file)
        duration = len(audio) / 16_000
        # Closed whatever happens (a client that goes away): its chunks leave the scheduler.
        async with contextlib.aclosing(jobs.transcribe(audio, ask.options)) as segments:
            if ask.stream:
                return await _sse(request, segments, duration)
            return await _chunked(request, segments, ask, duration)


async def _sse(request: web.Request, segments: AsyncIterator[Segment], duration: float) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    done: list[Segment] = []
    try:
        async for segment in segments:
            if segment.text:
                done.append(segment)
                delta = (" " if len(done) > 1 else "") + segment.text
                await _event(response, {"type": "transcript.text.delta", "delta": delta})
        usage = {"type": "duration", "seconds": round(duration, 3)}
        await _event(response, {"type": "transcript.text.done", "text": full_text(done), "usage": usage})
    except ApiRefused as exc:
        await _event(response, {"error": {"message": exc.message, "type": "server_error", "code": exc.code}})
    await response.write_eof()
    return response


async def _event(response: web.StreamResponse, data: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitle_lines(segment: Segment, vtt: bool, number: int, until: float = float("inf")) -> tuple[str, int]:
    """One segment's cues (the subtitle rules of transcripts), numbered from ``number`` for SRT,
    none running past ``until`` (the next segment's start)."""
    out = []
    for cue in cues_of([(segment.start, max(segment.end, segment.start + 0.1), segment.text, None)]):
        cue = replace(cue, end=max(cue.start + 0.05, min(cue.end, until)))
        text = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") if vtt else cue.text
        sep = "." if vtt else ","
        head = [] if vtt else [str(number)]
        out += [*head, f"{_timestamp(cue.start, sep)} --> {_timestamp(cue.end, sep)}", text, ""]
        number += 1
    return "\n".join(out) + ("\n" if out else ""), number


async def _chunked(
    request: web.Request, segments: AsyncIterator[Segment], ask: Ask, duration: float
) -> web.StreamResponse:
    fmt = ask.response_format
    kind = {"text": "text/plain", "srt": "text/plain", "vtt": "text/vtt"}.get(fmt, "application/json")
    response = web.StreamResponse(headers={"Content-Type": f"{kind}; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    done: list[Segment] = []
    number = 1
    try:
        if fmt in ("text", "srt", "vtt"):
            if fmt == "vtt":
                await response.write(b"WEBVTT\n\n")
            held: Segment | None = None  # a segment's cues wait for the next one's start
            async for segment in segments:
                if not segment.text:
                    continue
                done.append(segment)
                if fmt == "text":
                    await response.write(((" " if len(done) > 1 else "") + segment.text).encode())
                    continue
                if held is not None:
                    lines, number = subtitle_lines(held, fmt == "vtt", number, until=segment.start)
                    await response.write(lines.encode())
                held = segment
            if held is not None:
                lines, number = subtitle_lines(held, fmt == "vtt", number)
                await response.write(lines.encode())
            if fmt == "text":
                await response.write(b"\n")
        else:
            async for segment in keepalive(response, segments):
                done.append(segment)
            body, _ = openai_body(done, fmt, duration, _language(done, ask), ask.task, ask.words)
            await response.write(json.dumps(body, ensure_ascii=False).encode())
    except ApiRefused as exc:
        error = {"error": {"message": exc.message, "type": "server_error", "param": None, "code": exc.code}}
        await response.write(
            ("\n" + json.dumps(error)).encode()
            if fmt in ("text", "srt", "vtt")
            else json.dumps(error).encode()
        )
    await response.write_eof()
    return response


def _language(done: list[Segment], ask: Ask) -> str:
    if ask.task == "translate":
        return "en"
    return done[0].language if done else (ask.options.decode.language or "en")


def served_models(request: web.Request) -> list[dict[str, Any]]:
    name = request.app[STATE].settings.model
    created = int(time.time()) // 86400 * 86400
    return [
        {"id": model_id, "object": "model", "created": created, "owned_by": "nova-voice"}
        for model_id in dict.fromkeys([name, "whisper-1"])
    ]


async def list_models(request: web.Request) -> web.Response:
    caller_of(request)
    return web.json_response({"object": "list", "data": served_models(request)})


async def get_model(request: web.Request) -> web.Response:
    caller_of(request)
    wanted = request.match_info["model"]
    for model in served_models(request):
        if model["id"] == wanted:
            return web.json_response(model)
    raise ApiRefused(404, "model_not_found", f"the model {shown(wanted)!r} does not exist here")


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/audio/transcriptions", openai_errors(transcriptions)),
        web.post("/v1/audio/translations", openai_errors(translations)),
        web.get("/v1/models", openai_errors(list_models)),
        web.get("/v1/models/{model}", openai_errors(get_model)),
    ]
