"""A built-in stand-in for the ThoughtViz ``digit`` and ``char`` sets, in the real layout.

EEG: 14 channels x 32 samples of raw Emotiv-like values from 23 simulated subjects, each with its own
channel offsets (about 4000-4600), signal gain and noise level, over AR(1) background activity with
a common-mode part. Every class adds two biphasic transients (evoked-response-like waves) with
class-specific scalp maps, latencies in the second half of the trial and widths; per trial the pair
is shifted in time by up to +-6 samples and each wave's amplitude varies by +-40 %.

Why these numbers: a biphasic wave sums to zero over time, so the time-average that would make a
jittered bump linearly separable carries nothing, and a +-6 sample shift smears the class mean of
2-3 sample wide waves; logistic regression on the raw flattened trials then stays at 0.8-0.9 test
accuracy. A recurrent network follows the waves wherever they fall. The transients are large
(~1000 units on a ~4300 offset) because the original normalisation divides by the trial's maximum:
after it, smaller waves become ripples of a few hundredths on a ~0.9 plateau, which a triplet-trained
LSTM needs hundreds of epochs to pick up, while at this size it clusters the test set (k-means
accuracy > 0.9) within a few dozen epochs.

Images, as the real sets look (``RENDERER_VERSION`` 2): ``char`` imitates ThoughtViz's Char-Font
images, black capital letters in many typefaces on plain white, upright and centred, filling most of
the height (the paper's alphabet figure); ``digit`` imitates MNIST, white digits on black with strokes
of many widths, centred by centre of mass. The typefaces are the 22 faces matplotlib installs with
itself (``FONT_FILES``: DejaVu Sans, Serif and Mono, STIX General, Computer Modern), drawn by its
FreeType binding, so no system font and no download is needed. Version 1 drew coloured, rotated
and sheared glyphs on gradients; ``synthetic.json`` in each image split records the version, and a
split of another version is refused rather than mixed (:func:`check_synthetic_images`).
"""

from __future__ import annotations

import os
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from ..errors import DataError, Eeg2ImageError
from ..io_utils import (atomic_path, atomic_write_bytes, atomic_write_json, check_writable_dir,
                        file_sha256, read_json)
from ..runs import EEG_DIR, EEG_FILE, IMAGES_DIR, TEST_SPLIT, TRAIN_SPLIT
from .thoughtviz import CLASS_NAMES

SYNTHETIC_SETS = ("digit", "char")
NUM_CHANNELS = 14
NUM_SAMPLES = 32
NUM_SUBJECTS = 23  # as in ThoughtViz
IMAGE_SIZE = 128

# Raw (Emotiv-like) units; see the module docstring for how they were chosen.
_TRANSIENT_AMPLITUDE = 1200.0
_NOISE_AMPLITUDE = 360.0
_MAX_JITTER = 6.0  # samples
_WAVES_PER_CLASS = 2
# -u * exp(-u^2 / 2) peaks at exp(-1/2) for u = -1: this factor makes its peak 1.
_BIPHASIC_PEAK = float(np.exp(0.5))


def synthetic_eeg(labels: np.ndarray, templates: dict[str, np.ndarray], subjects: dict[str, np.ndarray],
                  rng: np.random.Generator) -> np.ndarray:
    """Simulate raw trials float64 ``(N, 14, 32, 1)`` for class ids ``labels`` ``(N,)``."""
    num_trials = len(labels)
    time = np.arange(NUM_SAMPLES, dtype=np.float64)
    subject = rng.integers(0, len(subjects["gain"]), size=num_trials)
    shift = rng.uniform(-_MAX_JITTER, _MAX_JITTER, size=num_trials)

    signal = np.zeros((num_trials, NUM_CHANNELS, NUM_SAMPLES))
    for wave in range(_WAVES_PER_CLASS):
        latency = templates["latency"][labels, wave] + shift
        u = (time[None, :] - latency[:, None]) / templates["width"][labels, wave][:, None]
        biphasic = -_BIPHASIC_PEAK * u * np.exp(-0.5 * u ** 2)
        amplitude = rng.uniform(0.6, 1.4, size=(num_trials, 1, 1))
        signal += amplitude * templates["maps"][labels, wave][:, :, None] * biphasic[:, None, :]

    trials = (subjects["offset"][subject][:, :, None]
              + _TRANSIENT_AMPLITUDE * subjects["gain"][subject][:, None, None] * signal
              + _NOISE_AMPLITUDE * subjects["noise"][subject][:, None, None] * _background(rng, num_trials))
    return trials[..., None]


