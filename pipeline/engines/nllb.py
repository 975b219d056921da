"""NLLB-200 on CTranslate2: one ``translate_batch`` call for lines of any sessions, rooms and targets.

Each source is ``[src_lang] + pieces + ["</s>"]`` and each target is forced by its own
``target_prefix`` (``[tgt_lang]``, then any text already shown), so one call mixes target
languages; greedy decoding (beam 1) makes an item's output independent of its batch-mates.
The language token the decoder starts with is stripped from the text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import sentencepiece as spm

from pipeline.languages import FLORES, UnknownLanguage, normalize
from pipeline.types import TranslateRequest, Translation

log = logging.getLogger(__name__)

SP_MODEL = "sentencepiece.bpe.model"


@dataclass(frozen=True)
class NllbConfig:
    """How the NLLB model is loaded and decoded.

    length_ratio, length_extra: an output may have at most ``ratio * source tokens + extra``
        tokens (after any forced prefix), so a looping decoder stops early on its own line.
    max_length: a hard cap on output tokens, whatever the source.
    max_source_tokens: longer lines are cut (NLLB was trained on up to 512 tokens; a caption
        line is far shorter, so only runaway input is affected).
    no_repeat_ngram_size: greedy decoders loop on repeated phrases; forbidding a repeated
        n-gram stops that, and real sentences rarely repeat four tokens in a row.
    """

    model_path: str
    device: str = "cpu"
    device_index: int = 0
    compute_type: str = "int8"
    cpu_threads: int = 0
    length_ratio: float = 2.0
    length_extra: int = 10
    max_length: int = 256
    max_source_tokens: int = 256
    no_repeat_ngram_size: int = 4


def read_vocabulary(folder: Path) -> list[str]:
    """The target vocabulary of a converted model (json since CTranslate2 3.x, txt before)."""
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        if (folder / name).is_file():
            return list(json.loads((folder / name).read_text(encoding="utf-8")))
    for name in ("shared_vocabulary.txt", "target_vocabulary.txt"):
        if (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8").splitlines()
    raise FileNotFoundError(f"{folder} has no shared_vocabulary.json/txt")


class NllbEngine:
    """One NLLB model on one device, shared by every room through the scheduler."""

    name = "nllb"

    def __init__(self, config: NllbConfig) -> None:
        self.config = config
        folder = Path(config.model_path)
        self._sp = spm.SentencePieceProcessor(model_file=str(folder / SP_MODEL))
        self._translator = ctranslate2.Translator(
            str(folder),
            device=config.device,
            device_index=config.device_index,
            compute_type=config.compute_type,
            intra_threads=config.cpu_threads,
        )
        vocab = read_vocabulary(folder)
        self._lang_tokens = frozenset(t for t in vocab if t in set(FLORES.values()))
        self._specials = frozenset({"<s>", "</s>", "<pad>", "<unk>", "<mask>"}) | self._lang_tokens
        # What this model can translate between: the codes whose FLORES token it knows.
        self.languages: frozenset[str] = frozenset(c for c, t in FLORES.items() if t in self._lang_tokens)

    def supports(self, source: str, target: str) -> bool:
        try:
            return normalize(source) in self.languages and normalize(target) in self.languages
        except UnknownLanguage:
            return False

    def _token(self, code: str) -> str:
        code = normalize(code)
        if code not in self.languages:
            raise ValueError(f"this NLLB model has no language {code!r}")
        return FLORES[code]

    def pieces(self, text: str) -> list[str]:
        return list(self._sp.encode(text, out_type=str))

    def decode(self, tokens: Sequence[str]) -> str:
        return str(self._sp.decode([t for t in tokens if t not in self._specials])).strip()

    def _bound(self, source_tokens: int) -> int:
        c = self.config
        return min(c.max_length, int(c.length_ratio * source_tokens) + c.length_extra)

    def run_batch(self, requests: Sequence[TranslateRequest]) -> list[Translation]:
        out: list[Translation | None] = [None] * len(requests)
        todo: list[int] = []
        sources: list[list[str]] = []
        prefixes: list[list[str]] = []
        bounds: list[int] = []
        for i, r in enumerate(requests):
            if normalize(r.source) == normalize(r.target) or not r.text.strip():
                out[i] = Translation(r.text if r.text.strip() else "", r.source, r.target)
                continue
            pieces = self.pieces(r.text.strip())[: self.config.max_source_tokens]
            prefix = [self._token(r.target)] + (self.pieces(r.prefix.strip()) if r.prefix.strip() else [])
            todo.append(i)
            sources.append([self._token(r.source), *pieces, "</s>"])
            prefixes.append(prefix)
            # The bound counts the forced prefix too: CTranslate2 decodes it as steps.
            bounds.append(len(prefix) + self._bound(len(pieces)))
        if todo:
            results = self._translator.translate_batch(
                sources,
                target_prefix=prefixes,
                beam_size=1,
                max_decoding_length=max(bounds),
                no_repeat_ngram_size=self.config.no_repeat_ngram_size,
                max_batch_size=0,
            )
            for i, res, bound in zip(todo, results, bounds, strict=True):
                # One call runs to the batch's longest bound; each item is cut to its own, so an
                # item's text never depends on the company it was batched with.
                tokens = res.hypotheses[0][:bound]
                r = requests[i]
                out[i] = Translation(self.decode(tokens[1:]), r.source, r.target)
        return [t for t in out if t is not None]
