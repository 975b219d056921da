"""Whisper on CTranslate2, batched across sessions: one encode, one generate, one align per batch.

faster-whisper's model wrapper gives us the loader, feature extractor and tokenizer; the
batching across independent sessions (each with its own prompt) is ours, since
faster-whisper's batched pipeline only batches chunks of one recording.

Where the CPU goes (tiny.en int8, 2 cores, bench/results/cost.md): generation is a string of
small steps, each dominated by the 51,864-word output projection, so it gains nothing from a
second thread (it costs ~1.6x the CPU for the same wall time) while the encoder halves its
wall time on two. On CPU a second copy of the model with one thread runs generation and
alignment; the first, with every core, encodes.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import ctranslate2
import numpy as np

from pipeline.engines.without_av import allow_missing_av

allow_missing_av()  # before faster_whisper, which imports PyAV for a decoder we never call

from faster_whisper import WhisperModel  # noqa: E402
from faster_whisper.tokenizer import Tokenizer  # noqa: E402

from pipeline.features import LogMel  # noqa: E402
from pipeline.types import SAMPLE_RATE, TranscribeRequest, Transcript, Word  # noqa: E402

log = logging.getLogger(__name__)

HOP = 160  # samples per mel frame
# Encoding only as much audio as the utterance needs, padded up to one of a few lengths,
# is several times cheaper than Whisper's fixed 30 s window (whisper.cpp's audio_ctx idea).
# Measured on LibriVox and espeak prefixes (bench/results/windows.md): tiny.en agrees with its
# 30 s window at 800 and 1000 frames, and falls apart at 500. Each request says how small it
# may go (DecodeOptions.min_window_frames): partials 800, finals 1000.
FRAME_BUCKETS = (800, 1000, 1500, 2000, 3000)
MAX_SAMPLES = FRAME_BUCKETS[-1] * HOP
MAX_PROMPT_TOKENS = 223  # Whisper allows half of its 448-token context for the prompt
# A room's vocabulary gets at most this much of it, before the earlier text: the running
# context keeps the rest, which is what holds names and spelling steady across utterances.
MAX_HOTWORD_TOKENS = 80
MAX_LENGTH = 448
# Early stop: real speech runs at 2-6 tokens a second; a hypothesis that outgrows this is a
# loop, and every extra step of a loop costs as much as a real word.
TOKENS_PER_SECOND = 8
TERMINAL = (".", "?", "!")


def bucket_frames(n_samples: int, min_frames: int = 1000) -> int:
    """The smallest encoder window (in mel frames) that holds ``n_samples`` with some tail room,
    and is at least ``min_frames`` (itself a window, so a benchmark can try any size)."""
    needed = max(n_samples // HOP + 50, min_frames)
    for frames in sorted({min_frames, *FRAME_BUCKETS}):
        if needed <= frames:
            return frames
    return FRAME_BUCKETS[-1]


def max_length(prompt_tokens: int, n_samples: int) -> int:
    """CTranslate2's ``max_length`` for a prompt and audio: room for the speech, not for a loop.

    CTranslate2 counts the prompt against ``max_length``, and for greedy and beam search alike
    yields about half a token per unit beyond it (measured on 4.8.5), hence the factor 2.
    """
    budget = TOKENS_PER_SECOND * n_samples // SAMPLE_RATE + 10
    return min(MAX_LENGTH, prompt_tokens + 2 * budget + 1)


def sentence_end_probability(pieces: Sequence[str], probs: Sequence[float]) -> float:
    """The probability of the mark that ends the text as a sentence, or 0 when none does.

    ``pieces`` are the decoded tokens and ``probs`` their probabilities. An ellipsis trails
    off rather than ends; closing quotes and brackets after the mark are skipped.
    """
    for piece, prob in zip(reversed(pieces), reversed(probs), strict=False):
        text = piece.strip()
        if not text or text in {'"', "'", ")", "]"}:
            continue
        if text.endswith("...") or text.endswith("…"):
            return 0.0
        return float(prob) if text.endswith(TERMINAL) else 0.0
    return 0.0


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


def kept_prompt(tokens: list[int], fixed: int, keep: int) -> list[int]:
    """``keep`` tokens of a prompt whose first ``fixed`` are the vocabulary: the vocabulary
    stays whole and the earlier text is cut from its oldest end (``prompt_groups`` cuts every
    prompt of a call to one length)."""
    if keep <= fixed:
        return tokens[:keep]
    return tokens[:fixed] + tokens[len(tokens) - (keep - fixed) :]


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
    # CPU only: threads of the second model copy that generates and aligns (0: no copy, the
    # encoding model does everything, as before). One is the cheapest (module docstring).
    decode_threads: int = 1
    # Encoder attention memory grows with batch x window^2: a 30 s window costs ~50 MB of
    # scores per item. One engine call is split so that its windows add up to at most this
    # many mel frames (0: device default: 6000 on CPU, where width buys no encoder speed).
    max_batch_frames: int = 0
    # Log-mel features computed once per frame of a growing utterance (pipeline/features.py);
    # False: faster-whisper's extractor over the whole window each time (the benchmark's "before").
    incremental_features: bool = True


@dataclass
class StageTimes:
    """Where an engine's time went, summed over calls: ``features``, ``encode``, ``generate``,
    ``align`` (the model calls) and ``total``; ``host`` is total minus the model calls."""

    requests: int = 0
    features: float = 0.0
    encode: float = 0.0
    generate: float = 0.0
    align: float = 0.0
    total: float = 0.0

    @property
    def host(self) -> float:
        return self.total - self.encode - self.generate - self.align

    def per_request_ms(self) -> dict[str, float]:
        n = max(1, self.requests)
        stages = ("features", "encode", "generate", "align", "host")
        return {k: round(1000 * getattr(self, k) / n, 3) for k in stages}


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
        self._decoder: ctranslate2.models.Whisper = self._model
        if config.device == "cpu" and config.decode_threads:
            # Encoder outputs stay on the CPU, so the second copy reads them as they are.
            self._decoder = ctranslate2.models.Whisper(
                config.model_path,
                device="cpu",
                compute_type=config.compute_type,
                intra_threads=config.decode_threads,
            )
        self.multilingual: bool = bool(self._model.is_multilingual)
        self._tokenizers: dict[tuple[str | None, str], Tokenizer] = {}
        self._logmel = LogMel(self._fw.feature_extractor.mel_filters)
        self.times = StageTimes()

    def _tokenizer(self, language: str | None, task: str = "transcribe") -> Tokenizer:
        # An English-only model has no task token: it transcribes whatever it is asked.
        task = task if self.multilingual else "transcribe"
        key = (language, task)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self._fw.hf_tokenizer,
                self.multilingual,
                task=task,
                language=language if self.multilingual else "en",
            )
        return self._tokenizers[key]

    def features(self, audio: np.ndarray, frames: int) -> np.ndarray:
        audio = audio[:MAX_SAMPLES]
        if self.config.incremental_features:
            return self._logmel(audio, frames)
        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[: len(audio)] = audio
        mel = self._fw.feature_extractor(padded, padding=0)
        return np.ascontiguousarray(mel[:, :frames], dtype=np.float32)

    def run_batch(self, requests: Sequence[TranscribeRequest]) -> list[Transcript]:
        budget = self.config.max_batch_frames or (6000 if self.config.device == "cpu" else 96000)
        windows = [bucket_frames(len(r.audio), r.options.min_window_frames) for r in requests]
        out: list[Transcript] = []
        for chunk in split_by_frames(windows, budget):
            out.extend(self._run_chunk([requests[i] for i in chunk]))
        return out

    def _run_chunk(self, requests: Sequence[TranscribeRequest]) -> list[Transcript]:
        if not requests:
            return []
        times, started = self.times, time.perf_counter()
        frames = max(bucket_frames(len(r.audio), r.options.min_window_frames) for r in requests)
        feats = np.stack([self.features(r.audio, frames) for r in requests])
        times.features += time.perf_counter() - started
        mark = time.perf_counter()
        encoded = self._model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
        times.encode += time.perf_counter() - mark

        languages = self._languages(requests, encoded)
        hot = [self._hotword_tokens(req, lang) for req, lang in zip(requests, languages, strict=True)]
        contexts = [
            hot[i] + self._context_tokens(req, lang, MAX_PROMPT_TOKENS - len(hot[i]))
            for i, (req, lang) in enumerate(zip(requests, languages, strict=True))
        ]
        results: list[ctranslate2.models.WhisperGenerationResult | None] = [None] * len(requests)
        for idx, keep in self._generate_groups(requests, contexts):
            prompts = []
            for i in idx:
                tok = self._tokenizer(languages[i], requests[i].options.task)
                prev = [tok.sot_prev] + kept_prompt(contexts[i], len(hot[i]), keep) if keep else []
                prompts.append(prev + list(tok.sot_sequence) + [tok.no_timestamps])
            opts = requests[idx[0]].options
            longest = max(len(requests[i].audio) for i in idx)
            sampling = opts.temperature > 0
            mark = time.perf_counter()
            group = self._decoder.generate(
                self._select(encoded, idx, len(requests)),
                prompts,
                beam_size=1 if sampling else opts.beam_size,
                sampling_topk=0 if sampling else 1,
                sampling_temperature=opts.temperature if sampling else 1.0,
                max_length=max_length(len(prompts[0]), longest),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=[-1],
            )
            times.generate += time.perf_counter() - mark
            for i, res in zip(idx, group, strict=True):
                results[i] = res

        eot = self._tokenizer(languages[0]).eot  # the same id in every language
        done = [res for res in results if res is not None]
        token_lists = [[t for t in res.sequences_ids[0] if t < eot] for res in done]
        scores = [self._avg_logprob(res, tokens) for res, tokens in zip(done, token_lists, strict=True)]
        aligned = self._align(encoded, token_lists, languages, requests, frames, scores)

        out: list[Transcript] = []
        for i, (res, tokens, lang) in enumerate(zip(done, token_lists, languages, strict=True)):
            words, sentence_end = aligned[i]
            out.append(
                Transcript(
                    words=tuple(words),
                    language=lang or "en",
                    no_speech_prob=float(res.no_speech_prob),
                    avg_logprob=scores[i],
                    compression_ratio=compression_ratio(self._tokenizer(lang).decode(tokens)),
                    timed=requests[i].options.word_timestamps,
                    sentence_end=sentence_end,
                )
            )
        times.requests += len(requests)
        times.total += time.perf_counter() - started
        return out

    @staticmethod
    def _avg_logprob(res: ctranslate2.models.WhisperGenerationResult, tokens: list[int]) -> float:
        seq_len = max(1, len(tokens))
        return float(res.scores[0] * seq_len / (seq_len + 1)) if res.scores else 0.0

    @staticmethod
    def _generate_groups(
        requests: Sequence[TranscribeRequest], contexts: list[list[int]]
    ) -> list[tuple[list[int], int]]:
        """Generate calls: one decoding configuration each (beam and temperature are per call),
        then prompts of one length (``prompt_groups``)."""
        by_config: dict[tuple[int, float], list[int]] = {}
        for i, r in enumerate(requests):
            by_config.setdefault((r.options.beam_size, r.options.temperature), []).append(i)
        out: list[tuple[list[int], int]] = []
        for idx in by_config.values():
            for sub, keep in prompt_groups([len(contexts[i]) for i in idx]):
                out.append(([idx[j] for j in sub], keep))
        return out

    def _context_tokens(self, request: TranscribeRequest, language: str | None, budget: int) -> list[int]:
        if not request.prompt.strip() or budget <= 0:
            return []
        return self._tokenizer(language).encode(" " + request.prompt.strip())[-budget:]

    def _hotword_tokens(self, request: TranscribeRequest, language: str | None) -> list[int]:
        if not request.hotwords.strip():
            return []
        return self._tokenizer(language).encode(" " + request.hotwords.strip())[:MAX_HOTWORD_TOKENS]

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
        scores: list[float],
    ) -> list[tuple[list[Word], float]]:
        """Words per item with their times (and the sentence-end probability) where the request
        asked for times; the rest get their words spread evenly over the audio, untimed."""
        out: list[tuple[list[Word], float]] = []
        # align() takes one start sequence per call, so items are grouped by language and task.
        groups: dict[tuple[str | None, str], list[int]] = {}
        for i, (tokens, lang) in enumerate(zip(token_lists, languages, strict=True)):
            tok = self._tokenizer(lang)
            seconds = min(frames, len(requests[i].audio) // HOP) * HOP / SAMPLE_RATE
            out.append((self._even_words(tok, tokens, seconds, float(np.exp(scores[i]))), 0.0))
            if tokens and requests[i].options.word_timestamps:
                groups.setdefault((lang, requests[i].options.task), []).append(i)
        for (lang, task), idx in groups.items():
            tok = self._tokenizer(lang, task)
            sub = self._select(encoded, idx, len(token_lists))
            num_frames = [min(frames, len(requests[i].audio) // HOP) for i in idx]
            try:
                mark = time.perf_counter()
                results = self._decoder.align(
                    sub,
                    list(tok.sot_sequence),
                    [token_lists[i] for i in idx],
                    num_frames,
                    median_filter_width=7,
                )
                self.times.align += time.perf_counter() - mark
            except Exception:  # noqa: BLE001 - a failed alignment must not lose the text
                log.exception("word alignment failed; using evenly spread word times")
                continue
            for i, result in zip(idx, results, strict=True):
                out[i] = self._timed_words(tok, token_lists[i], result)
        return out

    def _timed_words(
        self, tok: Tokenizer, tokens: list[int], result: ctranslate2.models.WhisperAlignmentResult
    ) -> tuple[list[Word], float]:
        """faster-whisper's ``find_alignment`` for one item, keeping the token probabilities."""
        probs = list(result.text_token_probs)
        pieces = [tok.decode([t]) for t in tokens]
        sentence_end = sentence_end_probability(pieces, probs[: len(tokens)])
        words, word_tokens = tok.split_to_word_tokens(tokens + [tok.eot])
        if len(word_tokens) <= 1:
            return [], sentence_end
        text_indices = np.array([pair[0] for pair in result.alignments])
        time_indices = np.array([pair[1] for pair in result.alignments])
        boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        jump_times = time_indices[jumps] / self._fw.tokens_per_second
        timed = [
            Word(
                word,
                float(jump_times[a]) if a < len(jump_times) else 0.0,
                float(jump_times[b]) if b < len(jump_times) else float(jump_times[-1]),
                float(np.mean(probs[a:b])) if b > a else 0.0,
            )
            for word, a, b in zip(words, boundaries[:-1], boundaries[1:], strict=False)
        ]
        return merge_punctuation(timed), sentence_end

    @staticmethod
    def _select(encoded: ctranslate2.StorageView, idx: list[int], total: int) -> ctranslate2.StorageView:
        if idx == list(range(total)):
            return encoded
        arr = np.asarray(encoded.to_device(ctranslate2.Device.cpu) if encoded.device != "cpu" else encoded)
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(arr[idx]))
        return view

    @staticmethod
    def _even_words(tok: Tokenizer, tokens: list[int], seconds: float, probability: float) -> list[Word]:
        """Untimed words: spread over the audio, each with the hypothesis' mean token probability."""
        if not tokens:
            return []
        words, _ = tok.split_to_word_tokens(tokens)
        span = seconds / max(1, len(words))
        return merge_punctuation(
            [Word(w, i * span, (i + 1) * span, probability) for i, w in enumerate(words)]
        )
