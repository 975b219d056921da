"""A tiny random NLLB, built offline in well under a second, in the model hub's layout and converted.

``hub_folder`` writes what ``facebook/nllb-200-*`` holds on the hub (config.json, weights as
model.safetensors or a torch-zip pytorch_model.bin, sentencepiece.bpe.model, the special
tokens map, tokenizer.json's added tokens) with a sentencepiece model trained on a few
sentences and random weights; ``tiny_nllb`` converts it with the same code as
``nova-voice models pull``. Its translations are gibberish, on purpose: they must still flow.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import sentencepiece as spm

from pipeline.languages import FLORES
from pipeline.nllb_convert import SPECIALS, convert_nllb

SENTENCES = [
    "Ask not what your country can do for you, ask what you can do for your country.",
    "Live captions make meetings easier to follow for everyone in the room.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Pregunta no lo que tu país puede hacer por ti.",
    "Los subtítulos en vivo ayudan a todos a seguir la reunión.",
    "Les sous-titres en direct aident tout le monde.",
    "Live-Untertitel helfen allen, dem Treffen zu folgen.",
    "We choose to go to the moon in this decade and do the other things.",
    "Numbers like 1, 2, 3 and 42 appear in speech too.",
]
D_MODEL, HEADS, FFN, LAYERS, MAX_POSITIONS = 16, 4, 32, 2, 512


def _sentencepiece() -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=model,
        vocab_size=96,
        hard_vocab_limit=False,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return model.getvalue()


def _weights(vocab_size: int, eos_id: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w: dict[str, np.ndarray] = {"model.shared.weight": rand(vocab_size, D_MODEL)}
    for side in ("encoder", "decoder"):
        w[f"model.{side}.layer_norm.weight"] = np.ones(D_MODEL, np.float32)
        w[f"model.{side}.layer_norm.bias"] = np.zeros(D_MODEL, np.float32)
        attns = ["self_attn"] + (["encoder_attn"] if side == "decoder" else [])
        for i in range(LAYERS):
            p = f"model.{side}.layers.{i}"
            for a in attns:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    w[f"{p}.{a}.{proj}.weight"] = rand(D_MODEL, D_MODEL)
                    w[f"{p}.{a}.{proj}.bias"] = rand(D_MODEL)
                w[f"{p}.{a}_layer_norm.weight"] = np.ones(D_MODEL, np.float32)
                w[f"{p}.{a}_layer_norm.bias"] = np.zeros(D_MODEL, np.float32)
            w[f"{p}.fc1.weight"], w[f"{p}.fc1.bias"] = rand(FFN, D_MODEL), rand(FFN)
            w[f"{p}.fc2.weight"], w[f"{p}.fc2.bias"] = rand(D_MODEL, FFN), rand(D_MODEL)
            w[f"{p}.final_layer_norm.weight"] = np.ones(D_MODEL, np.float32)
            w[f"{p}.final_layer_norm.bias"] = np.zeros(D_MODEL, np.float32)
    # An untied output layer whose </s> row is zero: random weights would otherwise end
    # many lines at once, and an empty translation tests nothing; this one runs to its bound.
    head = rand(vocab_size, D_MODEL)
    head[eos_id] = 0.0
    w["lm_head.weight"] = head
    return w


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def write_torch_zip(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """torch.save's zip layout (data.pkl + data/N), written without torch.

    Stand-ins named ``torch.FloatStorage`` and ``torch._utils._rebuild_tensor_v2`` are put in
    ``sys.modules`` only while pickling, so the pickle names the same globals torch writes.
    """

    class FloatStorage:  # noqa: D101 - a name for pickle to write
        pass

    def _rebuild_tensor_v2(*args: object) -> None:  # noqa: ARG001
        raise AssertionError("never called")

    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    fake_torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    fake_torch._utils = fake_utils  # type: ignore[attr-defined]

    class Tensor:
        def __init__(self, key: str, arr: np.ndarray) -> None:
            self.key, self.arr = key, arr

        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            stride = tuple(s // self.arr.itemsize for s in self.arr.strides)
            storage = _Storage(self.key, self.arr.size)
            return (_rebuild_tensor_v2, (storage, 0, self.arr.shape, stride, False, OrderedDict()))

    class _Storage:
        def __init__(self, key: str, numel: int) -> None:
            self.key, self.numel = key, numel

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils
    try:
        state = OrderedDict(
            (name, Tensor(str(i), np.ascontiguousarray(a, np.float32)))
            for i, (name, a) in enumerate(tensors.items())
        )
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(state)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for i, arr in enumerate(tensors.values()):
            z.writestr(f"archive/data/{i}", np.ascontiguousarray(arr, np.float32).tobytes())


def hub_folder(folder: Path, weights_format: str = "safetensors", seed: int = 0) -> Path:
    """A tiny NLLB in the hub's layout (``weights_format``: ``safetensors`` or ``bin``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentencepiece.bpe.model").write_bytes(_sentencepiece())
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    codes = sorted(set(FLORES.values()))
    n_tokens = len(SPECIALS) + sp.get_piece_size() - 3 + len(codes) + 1
    vocab_size = n_tokens + 2  # two madeup words, as the real model pads its vocabulary
    first_code = len(SPECIALS) + sp.get_piece_size() - 3
    config = {
        "model_type": "m2m_100",
        "architectures": ["M2M100ForConditionalGeneration"],
        "d_model": D_MODEL,
        "encoder_layers": LAYERS,
        "decoder_layers": LAYERS,
        "encoder_attention_heads": HEADS,
        "decoder_attention_heads": HEADS,
        "encoder_ffn_dim": FFN,
        "decoder_ffn_dim": FFN,
        "vocab_size": vocab_size,
        "max_position_embeddings": MAX_POSITIONS,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
        "scale_embedding": True,
        "activation_function": "relu",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps({"additional_special_tokens": codes}))
    added = [{"id": i, "content": t, "special": True} for i, t in enumerate(SPECIALS)]
    added += [{"id": first_code + i, "content": c, "special": True} for i, c in enumerate(codes)]
    added.append({"id": first_code + len(codes), "content": "<mask>", "special": True})
    (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    weights = _weights(vocab_size, eos_id=2, seed=seed)
    if weights_format == "safetensors":
        write_safetensors(folder / "model.safetensors", weights)
    else:
        write_torch_zip(folder / "pytorch_model.bin", weights)
    return folder


def tiny_nllb(folder: Path, weights_format: str = "safetensors", seed: int = 0) -> Path:
    """A converted CTranslate2 NLLB folder (model.bin, vocabulary, sentencepiece.bpe.model)."""
    hub = hub_folder(folder / "hub", weights_format, seed)
    return convert_nllb(hub, folder / "ct2")
