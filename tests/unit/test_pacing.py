"""The voice-over's pacing (pipeline/pacing.py) and its timeline (pipeline/voiceline.py), on a
fake clock: speed up when behind, drop the oldest unstarted sentences past the bound, never
overlap, never click."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.pacing import Drop, Pacer, PacingOptions, Start, speed_for
from pipeline.voiceline import FADE, FRAME, FRAME_SECONDS, RATE, Spoken, VoiceLine, faded

OPTIONS = PacingOptions()


def test_speed_is_normal_when_in_step_and_capped_when_far_behind() -> None:
    assert speed_for(0.0, OPTIONS) == 1.0
    assert speed_for(OPTIONS.speed_from, OPTIONS) == 1.0
    assert 1.0 < speed_for((OPTIONS.speed_from + OPTIONS.max_lag) / 2, OPTIONS) < OPTIONS.max_speed
    assert speed_for(60.0, OPTIONS) == OPTIONS.max_speed


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=2, max_size=20))
def test_speed_never_falls_as_the_lag_grows(lags: list[float]) -> None:
    speeds = [speed_for(lag, OPTIONS) for lag in sorted(lags)]
    assert speeds == sorted(speeds)
    assert all(1.0 <= s <= OPTIONS.max_speed for s in speeds)


# A sentence: (seconds after the previous caption, its audio's length, seconds its synthesis takes).
sentence = st.tuples(st.floats(0.0, 6.0), st.floats(0.2, 9.0), st.floats(0.0, 1.5))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(sentence, min_size=1, max_size=30),
    st.sets(st.integers(0, 29), max_size=5),
    st.floats(1.0, 6.0),
    st.floats(0.0, 0.5),
)
def test_every_sentence_starts_in_bound_in_order_without_overlap_or_is_dropped(
    lines: list[tuple[float, float, float]], failing: set[int], max_lag: float, gap: float
) -> None:
    options = PacingOptions(max_lag=max_lag, gap=gap, speed_from=min(1.0, max_lag / 2))
    pacer = Pacer(options)
    shown: dict[int, float] = {}
    durations: dict[int, float] = {}
    arrivals: list[tuple[float, int]] = []
    t = 0.0
    for key, (after, duration, synth) in enumerate(lines):
        t += after
        shown[key] = t
        durations[key] = duration
        arrivals.append((t + synth, key))
    events: list[Start | Drop] = []
    expected = 0
    now = 0.0
    end = t + 20 + sum(durations.values())
    step = 0.02
    while now <= end:
        while expected < len(lines) and shown[expected] <= now:
            speed = pacer.expect(expected, shown[expected], int(durations[expected] * 15), now)
            assert 1.0 <= speed <= options.max_speed
            expected += 1
        for at, key in list(arrivals):
            if at <= now and key < expected:
                arrivals.remove((at, key))
                if key in failing:
                    pacer.fail(key)
                else:
                    pacer.ready(key, durations[key])
        events += pacer.poll(now)
        now = round(now + step, 6)
    keys = [e.key for e in events]
    assert sorted(keys) == list(range(len(lines))), "each sentence started or dropped exactly once"
    starts = [e for e in events if isinstance(e, Start)]
    assert [s.key for s in starts] == sorted(s.key for s in starts), "spoken in caption order"
    for s in starts:
        assert s.at - shown[s.key] <= max_lag + 1e-9, "no sentence starts later than the bound"
        assert s.key not in failing
    for a, b in zip(starts, starts[1:], strict=False):
        assert b.at >= a.at + durations[a.key] + gap - 1e-9, "sentences never overlap"
    for d in events:
        if isinstance(d, Drop) and d.reason == "failed":
            assert d.key in failing


def test_a_voice_that_falls_behind_speeds_up_then_drops_the_oldest() -> None:
    """A speaker whose every 2 s sentence takes 4 s to say: the lag grows to the bound, the
    voice speeds up, then unstarted sentences are dropped and the delay stops growing."""
    pacer = Pacer(PacingOptions(max_lag=4.0))
    speeds, events = [], []
    now = 0.0
    for key in range(30):
        shown = key * 2.0
        while now < shown:
            events += pacer.poll(now)
            now = round(now + 0.02, 6)
        speed = pacer.expect(key, shown, 60, now)
        speeds.append(speed)
        pacer.ready(key, 4.0 / speed)
    while now < 100:
        events += pacer.poll(now)
        now = round(now + 0.02, 6)
    assert speeds[0] == 1.0 and max(speeds) == PacingOptions().max_speed
    drops = [e for e in events if isinstance(e, Drop)]
    starts = [e for e in events if isinstance(e, Start)]
    assert drops and all(d.reason == "late" for d in drops)
    lateness = [s.late for s in starts]
    assert max(lateness) <= 4.0
    # The delay of the last third is no worse than the bound: it stopped growing.
    assert max(lateness[-len(lateness) // 3 :]) <= 4.0


def test_a_sentence_is_expected_once_and_spoken_in_the_order_expected() -> None:
    pacer = Pacer()
    pacer.expect(5, 0.0, 10, 0.0)
    pacer.expect(3, 0.0, 10, 0.0)  # another gateway's sentence, numbered before, came after
    with pytest.raises(ValueError):
        pacer.expect(5, 0.0, 10, 0.0)
    pacer.ready(3, 1.0)
    pacer.ready(5, 1.0)
    assert [e.key for e in pacer.poll(0.0) + pacer.poll(1.5)] == [5, 3]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_timeline_plays_a_sentence_when_it_is_ready_with_silence_around_it() -> None:
    clock = FakeClock()
    heard: list[Spoken] = []
    line = VoiceLine("es", clock=clock, on_event=heard.append)
    k0 = line.index(clock.now)
    assert not line.frame(k0).any(), "silence before anything is said"
    line.expect(1, clock.now, 4)
    tone = (np.sin(np.arange(RATE // 2) / 8) * 12000).astype(np.int16)  # 0.5 s at 48 kHz
    line.deliver(1, tone, RATE)
    clock.now += FRAME_SECONDS
    first = line.frame(line.index(clock.now))
    assert first.any() and first[0] == 0, "starts at zero (faded in): no click"
    assert [type(h.event) for h in heard] == [Start]
    frames = [line.frame(line.index(clock.now) + i) for i in range(1, 40)]
    played = np.concatenate([first, *frames])
    assert np.count_nonzero(played) > RATE // 2 - 2 * FRAME
    assert not frames[-1].any(), "silence after it"
    # Every reader of a frame gets the same samples.
    assert np.array_equal(line.frame(line.index(clock.now) + 3), frames[2])


def test_faded_edges_start_and_end_at_zero() -> None:
    pcm = np.full(1000, 20000, np.int16)
    out = faded(pcm)
    assert out[0] == 0 and abs(int(out[-1])) < 20000 / FADE * 2
    assert out[500] == 20000


def test_a_voice_nobody_reads_for_a_while_skips_what_played_unheard() -> None:
    clock = FakeClock()
    heard: list[Spoken] = []
    line = VoiceLine("es", clock=clock, on_event=heard.append)
    line.expect(1, clock.now, 4)
    line.deliver(1, np.ones(RATE, np.int16), RATE)
    clock.now += 60
    line.expect(2, clock.now, 5)
    assert [(type(h.event), h.event.key) for h in heard] == [(Drop, 1)]
