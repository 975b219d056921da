"""A room's enrolled voices: a few seconds of someone's speech, so that the room's shared
microphones (speaker turns) call that voice by name.

``POST /rooms/{room}/voices?name=Ben`` with a WAV body (16-bit PCM, mono or stereo, 8-48 kHz,
3-60 s; at most 2 MiB) embeds the voiced part on the speaker engine and keeps the embedding
(not the audio) with the room's words, in ``rooms.json`` or the room's Redis record.
``DELETE /rooms/{room}/voices/{name}`` forgets it. Both need the room's publish token.
"""

from __future__ import annotations

import io
import logging
import wave

import numpy as np
from aiohttp import web

from pipeline.clusterer import unit
from pipeline.types import SAMPLE_RATE, Embeddings, EmbedRequest
from server.edge.guard import admit
from server.edge.http import error, read_bytes
from server.rooms.speakers import InvalidSpeaker, check_speaker
from server.rooms.words import WordsError
from server.routes.rooms import may_change, room_settings
from server.routes.viewers import room_name
from server.routes.whip import speaker_engine
from server.state import STATE

log = logging.getLogger(__name__)

MAX_VOICE_BYTES = 2 * 1024 * 1024
MIN_VOICED, MAX_SECONDS = 2.0, 60.0
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")


class BadAudio(ValueError):
    """A body that is not audio we take; the message says why, for the client."""


def read_wav(data: bytes) -> np.ndarray:
    """16 kHz mono float32 of a 16-bit PCM WAV (1-2 channels, 8-48 kHz, at most a minute)."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, rate, frames = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            if width != 2 or channels not in (1, 2) or not 8000 <= rate <= 48000:
                raise BadAudio("send 16-bit PCM WAV, mono or stereo, 8-48 kHz")
            if frames > MAX_SECONDS * rate:
                raise BadAudio(f"at most {MAX_SECONDS:.0f} s of audio")
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise BadAudio("the body is not a WAV file") from exc
    pcm = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], dtype="<i2").astype(np.float32)
    mono = pcm.reshape(-1, channels).mean(axis=1) / 32768.0
    if rate != SAMPLE_RATE and len(mono):
        # Linear interpolation is enough for an embedding of the voice (not for listening).
        n = int(len(mono) * SAMPLE_RATE / rate)
        mono = np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(mono)), mono).astype(np.float32)
    return mono


def voiced(audio: np.ndarray, frame: int = 480) -> np.ndarray:
    """The 30 ms frames within 35 dB of the loudest: silence would pull the embedding away."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    if not len(frames):
        return audio[:0]
    level = np.sqrt(np.mean(frames**2, axis=1)) + 1e-9
    keep = level > max(level.max() * 10 ** (-35 / 20), 1e-4)
    return frames[keep].reshape(-1)


async def post_voice(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = room_name(request)
    record = await state.rooms.record(name)
    may_change(request, state, record)
    try:
        speaker = check_speaker(request.query.get("name", ""))
    except InvalidSpeaker as exc:
        raise error(400, "invalid_speaker", f"?name= the voice's name: {exc}") from exc
    if not speaker_engine(state):
        message = "voices are recognised only where speaker turns run (not with --diarize-model off)"
        raise error(400, "speaker_turns_unavailable", message)
    if request.content_type not in WAV_TYPES:
        raise error(415, "unsupported_media_type", "send the recording as Content-Type: audio/wav")
    admit(request)
    data = await read_bytes(request, MAX_VOICE_BYTES, timeout=30.0)
    try:
        audio = voiced(read_wav(data))
    except BadAudio as exc:
        raise error(400, "bad_audio", str(exc)) from exc
    seconds = len(audio) / SAMPLE_RATE
    if seconds < MIN_VOICED:
        raise error(400, "too_little_voice", f"the recording has {seconds:.1f} s of voice; send at least 3 s")
    result: Embeddings = await state.backend.submit(
        "speaker", ("voice", name, speaker), EmbedRequest(audio), True
    )
    vector = unit(result.vectors.mean(axis=0))
    room = state.rooms.ensure(name)
    state.rooms.adopt(room, record)
    try:
        words = record.words.with_voice(speaker, vector)
    except WordsError as exc:
        raise error(409, "too_many_voices", str(exc)) from exc
    await state.rooms.set_words(room, words, ("voices",))
    room.words = words
    log.info("room %s: a voice enrolled (%.1f s)", name, seconds)
    body = {"room": name, "voice": speaker, "seconds": round(seconds, 1), **room_settings(room, state)}
    return web.json_response(body, status=201, headers={"Cache-Control": "no-store"})


async def delete_voice(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = room_name(request)
    record = await state.rooms.record(name)
    may_change(request, state, record)
    speaker = request.match_info["voice"]
    voices = dict(record.words.voices)
    if speaker not in voices:
        raise error(404, "unknown_voice", "this room has no enrolled voice of that name")
    del voices[speaker]
    room = state.rooms.ensure(name)
    state.rooms.adopt(room, record)
    words = record.words.with_voices(tuple(voices.items()))
    await state.rooms.set_words(room, words, ("voices",))
    room.words = words
    return web.json_response(
        {"room": name, **room_settings(room, state)}, headers={"Cache-Control": "no-store"}
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/rooms/{room}/voices", post_voice),
        web.delete("/rooms/{room}/voices/{voice}", delete_voice),
    ]
