"""numpy's BLAS runs one thread in the serving processes (pipeline/threads.py)."""

from __future__ import annotations

import subprocess
import sys


def test_limit_blas_leaves_every_blas_pool_at_one_thread() -> None:
    code = (
        "import numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from pipeline.threads import limit_blas\n"
        "before = limit_blas()\n"
        "after = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "print(before, after)\n"
        "assert before and after and set(after) == {1}\n"
    )
    # A process of its own: the limit lasts for the rest of the process.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