def _background(rng: np.random.Generator, num_trials: int) -> np.ndarray:
    """Unit-scale background activity ``(N, 14, 32)``: AR(1) per channel plus a common-mode part."""
    innovations = rng.normal(size=(num_trials, NUM_CHANNELS, NUM_SAMPLES))
    coefficient = 0.7
    scale = np.sqrt(1.0 - coefficient ** 2)
    noise = np.empty_like(innovations)
    noise[..., 0] = innovations[..., 0]
    for t in range(1, NUM_SAMPLES):
        noise[..., t] = coefficient * noise[..., t - 1] + scale * innovations[..., t]
    common = rng.normal(size=(num_trials, 1, NUM_SAMPLES)) * rng.uniform(0.2, 0.8, size=(1, NUM_CHANNELS, 1))
    return noise + common


def class_templates(num_classes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per class and wave: scalp maps ``(K, 2, 14)`` (max |.| = 1), latencies and widths ``(K, 2)``."""
    maps = rng.normal(size=(num_classes, _WAVES_PER_CLASS, NUM_CHANNELS))
    return {
        "maps": maps / np.abs(maps).max(axis=-1, keepdims=True),
        "latency": np.sort(rng.uniform(16.0, 26.0, size=(num_classes, _WAVES_PER_CLASS)), axis=1),
        "width": rng.uniform(1.5, 3.0, size=(num_classes, _WAVES_PER_CLASS)),
    }


def simulated_subjects(rng: np.random.Generator, num_subjects: int = NUM_SUBJECTS) -> dict[str, np.ndarray]:
    """Per-subject channel offsets ``(S, 14)``, signal gains ``(S,)`` and noise levels ``(S,)``."""
    base = rng.uniform(4150.0, 4400.0, size=(num_subjects, 1))
    return {
        "offset": base + rng.uniform(-150.0, 150.0, size=(num_subjects, NUM_CHANNELS)),
        "gain": rng.uniform(0.75, 1.25, size=num_subjects),
        "noise": rng.uniform(0.8, 1.25, size=num_subjects),
    }


def balanced_labels(num_trials: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class ids ``(N,)`` with counts differing by at most one, in random order."""
    return rng.permutation(np.arange(num_trials) % num_classes).astype(np.int64)


def make_synthetic_eeg(set_name: str = "char", seed: int = 45, n_train: int = 2500,
                       n_test: int = 600) -> dict[str, np.ndarray]:
    """The synthetic set as ThoughtViz arrays.

    ``x_*`` float64 ``(N, 14, 32, 1)`` raw values, ``y_*`` one-hot float64 ``(N, 10)``; classes are
    balanced. The same ``(set_name, seed, n_train, n_test)`` gives the same arrays.
    """
    num_classes = len(_class_names(set_name))
    _check_trial_counts(set_name, n_train, n_test)
    rng = np.random.default_rng([seed, SYNTHETIC_SETS.index(set_name)])
    templates = class_templates(num_classes, rng)
    subjects = simulated_subjects(rng)
    arrays: dict[str, np.ndarray] = {}
    for split, count in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(count, num_classes, rng)
        arrays[f"x_{split}"] = synthetic_eeg(labels, templates, subjects, rng)
        arrays[f"y_{split}"] = np.eye(num_classes, dtype=np.float64)[labels]
    return {key: arrays[key] for key in ("x_train", "y_train", "x_test", "y_test")}


def _check_trial_counts(set_name: str, n_train: int, n_test: int) -> None:
    num_classes = len(_class_names(set_name))
    if n_train < num_classes or n_test < 1:
        raise DataError(f"synthetic {set_name}: n_train={n_train}, n_test={n_test}; expected n_train >= "
                        f"{num_classes} (every class in train) and n_test >= 1")


def check_synthetic_sizes(set_name: str, n_train: int, n_test: int, images_per_class: int,
                          test_images_per_class: int) -> None:
    """Refuse (:class:`DataError`, one line) sizes :func:`write_synthetic_set` cannot write, before
    anything is: every class among the training trials, a test trial, an image per class."""
    _check_trial_counts(set_name, n_train, n_test)
    if images_per_class < 1 or test_images_per_class < 1:
        raise DataError(f"synthetic {set_name}: images_per_class={images_per_class}, "
                        f"test_images_per_class={test_images_per_class}; expected >= 1")


def _class_names(set_name: str) -> tuple[str, ...]:
    if set_name == "image":
        raise DataError("synthetic set 'image': the objects set has no synthetic version (it needs real "
                        "photographs); download the ThoughtViz data instead (see data/README.md)")
    if set_name not in SYNTHETIC_SETS:
        raise DataError(f"synthetic set {set_name!r}: unknown; expected one of {', '.join(SYNTHETIC_SETS)}")
    return CLASS_NAMES[set_name]


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------

# Bumped whenever the rendered images change, so that a data root never mixes two renderers' images
# (``SYNTHETIC_MARKER`` in every image split records the version that wrote it).
RENDERER_VERSION = 2
SYNTHETIC_MARKER = "synthetic.json"
# Typefaces that matplotlib installs with itself (mpl-data/fonts/ttf): DejaVu Sans, Serif and Mono
# (Bitstream Vera licence) and STIX General (SIL OFL), each in regular, bold, italic and bold italic,
# and six Computer Modern faces (BaKoMa; roman, bold, sans, text italic, typewriter, math italic).
# Their capital letters and digits sit at the ASCII code points, so any installed matplotlib
# renders them without a system font.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "cmmi10.ttf",
)
# Glyphs are drawn this many pixels per em, then scaled down into the image (anti-aliased).
_RENDER_PIXELS_PER_EM = 320
# Char-Font: a capital filling 70-90 % of the image height (the paper's alphabet figure), at most this
# fraction of its width, centred by bounding box up to this jitter (fraction of the size).
CHAR_HEIGHT_RANGE = (0.70, 0.90)
_CHAR_MAX_WIDTH = 0.90
_CHAR_JITTER = 0.04
# Pixels of the border that stay background (the plain white margin of the real images).
_MARGIN_PX = 3
# MNIST: a digit in a 20 x 20 box of 28 x 28 (about 0.71 of the size), centred by its centre of mass;
# strokes of many widths; the anti-aliasing of MNIST's downscaling.
DIGIT_HEIGHT_RANGE = (0.58, 0.72)
_DIGIT_JITTER = 0.04
_DIGIT_STROKE_CHANGE_PX = (-2, 4)    # erosion (< 0) or dilation (> 0) radius at 128 x 128
_DIGIT_BLUR_SIGMA = 0.8


