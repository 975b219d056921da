"""The translation flags and `models pull` from the command line: clear failures, exit codes."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import run
from tests.support.tiny_nllb import hub_folder


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("nova-voice:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_models_pull_converts_a_local_hub_folder(tmp_path: Path) -> None:
    hub = hub_folder(tmp_path / "hub", "bin")
    result = run(
        "models", "pull", "nllb-200-distilled-600M", "--from", str(hub), "--dir", str(tmp_path / "m")
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "m" / "nllb-200-distilled-600M"
    assert (out / "model.bin").is_file() and (out / "sentencepiece.bpe.model").is_file()
    assert f"--translate-model {out}" in result.stdout


def test_models_pull_offline_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("models", "pull", "nllb-200-distilled-600M", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "facebook/nllb-200-distilled-600M" in one_line(result.stderr)
    unknown = run("models", "pull", "nllb-9000", "--dir", str(tmp_path))
    assert unknown.returncode == 2 and "known names" in one_line(unknown.stderr)


def test_a_missing_translation_model_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-nllb"
    result = run("serve", "--translate-model", str(missing), "--port", "0")
    assert result.returncode == 2
    assert str(missing) in one_line(result.stderr)


def test_unknown_default_languages_are_refused_with_the_list() -> None:
    result = run("serve", "--translate-to", "es,klingon", "--port", "0")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "'klingon'" in line and "es" in line
    fr = run("serve", "--translate-to", "fr", "--translate-engine", "apertium", "--port", "0")
    assert fr.returncode == 2 and "apertium" in one_line(fr.stderr)
