"""The state of one utterance while the policy works on it: its audio (with the silence put
before audio that carries on after a cut), its words committed and provisional, and the
requests in flight for it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.types import SAMPLE_RATE, Transcript, Word
from pipeline.vocabulary import NO_VOCABULARY, Vocabulary

# Silence put before the audio that carries on after a cut: Whisper, prompted with the text
# before the cut, skips a first sentence that starts abruptly mid-word ("To repeat this
# message press five" after "To hear the next message press 6."); a pause before it does not.
CUT_LEAD = int(0.2 * SAMPLE_RATE)


@dataclass
class Utterance:
    """One utterance on its way to a final: its audio, what was asked of it and heard of it."""

    segment: int
    start_sample: int  # stream sample of the audio's first sample (lead included)
    chunks: list[np.ndarray]
    samples: int = 0
    lead: int = 0  # samples of silence before the first stream sample, not from the stream
    voiced: int = 0  # voiced samples heard so far
    voice_end: int = 0  # utterance samples up to the end of the last voiced frame
    voiced_at_request: int = 0
    # Whether anything was asked of this utterance yet: the first partial comes as it opens,
    # every later one after new voice (an utterance with no voiced frame yet, which webrtcvad
    # opens on steady noise, would otherwise ask again with each answer, without end).
    requested: bool = False
    partial_ticket: int | None = None
    committed: list[Word] = field(default_factory=list)  # stream-timed
    provisional: list[Word] = field(default_factory=list)  # stream-timed
    timed: bool = False  # the words' times come from an alignment, not a guess
    cut_asked: int = -1  # samples an aligned partial for the length cut was last asked with
    after_cut: bool = False
    scale: float = 1.0  # partial interval multiplier, grows while nothing new is heard
    heard_until: int = 0  # utterance samples covered by the newest hypothesis
    changed_at: int = 0  # utterance samples covered by the hypothesis that last changed the words
    final_ticket: int | None = None  # the newest final-quality request
    final_voice_end: int = 0  # voice_end when it was asked
    final_samples: int = 0  # samples it covers
    final_result: Transcript | None = None
    fallback_tried: bool = False
    retried: bool = False  # a failed final was asked once more
    head: Transcript | None = None  # the final's decode, while a stretch it missed is decoded again
    repair_from: int = 0  # utterance samples where that stretch starts, and ends
    repair_to: int = 0
    repair_retried: bool = False
    ended_at: int | None = None  # stream samples when the VAD (or staleness) ended it
    # Tickets whose answers still count as hypotheses of this utterance, with the samples each covers.
    asked: dict[int, int] = field(default_factory=dict)
    # The room's vocabulary when the utterance began: a change applies from the next one.
    vocabulary: Vocabulary = NO_VOCABULARY

    def asked_cut(self) -> bool:
        """Whether an aligned partial for the length cut was asked with exactly this audio
        already (its answer disagreed with the committed words: asking again would get the
        same answer, a busy loop); else it is asked now."""
        if self.cut_asked == self.samples:
            return True
        self.cut_asked = self.samples
        return False

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.samples += len(samples)

    def audio(self, until: int | None = None) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        audio = self.chunks[0] if self.chunks else np.zeros(0, dtype=np.int16)
        return audio if until is None else audio[:until]

    @property
    def start(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def first(self) -> int:
        """The first stream sample the utterance holds."""
        return self.start_sample + self.lead

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def words(self) -> list[Word]:
        return self.committed + self.provisional
