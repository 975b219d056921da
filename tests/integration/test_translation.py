"""Live translation end to end: real speech over WHIP, Apertium and a tiny NLLB, real viewers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from bench.corpus import silence, write_wav
from bench.scoring import wer
from pipeline.audio import read_audio
from server.state import STATE
from tests.support.browser import chromium
from tests.support.tiny_nllb import tiny_nllb
from tests.support.whip_client import Viewer, WhipPublisher

JFK = "Ask not what your country can do for you. Ask what you can do for your country."
OVERLAY_FINAL = "document.querySelector('#captions .line.final')?.textContent || ''"


def speech_wav(tmp_path: Path, text: str, voice: str = "en-us", name: str = "speech") -> Path:
    raw = tmp_path / f"{name}.raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(raw), text], check=True)
    audio = np.concatenate([silence(0.5), read_audio(str(raw)), silence(1.5)])
    return write_wav(tmp_path / f"{name}.wav", audio)


async def create(http: aiohttp.ClientSession, **body: object) -> dict:
    resp = await http.post("/rooms", json=body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


def by_segment(messages: list[dict]) -> dict[int, dict]:
    return {m["segment"]: m for m in messages if m["final"] and m["text"]}


async def test_apertium_viewers_read_spanish_while_others_read_english(
    nova, tmp_path: Path, artifacts: Path
) -> None:
    server = await nova(translate_engine="apertium")
    base = str(server.make_url("")).rstrip("/")
    wav = speech_wav(tmp_path, JFK)
    async with aiohttp.ClientSession(base) as http, chromium() as browser:
        room = await create(http, name="jfk", languages=["es"])
        assert room["languages"] == ["es"] and room["spoken"] == "en"
        page = await browser.new_page(viewport={"width": 640, "height": 360})
        await page.goto(f"{base}/overlay/jfk?lang=es&fade=0")
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=15_000)
        spanish, english, source = Viewer(base, "jfk", "es"), Viewer(base, "jfk", "en"), Viewer(base, "jfk")
        for v in (spanish, english, source):
            await v.connect(http)
        pub = WhipPublisher(base, "jfk", str(wav), token=room["publish_token"])
        await pub.start(http)
        await pub.ended()

        def spanish_says_country(log) -> bool:  # noqa: ANN001
            return "país" in " ".join(m["text"] for m in log.finals()).lower()

        await spanish.log.wait_for(spanish_says_country, 60)
        await pub.stop(http)
        await source.log.wait_for(lambda log: len(log.finals()) >= len(spanish.log.finals()), 20)
        await page.wait_for_function(f"({OVERLAY_FINAL}).length > 0", timeout=15_000)
        overlay_text = await page.evaluate(OVERLAY_FINAL)
        (artifacts / "overlay-es.png").write_bytes(await page.screenshot(omit_background=True))

        es_finals, en_finals = spanish.log.finals(), source.log.finals()
        assert all(m["lang"] == "es" and m["source_lang"] == "en" for m in spanish.log.captions())
        assert all(m["lang"] == "en" and "source_lang" not in m for m in source.log.captions())
        # The viewer who asked for English (the spoken language) reads the source captions.
        assert [m["text"] for m in english.log.finals()] == [m["text"] for m in en_finals]
        assert wer(JFK, " ".join(m["text"] for m in en_finals)) <= 0.35
        # Each Spanish final is its source's segment, with the source's times.
        source_segments = by_segment(en_finals)
        for m in es_finals:
            src = source_segments[m["segment"]]
            assert (m["start"], m["end"]) == (src["start"], src["end"])
        assert overlay_text in [m["text"] for m in es_finals]
        # Translations never change more often than the source does.
        es_partials = [m for m in spanish.log.captions() if not m["final"]]
        assert len(es_partials) <= len([m for m in source.log.captions() if not m["final"]])

        vtt_es = await (await http.get("/rooms/jfk/transcript.vtt?lang=es")).text()
        vtt_en = await (await http.get("/rooms/jfk/transcript.vtt")).text()
        doc_es = await (await http.get("/rooms/jfk/transcript.json?lang=es")).json()
        txt_en = await (await http.get("/rooms/jfk/transcript.txt?lang=en")).text()
        metrics = await (await http.get("/metrics")).text()
        for v in (spanish, english, source):
            await v.close()
    assert vtt_es.startswith("WEBVTT") and "país" in vtt_es.lower() and "país" not in vtt_en.lower()
    assert [c["text"] for c in doc_es["captions"]] == [m["text"] for m in es_finals]
    assert all(c["lang"] == "es" and c["source_lang"] == "en" for c in doc_es["captions"])
    assert [line for line in txt_en.splitlines() if not line.startswith("[session")] == [
        m["text"] for m in en_finals
    ]
    assert 'nova_engine_batch_size_count{device="cpu",engine="apertium"}' in metrics


async def test_tiny_nllb_gibberish_still_reaches_every_language(nova, tmp_path: Path) -> None:
    model = tiny_nllb(tmp_path / "nllb")
    server = await nova(translate_model=str(model), compute_type="float32")
    base = str(server.make_url("")).rstrip("/")
    wav = speech_wav(tmp_path, "Live captions make meetings easier to follow for everyone.")
    async with aiohttp.ClientSession(base) as http:
        room = await create(http, name="mix", languages=["es", "fr", "zh-TW"])
        assert room["languages"] == ["es", "fr", "zh-Hant"]
        viewers = {lang: Viewer(base, "mix", lang) for lang in ("es", "fr", "zh-Hant")}
        source = Viewer(base, "mix")
        for v in [*viewers.values(), source]:
            await v.connect(http)
        pub = WhipPublisher(base, "mix", str(wav), token=room["publish_token"])
        await pub.start(http)
        await pub.ended()
        await source.log.wait_for(lambda log: log.finals(), 30)
        n = len(by_segment(source.log.finals()))
        for v in viewers.values():
            await v.log.wait_for(lambda log: len(by_segment(log.finals())) >= n, 30)
        await pub.stop(http)
        metrics = await (await http.get("/metrics")).text()
        for v in [*viewers.values(), source]:
            await v.close()
    segments = set(by_segment(source.log.finals()))
    for lang, v in viewers.items():
        finals = v.log.finals()
        # Random weights translate into nonsense; it is shown all the same, never filtered out.
        assert set(by_segment(finals)) == segments and all(m["text"].strip() for m in finals)
        assert all(m["lang"] == lang and m["source_lang"] == "en" for m in finals)
    assert 'nova_engine_batch_size_count{device="cpu",engine="nllb"}' in metrics


async def test_a_hung_translator_costs_only_the_translation(nova, inference, tmp_path: Path) -> None:
    from pipeline.engines.apertium import ApertiumConfig, ApertiumEngine
    from server.inference import LoadedModels

    modes = tmp_path / "modes"
    modes.mkdir()
    (modes / "eng-spa.mode").write_text("tail -f /dev/null\n")  # a pipeline that never answers
    hung = ApertiumEngine(ApertiumConfig(modes_dir=str(modes), timeout=0.3))
    models = LoadedModels(
        inference.model,
        [(dev, {**engines, "apertium": hung}) for dev, engines in inference.devices],
        "apertium",
    )
    from server.app import create_app
    from server.settings import Settings

    app = create_app(
        Settings(data_dir=str(tmp_path / "data"), translate_engine="apertium", translate_timeout=2.0), models
    )
    from aiohttp.test_utils import TestServer

    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        wav = speech_wav(tmp_path, JFK)
        async with aiohttp.ClientSession(base) as http:
            room = await create(http, name="hang", languages=["es"])
            source, spanish = Viewer(base, "hang"), Viewer(base, "hang", "es")
            await source.connect(http)
            await spanish.connect(http)
            pub = WhipPublisher(base, "hang", str(wav), token=room["publish_token"])
            await pub.start(http)
            await pub.ended()
            await source.log.wait_for(lambda log: log.finals(), 30)
            # The Spanish line still closes (a final, with whatever was shown: here nothing).
            await spanish.log.wait_for(lambda log: any(m["final"] for m in log.captions()), 30)
            await pub.stop(http)
            metrics = await (await http.get("/metrics")).text()
            await source.close()
            await spanish.close()
        assert wer(JFK, source.log.final_text()) <= 0.35
        assert "nova_translation_errors_total" in metrics
        errors = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("nova_translation_errors_total{")
        ]
        assert sum(errors) >= 1
    finally:
        await server.close()
        hung.close()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"languages": ["es", "xx"]}, "unknown_language"),
        ({"languages": ["es"] * 1 + ["fr", "de", "it", "pt", "nl", "sv", "da", "fi"]}, "too_many_languages"),
        ({"languages": ["fr"]}, "unknown_language"),  # Apertium has no English-French pair here
        ({"languages": "es"}, None),
        ({"languages": 5}, "unknown_language"),
        ({"source_language": "es"}, "unsupported_language"),  # tiny.en hears only English
        ({"source_language": "klingon"}, "unknown_language"),
    ],
)
async def test_room_languages_are_checked(nova, body: dict, code: str | None) -> None:
    server = await nova(translate_engine="apertium")
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        resp = await http.post("/rooms", json=body)
        data = await resp.json()
    if code is None:
        assert resp.status == 201 and data["languages"] == ["es"]
        return
    assert resp.status == 400 and data["error"] == code, data
    if code == "unknown_language" and body.get("languages") == ["es", "xx"]:
        assert "'xx'" in data["message"] and "es" in data["message"]


async def test_viewers_and_publishers_ask_for_languages_the_room_carries(nova) -> None:
    server = await nova(translate_to="es")
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base) as http:
        room = await create(http, name="hall")
        assert room["languages"] == ["es"]  # --translate-to is every room's default
        info = await (await http.get("/rooms/hall")).json()
        assert info["languages"] == ["es"] and info["spoken"] == "en"
        viewer = Viewer(base, "hall", "fr")
        try:
            with pytest.raises(RuntimeError, match="400") as exc:
                await viewer.connect(http)
            assert "'es'" in str(exc.value) or "es" in str(exc.value)
        finally:
            await viewer.close()
        resp = await http.post("/rooms/hall/viewers?lang=fr", json={"sdp": "v=0"})
        body = await resp.json()
        assert resp.status == 400 and body["error"] == "language_not_carried"
        assert "carries: en, es" in body["message"]
        t = await http.get("/rooms/hall/transcript.vtt?lang=de")
        assert t.status == 400
        whip = await http.post(
            "/whip/hall?lang=es",
            data="v=0",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {room['publish_token']}"},
        )
        assert whip.status == 400 and (await whip.json())["error"] == "unsupported_language"
    state = server.app[STATE]
    assert state.translation is not None and state.rooms.get("hall").languages == ("es",)


async def test_translation_is_off_unless_asked_for(nova) -> None:
    server = await nova()
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        resp = await http.post("/rooms", json={"name": "plain", "languages": ["es"]})
        assert resp.status == 400 and (await resp.json())["error"] == "translation_off"
        ok = await http.post("/rooms", json={"name": "plain"})
        assert ok.status == 201 and (await ok.json())["languages"] == []


SPANISH = "Buenos días a todos. Hoy vamos a hablar del nuevo presupuesto para el año que viene."


@pytest.fixture(scope="module")
def multilingual():  # noqa: ANN201
    """Whisper base (multilingual), from the packages ./install.sh --dev installs."""
    from server.inference import load_models
    from server.settings import Settings

    return load_models(Settings(model="base", device="cpu"))


async def test_spanish_speech_is_captioned_as_spanish_and_read_in_english(
    aiohttp_server, multilingual, tmp_path: Path
) -> None:
    from server.app import create_app
    from server.settings import Settings

    assert multilingual.multilingual
    settings = Settings(data_dir=str(tmp_path / "data"), model="base", translate_engine="apertium")
    server = await aiohttp_server(create_app(settings, multilingual), host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    wav = speech_wav(tmp_path, SPANISH, voice="es", name="es")
    async with aiohttp.ClientSession(base) as http:
        # No source_language: Whisper detects it. A second room fixes it for comparison.
        detect = await create(http, name="detect", languages=["en"])
        fixed = await create(http, name="fixed", languages=["en"], source_language="es")
        assert detect["spoken"] is None and fixed["spoken"] == "es"
        results = {}
        for room, query in ((detect, ""), (fixed, "?lang=es")):
            name = room["room"]
            source, english = Viewer(base, name), Viewer(base, name, "en")
            await source.connect(http)
            await english.connect(http)
            pub = WhipPublisher(base, name + query, str(wav), token=room["publish_token"])
            await pub.start(http)
            await pub.ended()
            await source.log.wait_for(lambda log: log.finals(), 60)
            n = len(by_segment(source.log.finals()))
            await english.log.wait_for(lambda log: len(by_segment(log.finals())) >= n, 30)  # noqa: B023
            await pub.stop(http)
            results[name] = (source.log.finals(), english.log.finals())
            await source.close()
            await english.close()
    for name, (spanish, english) in results.items():
        assert all(m["lang"] == "es" for m in spanish), name
        assert wer(SPANISH, " ".join(m["text"] for m in spanish)) <= 0.4, name
        assert all(m["lang"] == "en" and m["source_lang"] == "es" for m in english), name
        said = " ".join(m["text"] for m in english).lower()
        assert "budget" in said or "morning" in said, said
