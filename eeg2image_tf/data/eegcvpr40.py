"""EEGCVPR40 (Spampinato et al., CVPR 2017) from its torch release into our ``.npz`` set.

The release's files, read with :func:`~.torch_file.load_torch_file` (no torch, no code run):

- dataset (``eeg_5_95_std.pth``, ``eeg_14_70_std.pth``, ``eeg_55_95_std.pth``, raw):
  ``{'dataset': [{'eeg': (128, L), 'image': int, 'label': int, 'subject': int}, ...],
  'labels': [WordNet ids], 'images': ['<wnid>_<n>', ...]}``;
- splits (``block_splits_by_image_all.pth``, ``..._single.pth``):
  ``{'splits': [{'train': [i], 'val': [i], 'test': [i]}, ...]}``.

A set is made as the PerceiveLab loader (``eeg_signal_classification.py``) makes its batches:

1. ``subject`` s > 0 first keeps subject s's trials, in file order; 0 keeps every trial;
2. the indices of split ``split_num`` index that list (so with s > 0 they count subject s's trials
   only: the ``_single`` splits are written for that, the ``_all`` ones for s = 0);
3. of those, the trials with 450 <= L <= 600 samples are kept, in the splits file's order;
4. samples ``[start, end)`` of each (the loader's ``time_low``/``time_high``, 20 and 460), as
   float32 ``(N, 128, end - start, 1)``; the label is the trial's ``label``, an index into ``labels``.

A trial whose samples do not reach ``end``, an index out of range, a missing key or a missing image is
an error (the loader would fail there too, or later). Each trial's stimulus is recorded as
``<wnid>/<name>.JPEG``, its place under an ImageNet-style root.
"""

from __future__ import annotations

import contextlib
import operator
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..io_utils import SilentBar, progress_bar
from ..runs import EEG_DIR, EEG_NPZ_FILE, IMAGES_DIR
from .thoughtviz import SPLITS, EEGSplits, load_thoughtviz, save_npz
from .torch_file import load_torch_file

# The loader's length filter and default window, in samples (1 kHz).
LENGTH_RANGE = (450, 600)
DEFAULT_WINDOW = (20, 460)
STIMULUS_SUFFIX = ".JPEG"
# The files are band-pass filtered (zero-centred) and standardised: the original's per-trial
# max/2 normalisation assumes positive raw values and does not apply.
NORMALISATION = "zscore"

# ImageNet's names of the 40 classes.
CLASS_DESCRIPTIONS: dict[str, str] = {
    "n02389026": "sorrel", "n03888257": "parachute", "n03584829": "iron",
    "n02607072": "anemone fish", "n03297495": "espresso maker", "n03063599": "coffee mug",
    "n03792782": "mountain bike", "n04086273": "revolver", "n02510455": "giant panda",
    "n11939491": "daisy", "n02951358": "canoe", "n02281787": "lycaenid butterfly",
    "n02106662": "German shepherd", "n04120489": "running shoe", "n03590841": "jack-o'-lantern",
    "n02992529": "cellular telephone", "n03445777": "golf ball", "n03180011": "desktop computer",
    "n02906734": "broom", "n07873807": "pizza", "n03773504": "missile", "n02492035": "capuchin",
    "n03982430": "pool table", "n03709823": "mailbag", "n03100240": "convertible",
    "n03376595": "folding chair", "n03877472": "pajama", "n03775071": "mitten",
    "n03272010": "electric guitar", "n04069434": "reflex camera", "n03452741": "grand piano",
    "n03792972": "mountain tent", "n07753592": "banana", "n13054560": "bolete",
    "n03197337": "digital watch", "n02504458": "African elephant", "n02690373": "airliner",
    "n03272562": "electric locomotive", "n04044716": "radio telescope", "n02124075": "Egyptian cat",
}