def font_paths() -> tuple[Path, ...]:
    """The typefaces of the built-in images: ``FONT_FILES`` in matplotlib's own font folder."""
    # Imported here, not above: only the built-in images need fonts, and matplotlib is slow to
    # import for every other user of eeg2image_tf.data (commands' --help among them).
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = tuple(folder / name for name in FONT_FILES)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DataError(f"synthetic images: matplotlib's fonts are missing ({', '.join(missing)}); "
                        "reinstall matplotlib")
    return paths


_GLYPH_CACHE: dict[tuple[str, str], np.ndarray] = {}


def glyph_coverage(text: str, font_path: str | os.PathLike) -> np.ndarray:
    """``text`` drawn by FreeType (matplotlib's ``FT2Font``) at 320 px per em, cropped to its ink.

    Returns float32 coverage ``(H, W)`` in [0, 1] (1 = ink). Cached per (text, font): rendering is
    deterministic, and a set draws each glyph of each face many times.
    """
    key = (text, str(font_path))
    if key not in _GLYPH_CACHE:
        # Imported here, not above: as in font_paths.
        from matplotlib.ft2font import FT2Font

        font = FT2Font(str(font_path))
        font.set_size(_RENDER_PIXELS_PER_EM, 72)     # points at 72 dpi: pixels per em
        font.set_text(text, 0.0)
        font.draw_glyphs_to_bitmap(antialiased=True)
        bitmap = np.asarray(font.get_image(), dtype=np.float32) / np.float32(255.0)
        rows, cols = np.nonzero(bitmap > 0.02)
        if rows.size == 0:
            raise DataError(f"synthetic image: {Path(font_path).name} has no glyph for {text!r}")
        _GLYPH_CACHE[key] = bitmap[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return _GLYPH_CACHE[key]


def _scaled(coverage: np.ndarray, height: float, max_width: float) -> np.ndarray:
    """``coverage`` resized (area averaging) to ``height`` px tall; a glyph that would then be wider
    than ``max_width`` is condensed horizontally to it (as a condensed face), keeping its height."""
    scale = height / coverage.shape[0]
    width = min(coverage.shape[1] * scale, max_width)
    size = (max(1, int(round(width))), max(1, int(round(coverage.shape[0] * scale))))
    return np.clip(cv2.resize(coverage, size, interpolation=cv2.INTER_AREA), 0.0, 1.0)


def _place(glyph: np.ndarray, size: int, centre: tuple[float, float],
           margin: int = _MARGIN_PX) -> np.ndarray:
    """A ``(size, size)`` float32 canvas with ``glyph`` whose own centre lands at ``centre`` (x, y),
    moved back inside where the jitter would put it closer than ``margin`` px to the border."""
    height, width = glyph.shape
    left = int(round(np.clip(centre[0] - width / 2.0, margin, size - width - margin)))
    top = int(round(np.clip(centre[1] - height / 2.0, margin, size - height - margin)))
    canvas = np.zeros((size, size), np.float32)
    canvas[top:top + height, left:left + width] = glyph
    return canvas


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(np.rint(gray), 0.0, 255.0).astype(np.uint8)[..., None], 3, axis=-1)


