"""NLLB-200 (M2M100 architecture) from a model-hub folder to a CTranslate2 folder, without torch.

ctranslate2's ``TransformersConverter`` needs transformers and torch to read the checkpoint.
This fills the same ``TransformerSpec`` from numpy arrays, following its ``M2M100Loader``
(ctranslate2/converters/transformers.py): pre-norm, no embedding layer norm, sinusoidal
positions from row ``offset`` = 2, embeddings scaled by sqrt(d_model), q/k/v fused, the
tokenizer's vocabulary (fairseq's four specials, the sentencepiece pieces, the language
codes, ``<mask>``, padded with ``madeupwordN`` to the model's size), and ``</s>`` as the
decoder start token. The sentencepiece model is copied beside ``model.bin``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
from ctranslate2.converters import Converter
from ctranslate2.converters.utils import fuse_linear
from ctranslate2.specs import common_spec, transformer_spec

from pipeline.checkpoints import read_weights

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
POSITION_OFFSET = 2  # M2M100's positions start after the padding index
SP_MODEL = "sentencepiece.bpe.model"
_ACTIVATIONS = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}


class ConversionError(ValueError):
    """The folder is not an NLLB / M2M100 checkpoint this converter understands."""


@dataclass(frozen=True)
class M2M100Config:
    """The parts of a hub ``config.json`` the conversion needs."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    vocab_size: int
    max_position_embeddings: int
    pad_token_id: int = 1
    scale_embedding: bool = True
    activation: str = "relu"

    @classmethod
    def from_hf(cls, data: Mapping[str, Any]) -> M2M100Config:
        if data.get("model_type") != "m2m_100":
            raise ConversionError(f"model_type is {data.get('model_type')!r}, not 'm2m_100' (NLLB-200)")
        if data.get("encoder_attention_heads") != data.get("decoder_attention_heads"):
            raise ConversionError("encoder and decoder must have the same number of heads")
        return cls(
            d_model=int(data["d_model"]),
            encoder_layers=int(data["encoder_layers"]),
            decoder_layers=int(data["decoder_layers"]),
            attention_heads=int(data["encoder_attention_heads"]),
            vocab_size=int(data["vocab_size"]),
            max_position_embeddings=int(data["max_position_embeddings"]),
            pad_token_id=int(data.get("pad_token_id", 1)),
            scale_embedding=bool(data.get("scale_embedding", True)),
            activation=str(data.get("activation_function", "relu")),
        )


def sinusoidal_positions(num: int, dim: int, padding_idx: int | None) -> np.ndarray:
    """M2M100SinusoidalPositionalEmbedding.get_embedding, in numpy: sin half, then cos half."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * -scale)
    angles = np.arange(num, dtype=np.float32)[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        emb = np.concatenate([emb, np.zeros((num, 1), dtype=np.float32)], axis=1)
    if padding_idx is not None:
        emb[padding_idx] = 0
    return emb.astype(np.float32)


def language_codes(folder: Path) -> list[str]:
    """The tokenizer's language tokens, in id order."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            codes = json.loads(path.read_text()).get("additional_special_tokens") or []
            codes = [c["content"] if isinstance(c, dict) else c for c in codes]
            if codes:
                return [str(c) for c in codes]
    raise ConversionError(f"{folder} has no language codes (additional_special_tokens)")


def vocabulary(sp_model: Path, codes: list[str], size: int) -> list[str]:
    """NllbTokenizer's ids: fairseq specials, sentencepiece pieces shifted by one, codes, <mask>."""
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]  # sp's <unk> <s> </s> -> SPECIALS
    tokens = SPECIALS + pieces + [c for c in codes if c not in pieces] + ["<mask>"]
    if len(tokens) > size:
        raise ConversionError(f"the tokenizer has {len(tokens)} tokens but the model only {size}")
    return tokens + [f"madeupword{i}" for i in range(size - len(tokens))]


