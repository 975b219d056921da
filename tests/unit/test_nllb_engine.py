"""The NLLB engine on a tiny random model built offline: batching, language tokens, bounds."""

from __future__ import annotations

from pathlib import Path

import ctranslate2
import pytest

from pipeline.engines.nllb import NllbConfig, NllbEngine
from pipeline.types import TranslateRequest
from tests.support.tiny_nllb import tiny_nllb


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_nllb(tmp_path_factory.mktemp("nllb"))


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> NllbEngine:
    return NllbEngine(NllbConfig(str(model_dir), compute_type="float32", cpu_threads=1))


LINES = [
    TranslateRequest("Ask not what your country can do for you.", "en", "es"),
    TranslateRequest("Live captions make meetings easier to follow.", "en", "fr"),
    TranslateRequest("Los subtítulos en vivo ayudan a todos.", "es", "en"),
    TranslateRequest("The quick brown fox.", "en", "de"),
    TranslateRequest("The quick brown fox.", "en", "zh-Hant"),
]


def test_the_tiny_model_is_small_and_quick(tmp_path: Path) -> None:
    import time

    started = time.process_time()
    folder = tiny_nllb(tmp_path)
    assert time.process_time() - started < 5.0  # ~0.3 s here; generous for a loaded machine
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 600_000
    assert {"model.bin", "sentencepiece.bpe.model", "config.json"} <= {f.name for f in folder.iterdir()}


def test_one_batch_of_mixed_targets_equals_one_at_a_time(engine: NllbEngine) -> None:
    batched = engine.run_batch(LINES)
    alone = [engine.run_batch([r])[0] for r in LINES]
    assert batched == alone
    assert [(t.source, t.target) for t in batched] == [(r.source, r.target) for r in LINES]


def test_gibberish_still_comes_out_for_every_line(engine: NllbEngine) -> None:
    # Random weights translate into nonsense; nothing may drop a line for looking odd.
    out = engine.run_batch(LINES)
    assert all(t.text.strip() for t in out)


def test_the_target_language_token_is_forced_and_stripped(engine: NllbEngine, model_dir: Path) -> None:
    translator = ctranslate2.Translator(str(model_dir), compute_type="float32")
    src = ["eng_Latn", *engine.pieces("The quick brown fox."), "</s>"]
    for target in ("spa_Latn", "deu_Latn"):
        hyp = translator.translate_batch([src], target_prefix=[[target]], beam_size=1, max_decoding_length=8)
        assert hyp[0].hypotheses[0][0] == target
    es, de = engine.run_batch([LINES[3], TranslateRequest(LINES[3].text, "en", "es")])
    assert es.text != de.text  # the forced token steers the decoder
    for t in engine.run_batch(LINES):
        assert not any(code in t.text for code in ("spa_Latn", "fra_Latn", "eng_Latn", "zho_Hant"))


def test_same_language_passes_through_without_the_model(engine: NllbEngine) -> None:
    out = engine.run_batch(
        [TranslateRequest("Hola amigo.", "es", "es"), TranslateRequest("Hi there.", "en", "en-US")]
    )
    assert [t.text for t in out] == ["Hola amigo.", "Hi there."]


def test_long_input_is_bounded(engine: NllbEngine) -> None:
    long = " ".join(["country"] * 400)
    (out,) = engine.run_batch([TranslateRequest(long, "en", "es")])
    assert len(engine.pieces(out.text)) <= engine.config.max_length + 1
    short = engine.run_batch([TranslateRequest("Live.", "en", "es")])[0]
    bound = engine.config.length_ratio * len(engine.pieces("Live.")) + engine.config.length_extra
    assert len(engine.pieces(short.text)) <= 2 * bound  # pieces re-split on decode: a margin


def test_a_forced_prefix_is_kept(engine: NllbEngine) -> None:
    shown = engine.run_batch([TranslateRequest("Ask not what your", "en", "es")])[0].text
    (longer,) = engine.run_batch([TranslateRequest("Ask not what your country", "en", "es", prefix=shown)])
    assert longer.text.startswith(shown)


def test_an_unknown_language_fails_its_own_line(engine: NllbEngine) -> None:
    with pytest.raises(ValueError):
        engine.run_batch([TranslateRequest("Hi.", "en", "xx")])
    assert engine.supports("en", "es") and not engine.supports("en", "la")
