"""The ThoughtViz EEG sets (spec section 1): safe loading, validation and our ``.npz`` format.

A set is one dict with ``x_train``, ``y_train``, ``x_test``, ``y_test``: ``x`` float ``(N, 14, 32, 1)``
(14 Emotiv channels by 32 samples at 128 Hz), ``y`` one-hot ``(N, 10)``. The release ships it as a
Python 2 pickle (``data/eeg/<set>/data.pkl``); we read that with a restricted unpickler, and also read
and write the same keys as an ``.npz`` opened with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..io_utils import atomic_path
from .safe_pickle import safe_load_pickle

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digit": tuple(str(d) for d in range(10)),
    "char": ("A", "C", "F", "H", "J", "M", "P", "S", "T", "Y"),
    "image": ("Apple", "Car", "Dog", "Gold", "Mobile", "Rose", "Scooter", "Tiger", "Wallet", "Watch"),
}

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass(frozen=True, eq=False)
class EEGSplits:
    """One EEG set, validated.

    ``x_train``/``x_test``: float32 ``(N, C, T, 1)`` raw values (Emotiv units, about 4000-4600);
    ``y_train``/``y_test``: int64 ``(N,)`` class ids in ``[0, num_classes)``; every class occurs in
    train. ``class_names`` is ``None`` when unknown; ``source`` is the file it came from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Optional[tuple[str, ...]]
    source: str

    @property
    def num_classes(self) -> int:
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.y_train.max()) + 1

    @property
    def num_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_samples(self) -> int:
        return int(self.x_train.shape[2])


def eeg_file(path: str | os.PathLike) -> Path:
    """The file :func:`load_thoughtviz` reads for ``path``: the file itself, or a set directory's
    ``data.npz`` (else its ``data.pkl``). Raises :class:`DataError` when there is none; reads nothing."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "data.npz", path / "data.pkl"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise DataError(f"{path}: directory holds neither data.npz nor data.pkl")
        path = found[0]
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return path


def load_thoughtviz(path: str | os.PathLike,
                    class_names: Optional[Sequence[str]] = None) -> EEGSplits:
    """Load and validate a ThoughtViz set from ``data.pkl`` (restricted unpickler) or ``.npz``.

    ``path`` may also be a set directory holding ``data.npz`` or ``data.pkl`` (the ``.npz`` wins).
    ``class_names`` default: the names stored in an ``.npz``, else :data:`CLASS_NAMES` of the set
    folder (``.../eeg/char/data.pkl`` -> ``char``) when its class count matches, else ``None``.
    Raises :class:`DataError` (one line naming the file, the key, expected vs found).
    """
    path = eeg_file(path)
    if path.suffix.lower() == ".npz":
        raw, stored_names = _read_npz(path)
    else:
        raw, stored_names = _read_pickle(path), None

    x_train, y_train, k_train = _validate_split(raw, path, "train")
    x_test, y_test, k_test = _validate_split(raw, path, "test")
    _check_train_test_agree(path, x_train, x_test, k_train, k_test,
                            test_is_one_hot=np.ndim(raw["y_test"]) == 2)

    present = set(np.unique(y_train).tolist())
    if len(present) < k_train:
        # Labels may be any integers: name a few missing classes, never all of them.
        shown = list(itertools.islice((c for c in range(k_train) if c not in present), 5))
        count = k_train - len(present)
        more = f" and {count - len(shown)} more" if count > len(shown) else ""
        raise DataError(f"{path}: y_train has no trial of class(es) {shown}{more} (expected all "
                        f"{k_train} classes, 0 to the largest label {k_train - 1}, in the training "
                        "split)")

    names = _resolve_class_names(path, k_train, class_names, stored_names)
    return EEGSplits(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                     class_names=names, source=str(path))


def save_npz(splits: EEGSplits, path: str | os.PathLike) -> Path:
    """Write ``splits`` as an uncompressed ``.npz`` (no pickled objects), atomically.

    Keys: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (integer labels) and, when known,
    ``class_names`` as a unicode array. :func:`load_thoughtviz` reads it back unchanged.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "x_train": np.asarray(splits.x_train, np.float32),
        "y_train": np.asarray(splits.y_train, np.int64),
        "x_test": np.asarray(splits.x_test, np.float32),
        "y_test": np.asarray(splits.y_test, np.int64),
    }
    if splits.class_names is not None:
        arrays["class_names"] = np.array(splits.class_names, dtype=np.str_)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            # A file handle keeps numpy from appending ".npz" to the temporary name.
            np.savez(handle, **arrays)
    return path


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------

