"""What the policy does when the device falls behind: partial updates come more rarely, and
finals are decoded greedily (a final on time beats a better one late). Partials whose
hypothesis stops changing back off too (steady noise, a held note). Pure: the queue delay is
an input, measured by the scheduler."""

from __future__ import annotations

from dataclasses import replace

from pipeline.policy_options import PolicyOptions
from pipeline.types import DecodeOptions


def partial_interval(options: PolicyOptions, queue_delay: float) -> float:
    """Backpressure: the further behind the scheduler runs, the rarer the partial updates."""
    if queue_delay <= options.backpressure_delay:
        return options.partial_interval
    return options.partial_interval * (1.0 + queue_delay / options.backpressure_delay)


def partial_wait(options: PolicyOptions, queue_delay: float, scale: float, heard_words: bool) -> float:
    """Seconds of new voice before the next partial of an utterance whose interval is scaled by
    ``scale``. The first partial comes as the utterance opens, on little speech, and often
    hears nothing yet: until one has words, it asks again after half the interval."""
    interval = partial_interval(options, queue_delay) * scale
    return interval if heard_words else interval / 2


def next_scale(options: PolicyOptions, scale: float, changed: bool) -> float:
    """A partial that changed the words brings the interval back; an unchanged one doubles it,
    up to ``max_partial_interval``."""
    if changed:
        return 1.0
    if options.max_partial_interval > 0:
        return min(scale * 2, options.max_partial_interval / options.partial_interval)
    return scale


def final_options(options: PolicyOptions, decode: DecodeOptions, queue_delay: float) -> DecodeOptions:
    """How a final is decoded now: greedy while the device runs over ``backpressure_delay`` behind."""
    if queue_delay > options.backpressure_delay:
        return replace(decode, beam_size=1)
    return decode