def _check_against_tokenizer_json(folder: Path, tokens: list[str]) -> None:
    """Where the hub's fast tokenizer is present, its added tokens must sit at our ids."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return
    index = {t: i for i, t in enumerate(tokens)}
    for added in json.loads(path.read_text()).get("added_tokens", []):
        content, want = added.get("content"), added.get("id")
        if content in index and index[content] != want:
            raise ConversionError(
                f"token {content!r} is id {want} in tokenizer.json but {index[content]} here"
            )


class M2M100Converter(Converter):
    """ctranslate2's converter API, fed from a dict of numpy arrays named as in the hub checkpoint."""

    def __init__(self, config: M2M100Config, weights: Mapping[str, np.ndarray], tokens: list[str]) -> None:
        self.config = config
        self.weights = weights
        self.tokens = tokens

    def _w(self, name: str) -> np.ndarray:
        if name in self.weights:
            # A copy: quantisation scales the weights in place, and read buffers are read-only.
            return np.array(self.weights[name], dtype=np.float32)
        # Tied embeddings are often stored once, as model.shared.weight.
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            return self._w("model.shared.weight")
        raise ConversionError(f"the checkpoint has no tensor {name}")

    def _linear(self, spec: common_spec.LinearSpec, prefix: str) -> None:
        spec.weight = self._w(prefix + ".weight")
        if prefix + ".bias" in self.weights:
            spec.bias = self._w(prefix + ".bias")

    def _norm(self, spec: common_spec.LayerNormSpec, prefix: str) -> None:
        spec.gamma = self._w(prefix + ".weight")
        spec.beta = self._w(prefix + ".bias")

    def _attention(self, spec: Any, prefix: str, self_attention: bool) -> None:
        split = [common_spec.LinearSpec() for _ in range(3)]
        for lin, name in zip(split, ("q_proj", "k_proj", "v_proj"), strict=True):
            self._linear(lin, f"{prefix}.{name}")
        if self_attention:
            fuse_linear(spec.linear[0], split)
        else:
            fuse_linear(spec.linear[0], split[:1])
            fuse_linear(spec.linear[1], split[1:])
        self._linear(spec.linear[-1], f"{prefix}.out_proj")

    def _common(self, spec: Any, prefix: str) -> None:
        c = self.config
        spec.scale_embeddings = math.sqrt(c.d_model) if c.scale_embedding else 1.0
        positions = sinusoidal_positions(
            c.max_position_embeddings + POSITION_OFFSET, c.d_model, c.pad_token_id
        )
        spec.position_encodings.encodings = positions[POSITION_OFFSET:]
        embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
        embeddings.weight = self._w(f"{prefix}.embed_tokens.weight")
        self._norm(spec.layer_norm, f"{prefix}.layer_norm")

    def _load(self) -> transformer_spec.TransformerSpec:
        c = self.config
        if c.activation not in _ACTIVATIONS:
            raise ConversionError(f"unsupported activation {c.activation!r}")
        spec = transformer_spec.TransformerSpec.from_config(
            (c.encoder_layers, c.decoder_layers),
            c.attention_heads,
            pre_norm=True,
            activation=_ACTIVATIONS[c.activation],
            layernorm_embedding=False,
        )
        self._common(spec.encoder, "model.encoder")
        for i, layer in enumerate(spec.encoder.layer):
            p = f"model.encoder.layers.{i}"
            self._attention(layer.self_attention, p + ".self_attn", self_attention=True)
            self._norm(layer.self_attention.layer_norm, p + ".self_attn_layer_norm")
            self._linear(layer.ffn.linear_0, p + ".fc1")
            self._linear(layer.ffn.linear_1, p + ".fc2")
            self._norm(layer.ffn.layer_norm, p + ".final_layer_norm")
        self._common(spec.decoder, "model.decoder")
        for i, layer in enumerate(spec.decoder.layer):
            p = f"model.decoder.layers.{i}"
            self._attention(layer.self_attention, p + ".self_attn", self_attention=True)
            self._norm(layer.self_attention.layer_norm, p + ".self_attn_layer_norm")
            self._attention(layer.attention, p + ".encoder_attn", self_attention=False)
            self._norm(layer.attention.layer_norm, p + ".encoder_attn_layer_norm")
            self._linear(layer.ffn.linear_0, p + ".fc1")
            self._linear(layer.ffn.linear_1, p + ".fc2")
            self._norm(layer.ffn.layer_norm, p + ".final_layer_norm")
        spec.decoder.projection.weight = self._w("lm_head.weight")
        spec.register_source_vocabulary(self.tokens)
        spec.register_target_vocabulary(self.tokens)
        spec.config.bos_token = "<s>"
        spec.config.eos_token = "</s>"
        spec.config.unk_token = "<unk>"
        spec.config.decoder_start_token = "</s>"
        return spec


def convert_nllb(source: Path, output: Path, quantization: str | None = None, force: bool = False) -> Path:
    """Convert a hub NLLB folder (config.json, weights, sentencepiece.bpe.model, tokenizer files)."""
    config_path = source / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"{source} has no config.json")
    if not (source / SP_MODEL).is_file():
        raise ConversionError(f"{source} has no {SP_MODEL}")
    config = M2M100Config.from_hf(json.loads(config_path.read_text()))
    tokens = vocabulary(source / SP_MODEL, language_codes(source), config.vocab_size)
    _check_against_tokenizer_json(source, tokens)
    M2M100Converter(config, read_weights(source), tokens).convert(
        str(output), quantization=quantization, force=force
    )
    shutil.copy(source / SP_MODEL, output / SP_MODEL)
    return output


def is_nllb_folder(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / SP_MODEL).is_file()
