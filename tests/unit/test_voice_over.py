"""Which voice languages a room may speak, and the voice engine's choice of voice per language
(Piper where a voice file is given, espeak-ng for the rest), without a server."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipeline.engines.voices import VoiceConfig, VoiceEngine, VoiceError, bundled_voices, parse_voice_models
from pipeline.types import SpeakRequest
from server.rooms.voices import VoiceLanguageError, VoiceService
from server.settings import ConfigError, WorkerSettings


@dataclass
class Voices:
    languages: frozenset[str]


class Counter:
    def voice_event(self, lang: str, outcome: str, late: float | None = None) -> None:
        pass


def service(*langs: str) -> VoiceService:
    return VoiceService(Voices(frozenset(langs)), backend=None, metrics=Counter())  # type: ignore[arg-type]


def test_a_room_speaks_only_languages_it_shows_and_a_voice_knows() -> None:
    s = service("en", "es", "fr")
    assert s.check(["ES", "en"], ("es",), "en") == ("es", "en")
    assert s.check("es", ("es", "fr"), None) == ("es",)
    with pytest.raises(VoiceLanguageError, match="shows no 'fr'"):
        s.check(["fr"], ("es",), "en")
    with pytest.raises(VoiceLanguageError, match="no voice speaks 'de'"):
        service("en").check(["de"], ("de",), "en")
    with pytest.raises(VoiceLanguageError):
        s.check({"es": 1}, ("es",), "en")
    with pytest.raises(VoiceLanguageError):
        s.check(["klingon"], ("es",), "en")


def test_voice_models_are_lang_path_pairs() -> None:
    assert parse_voice_models("es=/v/es.onnx, en = /v/en.onnx") == {"es": "/v/es.onnx", "en": "/v/en.onnx"}
    for bad in ("es", "es=", "xx=/v.onnx"):
        with pytest.raises(VoiceError):
            parse_voice_models(bad)
    with pytest.raises(VoiceError, match="needs the .onnx file"):
        VoiceEngine(VoiceConfig(models={"es": "/nonexistent.onnx"}))


def test_piper_speaks_english_and_espeak_the_rest_faster_when_asked() -> None:
    engine = VoiceEngine(VoiceConfig(models=bundled_voices()))
    assert engine.voice_of("en") == "en_US-joe-medium" and engine.voice_of("es") == "espeak-ng"
    en, es, fast = engine.run_batch(
        [SpeakRequest("Good morning.", "en"), SpeakRequest("Buenos días a todos.", "es"),
         SpeakRequest("Buenos días a todos.", "es", 1.25)]
    )  # fmt: skip
    assert en.voice == "en_US-joe-medium" and en.duration > 0.3 and abs(en.pcm).max() > 1000
    assert es.voice == "espeak-ng" and es.duration > 0.5
    assert fast.duration < es.duration * 0.9
    with pytest.raises(VoiceError):
        engine.speak(SpeakRequest("hello", "zz"))


def test_a_worker_may_run_piper_beside_the_others() -> None:
    assert WorkerSettings(engines="piper").engine_list == ("piper",)
    assert WorkerSettings(engines="whisper,apertium,piper").serve_settings().translate_engine == "apertium"
    with pytest.raises(ConfigError):
        _ = WorkerSettings(engines="espeak").engine_list
