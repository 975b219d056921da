"""The online clusterer of a shared microphone's voices (pipeline/clusterer.py): pure logic, so
Hypothesis states its promises over any order of stretches."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clusterer import VoiceClusterer, VoiceOptions, unit

DIM = 32


def voice(i: int) -> np.ndarray:
    """Voice ``i``: a fixed direction of its own (orthogonal to the others)."""
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    return v


def heard(i: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(voice(i) + noise * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM))


stretches = st.lists(
    st.tuples(st.integers(0, 5), st.floats(0.3, 6.0), st.integers(0, 2**31)), min_size=1, max_size=40
)


@settings(deadline=None, max_examples=60)
@given(stretches, st.one_of(st.none(), st.integers(1, 4)))
def test_labels_never_change_and_stay_within_max_speakers(said: list, most: int | None) -> None:
    """Whatever comes, a voice's label is never renamed or renumbered ("Speaker N" in order of
    first appearance), and no more than ``max_speakers`` voices are opened."""
    c = VoiceClusterer(max_speakers=most)
    before: list[str] = []
    previous = None
    for who, seconds, seed in said:
        previous = c.assign(heard(who, 0.3, seed), seconds, previous)
        labels = c.labels()
        assert labels[: len(before)] == before  # earlier voices keep their labels, in order
        assert previous in labels
        before = labels
        if most is not None:
            assert len(labels) <= most
    assert before == [f"Speaker {n}" for n in range(1, len(before) + 1)]


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=30), st.integers(0, 2**31))
def test_each_voice_keeps_its_label_across_the_session(order: list[int], seed: int) -> None:
    """Distinct voices in stretches of 2 s, mildly noisy, in any order (a silence between two
    turns changes nothing): one label per voice, the same every time it comes back."""
    c = VoiceClusterer()
    label_of: dict[int, str] = {}
    for k, who in enumerate(order):
        label = c.assign(heard(who, 0.2, seed + k), 2.0)
        assert label_of.setdefault(who, label) == label
    assert len(set(label_of.values())) == len(label_of)


def test_a_short_stretch_follows_the_previous_turn_and_opens_no_voice() -> None:
    c = VoiceClusterer(options=VoiceOptions(min_new=1.2))
    assert c.assign(voice(0), 3.0) == "Speaker 1"
    assert c.assign(voice(1), 0.5, previous="Speaker 1") == "Speaker 1"
    assert c.labels() == ["Speaker 1"]
    assert c.assign(voice(1), 2.0, previous="Speaker 1") == "Speaker 2"


def test_a_named_voice_of_the_room_is_called_by_its_name() -> None:
    """Heard on a named microphone or enrolled: a stretch close to it carries the name, and a
    stretch of another voice still opens "Speaker 1"."""
    c = VoiceClusterer(known=lambda: {"Ana": voice(2)})
    assert c.assign(heard(2, 0.2, 1), 2.0) == "Ana"
    assert c.assign(heard(0, 0.2, 2), 2.0) == "Speaker 1"
    assert c.assign(heard(2, 0.2, 3), 2.0) == "Ana"
    assert c.peek(heard(2, 0.2, 4)) == "Ana" and c.peek(voice(5)) is None


def test_max_speakers_sends_a_new_voice_to_the_closest() -> None:
    c = VoiceClusterer(max_speakers=2)
    a, b = c.assign(voice(0), 2.0), c.assign(voice(1), 2.0)
    third = c.assign(unit(voice(2) + 0.5 * voice(1)), 2.0)
    assert (a, b, third) == ("Speaker 1", "Speaker 2", "Speaker 2")
