"""The OpenAI and Deepgram compatible APIs (issue 33), driven by the official SDKs themselves
(PyPI ``openai`` 3.51 and ``deepgram-sdk`` 7.16, pointed at the test server's base URL), with no
request written by hand where an SDK sends it: files in every response format, the OpenAI
Realtime transcription session, Deepgram's live socket and pre-recorded calls, a wrong key and
bad input answered in each API's own error shape. The SDKs are synchronous: they run on a
thread while the server runs on the test's loop.

Held-out speech: the LibriVox clips (the model never saw them tuned for; real read speech with
reference transcripts), scored by WER pooled over the clips."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import openai
from aiohttp import web
from deepgram import DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from websockets.exceptions import InvalidStatus

from bench.corpus import LIBRIVOX, RATE, build, silence, write_wav
from bench.scoring import normalize as norm
from bench.scoring import pooled_wer, wer
from pipeline.audio import read_audio
from pipeline.types import Caption
from server.state import STATE

KEY = "nova-test-key-0123456789abcdef"


def held_out() -> list[tuple[Path, str]]:
    assert LIBRIVOX, "the LibriVox clips are installed by ./install.sh --dev"
    return [(c.path, c.text) for c in LIBRIVOX]


def openai_client(port: int, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=120)


def deepgram_client(port: int, key: str = KEY) -> DeepgramClient:
    env = DeepgramClientEnvironment(
        base=f"http://127.0.0.1:{port}",
        production=f"ws://127.0.0.1:{port}",
        agent=f"ws://127.0.0.1:{port}",
        agent_rest=f"http://127.0.0.1:{port}",
    )
    return DeepgramClient(api_key=key, environment=env)


def refused_status(exc: Exception) -> int:
    """The HTTP status of a refused handshake. deepgram-sdk 7.16 turns it into its ApiError only
    with websockets releases before 14 (its compat import finds the deprecated InvalidStatusCode
    and catches that, while websockets 17 raises InvalidStatus), so both are read."""
    if isinstance(exc, ApiError):
        return int(exc.status_code or 0)
    response = getattr(exc, "response", None)
    return int(getattr(response, "status_code", 0))


def paced(
    data: bytes, bytes_per_second: int, speed: float = 3.0, piece_s: float = 0.1
) -> list[tuple[float, bytes]]:
    """(send at, piece): audio in pieces at ``speed`` times real time."""
    step = int(bytes_per_second * piece_s) // 2 * 2
    return [(i / bytes_per_second / speed, data[i : i + step]) for i in range(0, len(data), step)]


def play(pieces: list[tuple[float, bytes]], send: Any) -> None:
    started = time.monotonic()
    for at, piece in pieces:
        delay = started + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the audio, as a microphone does
        send(piece)


async def test_openai_sdk_transcribes_held_out_files_in_every_format(nova, tmp_path: Path) -> None:
    server = await nova(api_key=KEY)
    clips = held_out()
    long_path = tmp_path / "five.flac"
    stream = build("librivox", [(read_audio(str(p)), text) for p, text in clips])
    write_wav(tmp_path / "five.wav", stream.audio)
    await asyncio.to_thread(subprocess.run, ["sox", str(tmp_path / "five.wav"), str(long_path)], check=True)
    two_hours = tmp_path / "two-hours.flac"
    sox = ["sox", "-n", "-r", "16000", "-c", "1", str(two_hours), "trim", "0", "7200"]
    await asyncio.to_thread(subprocess.run, sox, check=True)
    (tmp_path / "notes.txt").write_text("this is not audio\n" * 50)

    formats = ("json", "text", "srt", "vtt", "verbose_json")  # one held-out clip in each

    def run() -> dict[str, Any]:
        client = openai_client(server.port)
        out: dict[str, Any] = {}
        for (path, _), fmt in zip(clips, formats, strict=True):
            extra: dict[str, Any] = {"timestamp_granularities": ["word"]} if fmt == "verbose_json" else {}
            with path.open("rb") as f:
                out[fmt] = client.audio.transcriptions.create(
                    file=f, model="whisper-1", response_format=fmt, **extra
                )
        path = clips[0][0]  # the longest clip, for the stream and the translation
        with long_path.open("rb") as f:  # the five clips as one FLAC: several chunks, words timed across them
            out["verbose"] = client.audio.transcriptions.create(
                file=f, model="whisper-1", response_format="verbose_json",
                timestamp_granularities=["word", "segment"],
            )  # fmt: skip
        with path.open("rb") as f:
            out["stream"] = list(client.audio.transcriptions.create(file=f, model="whisper-1", stream=True))
        with path.open("rb") as f:
            out["translation"] = client.audio.translations.create(file=f, model="whisper-1").text
        out["models"] = [m.id for m in client.models.list().data]
        for name, upload in {
            "not_audio": ("notes.txt", (tmp_path / "notes.txt").read_bytes()),
            "empty": ("empty.wav", b""),
            "two_hours": two_hours.open("rb"),
        }.items():
            try:
                client.audio.transcriptions.create(file=upload, model="whisper-1")
            except openai.APIStatusError as exc:
                out[name] = exc
        try:
            openai_client(server.port, key="nova-wrong-key-0123456789").models.list()
        except openai.AuthenticationError as exc:
            out["wrong_key"] = exc
        return out

    got = await asyncio.to_thread(run)
    heard = [
        got["json"].text,
        got["text"],
        " ".join(ln for ln in got["srt"].splitlines() if ln and "-->" not in ln and not ln.isdigit()),
        " ".join(ln for ln in got["vtt"].splitlines()[1:] if ln and "-->" not in ln),
        got["verbose_json"].text,
    ]
    assert pooled_wer([norm(t) for _, t in clips], [norm(t) for t in heard]) <= 0.05, heard
    assert got["text"].endswith("\n") and got["srt"].startswith("1\n00:00:0")
    assert got["vtt"].startswith("WEBVTT\n\n00:00:0")
    clip_words = got["verbose_json"].words
    assert wer(clips[4][1], " ".join(w.word for w in clip_words)) <= 0.1
    assert all(0 <= w.start <= w.end <= got["verbose_json"].duration + 0.5 for w in clip_words)
    reference = clips[0][1]
    verbose = got["verbose"]
    assert wer(stream.reference, verbose.text) <= 0.05, verbose.text
    assert abs(verbose.duration - len(stream.audio) / RATE) < 0.1 and verbose.language == "english"
    words = verbose.words
    assert wer(stream.reference, " ".join(w.word for w in words)) <= 0.05
    starts = [w.start for w in words]
    assert starts == sorted(starts) and 0 <= starts[0] and words[-1].end <= verbose.duration + 0.5
    # Each clip's first word is heard where the clip was put in the recording.
    for utterance in stream.utterances:
        first = norm(utterance.text).split()[0]
        near = [w for w in words if norm(w.word) == first and abs(w.start - utterance.start) < 1.0]
        assert near, (first, utterance.start)
    assert len(verbose.segments) >= 5 and all(s.end > s.start for s in verbose.segments)
    events = got["stream"]
    assert [e.type for e in events][-1] == "transcript.text.done" and len(events) >= 2
    assert "".join(e.delta for e in events[:-1]) == events[-1].text
    assert wer(reference, events[-1].text) <= 0.1
    assert wer(reference, got["translation"]) <= 0.1  # an English model "translates" English as it is
    assert "whisper-1" in got["models"] and "tiny.en" in got["models"]
    assert got["not_audio"].status_code == 400 and got["not_audio"].code == "invalid_audio"
    assert got["empty"].status_code == 400 and got["empty"].code == "empty_file"
    assert got["two_hours"].status_code == 413 and got["two_hours"].code == "audio_too_long"
    assert got["wrong_key"].status_code == 401 and got["wrong_key"].code == "invalid_api_key"
    assert server.app[STATE].backend.stats().queue_depth == 0  # nothing left behind


def stream_24k(n: int) -> tuple[bytes, list[str]]:
    """The first ``n`` clips at 24 kHz (the Realtime API's PCM16) with pauses between them."""
    parts, texts = [np.zeros(12_000, np.int16)], []
    for path, text in held_out()[:n]:
        parts += [read_audio(str(path), rate=24_000), np.zeros(36_000, np.int16)]
        texts.append(text)
    return np.concatenate(parts).astype("<i2").tobytes(), texts


async def test_realtime_transcription_session_through_the_openai_sdk(nova) -> None:
    server = await nova(api_key=KEY)
    pcm, texts = stream_24k(3)

    def run() -> tuple[list[Any], Exception | None]:
        client = openai_client(server.port)
        events: list[Any] = []
        with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            conn.send(
                {
                    "type": "transcription_session.update",
                    "session": {
                        "input_audio_format": "pcm16",
                        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    },
                }
            )
            done = threading.Event()

            def read() -> None:
                for event in conn:
                    events.append(event)
                    if (
                        event.type.endswith(".completed")
                        and sum(e.type.endswith(".completed") for e in events) >= 3
                    ):
                        break
                done.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            play(
                paced(pcm, 48_000),
                lambda piece: conn.send(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}
                ),
            )
            conn.send({"type": "input_audio_buffer.commit"})
            done.wait(60)
        refused = None
        try:
            with openai_client(server.port, "nova-wrong-key-0123456789").realtime.connect(
                extra_query={"intent": "transcription"}
            ) as conn:
                conn.recv()
        except Exception as exc:  # noqa: BLE001 - the SDK surfaces the websockets handshake error
            refused = exc
        return events, refused

    events, refused = await asyncio.to_thread(run)
    kinds = [e.type for e in events]
    assert kinds[0] == "session.created" and "transcription_session.updated" in kinds
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.speech_stopped" in kinds
    completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert pooled_wer([norm(t) for t in texts], [norm(e.transcript) for e in completed]) <= 0.05, completed
    for item in completed:
        # Deltas are the words that firmed up while the item was spoken; the completed transcript
        # is the final decode of the whole item, which may add a word the partials missed.
        deltas = [e.delta for e in events if e.type.endswith(".delta") and e.item_id == item.item_id]
        assert deltas and wer(item.transcript, "".join(deltas)) <= 0.25, (deltas, item.transcript)
    assert refused is not None and "401" in str(refused)


