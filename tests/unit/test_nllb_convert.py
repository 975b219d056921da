"""The torch-free conversion behind `models pull`, run on tiny checkpoints in the hub's layout."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.checkpoints import CheckpointError, read_safetensors, read_torch_zip
from pipeline.engines.nllb import NllbConfig, NllbEngine, read_vocabulary
from pipeline.models import ModelNotFound, pull_nllb, resolve_nllb
from pipeline.nllb_convert import ConversionError, convert_nllb, sinusoidal_positions
from pipeline.types import TranslateRequest
from tests.support.tiny_nllb import hub_folder, write_safetensors, write_torch_zip

LINES = [TranslateRequest("Your country.", "en", "es"), TranslateRequest("Live captions.", "en", "fr")]


def translate(folder: Path) -> list[str]:
    engine = NllbEngine(NllbConfig(str(folder), compute_type="float32", cpu_threads=1))
    return [t.text for t in engine.run_batch(LINES)]


def test_both_weight_formats_read_back_exactly(tmp_path: Path) -> None:
    tensors = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, np.float32)}
    write_safetensors(tmp_path / "m.safetensors", tensors)
    write_torch_zip(tmp_path / "m.bin", tensors)
    for read in (read_safetensors(tmp_path / "m.safetensors"), read_torch_zip(tmp_path / "m.bin")):
        assert set(read) == set(tensors)
        for name, arr in tensors.items():
            np.testing.assert_array_equal(read[name], arr)


def test_safetensors_and_pytorch_bin_checkpoints_convert_to_the_same_model(tmp_path: Path) -> None:
    a = convert_nllb(hub_folder(tmp_path / "st", "safetensors", seed=3), tmp_path / "st-ct2")
    b = convert_nllb(hub_folder(tmp_path / "pt", "bin", seed=3), tmp_path / "pt-ct2")
    assert translate(a) == translate(b)
    assert all(translate(a))
    vocab = read_vocabulary(a)
    assert vocab[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert "spa_Latn" in vocab and vocab[-1] == "madeupword1"
    assert (a / "sentencepiece.bpe.model").is_file()


def test_a_checkpoint_may_not_run_code(tmp_path: Path) -> None:
    evil = tmp_path / "pytorch_model.bin"
    payload = pickle.dumps({"x": print})  # any global outside the state-dict vocabulary
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(CheckpointError, match="refusing"):
        read_torch_zip(evil)


def test_a_mismatched_tokenizer_or_model_type_is_refused(tmp_path: Path) -> None:
    hub = hub_folder(tmp_path / "hub")
    tok = json.loads((hub / "tokenizer.json").read_text())
    tok["added_tokens"][-2]["id"] += 1
    (hub / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ConversionError, match="tokenizer.json"):
        convert_nllb(hub, tmp_path / "out")
    config = json.loads((hub / "config.json").read_text())
    (hub / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    with pytest.raises(ConversionError, match="m2m_100"):
        convert_nllb(hub, tmp_path / "out2")


def test_positions_match_m2m100(tmp_path: Path) -> None:
    emb = sinusoidal_positions(6, 8, padding_idx=1)
    assert emb.shape == (6, 8) and not emb[1].any()
    np.testing.assert_allclose(emb[3, :4], np.sin(3 * np.exp(np.arange(4) * -np.log(10000) / 3)), rtol=1e-6)
    np.testing.assert_allclose(emb[3, 4:], np.cos(3 * np.exp(np.arange(4) * -np.log(10000) / 3)), rtol=1e-6)


def test_pull_converts_a_local_hub_copy_and_resolve_finds_it(tmp_path: Path) -> None:
    hub = hub_folder(tmp_path / "hub")
    out = pull_nllb("nllb-200-distilled-600M", dest=tmp_path / "models", source=hub, quantization="int8")
    assert out == tmp_path / "models" / "nllb-200-distilled-600M"
    assert resolve_nllb(str(out)).path == str(out.resolve())
    assert translate(out)  # an int8 model loads and answers


def test_pull_reports_a_failed_download_in_one_line(tmp_path: Path) -> None:
    def offline(repo: str, into: Path) -> Path:
        raise OSError("network is unreachable\nsecond line")

    with pytest.raises(ModelNotFound) as info:
        pull_nllb("nllb-200-distilled-600M", dest=tmp_path, download=offline)
    assert "facebook/nllb-200-distilled-600M" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelNotFound, match="known names"):
        pull_nllb("nllb-9000", dest=tmp_path)
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_nllb(str(tmp_path / "nothing"))