def render_character(text: str, rng: np.random.Generator, size: int = IMAGE_SIZE,
                     font: Optional[str | os.PathLike] = None) -> np.ndarray:
    """A Char-Font-like image: ``text`` in black on pure white, RGB uint8 ``(size, size, 3)``.

    As ThoughtViz's char images (and the paper's alphabet figure): one of ``FONT_FILES`` (or
    ``font``), upright, the letter's ink 70-90 % of the image height (a letter that would be wider
    than 90 % of the image is condensed to that), centred by its bounding box with a jitter of up
    to 4 % of the size, at least 3 px from the border. Grey only at the
    anti-aliased edges; no colour, gradient, rotation or shear.
    """
    font = font if font is not None else font_paths()[int(rng.integers(len(FONT_FILES)))]
    height = rng.uniform(*CHAR_HEIGHT_RANGE) * size
    glyph = _scaled(glyph_coverage(text, font), height, _CHAR_MAX_WIDTH * size)
    centre = size / 2.0 + rng.uniform(-_CHAR_JITTER, _CHAR_JITTER, size=2) * size
    ink = _place(glyph, size, (float(centre[0]), float(centre[1])))
    return _gray_to_rgb(255.0 * (1.0 - ink))


def render_digit(text: str, rng: np.random.Generator, size: int = IMAGE_SIZE,
                 font: Optional[str | os.PathLike] = None) -> np.ndarray:
    """An MNIST-like image: ``text`` in white on black, RGB uint8 ``(size, size, 3)``.

    As MNIST (which ThoughtViz's digit images are): the digit about 58-72 % of the image height,
    centred by its centre of mass (jitter up to 4 %), strokes thinned or thickened by up to 2 or
    4 px (a random face of ``FONT_FILES``, or ``font``), softened by a Gaussian blur (sigma 0.8 px).
    """
    font = font if font is not None else font_paths()[int(rng.integers(len(FONT_FILES)))]
    height = rng.uniform(*DIGIT_HEIGHT_RANGE) * size
    glyph = _scaled(glyph_coverage(text, font), height, 0.8 * size)
    # Room for thicker strokes before the change of stroke width.
    pad = _DIGIT_STROKE_CHANGE_PX[1] + 2
    glyph = np.pad(glyph, pad)
    change = int(rng.integers(_DIGIT_STROKE_CHANGE_PX[0], _DIGIT_STROKE_CHANGE_PX[1] + 1))
    if change:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(change) + 1,) * 2)
        thinner = cv2.erode(glyph, kernel)
        # Erosion may wipe out a thin face altogether; such a draw keeps its own strokes.
        glyph = cv2.dilate(glyph, kernel) if change > 0 else (thinner if thinner.max() > 0.5 else glyph)
    rows, cols = np.nonzero(glyph > 0.02)
    glyph = glyph[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    # Centre of mass to the (jittered) image centre, as MNIST did.
    total = float(glyph.sum())
    mass_y = float((glyph.sum(axis=1) * np.arange(glyph.shape[0])).sum()) / total
    mass_x = float((glyph.sum(axis=0) * np.arange(glyph.shape[1])).sum()) / total
    target = size / 2.0 + rng.uniform(-_DIGIT_JITTER, _DIGIT_JITTER, size=2) * size
    centre = (float(target[0]) - mass_x + glyph.shape[1] / 2.0,
              float(target[1]) - mass_y + glyph.shape[0] / 2.0)
    # A wider margin: the blur spreads the strokes by about three sigma.
    ink = cv2.GaussianBlur(_place(glyph, size, centre, margin=_MARGIN_PX + 3), (0, 0),
                           _DIGIT_BLUR_SIGMA)
    return _gray_to_rgb(255.0 * ink)


RENDERERS = {"char": render_character, "digit": render_digit}


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV failing to encode a uint8 image
        raise DataError(f"{path}: OpenCV could not encode the image")
    atomic_write_bytes(path, encoded.tobytes())


def image_file_name(class_name: str, index: int) -> str:
    return f"{class_name}_{index:04d}.png"


def _is_our_image_name(class_name: str, file_name: str) -> bool:
    return re.fullmatch(rf"{re.escape(class_name)}_\d{{4,}}\.png", file_name) is not None


def _our_image_files(split_root: Path, class_names: tuple[str, ...]) -> list[Path]:
    """Files in ``split_root/<Class>/`` named as the built-in sets name their images."""
    return [path for name in class_names for path in (split_root / name).glob(f"{name}_*.png")
            if _is_our_image_name(name, path.name)]


def _refuse_foreign(folder: Path, foreign: list[str], flag: str) -> None:
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DataError(f"{folder}: holds {shown}, which prepare_data --synthetic did not write; "
                        f"write the built-in set to another {flag} (it never replaces a user's files)")


def synthetic_images_version(split_root: str | os.PathLike) -> Optional[int]:
    """The renderer version recorded in ``split_root/synthetic.json``; None when there is none."""
    marker = Path(split_root) / SYNTHETIC_MARKER
    if not marker.is_file():
        return None
    try:
        return int(read_json(marker)["renderer_version"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{marker}: not a built-in set's record (no integer 'renderer_version'); "
                        "remove it, or the whole image folder, and write the set again") from None


def check_synthetic_images(split_root: str | os.PathLike, class_names: tuple[str, ...]) -> None:
    """Refuse an image split that holds built-in images of another renderer version.

    Such images would otherwise be silently mixed with (or trained on instead of) the current
    renderer's: older versions wrote no ``synthetic.json``, so built-in file names without one
    count as an older version. Folders of the real data (no marker, other names) pass.
    """
    split_root = Path(split_root)
    version = synthetic_images_version(split_root)
    if version == RENDERER_VERSION:
        return
    if version is None and not _our_image_files(split_root, class_names):
        return
    found = f"renderer version {version}" if version is not None else \
        "an older renderer (no synthetic.json)"
    raise DataError(f"{split_root}: holds built-in images of {found}, not of the current version "
                    f"{RENDERER_VERSION} (black letters on white, MNIST-like digits); delete that "
                    "folder to rebuild it, or use another data root")


def check_image_root(split_root: Path, class_names: tuple[str, ...], flag: str = "--out") -> None:
    """Refuse to mix two sets' class folders (natsort over all of them would shift class indices)
    or two renderers' images."""
    if not split_root.is_dir():
        return
    foreign = sorted(p.name for p in split_root.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in class_names)
    if foreign:
        raise DataError(f"{split_root}: already holds class folders of another set ({', '.join(foreign)}); "
                        f"write this set to another {flag}")
    # A user's own file among the built-in set's (a real image beside them) is never mixed in.
    files = [p.name for p in split_root.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name != SYNTHETIC_MARKER]
    files += [f"{name}/{p.name}" for name in class_names if (split_root / name).is_dir()
              for p in sorted((split_root / name).iterdir())
              if not p.name.startswith(".") and not _is_our_image_name(name, p.name)]
    _refuse_foreign(split_root, files, flag)
    check_synthetic_images(split_root, class_names)


def _recorded_digests(eeg_dir: Path) -> list[str]:
    """The SHA-256 digests of the ``data.pkl`` files the built-in set wrote in ``eeg_dir``."""
    try:
        recorded = read_json(eeg_dir / SYNTHETIC_MARKER).get("sha256", [])
    except (Eeg2ImageError, AttributeError):
        return []
    return [recorded] if isinstance(recorded, str) else list(recorded)


def _check_eeg_folder(eeg_dir: Path, flag: str, eeg_name: str = EEG_FILE) -> None:
    """Refuse an EEG set folder holding what the built-in set did not write: an ``eeg_name`` file
    (its ``data.pkl``, or ``data.npz``) that is not the one its ``synthetic.json`` records (real
    data), or any other file (for ``data.pkl``, a ``data.npz``, which the loaders would read
    instead)."""
    if not eeg_dir.exists():
        return
    if not eeg_dir.is_dir():
        raise DataError(f"{eeg_dir}: exists and is not a directory; write the built-in set to "
                        f"another {flag}")
    names = sorted(p.name for p in eeg_dir.iterdir() if not p.name.startswith("."))
    foreign = [name for name in names if name not in (eeg_name, SYNTHETIC_MARKER)]
    if eeg_name in names and file_sha256(eeg_dir / eeg_name) not in _recorded_digests(eeg_dir):
        foreign.insert(0, eeg_name)
    _refuse_foreign(eeg_dir, foreign, flag)


def write_recorded_eeg(eeg_path: Path, write: Callable[[Path], None], set_name: str,
                       seed: int) -> Path:
    """Write a built-in set's EEG file with ``write(temporary path)``; its SHA-256 goes into the
    folder's ``synthetic.json`` before the file takes its name (with the digest of the file it
    replaces), so whatever instant a crash hits, the file there is one the record names."""
    kept = [file_sha256(eeg_path)] if eeg_path.exists() else []
    with atomic_path(eeg_path) as tmp:
        write(tmp)
        atomic_write_json(eeg_path.parent / SYNTHETIC_MARKER, {
            "set": set_name, "seed": seed,
            "sha256": list(dict.fromkeys([file_sha256(tmp)] + kept))})
    return eeg_path


def write_class_images(split_root: Path, class_names: tuple[str, ...], per_class: int,
                       rng: np.random.Generator, set_name: str = "char",
                       render: Optional[Callable[[str, np.random.Generator], np.ndarray]] = None) -> int:
    """Write ``per_class`` PNGs into each ``split_root/<Class>/``; remove older ones of ours beyond them.

    ``render(class_name, rng) -> RGB uint8`` draws one image; by default ``set_name`` picks it
    (:data:`RENDERERS`). ``split_root/synthetic.json`` records the
    renderer version, written first so that an interrupted write is still recognised as ours.
    Rendering stays in this thread, in a fixed order, so the random stream (and every byte) is
    reproducible; encoding and the fsync of each atomic write overlap on a few threads.
    """
    render = render or RENDERERS[set_name]
    split_root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(split_root / SYNTHETIC_MARKER, {"renderer_version": RENDERER_VERSION,
                                                      "set": set_name})
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = []
        for class_name in class_names:
            folder = split_root / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                image = render(class_name, rng)
                pending.append(pool.submit(_write_png, folder / image_file_name(class_name, k), image))
        for future in pending:
            future.result()
    for class_name in class_names:
        wanted = {image_file_name(class_name, k) for k in range(per_class)}
        for stale in _our_image_files(split_root, (class_name,)):
            if stale.name not in wanted:
                stale.unlink()
    return per_class * len(class_names)


# --------------------------------------------------------------------------------------------------
# The whole set
# --------------------------------------------------------------------------------------------------

def check_synthetic_root(out_root: str | os.PathLike, set_name: str, flag: str = "--out") -> None:
    """Refuse, writing nothing, a data root that :func:`write_synthetic_set` may not write: not
    writable, or holding files it did not write (``flag``: the option naming ``out_root``)."""
    check_builtin_root(out_root, set_name, _class_names(set_name), (TRAIN_SPLIT, TEST_SPLIT),
                       EEG_FILE, flag)


def check_builtin_root(out_root: str | os.PathLike, set_name: str, class_names: tuple[str, ...],
                       splits: tuple[str, ...], eeg_name: str, flag: str = "--out") -> None:
    """Refuse, writing nothing, a data root a built-in set may not be written to: not writable, or
    holding in ``eeg/<set_name>/`` or ``images/<split>/`` (each of ``splits``) files the built-in
    set did not write; ``eeg_name``: the set's EEG file (``data.pkl`` or ``data.npz``)."""
    out_root = Path(out_root)
    check_writable_dir(out_root, flag)
    _check_eeg_folder(out_root / EEG_DIR / set_name, flag, eeg_name)
    for split in splits:
        check_image_root(out_root / IMAGES_DIR / split, class_names, flag)


def write_synthetic_set(out_root: str | os.PathLike, set_name: str = "char", seed: int = 45,
                        n_train: int = 2500, n_test: int = 600, images_per_class: int = 200,
                        test_images_per_class: int = 50, flag: str = "--out") -> dict[str, Any]:
    """Write a synthetic ``digit`` or ``char`` set under ``out_root`` in the ThoughtViz layout.

    Files: ``eeg/<set>/data.pkl`` (a pickle, protocol 2, of a dict of numpy arrays: ``x_*`` float64
    ``(N, 14, 32, 1)``, ``y_*`` one-hot float64 ``(N, 10)``) with ``eeg/<set>/synthetic.json``
    (its SHA-256) and ``images/{train,test}/<Class>/*.png`` (128 x 128 RGB). Everything is a
    function of ``seed``: the same seed gives byte-identical files. ``set_name="image"`` raises
    :class:`DataError`: the objects set has no synthetic version. Folders holding anything this
    function did not write (real data, a user's image, a ``data.npz``) are refused before anything
    is written: the built-in set never replaces or mixes with a user's files (``flag``: the option
    naming ``out_root``, for the message).
    Returns what was written (paths and counts).
    """
    class_names = _class_names(set_name)
    check_synthetic_sizes(set_name, n_train, n_test, images_per_class, test_images_per_class)
    out_root = Path(out_root)
    check_synthetic_root(out_root, set_name, flag)
    eeg_dir = out_root / EEG_DIR / set_name
    image_roots = {split: out_root / IMAGES_DIR / split for split in (TRAIN_SPLIT, TEST_SPLIT)}

    arrays = make_synthetic_eeg(set_name, seed=seed, n_train=n_train, n_test=n_test)
    eeg_path = eeg_dir / EEG_FILE
    # Protocol 2, as the ThoughtViz release; our restricted unpickler reads it.
    payload = pickle.dumps(arrays, protocol=2)
    write_recorded_eeg(eeg_path, lambda tmp: tmp.write_bytes(payload), set_name, seed)

    image_rng = np.random.default_rng([seed, SYNTHETIC_SETS.index(set_name), 1])
    counts = {split: write_class_images(image_roots[split], class_names, per_class, image_rng,
                                         set_name)
              for split, per_class in (("train", images_per_class), ("test", test_images_per_class))}
    return {
        "set": set_name,
        "seed": seed,
        "eeg": str(eeg_path),
        "x_train_shape": tuple(arrays["x_train"].shape),
        "x_test_shape": tuple(arrays["x_test"].shape),
        "class_names": class_names,
        "images_train": str(image_roots["train"]),
        "images_test": str(image_roots["test"]),
        "num_train_images": counts["train"],
        "num_test_images": counts["test"],
    }
