"""Requests and results on the wire: exact round trips, and refusal of anything else."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline.types import DecodeOptions, Embeddings, EmbedRequest, TranscribeRequest, Transcript, Word
from pipeline.wire import (
    REF_VERSION,
    VERSION,
    AudioRef,
    WireError,
    WireRequest,
    WireResult,
    decode_request,
    decode_result,
    encode_request,
    encode_result,
    with_audio,
)


def request(final: bool = True, samples: np.ndarray | None = None) -> WireRequest:
    pcm = samples if samples is not None else np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    return WireRequest(
        rid="r1",
        gateway="gw",
        session="pub-1",
        ticket=7,
        final=final,
        engine="whisper",
        payload=TranscribeRequest(
            audio=pcm.astype(np.float32) / 32768.0,
            prompt="earlier words, «quoted»",
            options=DecodeOptions(
                beam_size=2,
                language="en",
                log_prob_threshold=-0.5,
                temperature=0.4,
                word_timestamps=False,
                min_window_frames=800,
            ),
        ),
        reply="nova:results:gw",
        ttl_ms=0 if final else 2500,
        context={"room": "demo"},
    )


def test_a_request_round_trips_exactly_with_int16_pcm_and_no_pickle() -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32767, 16_000, dtype=np.int16)
    sent = request(final=False, samples=pcm)
    fields = encode_request(sent)
    assert set(fields) == {b"v", b"h", b"b"}
    assert fields[b"b"] == pcm.astype("<i2").tobytes()  # the audio travels as raw int16, 2 bytes a sample
    assert json.loads(fields[b"h"])["session"] == "pub-1"  # the header is plain JSON

    got = decode_request(fields)
    assert (got.rid, got.gateway, got.session, got.ticket, got.final, got.ttl_ms) == (
        "r1",
        "gw",
        "pub-1",
        7,
        False,
        2500,
    )
    assert got.reply == "nova:results:gw" and dict(got.context) == {"room": "demo"}
    assert got.payload.prompt == sent.payload.prompt and got.payload.options == sent.payload.options
    np.testing.assert_array_equal(got.payload.audio, sent.payload.audio)


def test_a_request_naming_its_audio_is_version_2_carries_none_and_reads_back_whole() -> None:
    pcm = np.arange(-800, 800, dtype=np.int16)
    ref = AudioRef("nova:audio:gw:7", chunks=3, samples=len(pcm), crc=123)
    sent = replace(request(samples=pcm), audio=ref)
    fields = encode_request(sent)
    # A worker of version 1 refuses the entry ("wire version 2 is not 1") instead of hearing
    # silence in an entry without audio; gateways send it only to workers that read it.
    assert fields[b"v"] == str(REF_VERSION).encode() and fields[b"b"] == b""
    got = decode_request(fields)
    assert got.audio == ref and len(got.payload.audio) == 0
    whole = with_audio(got, pcm.astype("<i2").tobytes())
    assert whole.audio is None and whole.payload.options == sent.payload.options
    np.testing.assert_array_equal(whole.payload.audio, sent.payload.audio)
    # Requests without a reference stay exactly version 1, as every release reads them.
    assert encode_request(request())[b"v"] == str(VERSION).encode()
    # A reference out of range, on the wrong version or engine, or beside inline audio: refused.
    for bad in (
        tampered(fields, audio={"key": "k", "chunks": 0, "samples": 1, "crc": 1}),
        tampered(fields, audio={"key": "k", "chunks": 1, "samples": 10**9, "crc": 1}),
        tampered(fields, audio=None),
        tampered(fields, engine="apertium"),
        {**fields, b"b": b"\x00\x00"},
        {**fields, b"v": b"1"},
        tampered(encode_request(request()), audio=ref.to_dict()),
    ):
        with pytest.raises(WireError):
            decode_request(bad)
    miss = WireResult(rid="r", session="s", ticket=1, status="miss", engine="whisper")
    assert decode_result(encode_result(miss)).status == "miss"


def test_a_result_round_trips_words_times_probabilities_and_guard_scores() -> None:
    transcript = Transcript(
        words=(Word(" Hello", 0.0, 0.42, 0.91), Word(" world.", 0.42, 0.9, 0.5)),
        language="en",
        no_speech_prob=0.01,
        avg_logprob=-0.2,
        compression_ratio=1.3,
        timed=False,
        sentence_end=0.87,
    )
    sent = WireResult(
        rid="r1", session="pub-1", ticket=7, status="ok", engine="whisper", payload=transcript, worker="w1"
    )
    got = decode_result(encode_result(sent))
    assert got.payload == transcript
    assert (got.rid, got.session, got.ticket, got.status, got.worker) == ("r1", "pub-1", 7, "ok", "w1")

    failed = decode_result(
        encode_result(
            WireResult(rid="r2", session="s", ticket=1, status="failed", engine="whisper", error="boom")
        )
    )
    assert failed.status == "failed" and failed.payload is None and failed.error == "boom"


def tampered(fields: dict[bytes, bytes], **header: object) -> dict[bytes, bytes]:
    h = json.loads(fields[b"h"])
    h.update(header)
    return {**fields, b"h": json.dumps(h).encode()}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {b"v": b"1"},
        {b"v": str(REF_VERSION + 1).encode(), b"h": b"{}"},
        {b"v": b"one", b"h": b"{}"},
        {b"v": b"1", b"h": b"not json"},
        {b"v": b"1", b"h": b"[1, 2]"},
        {b"v": b"1", b"h": b"\xff\xfe"},
    ],
    ids=["empty", "no-header", "newer-version", "bad-version", "not-json", "not-object", "not-utf8"],
)
def test_entries_that_are_not_ours_or_of_another_version_are_refused(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(WireError):
        decode_request(fields)
    with pytest.raises(WireError):
        decode_result(fields)


@pytest.mark.parametrize(
    "change",
    [
        {"ticket": "7"},
        {"ticket": True},
        {"final": 1},
        {"engine": "nllb-not-here"},
        {"session": None},
        {"ttl_ms": 2.5},
        {"body": {"prompt": "x"}},
        {"body": {"prompt": 3, "options": {}}},
    ],
)
def test_requests_with_wrong_fields_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(WireError):
        decode_request(tampered(encode_request(request()), **change))


def test_odd_or_oversized_audio_is_refused() -> None:
    fields = encode_request(request())
    with pytest.raises(WireError):
        decode_request({**fields, b"b": fields[b"b"] + b"\x00"})
    with pytest.raises(WireError):
        encode_request(request(samples=np.zeros(41 * 16_000, dtype=np.int16)))


def test_results_with_malformed_words_or_status_are_refused() -> None:
    ok = encode_result(
        WireResult(
            rid="r",
            session="s",
            ticket=1,
            status="ok",
            engine="whisper",
            payload=Transcript(words=(), language="en"),
        )
    )
    for change in (
        {"status": "maybe"},
        {
            "body": {
                "words": [["hi", 0, 1]],
                "language": "en",
                "no_speech_prob": 0,
                "avg_logprob": 0,
                "compression_ratio": 1,
            }
        },
        {
            "body": {
                "words": [["hi", "a", 1, 1]],
                "language": "en",
                "no_speech_prob": 0,
                "avg_logprob": 0,
                "compression_ratio": 1,
            }
        },
        {"ticket": None},
    ):
        with pytest.raises(WireError):
            decode_result(tampered(ok, **change))


def test_a_line_to_translate_and_its_translation_round_trip_for_both_engines() -> None:
    from pipeline.types import TranslateRequest, Translation

    for engine in ("apertium", "nllb"):
        line = TranslateRequest(text="Good morning, «everyone».", source="en", target="es", prefix="Buenos")
        sent = WireRequest("r2", "gw", "room:3:es", 1, True, engine, line, "nova:results:gw", 0, {})
        got = decode_request(encode_request(sent))
        assert got.engine == engine and got.payload == line
        answer = WireResult("r2", "room:3:es", 1, "ok", engine, Translation("Buenos días.", "en", "es"))
        assert decode_result(encode_result(answer)).payload == answer.payload
    too_long = TranslateRequest(text="x" * 5000, source="en", target="es")
    fields = encode_request(WireRequest("r3", "gw", "s", 1, True, "apertium", too_long, "r", 0, {}))
    with pytest.raises(WireError):
        decode_request(fields)


def test_speaker_windows_and_their_embeddings_round_trip() -> None:
    audio = (np.arange(13_040) % 2000 - 1000).astype(np.int16)
    request = WireRequest("r", "g", "s", 1, True, "speaker", EmbedRequest(audio), "reply")
    back = decode_request(encode_request(request))
    assert np.array_equal(back.payload.audio, audio)
    vectors = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)
    result = WireResult("r", "s", 1, "ok", "speaker", Embeddings(vectors, 0.4, 0.815))
    got = decode_result(encode_result(result)).payload
    assert np.array_equal(got.vectors, vectors) and (got.step, got.span) == (0.4, 0.815)
    bad = encode_result(result)
    header = json.loads(bad[b"h"])
    header["body"]["rows"] = 4  # rows that the bytes do not hold
    with pytest.raises(WireError):
        decode_result({**bad, b"h": json.dumps(header).encode()})


def test_a_sentence_to_speak_and_its_speech_round_trip_with_the_audio_in_the_bytes() -> None:
    from pipeline.types import SpeakRequest, Speech

    asked = WireRequest(
        "r9", "gw", "voice", 3, True, "piper", SpeakRequest("Hola a todos.", "es", 1.2), "reply"
    )
    assert decode_request(encode_request(asked)) == asked
    pcm = np.array([0, 32767, -32768, 5], dtype=np.int16)
    fields = encode_result(WireResult("r9", "voice", 3, "ok", "piper", Speech(pcm, 22050, "es", "espeak-ng")))
    assert fields[b"b"] == pcm.astype("<i2").tobytes() and b"pcm" not in fields[b"h"]
    back = decode_result(fields).payload
    assert np.array_equal(back.pcm, pcm) and (back.rate, back.lang, back.voice) == (22050, "es", "espeak-ng")


@pytest.mark.parametrize(
    ("body", "blob"),
    [
        ({"rate": 22050, "lang": "es", "voice": "x"}, b"\x00"),  # odd PCM
        ({"rate": 1, "lang": "es", "voice": "x"}, b""),  # no such rate
        ({"rate": 22050, "lang": "es"}, b""),  # no voice
    ],
)
def test_a_speech_result_that_cannot_be_checked_is_refused(body: dict, blob: bytes) -> None:
    header = {"rid": "r", "session": "s", "ticket": 1, "status": "ok", "engine": "piper", "error": "",
              "worker": "w", "run_ms": 1.0, "body": body}  # fmt: skip
    with pytest.raises(WireError):
        decode_result({b"v": str(VERSION).encode(), b"h": json.dumps(header).encode(), b"b": blob})


def test_a_sentence_too_long_or_too_fast_is_refused() -> None:
    from pipeline.types import SpeakRequest

    for text, speed in (("x" * 1001, 1.0), ("hola", 9.0)):
        fields = encode_request(
            WireRequest("r", "gw", "s", 1, True, "piper", SpeakRequest(text, "es", speed), "reply")
        )
        with pytest.raises(WireError):
            decode_request(fields)
