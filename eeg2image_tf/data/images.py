"""Image class folders, image decoding, and the original's one-image-per-trial pairing.

Layout (docs/method.md section 1): ``images/{train,test}/<ClassName>/*.{jpg,jpeg,png}``. The class
index is the position of the folder name in natural sort order (``natsort``), counting from 0, as
the original's ``natsorted(glob(...))`` gives it; within a class, files are in natural order too.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
from natsort import natsorted

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolder:
    """The images of one split: ``paths[i]`` has class ``labels[i]`` (int64) named ``class_names[...]``.

    Classes follow natsort order of the folder names; an empty class folder still takes its index.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> np.ndarray:
        """Images per class, int64 ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)


def list_image_folder(root: str | os.PathLike,
                      class_names: Optional[Sequence[str]] = None) -> ImageFolder:
    """List ``root/<ClassName>/*.{jpg,jpeg,png}`` (case-insensitive suffixes; hidden entries skipped).

    ``class_names``: an EEG set's classes. When the folders are exactly these names, class indices
    follow that order (an EEGCVPR40 set keeps the release's order of WordNet ids, which is not
    their sorted order); otherwise, and without it, natsort order of the folder names.
    Raises :class:`DataError` when ``root`` is missing, has no class folders, or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found (expected {root}/<ClassName>/*.jpg)")
    class_dirs = natsorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                           key=lambda p: p.name)
    if class_names is not None and sorted(p.name for p in class_dirs) == sorted(class_names):
        by_name = {p.name: p for p in class_dirs}
        class_dirs = [by_name[name] for name in class_names]
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected {root}/<ClassName>/*.jpg)")

    paths: list[str] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        files = natsorted((p for p in class_dir.iterdir()
                           if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: p.name)
        paths.extend(str(p) for p in files)
        labels.extend([index] * len(files))
    if not paths:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in any of its "
                        f"{len(class_dirs)} class folders")
    return ImageFolder(paths=tuple(paths), labels=np.asarray(labels, dtype=np.int64),
                       class_names=tuple(p.name for p in class_dirs))


def list_split_folders(root: str | os.PathLike, splits: Sequence[str]) -> tuple[ImageFolder, ...]:
    """:func:`list_image_folder` of each ``root/<split>``, refusing splits whose class folders
    differ and a class folder without images (a classifier would train or test on nothing)."""
    root = Path(root)
    folders = tuple(list_image_folder(root / split) for split in splits)
    for split, folder in zip(splits, folders):
        if folder.class_names != folders[0].class_names:
            raise DataError(f"{root}: {splits[0]} and {split} class folders differ "
                            f"({', '.join(folders[0].class_names)} vs "
                            f"{', '.join(folder.class_names)})")
        empty = [name for name, count in zip(folder.class_names, folder.counts()) if count == 0]
        if empty:
            raise DataError(f"{root / split}: class folder(s) {', '.join(empty)} hold no images; "
                            f"every class needs images in {' and '.join(splits)}")
    return folders


def known_class_names(folder: Optional[str | os.PathLike], set_names: Optional[Sequence[str]],
                      num_classes: int, source: str) -> Optional[tuple[str, ...]]:
    """The class names of a run: its training image ``folder``'s (what the GAN was paired with),
    else the EEG set's ``set_names``, else None. Raises :class:`DataError` when their count is not
    the set's ``num_classes`` (``source`` names the set)."""
    if folder is not None:
        names = list_image_folder(folder, set_names).class_names
        if len(names) != num_classes:
            raise DataError(f"{folder}: {len(names)} class folders but the EEG set has "
                            f"{num_classes} classes")
        return names
    if set_names:
        if len(set_names) != num_classes:
            raise DataError(f"{source}: {len(set_names)} class names for {num_classes} classes")
        return tuple(set_names)
    return None


def load_image(path: str | os.PathLike, size: int = 128) -> np.ndarray:
    """Decode one image as RGB float32 ``(size, size, 3)`` in ``[-1, 1]``.

    Any aspect ratio is resized straight to ``size x size`` (as the original); ``cv2.INTER_AREA``
    when shrinking (it averages instead of aliasing), bilinear when enlarging.
    """
    path = Path(path)
    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image ({exc.strerror})") from None
    bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if encoded.size else None
    if bgr is None:
        raise DataError(f"{path}: not a readable image (OpenCV could not decode it)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    if (height, width) != (size, size):
        shrinking = height > size or width > size
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    # (v - 127.5) / 127.5 is exact at both ends, so 0 -> -1.0 and 255 -> 1.0.
    return (rgb.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)


def load_images(paths: Sequence[str | os.PathLike], size: int = 128,
                num_threads: Optional[int] = None) -> np.ndarray:
    """Decode ``paths`` in order into float32 ``(N, size, size, 3)`` in ``[-1, 1]``.

    Decoding runs on a few threads (OpenCV releases the GIL). Memory: 192 KiB per 128x128 image.
    """
    paths = list(paths)
    bank = np.empty((len(paths), size, size, 3), dtype=np.float32)
    if not paths:
        return bank
    workers = num_threads or min(4, os.cpu_count() or 1)

    def decode_into(index: int) -> None:
        bank[index] = load_image(paths[index], size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list() re-raises the first decoding error here, in the caller's thread.
        list(pool.map(decode_into, range(len(paths))))
    return bank


def pair_images(eeg_labels: Sequence[int] | np.ndarray, image_labels: Sequence[int] | np.ndarray,
                seed: Union[int, np.random.RandomState] = 45,
                class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Give every EEG trial one image of its class: int64 ``(N,)`` indices into ``image_labels``.

    As the original (docs/method.md section 1): trial by trial, in order, ``RandomState.choice``
    over the indices of that class's images, drawn once. The original draws the training trials'
    images and then the test trials' from one stream seeded 45: pass the same ``RandomState`` to
    both calls to get its test pairs too. ``class_names`` only improves error messages.
    """
    rng = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    eeg_labels = _as_labels(eeg_labels, "EEG labels")
    image_labels = _as_labels(image_labels, "image labels")

    def describe(label: int) -> str:
        if class_names is not None and 0 <= label < len(class_names):
            return f"'{class_names[label]}' (index {label})"
        return f"index {label}"

    candidates: dict[int, np.ndarray] = {}
    for label in np.unique(eeg_labels).tolist():
        members = np.flatnonzero(image_labels == label)
        if members.size == 0:
            raise DataError(f"image class {describe(label)} has no images, but "
                            f"{int(np.sum(eeg_labels == label))} EEG trials of it need one")
        candidates[label] = members

    pairs = np.empty(len(eeg_labels), dtype=np.int64)
    for trial, label in enumerate(eeg_labels.tolist()):
        pairs[trial] = rng.choice(candidates[label], size=(1,), replace=True)[0]
    return pairs


def stimulus_images(relative: Sequence[str], roots: Sequence[str | os.PathLike],
                    labels: Optional[np.ndarray] = None,
                    class_names: Optional[Sequence[str]] = None,
                    source: str = "image_train") -> tuple[tuple[str, ...], np.ndarray]:
    """Each trial's own stimulus image (``--pairing stimulus``), found under the first of ``roots``
    that holds it.

    ``relative[i]``: trial ``i``'s image as ``<ClassFolder>/<file>`` relative to an image root (a
    set's ``image_*`` key). With ``labels`` and ``class_names`` (the image folder's classes), the
    class folder of every stimulus must be the trial's class. Returns the distinct files (sorted)
    and int64 ``(N,)`` indices of each trial's file among them. Raises :class:`DataError` (naming
    ``source`` and the trial) for an absolute path or one leaving the root, a file not found, or a
    stimulus of another class.
    """
    relative = [str(path) for path in relative]
    names, first_trials, index = np.unique(np.asarray(relative, dtype=np.str_), return_index=True,
                                           return_inverse=True)
    roots = [Path(root) for root in roots]
    found: list[str] = []
    for name, trial in zip(names.tolist(), first_trials.tolist()):
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise DataError(f"{source}[{trial}] is {name!r}; expected a path inside the image "
                            "folder, as <ClassFolder>/<file>")
        if labels is not None and class_names is not None and len(parts) > 1:
            wanted = class_names[int(labels[trial])]
            if parts[0] != wanted:
                raise DataError(f"{source}[{trial}] is {name!r}, in class folder {parts[0]!r}, but "
                                f"the trial's label {int(labels[trial])} is class {wanted!r}")
        path = next((root / name for root in roots if (root / name).is_file()), None)
        if path is None:
            raise DataError(f"{source}[{trial}]: stimulus {name!r} not found under "
                            f"{' or '.join(str(root) for root in roots)}")
        found.append(str(path))
    return tuple(found), index.astype(np.int64).reshape(-1)


def _as_labels(labels, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim == 2:  # one-hot rows
        array = np.argmax(array, axis=1)
    if array.ndim != 1:
        raise DataError(f"{what} have shape {array.shape}, expected (N,) class ids or one-hot (N, K)")
    return array.astype(np.int64)
