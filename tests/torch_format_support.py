"""A small writer of ``torch.save``'s two file formats, for tests (torch is not a dependency).

``Tensor(storage, offset, size, stride)`` over ``Storage(array)`` pickles the way torch pickles a
tensor: ``torch._utils._rebuild_tensor_v2`` with a persistent id ``('storage', torch.FloatStorage,
key, 'cpu', numel[, None])``. Those globals are written by name from stand-in modules that exist in
``sys.modules`` only while a file is being written.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

STORAGE_NAMES = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage",
    "uint8": "ByteStorage", "bool": "BoolStorage",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Storage:
    """A flat storage: ``array`` (1-D) saved under ``key``; ``view`` = (view key, offset, size) makes
    it a pre-0.4 storage view of that part of ``array`` (legacy format only)."""

    def __init__(self, array: np.ndarray, key: str, view: tuple | None = None):
        self.array = np.ascontiguousarray(array).reshape(-1)
        self.key, self.view = key, view

    def elements(self) -> np.ndarray:
        """The elements a tensor's offsets count from."""
        if self.view is None:
            return self.array
        return self.array[self.view[1]:self.view[1] + self.view[2]]


class Tensor:
    """A view of ``storage``: element offset, size and stride, as torch records them."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    @classmethod
    def of(cls, array: np.ndarray, key: str) -> "Tensor":
        """A contiguous tensor holding ``array`` in a storage of its own."""
        array = np.ascontiguousarray(array)
        stride = tuple(s // array.itemsize for s in array.strides)
        return cls(Storage(array, key), 0, array.shape, stride)

    def expected(self) -> np.ndarray:
        """What torch shows for this tensor, computed independently of the reader."""
        out = np.empty(self.size, self.storage.array.dtype)
        for index in np.ndindex(*self.size):
            out[index] = self.storage.elements()[self.offset + sum(i * s for i, s in zip(index, self.stride))]
        return out


def _rebuild_tensor_v2(*args):  # written by name only; never called
    raise AssertionError("the writer's stand-in is not meant to run")


@contextlib.contextmanager
def _torch_names() -> Iterator[dict[str, type]]:
    """Stand-in ``torch`` and ``torch._utils`` modules, so pickle can write their globals by name."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    classes = {}
    for name in STORAGE_NAMES.values():
        classes[name] = type(name, (), {"__module__": "torch"})
        setattr(torch, name, classes[name])
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield classes
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


class _Pickler(pickle.Pickler):
    def __init__(self, file, classes: dict[str, type], legacy: bool):
        super().__init__(file, protocol=2)
        self.classes, self.legacy = classes, legacy
        self.storages: dict[str, Storage] = {}

    def persistent_id(self, obj: Any):
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        pid = ("storage", self.classes[STORAGE_NAMES[obj.array.dtype.name]], obj.key, "cpu", obj.array.size)
        return pid + (obj.view,) if self.legacy else pid

    def reducer_override(self, obj: Any):
        if isinstance(obj, Tensor):
            return _rebuild_tensor_v2, (obj.storage, obj.offset, obj.size, obj.stride, False,
                                        collections.OrderedDict())
        return NotImplemented


def _pickle(obj: Any, legacy: bool) -> tuple[bytes, dict[str, Storage]]:
    with _torch_names() as classes:
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, classes, legacy)
        pickler.dump(obj)
    return buffer.getvalue(), pickler.storages


def write_zip(path: Path, obj: Any, byteorder: str = "little") -> Path:
    """``torch.save(obj, path)`` in the zip format (torch >= 1.6)."""
    data, storages = _pickle(obj, legacy=False)
    root = Path(path).stem
    order = "<" if byteorder == "little" else ">"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", data)
        archive.writestr(f"{root}/byteorder", byteorder)
        for key, storage in storages.items():
            archive.writestr(f"{root}/data/{key}", storage.array.astype(storage.array.dtype.newbyteorder(order)).tobytes())
        archive.writestr(f"{root}/version", "3\n")
    return Path(path)


def write_legacy(path: Path, obj: Any, little_endian: bool = True) -> Path:
    """``torch.save(obj, path, _use_new_zipfile_serialization=False)``: the pre-1.6 stream."""
    data, storages = _pickle(obj, legacy=True)
    order = "little" if little_endian else "big"
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": little_endian,
                                             "type_sizes": {"short": 2, "int": 4, "long": 8}}):
            pickle.dump(header, handle, protocol=2)
        handle.write(data)
        pickle.dump(sorted(storages), handle, protocol=2)
        for key in sorted(storages):
            array = storages[key].array
            handle.write(array.size.to_bytes(8, order, signed=True))
            handle.write(array.astype(array.dtype.newbyteorder("<" if little_endian else ">")).tobytes())
    return Path(path)
