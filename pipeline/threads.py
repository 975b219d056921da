"""Thread pools that are not ours: numpy's BLAS (OpenBLAS).

OpenBLAS starts a thread per core and keeps them spinning between calls. Our numpy work is
small and steady (a log-mel matmul of about a hundred new frames per request, the VAD's few
operations), so those threads only burn cores: on a GPU host the serving process used 13-14
cores for nothing, 1.7 with one BLAS thread, finals no slower (issue 18). CTranslate2 keeps
its own pools, sized per device by the engine (``cpu_threads``, the decoder copy's threads).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_limits: Any = None


def limit_blas(threads: int = 1) -> dict[str, int]:
    """Cap BLAS pools (numpy's OpenBLAS, or MKL) to ``threads`` for the rest of the process;
    returns what each library had before. Call once at startup, before the hot path runs."""
    global _limits
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # a bare benchmark box (the GPU kit) may lack it: run, and say so
        log.warning("threadpoolctl is not installed: numpy's BLAS keeps its own thread count")
        return {}

    before = {
        f"{p['internal_api']}": int(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"
    }
    _limits = threadpool_limits(limits=threads, user_api="blas")  # kept: it holds the limit
    return before


def lower_priority(niceness: int = 10) -> None:
    """Make the calling thread yield the CPU to the rest of the process (Linux threads have a
    nice value each): background work such as decoding and VAD of uploaded files, so that live
    sessions' audio work comes first on a busy host. A no-op where it is not supported."""
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass
