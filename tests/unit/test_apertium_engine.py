"""Apertium English<->Spanish: meaning, one long-running pipeline per pair, hangs and deaths."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pipeline.engines.apertium import ApertiumConfig, ApertiumEngine, ApertiumError, escape, unescape
from pipeline.types import TranslateRequest


@pytest.fixture
def engine() -> ApertiumEngine:
    e = ApertiumEngine(ApertiumConfig(timeout=20.0))
    yield e
    e.close()


def test_english_to_spanish_keeps_the_meaning(engine: ApertiumEngine) -> None:
    lines = [
        ("Ask not what your country can do for you.", "país"),
        ("Good morning, my friend.", "amigo"),
        ("The house is big.", "casa"),
    ]
    out = engine.run_batch([TranslateRequest(text, "en", "es") for text, _ in lines])
    for (_, word), t in zip(lines, out, strict=True):
        assert word in t.text.lower()
        assert t.target == "es" and t.source == "en"


def test_spanish_to_english(engine: ApertiumEngine) -> None:
    (out,) = engine.run_batch([TranslateRequest("La casa es grande.", "es", "en")])
    assert "house" in out.text.lower()


def test_one_process_serves_many_batches(engine: ApertiumEngine) -> None:
    engine.run_batch([TranslateRequest("Hello.", "en", "es")])
    pid = engine._pipes[("en", "es")].proc.pid
    for i in range(5):
        out = engine.run_batch([TranslateRequest(f"Line {j} of batch {i}.", "en", "es") for j in range(20)])
        assert len(out) == 20 and all(t.text for t in out)
    assert engine._pipes[("en", "es")].proc.pid == pid
    assert engine.restarts == 0


def test_stream_format_characters_survive(engine: ApertiumEngine) -> None:
    text = "Price [a] ^b $5 \\ / @ <c> {d}"
    assert unescape(escape(text)) == text
    (out,) = engine.run_batch([TranslateRequest(text, "en", "es")])
    for mark in ("[", "]", "$5", "<c>", "{d}", "@"):
        assert mark in out.text


def test_same_language_and_empty_lines_pass_through(engine: ApertiumEngine) -> None:
    out = engine.run_batch([TranslateRequest("Same.", "en", "en"), TranslateRequest("  ", "en", "es")])
    assert [t.text for t in out] == ["Same.", ""]


def test_a_pair_that_is_not_installed_is_an_error(engine: ApertiumEngine) -> None:
    assert not engine.supports("en", "fr") and engine.supports("en", "es")
    assert engine.targets("en") == ["es"]
    with pytest.raises(ValueError, match="en-fr"):
        engine.run_batch([TranslateRequest("Hello.", "en", "fr")])


def test_a_dead_pipeline_is_started_again(engine: ApertiumEngine) -> None:
    engine.run_batch([TranslateRequest("Hello.", "en", "es")])
    pipe = engine._pipes[("en", "es")]
    os.killpg(pipe.proc.pid, signal.SIGKILL)
    pipe.proc.wait(timeout=10)
    (out,) = engine.run_batch([TranslateRequest("Your country.", "en", "es")])
    assert "país" in out.text
    assert engine.restarts == 1


def test_a_hung_pipeline_times_out_and_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "eng-spa.mode").write_text("tail -f /dev/null\n")  # never answers
    engine = ApertiumEngine(ApertiumConfig(modes_dir=str(tmp_path), timeout=0.5))
    try:
        with pytest.raises(ApertiumError, match="no answer"):
            engine.run_batch([TranslateRequest("Hello.", "en", "es")])
        pid = engine.restarts
        assert pid == 1 and ("en", "es") not in engine._pipes  # killed, started afresh next time
    finally:
        engine.close()
