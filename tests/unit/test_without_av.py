"""The benchmarks run on a bare CUDA box without PyAV (issue 18): nothing they import needs it."""

from __future__ import annotations

import subprocess
import sys

BLOCK_AV = "import sys; sys.modules['av'] = None  # as if PyAV were not installed\n"


def test_the_engine_and_the_benchmarks_import_without_pyav() -> None:
    code = BLOCK_AV + (
        "import bench.capacity, bench.engine\n"
        "from pipeline.engines.whisper import WhisperEngine\n"
        "import av\n"
        "try:\n"
        "    av.open('x.wav')\n"
        "except ImportError as exc:\n"
        "    print('decoding says:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "PyAV is not installed" in done.stdout
