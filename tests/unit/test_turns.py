"""Speaker turns (pipeline/turns.py): windows from the VAD's frames, finals cut where the voice
changes, labels across silences. Embeddings are made up (a voice is a direction), so what is
tested is the logic; the model on real voices is tested in test_speaker_engine.py and
measured in bench/results/diarization.md."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clusterer import VoiceClusterer
from pipeline.turns import SPLIT_SEGMENTS, SpeakerTurns, TurnOptions
from pipeline.types import SAMPLE_RATE, Caption, Word
from pipeline.vad import VadFrame

DIM = 16
STEP, SPAN = 0.4, 0.815


def voice(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    return v


def speak(turns: SpeakerTurns, start: float, end: float, who: int) -> None:
    """Voice ``who`` from ``start`` to ``end`` (one turn)."""
    talk(turns, [(start, end, who)])


def talk(turns: SpeakerTurns, plan: list[tuple[float, float, int]]) -> None:
    """Windows every 0.4 s over the turns, as if embedded: a window's vector mixes the voices
    it holds by how long each speaks in it (a window across a change holds both)."""
    t = plan[0][0]
    while t == plan[0][0] or t + SPAN <= plan[-1][1] + 1e-9:
        mix = sum(max(0.0, min(t + SPAN, b) - max(t, a)) * voice(who) for a, b, who in plan)
        turns.on_embeddings(int(round(t * SAMPLE_RATE)), np.asarray(mix, np.float32)[None, :], STEP, SPAN)
        t += STEP


def final(segment: int, start: float, end: float, every: float = 0.5) -> Caption:
    words = tuple(
        Word(f" w{i}", start + i * every, start + i * every + every * 0.8)
        for i in range(int((end - start) / every))
    )
    return Caption(
        segment,
        True,
        "".join(w.text for w in words).strip(),
        words[0].start,
        words[-1].end,
        "en",
        words=words,
    )


def test_a_final_that_spans_a_change_of_voice_is_cut_there() -> None:
    turns = SpeakerTurns()
    talk(turns, [(0.0, 4.0, 0), (4.0, 8.0, 1)])
    pieces = turns.final(final(7, 0.1, 8.0))
    assert [p.speaker for p in pieces] == ["Speaker 1", "Speaker 2"]
    assert pieces[0].segment == 7 and pieces[1].segment > SPLIT_SEGMENTS
    assert abs(pieces[0].end - 4.0) < 0.6 and abs(pieces[1].start - 4.0) < 0.6
    assert " ".join(p.text for p in pieces) == final(7, 0.1, 8.0).text
    assert all(p.final and p.text == " ".join(w.text.strip() for w in p.words) for p in pieces)


def test_labels_hold_across_a_silence_and_a_short_reply_follows_the_turn() -> None:
    turns = SpeakerTurns()
    speak(turns, 0.0, 3.0, 0)
    assert [p.speaker for p in turns.final(final(0, 0.1, 3.0))] == ["Speaker 1"]
    speak(turns, 3.5, 6.5, 1)
    assert [p.speaker for p in turns.final(final(1, 3.6, 6.5))] == ["Speaker 2"]
    speak(turns, 30.0, 33.0, 0)  # after 23 s of silence
    assert [p.speaker for p in turns.final(final(2, 30.1, 33.0))] == ["Speaker 1"]
    # A partial says the voice its windows are closest to; with none embedded yet, the last turn's.
    assert turns.partial(final(3, 50.0, 51.0)).speaker == "Speaker 1"
    speak(turns, 60.0, 62.0, 1)
    assert turns.partial(final(4, 60.1, 62.0)).speaker == "Speaker 2"


def test_max_speakers_holds_in_a_final_too() -> None:
    turns = SpeakerTurns(VoiceClusterer(max_speakers=1))
    talk(turns, [(0.0, 4.0, 0), (4.0, 8.0, 1)])
    pieces = turns.final(final(0, 0.1, 8.0))
    assert [p.speaker for p in pieces] == ["Speaker 1"]  # two turns of one voice join again


@settings(deadline=None, max_examples=50)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.floats(0.5, 5.0)), min_size=1, max_size=6),
    st.floats(0.2, 0.9),
)
def test_every_word_is_in_exactly_one_piece_with_one_speaker(plan: list, every: float) -> None:
    turns = SpeakerTurns()
    t, turns_said = 0.0, []
    for who, seconds in plan:
        turns_said.append((t, t + seconds, who))
        t += seconds
    if t < 1.0:
        return
    talk(turns, turns_said)
    caption = final(3, 0.0, t, every)
    pieces = turns.final(caption)
    assert [w for p in pieces for w in p.words] == list(caption.words)
    assert all(p.speaker is not None and p.words for p in pieces)
    assert all(a.speaker != b.speaker for a, b in zip(pieces, pieces[1:], strict=False))
    assert len({p.segment for p in pieces}) == len(pieces)


def frames(pattern: str, n: int = 512) -> list[VadFrame]:
    """VAD frames from a pattern: ``.`` silence, ``S`` the frame that starts speech (with 4
    frames of pre-roll), ``v`` speech, ``E`` the frame that ends it; sample values count up."""
    out, pos, pre = [], 0, []
    for c in pattern:
        samples = (np.arange(pos, pos + n) % 30000).astype(np.int16)
        pos += n
        if c == ".":
            pre = [*pre, samples][-4:]
            out.append(VadFrame(samples, False, False))
        elif c == "S":
            out.append(VadFrame(samples, True, True, started=np.concatenate([*pre, samples])))
        elif c == "v":
            out.append(VadFrame(samples, True, True))
        else:
            out.append(VadFrame(samples, False, False, ended=True))
    return out


def test_windows_cover_each_run_of_speech_with_its_own_audio() -> None:
    turns = SpeakerTurns(options=TurnOptions())
    asked = turns.on_frames(frames("." * 10 + "S" + "v" * 60 + "E" + "." * 5))
    run_start, run_end = 6 * 512, 72 * 512  # pre-roll of 4 frames before the start frame
    w, s = int(0.815 * SAMPLE_RATE), int(0.4 * SAMPLE_RATE)
    starts = [a.start for a in asked]
    assert starts[0] == run_start and all(b - a == s for a, b in zip(starts[:-2], starts[1:-1], strict=True))
    assert 0 <= run_end - (starts[-1] + w) <= s // 2  # the run's tail is in a window
    for a in asked:
        expected = (np.arange(a.start, a.start + w) % 30000).astype(np.int16)
        assert np.array_equal(a.request.audio, expected)
    assert turns.pending == set(starts) and not turns.ready(1.0)
