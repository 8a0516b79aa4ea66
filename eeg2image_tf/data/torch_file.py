"""Reading files written by ``torch.save`` without torch, and without letting them run code.

``torch.save`` writes one of two containers:

- zip (torch >= 1.6): ``<root>/data.pkl`` is the object pickle and each storage is the raw entry
  ``<root>/data/<key>``, in the byte order named by ``<root>/byteorder`` (little when absent);
- legacy (older torch, or ``_use_new_zipfile_serialization=False``): one stream of three small
  pickles (the magic number, the protocol version 1001, ``sys_info`` with the byte order), the object
  pickle, a pickled list of storage keys, then each of those storages in that order as an 8-byte
  element count followed by the raw elements.

In both, the object pickle spells a tensor as ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)`` (``_rebuild_tensor`` before torch 0.4), where ``storage`` is a persistent id
``('storage', torch.FloatStorage, key, location, numel)`` (legacy: plus a storage-view field). The
unpickler here is a :class:`~.safe_pickle.RestrictedUnpickler` that resolves exactly those names, to
inert stand-ins of its own; any other global is refused before anything is called. Once the storages
are read, every stand-in tensor becomes a numpy array: a copy in native byte order, taken through its
offset, size and strides, so views into one shared storage come out as torch shows them.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import DataError
from .safe_pickle import RestrictedUnpickler, open_input

# torch storage class -> element type (little-endian; a file's byte order is applied when reading).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"), "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    """What ``torch.FloatStorage`` and its kin resolve to: a name and an element type, not callable."""
    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True, slots=True)
class _Storage:
    """A persistent id: storage ``key`` of the file; ``view`` = (offset, size) in elements of it."""
    key: str
    view: Optional[tuple[int, int]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Tensor:
    """A tensor before its storage is read: offset, size and stride in elements."""
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _index_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_index(v) for v in value):
        raise pickle.UnpicklingError(f"tensor {what} {value!r} is not a tuple of non-negative integers")
    return tuple(int(v) for v in value)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None) -> _Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` (and ``_rebuild_tensor``): records, builds
    nothing. Gradient flags, hooks and metadata do not change the values and are dropped."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
    if not _is_index(storage_offset):
        raise pickle.UnpicklingError(f"tensor storage offset {storage_offset!r} is not a non-negative integer")
    size, stride = _index_tuple(size, "size"), _index_tuple(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in length")
    return _Tensor(storage, int(storage_offset), size, stride)


class _TorchUnpickler(RestrictedUnpickler):
    """Resolves only tensors, storages of :data:`STORAGE_DTYPES` and ``OrderedDict``; collects the
    storages the pickle names (``roots``: key -> (element type, element count))."""

    admits = "tensors of plain dtypes and plain containers"

    def __init__(self, file, source: str):
        super().__init__(file, source=source)
        self.roots: dict[str, tuple[np.dtype, int]] = {}

    def allowed_globals(self) -> dict[tuple[str, str], Any]:
        plain = super().allowed_globals()
        allowed: dict[tuple[str, str], Any] = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("collections", "OrderedDict"): collections.OrderedDict,
            # bytes, as Python 3 writes them at protocol 2 (latin-1 only).
            ("_codecs", "encode"): plain[("_codecs", "encode")],
        }
        for name, dtype in STORAGE_DTYPES.items():
            allowed[("torch", name)] = _StorageType(name, dtype)
        return allowed

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name.endswith("Storage") and name not in STORAGE_DTYPES:
            raise DataError(f"{self._source}: holds a torch.{name} (only plain dtypes are read: "
                            f"{', '.join(sorted(STORAGE_DTYPES))})")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} (expected a torch storage)")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType) or not _is_index(numel):
            raise pickle.UnpicklingError(f"malformed storage id {pid!r}")
        known = self.roots.setdefault(key, (storage_type.dtype, numel))
        if known != (storage_type.dtype, numel):
            raise pickle.UnpicklingError(f"storage {key} is named both as {known[1]} x {known[0]} and as "
                                         f"{numel} x {storage_type.dtype}")
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            # Pre-0.4 storage views: (view key, offset, size) in elements of the root storage.
            if not (isinstance(view, tuple) and len(view) == 3 and _is_index(view[1]) and _is_index(view[2])):
                raise pickle.UnpicklingError(f"malformed storage view {view!r}")
            view = (int(view[1]), int(view[2]))
        return _Storage(key, view)


def load_torch_file(path: str | os.PathLike) -> Any:
    """Read a ``torch.save`` file (zip or legacy) holding tensors of plain dtypes, dicts, lists,
    numbers and strings; tensors come back as numpy arrays of their dtype and shape.

    Raises :class:`~eeg2image_tf.errors.UnsafePickleError` (nothing run) when the file asks for any
    other global, and :class:`DataError` for a missing, truncated or malformed file; both one line
    naming ``path``.
    """
    path = Path(path)
    with open_input(path):
        pass
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    if tarfile.is_tarfile(path):
        raise DataError(f"{path}: a tar archive (torch's earliest format, before the legacy stream); "
                        "load and re-save it with torch to convert it")
    return _load_legacy(path)


def _load_zip(path: Path) -> Any:
    source = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise DataError(f"{path}: a zip archive without one '<name>/data.pkl' "
                            "(not written by torch.save)")
        root = pickles[0][:-len("data.pkl")]
        byteorder = _zip_text(archive, path, root + "byteorder", default="little")
        if byteorder not in ("little", "big"):
            raise DataError(f"{path}: {root}byteorder says {byteorder!r}, expected 'little' or 'big'")
        unpickler = _TorchUnpickler(io.BytesIO(_zip_bytes(archive, path, pickles[0])), source)
        obj = unpickler.load_checked()
        storages = {}
        for key, (dtype, numel) in unpickler.roots.items():
            storages[key] = _zip_storage(archive, path, f"{root}data/{key}",
                                         dtype.newbyteorder("<" if byteorder == "little" else ">"), numel)
    return _materialise(obj, storages, source)


def _zip_bytes(archive: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise DataError(f"{path}: archive entry {name} is missing") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: archive entry {name} is unreadable ({exc})") from None


def _zip_text(archive: zipfile.ZipFile, path: Path, name: str, default: str) -> str:
    if name not in archive.namelist():
        return default
    return _zip_bytes(archive, path, name).decode("ascii", "replace").strip()


def _zip_storage(archive: zipfile.ZipFile, path: Path, name: str, dtype: np.dtype, numel: int) -> np.ndarray:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise DataError(f"{path}: archive entry {name} (a tensor's storage) is missing") from None
    if info.file_size != numel * dtype.itemsize:
        raise DataError(f"{path}: archive entry {name} holds {info.file_size} bytes, expected "
                        f"{numel} x {dtype.itemsize} for its {numel}-element storage")
    if info.compress_type == zipfile.ZIP_STORED and numel:
        # torch stores storages uncompressed: map them in place rather than holding a second copy.
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            header = handle.read(30)
        if len(header) == 30 and header[:4] == b"PK\x03\x04":
            start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") \
                + int.from_bytes(header[28:30], "little")
            return _mapped(path, start, dtype, numel)
    return np.frombuffer(_zip_bytes(archive, path, name), dtype=dtype)


def _load_legacy(path: Path) -> Any:
    source = str(path)
    size = path.stat().st_size
    with open_input(path) as handle:
        magic = _TorchUnpickler(handle, source).load_checked()
        if magic != _LEGACY_MAGIC:
            raise DataError(f"{path}: not written by torch.save (neither a zip archive nor the legacy "
                            "format's magic number)")
        protocol = _TorchUnpickler(handle, source).load_checked()
        if protocol != _LEGACY_PROTOCOL:
            raise DataError(f"{path}: legacy torch protocol {protocol!r}, expected {_LEGACY_PROTOCOL}")
        sys_info = _TorchUnpickler(handle, source).load_checked()
        if not isinstance(sys_info, dict) or not isinstance(sys_info.get("little_endian"), bool):
            raise DataError(f"{path}: legacy header's sys_info {sys_info!r} does not give the byte order")
        order = "little" if sys_info["little_endian"] else "big"

        unpickler = _TorchUnpickler(handle, source)
        obj = unpickler.load_checked()
        keys = _TorchUnpickler(handle, source).load_checked()
        if not isinstance(keys, list):
            raise DataError(f"{path}: storage key list is a {type(keys).__name__}, expected a list")
        storages = {}
        for key in map(str, keys):
            if key not in unpickler.roots:
                raise DataError(f"{path}: storage {key} has data but no tensor names it")
            dtype, numel = unpickler.roots[key]
            count = handle.read(8)
            start = handle.tell()
            if len(count) < 8 or int.from_bytes(count, order, signed=True) != numel:
                found = int.from_bytes(count, order, signed=True) if len(count) == 8 else "nothing"
                raise DataError(f"{path}: storage {key} at byte {start - len(count)} has element count "
                                f"{found}, expected {numel}")
            if start + numel * dtype.itemsize > size:
                raise DataError(f"{path}: truncated: storage {key} needs {numel * dtype.itemsize} bytes "
                                f"from byte {start}, the file has {size}")
            storages[key] = _mapped(path, start, dtype.newbyteorder("<" if order == "little" else ">"), numel)
            handle.seek(start + numel * dtype.itemsize)
    missing = sorted(set(unpickler.roots) - set(storages))
    if missing:
        raise DataError(f"{path}: storage {missing[0]} is named by a tensor but has no data in the file")
    return _materialise(obj, storages, source)


def _mapped(path: Path, start: int, dtype: np.dtype, numel: int) -> np.ndarray:
    if numel == 0:
        return np.empty(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=(numel,))


def _materialise(obj: Any, storages: dict[str, np.ndarray], source: str) -> Any:
    """``obj`` with every stand-in tensor replaced by its array; lists and dicts are changed in place
    (so objects the pickle shares stay shared), tuples rebuilt."""
    done: set[int] = set()

    def resolve(value: Any) -> Any:
        if isinstance(value, _Tensor):
            return _tensor_array(value, storages, source)
        if isinstance(value, (list, dict)):
            if id(value) not in done:
                done.add(id(value))
                keys = range(len(value)) if isinstance(value, list) else list(value)
                for k in keys:
                    value[k] = resolve(value[k])
            return value
        if isinstance(value, tuple):
            return tuple(resolve(v) for v in value)
        return value

    return resolve(obj)


def _tensor_array(tensor: _Tensor, storages: dict[str, np.ndarray], source: str) -> np.ndarray:
    base = storages[tensor.storage.key]
    if tensor.storage.view is not None:
        offset, length = tensor.storage.view
        if offset + length > len(base):
            raise DataError(f"{source}: a storage view [{offset}, {offset + length}) overruns storage "
                            f"{tensor.storage.key} of {len(base)} elements")
        base = base[offset:offset + length]
    native = base.dtype.newbyteorder("=")
    if 0 in tensor.size:
        return np.zeros(tensor.size, native)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if last >= len(base):
        raise DataError(f"{source}: a tensor of size {tensor.size}, stride {tensor.stride} at offset "
                        f"{tensor.offset} reaches element {last} of storage {tensor.storage.key}, which "
                        f"holds {len(base)}")
    view = np.lib.stride_tricks.as_strided(base[tensor.offset:], shape=tensor.size,
                                           strides=[s * base.itemsize for s in tensor.stride],
                                           writeable=False)
    try:
        return np.array(view, dtype=native, order="C")
    except MemoryError:
        raise DataError(f"{source}: a tensor of size {tensor.size} does not fit in memory") from None
