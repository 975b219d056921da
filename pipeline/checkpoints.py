"""Reading model-hub weight files into numpy arrays without torch.

Two formats: ``*.safetensors`` (a JSON header, then raw little-endian tensors) and torch's
``pytorch_model.bin`` (a zip holding ``data.pkl`` and one raw file per storage). torch is
hundreds of megabytes and only needed here to read, so the pickle is read by a restricted
unpickler that knows the handful of globals a state dict uses and refuses everything else,
which also keeps an untrusted checkpoint from running code.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip

_TORCH_STORAGES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}  # fmt: skip


class CheckpointError(ValueError):
    """A weights file this reader cannot (or will not) read."""


def _bfloat16(raw: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: widen it exactly."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = info["dtype"]
        buf = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=base + start)
        if dtype == "BF16":
            arr = _bfloat16(buf.view(np.uint16))
        elif dtype in _SAFETENSORS_DTYPES:
            arr = buf.view(_SAFETENSORS_DTYPES[dtype])
        else:
            raise CheckpointError(f"{path.name}: tensor {name} has unsupported dtype {dtype}")
        out[name] = arr.reshape(info["shape"])
    return out


class _StorageType:
    def __init__(self, name: str) -> None:
        if name not in _TORCH_STORAGES:
            raise CheckpointError(f"unsupported torch storage {name}")
        self.dtype = _TORCH_STORAGES[name]


def _rebuild_tensor(
    storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> np.ndarray:
    if not size:
        return storage[offset : offset + 1].reshape(())
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


class _StateDictUnpickler(pickle.Unpickler):
    _ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(name)
        raise CheckpointError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid: Any) -> np.ndarray:
        # ("storage", storage_type, key, location, numel)
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            if storage_type.dtype == "bfloat16":
                self._storages[key] = _bfloat16(np.frombuffer(raw, dtype=np.uint16))
            else:
                self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def read_torch_zip(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path.name} is not a zip checkpoint (torch < 1.6 format is not supported)")
    with zipfile.ZipFile(path) as archive:
        pkl = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
        if pkl is None:
            raise CheckpointError(f"{path.name} holds no data.pkl")
        prefix = pkl[: -len("data.pkl")]
        with archive.open(pkl) as f:
            state = _StateDictUnpickler(f, archive, prefix).load()
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} does not hold a state dict")
    return {str(k): np.asarray(v) for k, v in state.items()}


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of a hub model folder, from safetensors when present, else pytorch_model.bin."""
    files = sorted(folder.glob("*.safetensors"))
    reader: Callable[[Path], dict[str, np.ndarray]] = read_safetensors
    if not files:
        files = sorted(folder.glob("pytorch_model*.bin"))
        reader = read_torch_zip
    if not files:
        raise CheckpointError(f"{folder} has no *.safetensors nor pytorch_model*.bin")
    out: dict[str, np.ndarray] = {}
    for f in files:
        out.update(reader(f))
    return out
