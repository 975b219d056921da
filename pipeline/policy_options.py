"""What the streaming caption policy can be tuned by, and how it decodes partials and finals.

Kept apart from the policy (pipeline/policy.py) so that the pieces it leans on (the agreement
of hypotheses, the repair of skipped speech, backpressure) read the same options.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.text import ends_sentence
from pipeline.types import DecodeOptions, Transcript

# Partials: greedy, words without times, the smallest window tiny.en still reads (800 frames).
PARTIAL_DECODE = DecodeOptions(beam_size=1, word_timestamps=False, min_window_frames=800)
# Finals: beam 5 and word times (bench/results/streaming.md has what the beam buys).
FINAL_DECODE = DecodeOptions(beam_size=5, word_timestamps=True)
# A final that came out as a hallucination is decoded once more by sampling (Whisper's fallback).
FALLBACK_DECODE = DecodeOptions(beam_size=1, temperature=0.4, word_timestamps=True)


@dataclass(frozen=True)
class PolicyOptions:
    """Tunables of the streaming policy, defaults tuned for CPU tiny.en.

    partial_interval: seconds of new voiced audio between partial re-transcriptions (the first
        comes as soon as the utterance opens). One second, not half: partials are most of the
        CPU a speaker costs (bench/results/cost.md), and this halves them.
    max_partial_interval: partials whose hypothesis did not change double the interval, up to
        this (steady noise, a held note); 0 keeps it fixed.
    min_partial_audio: no partial before the utterance (pre-roll included) is this long.
    max_utterance: length cap in seconds; the utterance is cut after a committed word.
    context_chars: how much earlier final text is passed to Whisper as the prompt.
    prompt_min_probability: words Whisper itself doubted stay out of the prompt, since a
        misheard word in the prompt tends to be misheard again in the next utterance.
    backpressure_delay: queue delay (s) beyond which partial updates slow down, and finals are
        decoded greedily: when the device falls behind, a final on time beats a better one late.
    speculate_ms: a pause in the voice this long starts the final's decode before the VAD
        ends the utterance (0: decode the final only when the VAD ends it).
    sentence_wait: extra silence (s) a final waits when its text does not end a sentence; voice
        within it continues the utterance (0: off). A full stop Whisper is sure of (at least
        ``sentence_sure``) waits for nothing, a likely one (at least ``sentence_likely``) for
        half of it: the longer wait costs latency at true sentence ends, where Whisper is mostly
        sure (bench/results/sentences.md).
    stale_after: seconds of transcribed audio without a new word after which an utterance is
        closed even though the VAD still hears speech (0: never).
    partials_on_voice: count only voiced audio towards ``partial_interval`` (False: all audio,
        as before issue 12, kept for comparisons).
    unheard_repair: a final whose words leave this many seconds of voiced audio without a word
        (Whisper stops early, or skips a sentence, mostly on long windows) has that stretch
        decoded once more on its own, and its words put in place (0: never).
    """

    partial_interval: float = 1.0
    max_partial_interval: float = 3.0
    min_partial_audio: float = 0.4
    max_utterance: float = 12.0
    context_chars: int = 200
    prompt_min_probability: float = 0.5
    backpressure_delay: float = 1.0
    language: str = "en"
    speculate_ms: int = 200
    sentence_wait: float = 0.7
    sentence_sure: float = 0.9
    sentence_likely: float = 0.7
    stale_after: float = 3.0
    partials_on_voice: bool = True
    unheard_repair: float = 1.0


def sentence_wait(options: PolicyOptions, result: Transcript) -> float:
    """How much more silence a final waits for: none at a sentence end Whisper is sure of, half
    the wait at a likely one, all of it otherwise."""
    if ends_sentence(result, options.sentence_sure):
        return 0.0
    if ends_sentence(result, options.sentence_likely):
        return options.sentence_wait / 2
    return options.sentence_wait
