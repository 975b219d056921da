"""bench.profile's output is a profile the modelled device reads as measured: greedy steps by
items, beam steps by items, alignment by items, encode scaled to 1000-frame windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.profile import profile
from pipeline.engines.simulated import DeviceProfile


def test_measured_rows_become_a_profile_the_simulated_engine_loads(tmp_path: Path) -> None:
    rows = {
        1: {"encode": 30.0, "greedy_step": 1.5, "beam_step": 2.5, "align": 9.0, "tokens": 17, "words": 14},
        16: {
            "encode": 400.0,
            "greedy_step": 10.0,
            "beam_step": 25.0,
            "align": 160.0,
            "tokens": 280,
            "words": 220,
        },
    }
    data = profile(rows, "cpu2-tiny", "tiny.en", "cpu", "int8")
    (tmp_path / "p.json").write_text(json.dumps(data))
    loaded = DeviceProfile.load(str(tmp_path / "p.json"))
    assert loaded.name == "cpu2-tiny" and loaded.tokens_per_word == pytest.approx(297 / 234, abs=1e-3)
    batch = loaded.batch_ms(1000, 16, 16 * 5, 20, 16)
    assert batch == {"encode": 400.0, "generate": 20 * 25.0, "align": 160.0}
    assert loaded.batch_ms(800, 1, 1, 20, 0) == {"encode": 24.0, "generate": 30.0, "align": 0.0}