async def test_deepgram_sdk_live_and_prerecorded(nova) -> None:
    server = await nova(api_key=KEY)
    clips = held_out()
    stream = build("librivox", [(read_audio(str(p)), t) for p, t in clips[:3]])
    pcm = np.concatenate([stream.audio, silence(1.0)]).astype("<i2").tobytes()

    def run() -> dict[str, Any]:
        dg = deepgram_client(server.port)
        out: dict[str, Any] = {"messages": []}
        with dg.listen.v1.connect(
            model="nova-3", encoding="linear16", sample_rate="16000", channels="1",
            interim_results="true", punctuate="true", utterance_end_ms="1000", vad_events="true",
        ) as conn:  # fmt: skip
            reader = threading.Thread(target=lambda: out["messages"].extend(conn), daemon=True)
            reader.start()
            play(paced(pcm, 32_000), conn.send_media)
            conn.send_keep_alive()
            conn.send_close_stream()
            reader.join(60)
        path = clips[3][0]
        out["file"] = dg.listen.v1.media.transcribe_file(
            request=path.read_bytes(), model="nova-3", punctuate=True, utterances=True
        )
        for name, kwargs in {
            "wrong_rate": {"encoding": "linear16", "sample_rate": "1000"},
            "no_rate": {"encoding": "linear16"},
        }.items():
            try:
                with dg.listen.v1.connect(model="nova-3", **kwargs):
                    pass
            except (ApiError, InvalidStatus) as exc:
                out[name] = refused_status(exc)
        for name, body in {"not_audio": b"<html>not audio</html>" * 20, "empty": b""}.items():
            try:
                dg.listen.v1.media.transcribe_file(request=body, model="nova-3")
            except ApiError as exc:
                out[name] = exc.status_code
        try:  # {"url": ...} bodies are fetched only with --api-urls
            dg.listen.v1.media.transcribe_url(url=f"http://127.0.0.1:{server.port}/health", model="nova-3")
        except ApiError as exc:
            out["url"] = exc
        wrong = deepgram_client(server.port, "nova-wrong-key-0123456789")
        try:
            with wrong.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate="16000"):
                pass
        except (ApiError, InvalidStatus) as exc:
            out["wrong_key_live"] = refused_status(exc)
        try:
            wrong.listen.v1.media.transcribe_file(request=path.read_bytes(), model="nova-3")
        except ApiError as exc:
            out["wrong_key_file"] = exc
        return out

    got = await asyncio.to_thread(run)
    results = [m for m in got["messages"] if getattr(m, "type", None) == "Results"]
    finals = [m for m in results if m.is_final]
    interims = [m for m in results if not m.is_final]
    assert interims, "interim results were asked for"
    heard = " ".join(m.channel.alternatives[0].transcript for m in finals)
    assert wer(stream.reference, heard) <= 0.05, heard
    words = [w for m in finals for w in m.channel.alternatives[0].words]
    assert all(0 <= w.confidence <= 1 and w.end >= w.start for w in words) and words[0].punctuated_word
    assert all(f.speech_final for f in finals if f.channel.alternatives[0].transcript)
    types = [getattr(m, "type", None) for m in got["messages"]]
    assert "UtteranceEnd" in types and "SpeechStarted" in types and types[-1] == "Metadata"
    assert abs(got["messages"][-1].duration - len(pcm) / 32_000) < 0.2
    file = got["file"].results
    assert wer(clips[3][1], file.channels[0].alternatives[0].transcript) <= 0.1
    assert file.utterances and file.utterances[0].words
    for name in ("wrong_rate", "no_rate", "not_audio", "empty"):
        assert got.get(name) == 400, (name, got.get(name))
    assert got["wrong_key_live"] == 401 and got["wrong_key_file"].status_code == 401
    assert "INVALID_API_KEY" in str(got["wrong_key_file"].body)
    assert got["url"].status_code == 400 and "URL_NOT_ALLOWED" in str(got["url"].body)