def _read_pickle(path: Path) -> dict[str, Any]:
    obj = safe_load_pickle(path)
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a dict with keys {', '.join(SPLIT_KEYS)}, "
                        f"found a {type(obj).__name__}")
    # Python 2 pickles read with another encoding, or re-pickled ones, may carry bytes keys.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_npz(path: Path) -> tuple[dict[str, Any], Optional[tuple[str, ...]]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        # allow_pickle=False refuses object arrays with a ValueError: say so plainly.
        raise DataError(f"{path}: cannot read without unpickling objects ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    names = None
    if "class_names" in arrays:
        stored = arrays.pop("class_names")
        if stored.ndim != 1 or stored.dtype.kind != "U":
            raise DataError(f"{path}: class_names must be a 1-D unicode array, found "
                            f"dtype {stored.dtype} shape {stored.shape}")
        names = tuple(str(n) for n in stored)
    return arrays, names


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

def _validate_split(raw: Mapping[str, Any], path: Path, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Return ``(x float32 (N, C, T, 1), labels int64 (N,), K)`` of one split, or raise DataError.

    ``K`` is the one-hot width, or ``max(label) + 1`` for integer labels.
    """
    x_key, y_key = f"x_{split}", f"y_{split}"
    for key in (x_key, y_key):
        if key not in raw:
            found = ", ".join(sorted(str(k) for k in raw)) or "nothing"
            raise DataError(f"{path}: missing key '{key}' (expected {', '.join(SPLIT_KEYS)}; found {found})")
    x = _as_array(raw[x_key], path, x_key)
    y = _as_array(raw[y_key], path, y_key)

    if x.dtype.kind not in "fiu":
        raise DataError(f"{path}: {x_key} has dtype {x.dtype}, expected a float array")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise DataError(f"{path}: {x_key} has shape {x.shape}, expected (N, C, T, 1) or (N, C, T)")
    if min(x.shape[:3]) == 0:
        raise DataError(f"{path}: {x_key} has shape {x.shape}, expected at least one trial, "
                        "channel and sample")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        trial = int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
        raise DataError(f"{path}: {x_key} has non-finite values (NaN or Inf), first in trial {trial}; "
                        "expected finite EEG")

    labels, num_classes = _labels_from(y, path, y_key)
    if len(labels) != len(x):
        raise DataError(f"{path}: {y_key} has {len(labels)} labels but {x_key} has {len(x)} trials")
    return x, labels, num_classes


def _as_array(value: Any, path: Path, key: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = None
    if array is None or array.dtype == object:
        raise DataError(f"{path}: {key} is a {type(value).__name__}, expected a numeric numpy array")
    return array


def _labels_from(y: np.ndarray, path: Path, key: str) -> tuple[np.ndarray, int]:
    if y.dtype.kind not in "fiub":
        raise DataError(f"{path}: {key} has dtype {y.dtype}, expected one-hot floats or integer labels")
    if y.ndim == 2:
        if y.shape[1] < 2:
            raise DataError(f"{path}: {key} has shape {y.shape}, expected one-hot (N, K) with K >= 2")
        is_binary = np.isin(y, (0, 1)).all()
        sums = y.sum(axis=1)
        if not is_binary or not np.all(sums == 1):
            bad = int(np.flatnonzero(~(np.isin(y, (0, 1)).all(axis=1) & (sums == 1)))[0])
            raise DataError(f"{path}: {key} row {bad} is {np.asarray(y[bad]).tolist()}, expected one-hot "
                            "(a single 1, zeros elsewhere)")
        return np.argmax(y, axis=1).astype(np.int64), int(y.shape[1])
    if y.ndim == 1:
        if len(y) == 0:
            raise DataError(f"{path}: {key} is empty, expected one label per trial")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise DataError(f"{path}: {key} holds non-integer values, expected integer class ids")
        labels = y.astype(np.int64)
        if labels.min() < 0:
            raise DataError(f"{path}: {key} has a negative label ({int(labels.min())}), "
                            "expected class ids >= 0")
        return labels, int(labels.max()) + 1
    raise DataError(f"{path}: {key} has shape {y.shape}, expected one-hot (N, K) or integer labels (N,)")


def _check_train_test_agree(path: Path, x_train: np.ndarray, x_test: np.ndarray, k_train: int,
                            k_test: int, test_is_one_hot: bool) -> None:
    for axis, what in ((1, "channels"), (2, "samples")):
        if x_train.shape[axis] != x_test.shape[axis]:
            raise DataError(f"{path}: x_test has {x_test.shape[axis]} {what} (shape {x_test.shape}) "
                            f"but x_train has {x_train.shape[axis]} (shape {x_train.shape})")
    # A one-hot width is the class count itself; integer labels only bound it from below.
    if test_is_one_hot and k_test != k_train:
        raise DataError(f"{path}: y_test is one-hot over {k_test} classes but y_train has {k_train} classes")
    if not test_is_one_hot and k_test > k_train:
        raise DataError(f"{path}: y_test has label {k_test - 1}, expected < {k_train} (the train classes)")


def _resolve_class_names(path: Path, num_classes: int, given: Optional[Sequence[str]],
                         stored: Optional[tuple[str, ...]]) -> Optional[tuple[str, ...]]:
    if given is not None:
        names = tuple(str(n) for n in given)
        if len(names) != num_classes:
            raise DataError(f"{path}: {len(names)} class names given but the data has {num_classes} classes")
        return names
    if stored is not None:
        if len(stored) != num_classes:
            raise DataError(f"{path}: class_names holds {len(stored)} names but the data has "
                            f"{num_classes} classes")
        return stored
    inferred = CLASS_NAMES.get(path.parent.name)
    if inferred is not None and len(inferred) == num_classes:
        return inferred
    return None


def convert_to_npz(source: str | os.PathLike, out: str | os.PathLike) -> EEGSplits:
    """Read a ThoughtViz ``data.pkl`` safely and write it as ``out`` (a ``.npz``); return the splits.

    An existing ``out`` is never replaced: one holding the same set is left as it is, any other
    refused.
    """
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise DataError(f"{out}: --out must name a .npz file")
    splits = load_thoughtviz(source)
    if out.exists():
        try:
            existing = load_thoughtviz(out) if out.is_file() else None
        except DataError:
            existing = None
        if existing is None or not _same_set(existing, splits):
            raise DataError(f"{out}: exists and holds another set; choose another --out (a "
                            "conversion never replaces a file)")
        return splits
    save_npz(splits, out)
    return splits


def _same_set(a: EEGSplits, b: EEGSplits) -> bool:
    return a.class_names == b.class_names and all(
        np.array_equal(getattr(a, key), getattr(b, key)) for key in SPLIT_KEYS)
