"""Whisper on CTranslate2, batched across sessions: one encode, one generate, one align per batch.

faster-whisper's model wrapper gives us the loader, feature extractor, tokenizer and word
alignment; the batching across independent sessions (each with its own prompt) is ours,
since faster-whisper's batched pipeline only batches chunks of one recording.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from pipeline.types import SAMPLE_RATE, TranscribeRequest, Transcript, Word

log = logging.getLogger(__name__)

HOP = 160  # samples per mel frame
# Encoding only as much audio as the utterance needs, padded up to one of a few lengths,
# is several times cheaper than Whisper's fixed 30 s window (whisper.cpp's audio_ctx idea).
# Under ~10 s Whisper starts to lose words on CPU tiny.en, so the shortest bucket is 10 s.
FRAME_BUCKETS = (1000, 1500, 2000, 3000)
MAX_SAMPLES = FRAME_BUCKETS[-1] * HOP
MAX_PROMPT_TOKENS = 223  # Whisper allows half of its 448-token context for the prompt


def bucket_frames(n_samples: int) -> int:
    """The smallest encoder window (in mel frames) that holds ``n_samples`` with some tail room."""
    needed = n_samples // HOP + 50
    for frames in FRAME_BUCKETS:
        if needed <= frames:
            return frames
    return FRAME_BUCKETS[-1]


def split_by_frames(frames: list[int], budget: int) -> list[list[int]]:
    """Consecutive runs of items whose padded windows (the run's largest, times its size) fit ``budget``."""
    chunks: list[list[int]] = []
    for i, f in enumerate(frames):
        if chunks:
            run = chunks[-1]
            widest = max(f, *(frames[j] for j in run))
            if widest * (len(run) + 1) <= budget:
                run.append(i)
                continue
        chunks.append([i])
    return chunks


def prompt_groups(lengths: list[int], keep_ratio: float = 0.75) -> list[tuple[list[int], int]]:
    """Split a batch into generate calls whose prompts have the same length.

    CTranslate2 needs <|startoftranscript|> at one position across a batch, so the earlier
    text of each item is cut to the shortest in its group; grouping similar lengths keeps
    that cut small (each item keeps at least ``keep_ratio`` of its context), and items with
    no context at all form their own group. Returns (indices, tokens of context to keep).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[tuple[list[int], int]] = []
    for i in order:
        n = lengths[i]
        if groups:
            idx, keep = groups[-1]
            first = lengths[idx[0]]
            if (n == 0) == (first == 0) and n >= keep_ratio * first:
                groups[-1] = (idx + [i], min(keep, n))
                continue
        groups.append(([i], n))
    return [(sorted(idx), keep) for idx, keep in groups]


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def merge_punctuation(words: list[Word]) -> list[Word]:
    """Glue pieces without a leading space ("." after " Mr") onto the word before them."""
    merged: list[Word] = []
    for w in words:
        if merged and w.text and not w.text[0].isspace():
            prev = merged[-1]
            merged[-1] = Word(prev.text + w.text, prev.start, w.end, min(prev.probability, w.probability))
        else:
            merged.append(w)
    return merged


@dataclass(frozen=True)
class WhisperConfig:
    model_path: str
    device: str = "cpu"
    device_index: int = 0
    compute_type: str = "int8"
    cpu_threads: int = 0
    # Encoder attention memory grows with batch x window^2: a 30 s window costs ~50 MB of
    # scores per item. One engine call is split so that its windows add up to at most this
    # many mel frames (0: device default: 6000 on CPU, where width buys no encoder speed).
    max_batch_frames: int = 0


class WhisperEngine:
    """One Whisper model on one device, shared by every session through the scheduler."""

    name = "whisper"

    def __init__(self, config: WhisperConfig) -> None:
        self.config = config
        self._fw = WhisperModel(
            config.model_path,
            device=config.device,
            device_index=config.device_index,
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
        )
        self._model: ctranslate2.models.Whisper = self._fw.model
        self.multilingual: bool = bool(self._model.is_multilingual)
        self._tokenizers: dict[str | None, Tokenizer] = {}

    def _tokenizer(self, language: str | None) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._fw.hf_tokenizer,
                self.multilingual,
                task="transcribe",
                language=language if self.multilingual else "en",
            )
        return self._tokenizers[language]

    def features(self, audio: np.ndarray, frames: int) -> np.ndarray:
        audio = audio[:MAX_SAMPLES]
        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[: len(audio)] = audio
        mel = self._fw.feature_extractor(padded, padding=0)
        return np.ascontiguousarray(mel[:, :frames], dtype=np.float32)

    def run_batch(self, requests: Sequence[TranscribeRequest]) -> list[Transcript]:
        budget = self.config.max_batch_frames or (6000 if self.config.device == "cpu" else 96000)
        out: list[Transcript] = []
        for chunk in split_by_frames([bucket_frames(len(r.audio)) for r in requests], budget):
            out.extend(self._run_chunk([requests[i] for i in chunk]))
        return out

    def _run_chunk(self, requests: Sequence[TranscribeRequest]) -> list[Transcript]:
        if not requests:
            return []
        frames = max(bucket_frames(len(r.audio)) for r in requests)
        feats = np.stack([self.features(r.audio, frames) for r in requests])
        encoded = self._model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)

        languages = self._languages(requests, encoded)
        contexts = [self._context_tokens(req, lang) for req, lang in zip(requests, languages, strict=True)]
        results: list[ctranslate2.models.WhisperGenerationResult | None] = [None] * len(requests)
        for idx, keep in prompt_groups([len(c) for c in contexts]):
            prompts = []
            for i in idx:
                tok = self._tokenizer(languages[i])
                prev = [tok.sot_prev] + contexts[i][len(contexts[i]) - keep :] if keep else []
                prompts.append(prev + list(tok.sot_sequence) + [tok.no_timestamps])
            # Beam size is per call; the scheduler batches requests of one configuration.
            opts = requests[idx[0]].options
            group = self._model.generate(
                self._select(encoded, idx, len(requests)),
                prompts,
                beam_size=opts.beam_size,
                max_length=MAX_PROMPT_TOKENS * 2,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=[-1],
            )
            for i, res in zip(idx, group, strict=True):
                results[i] = res

        eot = self._tokenizer(languages[0]).eot  # the same id in every language
        done = [res for res in results if res is not None]
        token_lists = [[t for t in res.sequences_ids[0] if t < eot] for res in done]
        words_per_item = self._align(encoded, token_lists, languages, requests, frames)

        out: list[Transcript] = []
        for res, tokens, words, lang in zip(done, token_lists, words_per_item, languages, strict=True):
            text = self._tokenizer(lang).decode(tokens)
            seq_len = max(1, len(tokens))
            avg_logprob = res.scores[0] * seq_len / (seq_len + 1) if res.scores else 0.0
            out.append(
                Transcript(
                    words=tuple(words),
                    language=lang or "en",
                    no_speech_prob=float(res.no_speech_prob),
                    avg_logprob=float(avg_logprob),
                    compression_ratio=compression_ratio(text),
                )
            )
        return out

    def _context_tokens(self, request: TranscribeRequest, language: str | None) -> list[int]:
        if not request.prompt.strip():
            return []
        return self._tokenizer(language).encode(" " + request.prompt.strip())[-MAX_PROMPT_TOKENS:]

    def _languages(
        self, requests: Sequence[TranscribeRequest], encoded: ctranslate2.StorageView
    ) -> list[str | None]:
        if not self.multilingual:
            return ["en"] * len(requests)
        langs: list[str | None] = [r.options.language for r in requests]
        if any(lang is None for lang in langs):
            detected = self._model.detect_language(encoded)
            for i, pairs in enumerate(detected):
                if langs[i] is None:
                    langs[i] = pairs[0][0][2:-2]  # "<|de|>" -> "de"
        return langs

    def _align(
        self,
        encoded: ctranslate2.StorageView,
        token_lists: list[list[int]],
        languages: list[str | None],
        requests: Sequence[TranscribeRequest],
        frames: int,
    ) -> list[list[Word]]:
        words: list[list[Word]] = [[] for _ in token_lists]
        # align() takes one start sequence per call, so items are grouped by language.
        groups: dict[str | None, list[int]] = {}
        for i, (tokens, lang) in enumerate(zip(token_lists, languages, strict=True)):
            if tokens:
                groups.setdefault(lang, []).append(i)
        for lang, idx in groups.items():
            tok = self._tokenizer(lang)
            sub = self._select(encoded, idx, len(token_lists))
            num_frames = [min(frames, len(requests[i].audio) // HOP) for i in idx]
            try:
                aligned = self._fw.find_alignment(tok, [token_lists[i] for i in idx], sub, num_frames)
            except Exception:  # noqa: BLE001 - a failed alignment must not lose the text
                log.exception("word alignment failed; using evenly spread word times")
                aligned = [self._even_words(tok, token_lists[i], num_frames[k]) for k, i in enumerate(idx)]
            for i, item in zip(idx, aligned, strict=True):
                words[i] = merge_punctuation(
                    [
                        Word(w["word"], float(w["start"]), float(w["end"]), float(w["probability"]))
                        for w in item
                    ]
                )
        return words

    @staticmethod
    def _select(encoded: ctranslate2.StorageView, idx: list[int], total: int) -> ctranslate2.StorageView:
        if idx == list(range(total)):
            return encoded
        arr = np.asarray(encoded.to_device(ctranslate2.Device.cpu) if encoded.device != "cpu" else encoded)
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(arr[idx]))
        return view

    @staticmethod
    def _even_words(tok: Tokenizer, tokens: list[int], num_frames: int) -> list[dict]:
        words, _ = tok.split_to_word_tokens(tokens)
        span = num_frames * HOP / SAMPLE_RATE / max(1, len(words))
        return [
            {"word": w, "start": i * span, "end": (i + 1) * span, "probability": 0.0}
            for i, w in enumerate(words)
        ]