def read_eegcvpr40(dataset: str | os.PathLike, splits: str | os.PathLike, split_num: int = 0,
                   subject: int = 0, window: Sequence[int] = DEFAULT_WINDOW) -> EEGSplits:
    """The set of split ``split_num``, ``subject`` (0 = all) and samples ``window``, as the
    PerceiveLab loader gives it (module docstring): ``x_*`` float32 ``(N, C, end - start, 1)``, ``y_*``
    int64, ``image_*`` and ``subject_*`` per trial, ``class_names`` the WordNet ids in the file's order.

    Raises :class:`DataError`, one line naming the file and what is wrong.
    """
    dataset, splits = Path(dataset), Path(splits)
    start, end = _check_options(split_num, subject, window)
    trials, labels, names = _read_dataset(dataset)
    chosen = [t for t in trials if t["subject"] == subject] if subject else trials
    if not chosen:
        present = sorted({t["subject"] for t in trials})
        raise DataError(f"{dataset}: no trial of subject {subject} (subjects present: "
                        f"{', '.join(map(str, present))})")
    indices = _read_split(splits, split_num)

    fields: dict[str, Any] = {}
    channels = None
    for part in SPLITS:
        kept = []
        for position, index in enumerate(indices[part]):
            if index >= len(chosen):
                whose = f"of subject {subject}" if subject else "in all"
                raise DataError(f"{splits}: split {split_num} '{part}'[{position}] is index {index}, out of "
                                f"range: {dataset} has {len(chosen)} trials {whose} (with --subject the "
                                "indices count that subject's trials only, as the PerceiveLab loader reads them)")
            if LENGTH_RANGE[0] <= chosen[index]["eeg"].shape[1] <= LENGTH_RANGE[1]:
                kept.append(chosen[index])
        if not kept:
            raise DataError(f"{splits}: split {split_num} '{part}' has no trial left of subject "
                            f"{subject or 'any'} with {LENGTH_RANGE[0]}-{LENGTH_RANGE[1]} samples")
        for trial in kept:
            shape = trial["eeg"].shape
            if shape[1] < end:
                raise DataError(f"{dataset}: dataset[{trial['index']}] has {shape[1]} samples, fewer than "
                                f"the window's end {end} (--window {start} {end})")
            if channels is None:
                channels = shape[0]
            elif shape[0] != channels:
                raise DataError(f"{dataset}: dataset[{trial['index']}] has {shape[0]} channels, the "
                                f"trials before it {channels}")
        fields[f"x_{part}"] = np.stack([t["eeg"][:, start:end] for t in kept]).astype(np.float32)[..., None]
        fields[f"y_{part}"] = np.array([t["label"] for t in kept], np.int64)
        fields[f"subject_{part}"] = np.array([t["subject"] for t in kept], np.int64)
        fields[f"image_{part}"] = np.array([t["stimulus"] for t in kept], dtype=np.str_)

    absent = sorted(set(range(len(labels))) - set(fields["y_train"].tolist()))
    if absent:
        raise DataError(f"{splits}: split {split_num} 'train' has no trial of class(es) "
                        f"{', '.join(labels[c] for c in absent[:3])} (subject {subject or 'any'}); every "
                        "class needs training trials")
    known = [CLASS_DESCRIPTIONS.get(label) for label in labels]
    descriptions = None if not any(known) else tuple(k or w for k, w in zip(known, labels))
    return EEGSplits(class_names=tuple(labels), class_descriptions=descriptions,
                     normalisation=NORMALISATION, source=str(dataset), **fields)


def convert_eegcvpr40(dataset: str | os.PathLike, splits: str | os.PathLike, out: str | os.PathLike,
                      set_name: str, split_num: int = 0, subject: int = 0,
                      window: Sequence[int] = DEFAULT_WINDOW, images: Optional[str | os.PathLike] = None,
                      show_progress: bool = True) -> dict[str, Any]:
    """Write :func:`read_eegcvpr40`'s set as ``out/eeg/<set_name>/data.npz`` (``y`` one-hot) and, with
    ``images`` (an ImageNet-style root of ``<wnid>/<name>.JPEG``), each split's stimuli under
    ``out/images/<split>/<wnid>/`` (hard links where the file system allows, else copies), where the
    image classifier and the GAN read them; ``image_*`` are relative to those split folders.

    Everything is read and checked first: a bad input raises :class:`DataError` with nothing
    written. The set's directory must not exist yet; split folders that do exist (another set of
    the same recording) keep their files and gain the missing stimuli. Returns what was written.
    """
    out = Path(out)
    if not set_name or set_name in (".", "..") or "/" in set_name or "\\" in set_name:
        raise DataError(f"--set {set_name!r}: expected a plain folder name")
    set_dir = out / EEG_DIR / set_name
    if set_dir.exists():
        raise DataError(f"{set_dir}: already exists; choose another --set or remove it")
    image_root = Path(images) if images is not None else None
    if image_root is not None and not image_root.is_dir():
        raise DataError(f"{image_root}: image root not found (expected <wnid>/<name>.JPEG under it)")

    eeg = read_eegcvpr40(dataset, splits, split_num, subject, window)
    stimuli = {part: sorted(set(getattr(eeg, f"image_{part}").tolist())) for part in eeg.splits}
    if image_root is not None:
        _check_stimuli(image_root, stimuli, out, eeg.class_names)

    with _staging(out) as staging:
        staged_set = staging / EEG_DIR / set_name
        staged_set.mkdir(parents=True)
        save_npz(eeg, staged_set / EEG_NPZ_FILE, one_hot=True)
        load_thoughtviz(staged_set / EEG_NPZ_FILE)   # what every consumer will check, before it counts
        placed = _stage_images(image_root, stimuli, eeg.class_names, out, staging, show_progress) \
            if image_root is not None else {}
        _commit(staging, out, set_dir, placed)

    return {
        "eeg": str(set_dir / EEG_NPZ_FILE),
        "shapes": {part: tuple(getattr(eeg, f"x_{part}").shape) for part in eeg.splits},
        "num_classes": eeg.num_classes,
        "subjects": sorted(set(np.concatenate([getattr(eeg, f"subject_{p}") for p in eeg.splits]).tolist())),
        "images": {part: str(out / IMAGES_DIR / part) for part in stimuli} if image_root else None,
        "num_images": {part: len(paths) for part, paths in stimuli.items()},
        "images_added": sum(len(v) for v in placed.values()),
    }


