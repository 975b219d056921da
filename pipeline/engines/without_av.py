"""faster-whisper without PyAV: for hosts that decode no media (a bare CUDA benchmark box).

faster-whisper imports PyAV when its package is imported, for ``decode_audio``, which Nova
Voice never calls (audio reaches the engine already decoded). Where PyAV is not installed, a
placeholder module stands in for it, so the engine loads; anything that does try to decode
media through it fails with one clear line. Where PyAV is installed, nothing changes.
"""

from __future__ import annotations

import sys
import types


class _Missing(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        raise ImportError(f"PyAV is not installed: av.{name} is unavailable (pip install av to decode media)")


def allow_missing_av() -> None:
    """Install the placeholder if (and only if) PyAV cannot be imported."""
    try:
        import av  # noqa: F401 - faster-whisper imports it next anyway
    except ImportError:
        sys.modules["av"] = _Missing("av")
