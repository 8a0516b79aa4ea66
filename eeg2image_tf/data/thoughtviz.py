"""EEG sets (docs/method.md section 1): safe loading, validation and our ``.npz`` format.

A set is one dict with ``x_train``, ``y_train``, ``x_test``, ``y_test``: ``x`` float ``(N, C, T, 1)``
(ThoughtViz: 14 Emotiv channels by 32 samples at 128 Hz), ``y`` one-hot ``(N, K)`` or integer labels
``(N,)``. ThoughtViz ships it as a Python 2 pickle (``data/eeg/<set>/data.pkl``); we read that with a
restricted unpickler, and also read and write the same keys as an ``.npz`` opened with
``allow_pickle=False``.

Optional keys (any set may carry them; ThoughtViz has none):

- ``x_val``, ``y_val``: a validation split, shaped like train and test;
- ``image_train``, ``image_val``, ``image_test``: unicode ``(N,)``, each trial's stimulus image as a
  path relative to the image root (``<wnid>/<name>.JPEG``); a set gives them for every split or none;
- ``subject_train``, ``subject_val``, ``subject_test``: integer ``(N,)``, who was recorded; every
  split or none;
- ``class_names``: unicode ``(K,)``, one identifier per class; ``class_descriptions``: unicode
  ``(K,)``, a readable name per class;
- ``normalisation``: a unicode scalar naming the method of :mod:`.preprocess` the set needs
  (``original`` for raw positive Emotiv values, ``zscore`` for zero-centred EEG).
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
from .preprocess import PREPROCESS_METHODS
from .safe_pickle import safe_load_pickle

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digit": tuple(str(d) for d in range(10)),
    "char": ("A", "C", "F", "H", "J", "M", "P", "S", "T", "Y"),
    "image": ("Apple", "Car", "Dog", "Gold", "Mobile", "Rose", "Scooter", "Tiger", "Wallet", "Watch"),
}

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
SPLITS = ("train", "val", "test")
OPTIONAL_KEYS = ("x_val", "y_val", "image_train", "image_val", "image_test", "subject_train",
                 "subject_val", "subject_test", "class_names", "class_descriptions", "normalisation")


@dataclasses.dataclass(frozen=True, eq=False)
class EEGSplits:
    """One EEG set, validated.

    ``x_train``/``x_test`` (and ``x_val``): float32 ``(N, C, T, 1)`` values as recorded (ThoughtViz:
    Emotiv units, about 4000-4600); ``y_*``: int64 ``(N,)`` class ids in ``[0, num_classes)``; every
    class occurs in train. ``class_names`` is ``None`` when unknown; ``source`` is the file it came
    from. The optional fields are ``None`` when the set does not record them:

    - ``x_val``/``y_val``: a validation split;
    - ``image_*``: unicode ``(N,)``, each trial's stimulus relative to the image root
      (``<wnid>/<name>.JPEG``); present for every split the set has, or for none;
    - ``subject_*``: int64 ``(N,)``, each trial's subject; every split or none;
    - ``class_descriptions``: a readable name per class;
    - ``normalisation``: the :data:`~.preprocess.PREPROCESS_METHODS` entry the set needs; ``None``
      means unknown (callers keep ``"original"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Optional[tuple[str, ...]]
    source: str
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None
    image_train: Optional[np.ndarray] = None
    image_val: Optional[np.ndarray] = None
    image_test: Optional[np.ndarray] = None
    subject_train: Optional[np.ndarray] = None
    subject_val: Optional[np.ndarray] = None
    subject_test: Optional[np.ndarray] = None
    class_descriptions: Optional[tuple[str, ...]] = None
    normalisation: Optional[str] = None

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this set has, in the order ``train``, ``val``, ``test``."""
        return tuple(s for s in SPLITS if getattr(self, f"x_{s}") is not None)

    @property
    def has_stimuli(self) -> bool:
        """Whether every trial records its own stimulus image (``image_*``)."""
        return self.image_train is not None

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
    raw = _read_npz(path) if path.suffix.lower() == ".npz" else _read_pickle(path)

    x_train, y_train, k_train = _validate_split(raw, path, "train")
    fields: dict[str, Any] = {}
    for split in ("val", "test"):
        if split == "val" and "x_val" not in raw and "y_val" not in raw:
            continue
        x, y, k = _validate_split(raw, path, split)
        _check_split_agrees(path, split, x_train, x, k_train, k,
                            is_one_hot=np.ndim(raw[f"y_{split}"]) == 2)
        fields[f"x_{split}"], fields[f"y_{split}"] = x, y

    present = set(np.unique(y_train).tolist())
    if len(present) < k_train:
        # Labels may be any integers: name a few missing classes, never all of them.
        shown = list(itertools.islice((c for c in range(k_train) if c not in present), 5))
        count = k_train - len(present)
        more = f" and {count - len(shown)} more" if count > len(shown) else ""
        raise DataError(f"{path}: y_train has no trial of class(es) {shown}{more} (expected all "
                        f"{k_train} classes, 0 to the largest label {k_train - 1}, in the training "
                        "split)")

    lengths = {"train": len(x_train), **{s: len(fields[f"x_{s}"]) for s in ("val", "test")
                                         if f"x_{s}" in fields}}
    fields.update(_per_trial_fields(raw, path, "image", lengths, _stimulus_paths))
    fields.update(_per_trial_fields(raw, path, "subject", lengths, _subject_ids))
    stored_names = _optional_strings(raw, path, "class_names")
    names = _resolve_class_names(path, k_train, class_names, stored_names)
    descriptions = _optional_strings(raw, path, "class_descriptions")
    if descriptions is not None and len(descriptions) != k_train:
        raise DataError(f"{path}: class_descriptions holds {len(descriptions)} names but the data has "
                        f"{k_train} classes")
    return EEGSplits(x_train=x_train, y_train=y_train, class_names=names, source=str(path),
                     class_descriptions=descriptions, normalisation=_normalisation(raw, path),
                     **fields)


def save_npz(splits: EEGSplits, path: str | os.PathLike, one_hot: bool = False) -> Path:
    """Write ``splits`` as an uncompressed ``.npz`` (no pickled objects), atomically.

    Keys: ``x_*`` float32, ``y_*`` int64 labels (``one_hot``: float32 ``(N, num_classes)``, as
    ThoughtViz's files hold them), and every optional field that is not ``None`` (strings as unicode
    arrays, ``normalisation`` as a unicode scalar, ``subject_*`` int64). :func:`load_thoughtviz`
    reads it back unchanged.
    """
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        write_npz(splits, tmp, one_hot)
    return path


def write_npz(splits: EEGSplits, path: str | os.PathLike, one_hot: bool = False) -> None:
    """:func:`save_npz`'s file, written in place at ``path`` (callers that make it atomic)."""
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if getattr(splits, f"x_{split}") is not None:
            labels = np.asarray(getattr(splits, f"y_{split}"), np.int64)
            arrays[f"x_{split}"] = np.asarray(getattr(splits, f"x_{split}"), np.float32)
            arrays[f"y_{split}"] = (np.eye(splits.num_classes, dtype=np.float32)[labels] if one_hot
                                    else labels)
        for field, dtype in ((f"image_{split}", np.str_), (f"subject_{split}", np.int64)):
            if getattr(splits, field) is not None:
                arrays[field] = np.asarray(getattr(splits, field), dtype)
    for field in ("class_names", "class_descriptions", "normalisation"):
        if getattr(splits, field) is not None:
            arrays[field] = np.array(getattr(splits, field), dtype=np.str_)
    with open(path, "wb") as handle:
        # A file handle keeps numpy from appending ".npz" to the file name.
        np.savez(handle, **arrays)


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


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        # allow_pickle=False refuses object arrays with a ValueError: say so plainly.
        raise DataError(f"{path}: cannot read without unpickling objects ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None


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


def _check_split_agrees(path: Path, split: str, x_train: np.ndarray, x: np.ndarray, k_train: int,
                        k: int, is_one_hot: bool) -> None:
    """``x_<split>`` has train's channels and samples, ``y_<split>`` train's classes."""
    for axis, what in ((1, "channels"), (2, "samples")):
        if x_train.shape[axis] != x.shape[axis]:
            raise DataError(f"{path}: x_{split} has {x.shape[axis]} {what} (shape {x.shape}) "
                            f"but x_train has {x_train.shape[axis]} (shape {x_train.shape})")
    # A one-hot width is the class count itself; integer labels only bound it from below.
    if is_one_hot and k != k_train:
        raise DataError(f"{path}: y_{split} is one-hot over {k} classes but y_train has {k_train} classes")
    if not is_one_hot and k > k_train:
        raise DataError(f"{path}: y_{split} has label {k - 1}, expected < {k_train} (the train classes)")


def _per_trial_fields(raw: Mapping[str, Any], path: Path, prefix: str, lengths: Mapping[str, int],
                      convert) -> dict[str, np.ndarray]:
    """``<prefix>_<split>`` for every split in ``lengths``, or nothing; ``convert(value, path, key)``
    checks one array's contents. A key for a split the set lacks, or a split left out, is an error."""
    present = [s for s in SPLITS if f"{prefix}_{s}" in raw]
    if not present:
        return {}
    for split in present:
        if split not in lengths:
            raise DataError(f"{path}: {prefix}_{split} given but the set has no x_{split}")
    absent = [s for s in lengths if s not in present]
    if absent:
        raise DataError(f"{path}: {prefix}_{present[0]} given but {prefix}_{absent[0]} is missing "
                        f"(expected {prefix}_* for every split or for none)")
    fields = {}
    for split, length in lengths.items():
        key = f"{prefix}_{split}"
        value = convert(raw[key], path, key)
        if value.shape != (length,):
            raise DataError(f"{path}: {key} has shape {value.shape}, expected ({length},) "
                            f"(one per trial of x_{split})")
        fields[key] = value
    return fields


def _strings(value: Any, path: Path, key: str) -> np.ndarray:
    array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    if array is None or array.ndim != 1 or (array.dtype.kind != "U" and array.size):
        found = (f"dtype {array.dtype} shape {array.shape}" if array is not None
                 else f"a {type(value).__name__}")
        raise DataError(f"{path}: {key} must be a 1-D unicode array, found {found}")
    return array.astype(np.str_)


def _stimulus_paths(value: Any, path: Path, key: str) -> np.ndarray:
    paths = _strings(value, path, key)
    for index, name in enumerate(paths.tolist()):
        parts = name.replace("\\", "/").split("/")
        if not name or name.startswith("/") or ".." in parts or "" in parts:
            raise DataError(f"{path}: {key}[{index}] is {name!r}, expected a path relative to the "
                            "image root such as '<class>/<name>.JPEG'")
    return paths


def _subject_ids(value: Any, path: Path, key: str) -> np.ndarray:
    array = _as_array(value, path, key)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise DataError(f"{path}: {key} has dtype {array.dtype} shape {array.shape}, expected "
                        "integer subject ids (N,)")
    return array.astype(np.int64)


def _optional_strings(raw: Mapping[str, Any], path: Path, key: str) -> Optional[tuple[str, ...]]:
    if key not in raw:
        return None
    return tuple(str(n) for n in _strings(raw[key], path, key))


def _normalisation(raw: Mapping[str, Any], path: Path) -> Optional[str]:
    if "normalisation" not in raw:
        return None
    value = raw["normalisation"]
    array = np.asarray(value) if isinstance(value, (np.ndarray, str)) else None
    method = str(array) if array is not None and array.ndim == 0 and array.dtype.kind == "U" else None
    if method not in PREPROCESS_METHODS:
        found = repr(method) if method is not None else f"a {type(value).__name__}"
        raise DataError(f"{path}: normalisation is {found}, expected one of "
                        f"{', '.join(PREPROCESS_METHODS)}")
    return method


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