async def test_api_keys_and_limits(nova) -> None:
    """Keys off only on loopback; a server bound elsewhere without keys answers 401 to all. Per
    key: requests a minute, then 429 with Retry-After in the API's shape."""
    open_server = await nova()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{open_server.port}/v1/models") as resp:
            assert resp.status == 200  # loopback and no keys: open, as WHIP is
    limited = await nova(api_key=KEY, api_requests_per_minute=4)
    statuses = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Token {KEY}"}) as http:
        for _ in range(6):
            async with http.get(f"http://127.0.0.1:{limited.port}/v1/models") as resp:
                statuses.append(resp.status)
                last = (await resp.json(), resp.headers.get("Retry-After"))
    assert statuses[:4] == [200] * 4 and statuses[4] == 429
    assert last[0]["error"]["code"] == "rate_limit_exceeded" and int(last[1]) >= 1


async def test_webhook_output_signs_retries_and_counts(nova, aiohttp_server: Any) -> None:
    """A real receiver on loopback that checks the signature, fails the first two posts with
    500 and refuses a forged one: every final arrives once accepted, signed, in order."""
    secret = "webhook-secret-0123456789"
    seen: list[dict[str, Any]] = []
    failures = {"left": 2}
    problems: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Nova-Signature", "")
        parts = dict(p.split("=", 1) for p in header.split(","))
        mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, parts["v1"]) or abs(time.time() - int(parts["t"])) > 300:
            problems.append("bad signature")
            return web.Response(status=401)
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=500)
        seen.append(json.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    receiver = await aiohttp_server(app, host="127.0.0.1")
    server = await nova(outputs_allow="127.0.0.1")
    url = str(receiver.make_url("/hook"))
    async with aiohttp.ClientSession(server.make_url("")) as http:
        bad = [{"type": "webhook", "url": url, "secret": "short"}]
        async with http.post("/rooms", json={"name": "hooked", "outputs": bad}) as resp:
            assert resp.status == 400 and "secret" in (await resp.json())["message"]
        outputs = [{"type": "webhook", "url": url, "secret": secret}]
        async with http.post("/rooms", json={"name": "hooked", "outputs": outputs}) as resp:
            assert resp.status == 201, await resp.text()
        async with http.get("/rooms/hooked") as resp:
            assert secret not in await resp.text()
    room = server.app[STATE].rooms.get("hooked")
    room.join_publisher("pub")
    for i, text in enumerate(["First line.", "Second line.", "Third line."]):
        room.caption("pub", Caption(segment=i, final=True, text=text, start=i, end=i + 0.9, lang="en"))
    for _ in range(200):
        if len(seen) == 3:
            break
        await asyncio.sleep(0.05)  # polling the receiver, which has no event of its own
    assert [m["text"] for m in seen] == ["First line.", "Second line.", "Third line."] and not problems
    assert seen[0]["id"] == f"hooked:{seen[0]['seq']}" and seen[0]["final"] is True
    metrics = server.app[STATE].metrics.render().decode()
    assert 'nova_output_posts_total{outcome="ok",type="webhook"} 3.0' in metrics
    assert 'nova_output_posts_total{outcome="retry",type="webhook"} 2.0' in metrics
