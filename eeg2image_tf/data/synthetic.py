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

Images: each class's character drawn with OpenCV (the Hershey fonts; OpenCV 5's embedded font at
weights 200-900, regular or italic) at 128 x 128, with random style, stroke weight, size, shear,
rotation, position and contrasting colours.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io_utils import atomic_path, atomic_write_bytes
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
    if n_train < num_classes or n_test < 1:
        raise DataError(f"synthetic {set_name}: n_train={n_train}, n_test={n_test}; expected n_train >= "
                        f"{num_classes} (every class in train) and n_test >= 1")
    rng = np.random.default_rng([seed, SYNTHETIC_SETS.index(set_name)])
    templates = class_templates(num_classes, rng)
    subjects = simulated_subjects(rng)
    arrays: dict[str, np.ndarray] = {}
    for split, count in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(count, num_classes, rng)
        arrays[f"x_{split}"] = synthetic_eeg(labels, templates, subjects, rng)
        arrays[f"y_{split}"] = np.eye(num_classes, dtype=np.float64)[labels]
    return {key: arrays[key] for key in ("x_train", "y_train", "x_test", "y_test")}


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

def _hershey_fonts() -> tuple[int, ...]:
    import cv2

    return (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
            cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL,
            cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)


def _luminance(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _draw_glyph(canvas: np.ndarray, text: str, height: int, rng: np.random.Generator) -> None:
    """Draw ``text`` about ``height`` px tall, white on the black ``canvas`` (uint8, in place)."""
    import cv2

    origin = (canvas.shape[1] // 4, canvas.shape[0] * 3 // 4)
    if hasattr(cv2, "FontFace"):
        # OpenCV 5 draws every Hershey name with one embedded variable font at a fixed weight (the
        # stroke thickness is ignored); its own API varies the style and weight instead.
        face = cv2.FontFace("italic" if rng.random() < 0.3 else "sans")
        cv2.putText(canvas, text, origin, 255, face, height, int(rng.integers(2, 10)) * 100)
        return
    fonts = _hershey_fonts()
    font = fonts[int(rng.integers(len(fonts)))]
    if rng.random() < 0.25:
        font |= cv2.FONT_ITALIC
    thickness = int(rng.integers(2, 9))
    scale = cv2.getFontScaleFromHeight(font, height, thickness)
    cv2.putText(canvas, text, origin, font, scale, 255, thickness, cv2.LINE_AA)


def render_character(text: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One ``text`` glyph as RGB uint8 ``(size, size, 3)``.

    Random style and stroke weight (Hershey fonts and thickness 2-8 px; regular or italic at weights
    200-900 where OpenCV 5 replaces them), glyph height 40-68 % of the image, shear up to +-0.35,
    rotation up to +-12 degrees, offset up to 8 % of the size, a two-colour gradient background and
    a foreground whose luminance differs from both of its colours by more than 90 (of 255).
    """
    import cv2

    # Draw large on a wide canvas, then map the glyph's bounding box into the image with one affine
    # transform (scale, shear, rotation, offset); this works the same for every font back end.
    canvas = np.zeros((2 * size, 2 * size), np.uint8)
    _draw_glyph(canvas, text, size, rng)
    rows, cols = np.nonzero(canvas)
    if rows.size == 0:
        raise DataError(f"synthetic image: OpenCV drew nothing for {text!r}")
    glyph_height, glyph_width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    scale = min(rng.uniform(0.4, 0.68) * size / glyph_height, 0.72 * size / glyph_width)
    shear = rng.uniform(-0.35, 0.35)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0))
    offset = size / 2.0 + rng.uniform(-0.08, 0.08, size=2) * size

    def translation(dx: float, dy: float) -> np.ndarray:
        return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])

    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0],
                         [0.0, 0.0, 1.0]])
    shearing = np.array([[1.0, shear, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scaling = np.diag([scale, scale, 1.0])
    centre = translation(-(cols.min() + cols.max()) / 2.0, -(rows.min() + rows.max()) / 2.0)
    affine = (translation(offset[0], offset[1]) @ rotation @ shearing @ scaling @ centre)[:2]
    alpha = cv2.warpAffine(canvas, affine, (size, size), flags=cv2.INTER_AREA)
    alpha = alpha.astype(np.float32)[..., None] / np.float32(255.0)

    background = rng.uniform(0.0, 255.0, size=3)
    second = np.clip(background + rng.normal(0.0, 25.0, size=3), 0.0, 255.0)
    foreground = rng.uniform(0.0, 255.0, size=3)
    # Both ends of the background gradient must contrast with the glyph.
    while min(abs(_luminance(foreground) - _luminance(background)),
              abs(_luminance(foreground) - _luminance(second))) <= 90.0:
        foreground = rng.uniform(0.0, 255.0, size=3)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None]
    back = (background.astype(np.float32) * (1.0 - ramp) + second.astype(np.float32) * ramp)
    image = back * (1.0 - alpha) + foreground.astype(np.float32) * alpha
    return np.clip(image, 0.0, 255.0).astype(np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV failing to encode a uint8 image
        raise DataError(f"{path}: OpenCV could not encode the image")
    atomic_write_bytes(path, encoded.tobytes())


def _image_file_name(class_name: str, index: int) -> str:
    return f"{class_name}_{index:04d}.png"


def _check_image_root(split_root: Path, class_names: tuple[str, ...]) -> None:
    """Refuse to mix two sets' class folders: natsort over all of them would shift class indices."""
    if not split_root.is_dir():
        return
    foreign = sorted(p.name for p in split_root.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in class_names)
    if foreign:
        raise DataError(f"{split_root}: already holds class folders of another set ({', '.join(foreign)}); "
                        "write this set to another --out")


def write_class_images(split_root: Path, class_names: tuple[str, ...], per_class: int,
                       rng: np.random.Generator) -> int:
    """Write ``per_class`` PNGs into each ``split_root/<Class>/``; remove older ones of ours beyond them.

    Rendering stays in this thread, in a fixed order, so the random stream (and every byte) is
    reproducible; encoding and the fsync of each atomic write overlap on a few threads.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = []
        for class_name in class_names:
            folder = split_root / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                image = render_character(class_name, rng)
                pending.append(pool.submit(_write_png, folder / _image_file_name(class_name, k), image))
        for future in pending:
            future.result()
    for class_name in class_names:
        wanted = {_image_file_name(class_name, k) for k in range(per_class)}
        for stale in (split_root / class_name).glob(f"{class_name}_*.png"):
            if stale.name not in wanted:
                stale.unlink()
    return per_class * len(class_names)


# --------------------------------------------------------------------------------------------------
# The whole set
# --------------------------------------------------------------------------------------------------

def write_synthetic_set(out_root: str | os.PathLike, set_name: str = "char", seed: int = 45,
                        n_train: int = 2500, n_test: int = 600, images_per_class: int = 200,
                        test_images_per_class: int = 50) -> dict[str, Any]:
    """Write a synthetic ``digit`` or ``char`` set under ``out_root`` in the ThoughtViz layout.

    Files: ``eeg/<set>/data.pkl`` (a pickle, protocol 2, of a dict of numpy arrays: ``x_*`` float64
    ``(N, 14, 32, 1)``, ``y_*`` one-hot float64 ``(N, 10)``) and ``images/{train,test}/<Class>/*.png``
    (128 x 128 RGB). Everything is a function of ``seed``: the same seed gives byte-identical files.
    ``set_name="image"`` raises :class:`DataError`: the objects set has no synthetic version.
    Returns what was written (paths and counts).
    """
    class_names = _class_names(set_name)
    if images_per_class < 1 or test_images_per_class < 1:
        raise DataError(f"synthetic {set_name}: images_per_class={images_per_class}, "
                        f"test_images_per_class={test_images_per_class}; expected >= 1")
    out_root = Path(out_root)
    image_roots = {split: out_root / "images" / split for split in ("train", "test")}
    for split_root in image_roots.values():
        _check_image_root(split_root, class_names)

    arrays = make_synthetic_eeg(set_name, seed=seed, n_train=n_train, n_test=n_test)
    eeg_path = out_root / "eeg" / set_name / "data.pkl"
    with atomic_path(eeg_path) as tmp:
        with open(tmp, "wb") as handle:
            # Protocol 2, as the ThoughtViz release; our restricted unpickler reads it.
            pickle.dump(arrays, handle, protocol=2)

    image_rng = np.random.default_rng([seed, SYNTHETIC_SETS.index(set_name), 1])
    counts = {split: write_class_images(image_roots[split], class_names, per_class, image_rng)
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