# --------------------------------------------------------------------------------------------------
# Reading and checking the release's files
# --------------------------------------------------------------------------------------------------

def _check_options(split_num: int, subject: int, window: Sequence[int]) -> tuple[int, int]:
    if split_num < 0:
        raise DataError(f"--split-num {split_num}: expected >= 0")
    if subject < 0:
        raise DataError(f"--subject {subject}: expected 0 (every subject) or a subject number")
    start, end = (int(w) for w in window)
    if not 0 <= start < end:
        raise DataError(f"--window {start} {end}: expected 0 <= start < end (samples)")
    if end > LENGTH_RANGE[1]:
        raise DataError(f"--window {start} {end}: the end is past every kept trial "
                        f"({LENGTH_RANGE[0]}-{LENGTH_RANGE[1]} samples)")
    return start, end


def _integer(value: Any) -> Optional[int]:
    """``value`` as an int when it is an integer (a Python or numpy int, or a 0-d integer tensor)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, np.ndarray) and (value.ndim != 0 or value.dtype.kind not in "iu"):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _strings(content: dict, path: Path, key: str) -> list[str]:
    values = content[key]
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
        raise DataError(f"{path}: '{key}' is {_describe(values)}, expected a non-empty list of strings")
    return list(values)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    return f"a {type(value).__name__}"


def _read_dataset(path: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    content = load_torch_file(path)
    keys = ("dataset", "labels", "images")
    if not isinstance(content, dict) or any(k not in content for k in keys):
        found = ", ".join(map(repr, content)) if isinstance(content, dict) else _describe(content)
        raise DataError(f"{path}: expected a dict with 'dataset', 'labels' and 'images' (an EEGCVPR40 "
                        f"dataset file), found {found}")
    labels, names = _strings(content, path, "labels"), _strings(content, path, "images")
    if not isinstance(content["dataset"], (list, tuple)) or not content["dataset"]:
        raise DataError(f"{path}: 'dataset' is {_describe(content['dataset'])}, expected a non-empty "
                        "list of trials")
    trials = []
    for index, entry in enumerate(content["dataset"]):
        where = f"{path}: dataset[{index}]"
        if not isinstance(entry, dict) or any(k not in entry for k in ("eeg", "image", "label", "subject")):
            found = ", ".join(map(repr, entry)) if isinstance(entry, dict) else _describe(entry)
            raise DataError(f"{where} has {found}, expected a dict with 'eeg', 'image', 'label', 'subject'")
        eeg = entry["eeg"]
        if not isinstance(eeg, np.ndarray) or eeg.ndim != 2 or eeg.dtype.kind != "f" or min(eeg.shape) == 0:
            raise DataError(f"{where}['eeg'] is {_describe(eeg)}, expected a float tensor "
                            "(channels, samples)")
        trial = {"index": index, "eeg": eeg}
        for key, bound in (("label", len(labels)), ("image", len(names)), ("subject", None)):
            value = _integer(entry[key])
            if value is None or value < 0 or (bound is not None and value >= bound):
                limit = f" in [0, {bound})" if bound is not None else " >= 0"
                raise DataError(f"{where}['{key}'] is {entry[key]!r}, expected an integer{limit}")
            trial[key] = value
        trial["stimulus"] = _stimulus(names[trial["image"]], where)
        if trial["stimulus"].split("/")[0] != labels[trial["label"]]:
            raise DataError(f"{where} shows image '{names[trial['image']]}' but has label "
                            f"{trial['label']} ('{labels[trial['label']]}'); expected an image of its class")
        trials.append(trial)
    return trials, labels, names


def _stimulus(name: str, where: str) -> str:
    """``<wnid>/<name>.JPEG`` of an image name ``<wnid>_<n>``; ``where`` begins an error."""
    wnid, separator, number = name.partition("_")
    if not separator or not wnid or not number or any(c in name for c in "/\\"):
        raise DataError(f"{where} shows image {name!r}, not of the form '<wnid>_<n>'")
    return f"{wnid}/{name}{STIMULUS_SUFFIX}"


def _read_split(path: Path, split_num: int) -> dict[str, list[int]]:
    content = load_torch_file(path)
    entries = content.get("splits") if isinstance(content, dict) else None
    if not isinstance(entries, (list, tuple)):
        found = ", ".join(map(repr, content)) if isinstance(content, dict) else _describe(content)
        raise DataError(f"{path}: expected a dict with 'splits' (a list of train/val/test index lists), "
                        f"found {found}")
    if split_num >= len(entries):
        raise DataError(f"{path}: --split-num {split_num} is out of range: the file has "
                        f"{len(entries)} splits")
    entry = entries[split_num]
    if not isinstance(entry, dict) or any(part not in entry for part in SPLITS):
        raise DataError(f"{path}: split {split_num} is {_describe(entry)}, expected a dict with 'train', "
                        "'val', 'test'")
    indices = {}
    for part in SPLITS:
        values = entry[part]
        values = values.tolist() if isinstance(values, np.ndarray) and values.ndim == 1 else values
        if not isinstance(values, (list, tuple)):
            raise DataError(f"{path}: split {split_num} '{part}' is {_describe(values)}, expected a list "
                            "of trial indices")
        checked = [_integer(v) for v in values]
        bad = next((i for i, v in enumerate(checked) if v is None or v < 0), None)
        if bad is not None:
            raise DataError(f"{path}: split {split_num} '{part}'[{bad}] is {values[bad]!r}, expected a "
                            "trial index >= 0")
        indices[part] = checked
    return indices


def _check_stimuli(root: Path, stimuli: dict[str, list[str]], out: Path,
                   class_names: Sequence[str]) -> None:
    """Every stimulus exists under ``root``; split folders already in ``out`` hold only our classes."""
    for part, paths in stimuli.items():
        missing = [p for p in paths if not (root / p).is_file()]
        if missing:
            raise DataError(f"{root / missing[0]}: stimulus image not found ({len(missing)} of the "
                            f"{len(paths)} '{part}' images missing)")
        existing = out / IMAGES_DIR / part
        if existing.is_dir():
            foreign = sorted(p.name for p in existing.iterdir()
                             if p.is_dir() and not p.name.startswith(".") and p.name not in class_names)
            if foreign:
                raise DataError(f"{existing}: holds class folder(s) {', '.join(foreign[:3])} that are not "
                                "classes of this set; give another --out")


# --------------------------------------------------------------------------------------------------
# Writing: everything staged beside the destination, then renamed into place
# --------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out`` (same file system, so renames are atomic), removed on exit;
    ``out`` itself too when it was created here and is left empty by a failure."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _stage_images(root: Path, stimuli: dict[str, list[str]], class_names: Sequence[str], out: Path,
                  staging: Path, show_progress: bool) -> dict[str, list[str]]:
    """Link or copy each stimulus not yet in ``out/images/<split>`` into the staging folder; every
    class gets its folder (an empty class still takes its index). Returns the staged paths."""
    placed: dict[str, list[str]] = {}
    todo = {part: [p for p in paths if not (out / IMAGES_DIR / part / p).exists()]
            for part, paths in stimuli.items()}
    bar = progress_bar(sum(map(len, todo.values())), desc="stimuli", unit="img") if show_progress \
        else SilentBar()
    with bar:
        for part, paths in todo.items():
            for name in class_names:
                (staging / IMAGES_DIR / part / name).mkdir(parents=True, exist_ok=True)
            for relative in paths:
                target = staging / IMAGES_DIR / part / relative
                try:
                    os.link(root / relative, target)
                except OSError:
                    shutil.copyfile(root / relative, target)
                bar.update(1)
            placed[part] = paths
    return placed


def _commit(staging: Path, out: Path, set_dir: Path, placed: dict[str, list[str]]) -> None:
    """Move the staged images into ``out/images`` (file by file: those folders may exist already),
    then the set's folder, whose arrival marks the conversion complete."""
    for part, paths in placed.items():
        for class_dir in (staging / IMAGES_DIR / part).iterdir():
            (out / IMAGES_DIR / part / class_dir.name).mkdir(parents=True, exist_ok=True)
        for relative in paths:
            os.replace(staging / IMAGES_DIR / part / relative, out / IMAGES_DIR / part / relative)
    set_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging / EEG_DIR / set_dir.name, set_dir)
