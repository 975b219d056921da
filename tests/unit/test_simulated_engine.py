"""The modelled device (pipeline/engines/simulated.py): the words of the audio it is given, in
the time its profile says, for any dither of that audio; profiles that cannot be read are one
clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engines.simulated import (
    Curve,
    DeviceProfile,
    ProfileError,
    Reference,
    SimulatedEngine,
    profiles,
)
from pipeline.policy_options import FINAL_DECODE, PARTIAL_DECODE
from pipeline.types import TranscribeRequest, Word

RATE = 16_000


def reference() -> Reference:
    """Ten "words" of noise, 0.5 s each with 0.25 s of near-silence between."""
    rng = np.random.default_rng(7)
    parts, words, t = [], [], 0.0
    for i in range(10):
        parts.append(rng.integers(-2, 3, int(0.25 * RATE)).astype(np.int16))  # the floor repeats
        t += 0.25
        parts.append(rng.integers(-8000, 8000, int(0.5 * RATE)).astype(np.int16))
        words.append(Word(f" w{i}", t, t + 0.5))
        t += 0.5
    return Reference(np.concatenate(parts), tuple(words))


def as_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 6.0), st.floats(0.6, 1.5), st.integers(0, 2**31 - 1))
def test_the_words_are_those_whose_middle_the_audio_holds_whatever_its_lowest_bit(
    begin: float, seconds: float, seed: int
) -> None:
    ref = reference()
    a, b = int(begin * RATE), int(min(len(ref.audio), (begin + seconds) * RATE))
    dither = np.random.default_rng(seed).integers(0, 2, b - a).astype(np.int16)
    heard = ref.heard(ref.audio[a:b] ^ dither)
    expected = [w.text for w in ref.words if a / RATE <= (w.start + w.end) / 2 < b / RATE]
    if not (np.abs(ref.audio[a:b].astype(np.int32)) > 2).any():
        return  # only the floor: nothing to find it by
    assert heard is not None and [w.text for w in heard] == expected
    assert all(0 <= w.start <= w.end <= (b - a) / RATE + 1e-9 for w in heard)


def test_audio_the_reference_does_not_hold_gets_placeholder_words_not_others() -> None:
    ref = reference()
    other = np.random.default_rng(99).integers(-8000, 8000, RATE).astype(np.int16)
    assert ref.heard(other) is None
    engine = SimulatedEngine(DeviceProfile.load("h200-tiny"), ref, sleep=lambda _: None)
    (t,) = engine.run_batch([TranscribeRequest(as_float(other), options=PARTIAL_DECODE)])
    assert [w.text for w in t.words] == [" word1", " word2"]


def test_a_batch_sleeps_what_the_profile_says_for_its_shape() -> None:
    ref = reference()
    slept: list[float] = []
    profile = DeviceProfile.load("h200-tiny")
    engine = SimulatedEngine(profile, ref, sleep=slept.append)
    audio = as_float(ref.audio[: 3 * RATE])  # four words
    finals = engine.run_batch([TranscribeRequest(audio, options=FINAL_DECODE)] * 16)
    partials = engine.run_batch([TranscribeRequest(audio, options=PARTIAL_DECODE)] * 16)
    tokens = int(np.ceil(4 * profile.tokens_per_word)) + profile.fixed_steps
    assert slept[0] == pytest.approx(
        (profile.encode(16) + tokens * profile.step(16 * 5) + profile.align(16)) / 1000
    )
    assert slept[1] == pytest.approx((profile.encode(16) * 0.8 + tokens * profile.step(16)) / 1000)
    assert [w.text for w in finals[0].words] == [" w0", " w1", " w2", " w3"] and finals[0].timed
    # A partial's words are spread over its audio, as the real engine does without alignment.
    assert not partials[0].timed and partials[0].words[-1].end == pytest.approx(3.0)
    assert engine.times.requests == 32 and engine.times.device["align"] > 0


def test_a_measured_beam_step_prices_a_beam_by_its_items_not_its_sequences(tmp_path: Path) -> None:
    """bench.profile measures a beam-5 step by items: five beams of one item share its encoder
    output, so they are not five items' greedy step (on this CPU they cost less than four)."""
    data = {"model": "m", "device": "d", "encode_ms": {"1": 0}, "align_ms": {"1": 0}, "fixed_steps": 0}
    data["step_ms"] = {"1": 1.0, "80": 80.0}
    (tmp_path / "plain.json").write_text(json.dumps(data))
    (tmp_path / "beam.json").write_text(json.dumps({**data, "beam_step_ms": {"1": 2.0, "16": 32.0}}))
    plain, beam = (
        DeviceProfile.load(str(tmp_path / "plain.json")),
        DeviceProfile.load(str(tmp_path / "beam.json")),
    )
    assert plain.batch_ms(1000, 16, 80, 10, 0)["generate"] == pytest.approx(800.0)
    assert beam.batch_ms(1000, 16, 80, 10, 0)["generate"] == pytest.approx(320.0)
    assert beam.batch_ms(1000, 16, 16, 10, 0)["generate"] == pytest.approx(160.0)  # greedy: step


def test_curves_go_through_their_points_and_on_beyond_them() -> None:
    curve = Curve((1.0, 16.0, 64.0), (2.0, 18.5, 70.0))
    assert curve(1) == 2.0 and curve(16) == 18.5 and curve(64) == 70.0
    assert curve(40) == pytest.approx(18.5 + (70 - 18.5) * 24 / 48)
    assert curve(128) == pytest.approx(70 + (70 - 18.5) * 64 / 48)
    assert curve(0) == 0.0


def test_a_profile_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    assert "h200-tiny" in profiles()
    with pytest.raises(ProfileError, match="h200-tiny"):
        DeviceProfile.load("no-such-device")
    bad = tmp_path / "bad.json"
    for text, said in (
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"model": "m", "device": "d", "encode_ms": {}, "step_ms": {"1": 1}}), "encode_ms"),
        (json.dumps({"model": "m", "device": "d", "step_ms": {"1": 1}, "align_ms": {"1": 1}}), "encode_ms"),
        (
            json.dumps(
                {
                    "model": "m",
                    "device": "d",
                    "encode_ms": {"0": 1},
                    "step_ms": {"1": 1},
                    "align_ms": {"1": 1},
                }
            ),
            "counts above 0",
        ),
    ):
        bad.write_text(text)
        with pytest.raises(ProfileError, match=said):
            DeviceProfile.load(str(bad))
