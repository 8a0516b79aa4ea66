"""A built-in set in the shape of EEGCVPR40 (Spampinato et al., CVPR 2017): ``cvpr40-synthetic``.

What it imitates: 128 channels at 1 kHz, recordings of varying length (450-600 samples) cut to the
window ``[20, 460)`` (440 samples) as the EEGCVPR40 converter cuts them, 40 classes, 6 subjects,
each trial recorded while its subject looked at one known image, splits by image (no stimulus in
two splits), values band-pass-like and standardised (zero mean, unit variance per channel over the
set, as the ``_std`` files), so the set records the ``zscore`` normalisation. Written in the project's
``.npz`` format with every key a converted EEGCVPR40 set has: ``x``/``y`` of train, val and test,
``image_*`` (each trial's stimulus, ``<Class>/<file>`` relative to ``images/<split>/``),
``subject_*`` (1-6), ``class_names`` and ``normalisation``.

Images: glyphs stand in for the ImageNet photographs, one class per glyph (the 26 capitals, the ten
digits and four signs; :data:`CLASS_GLYPHS`), each stimulus drawn once as the ``char`` set draws its
letters (black on white, many typefaces). Each stimulus is seen by several subjects, as in EEGCVPR40.

EEG: per class two biphasic evoked waves (latencies 120-320 ms, widths 15-40 ms) and a sustained
component (a slow wave over the whole window), each with its own scalp map over the 128 channels;
per trial the waves shift by up to +-25 ms and their amplitudes by +-40 %; per subject a channel gain
and a noise level; AR(1) background activity (coefficient 0.95 at 1 kHz) with a common-mode part.
The signal does not depend on which image of its class a trial saw: stimulus pairing then trains the
GAN on the very images the trials were recorded with, with no image-specific evidence in the EEG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from natsort import natsorted

from ..errors import DataError
from ..runs import EEG_DIR, EEG_NPZ_FILE, IMAGES_DIR
from .eegcvpr40 import DEFAULT_WINDOW, LENGTH_RANGE, NORMALISATION
from .synthetic import (balanced_labels, check_builtin_root, image_file_name, render_character,
                        write_class_images, write_recorded_eeg)
from .thoughtviz import SPLITS, EEGSplits, write_npz

CVPR40_SET = "cvpr40-synthetic"
NUM_CHANNELS = 128
NUM_SUBJECTS = 6
SAMPLE_RATE_HZ = 1000
WINDOW = DEFAULT_WINDOW
# Recordings fill the window: lengths from its end to the longest the loader keeps.
_SIMULATED_LENGTHS = (WINDOW[1], LENGTH_RANGE[1])

# Class folder name -> the glyph its images show. Signs get word names: folder names stay plain.
CLASS_GLYPHS: dict[str, str] = {
    **{chr(code): chr(code) for code in range(ord("A"), ord("Z") + 1)},
    **{str(digit): str(digit) for digit in range(10)},
    "and": "&", "at": "@", "hash": "#", "percent": "%",
}
# In the order the image folders list them (natsort), which is the class index everywhere.
CLASS_NAMES: tuple[str, ...] = tuple(natsorted(CLASS_GLYPHS))

# Sizes of the built-in set (prepare_data and the pipeline's defaults; README, EEGCVPR40).
DEFAULT_SIZES = {"n_train": 1200, "n_test": 240, "images_per_class": 10, "test_images_per_class": 2}

_WAVE_AMPLITUDE = 3.0
_SUSTAINED_AMPLITUDE = 2.5
_MAX_JITTER_MS = 25.0
_AR_COEFFICIENT = 0.95
_BIPHASIC_PEAK = float(np.exp(0.5))


def _templates(rng: np.random.Generator, num_classes: int) -> dict[str, np.ndarray]:
    """Per class: wave scalp maps ``(K, 2, C)``, latencies and widths in samples ``(K, 2)``, the
    sustained component's map ``(K, C)`` and frequency in cycles per window ``(K,)``."""
    def unit_maps(*shape):
        maps = rng.normal(size=shape + (NUM_CHANNELS,))
        return maps / np.abs(maps).max(axis=-1, keepdims=True)

    return {"maps": unit_maps(num_classes, 2),
            "latency": np.sort(rng.uniform(120.0, 320.0, size=(num_classes, 2)), axis=1),
            "width": rng.uniform(15.0, 40.0, size=(num_classes, 2)),
            "sustained_map": unit_maps(num_classes),
            "sustained_cycles": rng.uniform(1.0, 4.0, size=num_classes)}


def _recordings(labels: np.ndarray, subjects: np.ndarray, templates: dict[str, np.ndarray],
                subject_gain: np.ndarray, subject_noise: np.ndarray,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Whole recordings, float64 ``(C, L_i)`` with ``L_i`` in 460-600, time 0 at ``WINDOW[0]``."""
    recordings = []
    for label, subject in zip(labels.tolist(), subjects.tolist()):
        length = int(rng.integers(_SIMULATED_LENGTHS[0], _SIMULATED_LENGTHS[1] + 1))
        time = np.arange(length, dtype=np.float64) - WINDOW[0]
        shift = rng.uniform(-_MAX_JITTER_MS, _MAX_JITTER_MS) * SAMPLE_RATE_HZ / 1000.0
        signal = np.zeros((NUM_CHANNELS, length))
        for wave in range(2):
            u = (time - templates["latency"][label, wave] - shift) / templates["width"][label, wave]
            amplitude = _WAVE_AMPLITUDE * rng.uniform(0.6, 1.4)
            signal += amplitude * np.outer(templates["maps"][label, wave],
                                           -_BIPHASIC_PEAK * u * np.exp(-0.5 * u ** 2))
        phase = 2.0 * np.pi * templates["sustained_cycles"][label] * time / (WINDOW[1] - WINDOW[0])
        signal += _SUSTAINED_AMPLITUDE * np.outer(templates["sustained_map"][label], np.sin(phase))
        recordings.append(subject_gain[subject] * signal
                          + subject_noise[subject] * _background(rng, length))
    return recordings


def _background(rng: np.random.Generator, length: int) -> np.ndarray:
    """Unit-variance AR(1) activity per channel plus a common-mode part, ``(C, length)``."""
    # Imported here, not above: scipy is slow to import for every other user of eeg2image_tf.data.
    from scipy.signal import lfilter

    burn_in = 100       # samples for the filter to forget its zero start
    innovations = rng.normal(size=(NUM_CHANNELS, length + burn_in))
    noise = lfilter([np.sqrt(1.0 - _AR_COEFFICIENT ** 2)], [1.0, -_AR_COEFFICIENT], innovations,
                    axis=1)[:, burn_in:]
    common = rng.normal(size=(1, length)) * rng.uniform(0.2, 0.6, size=(NUM_CHANNELS, 1))
    return noise + common


def window_trials(recordings: list[np.ndarray], source: str) -> np.ndarray:
    """Cut every recording to :data:`WINDOW`: float32 ``(N, C, 440, 1)``. A recording outside
    :data:`LENGTH_RANGE`, or too short for the window, is refused."""
    for index, recording in enumerate(recordings):
        length = recording.shape[1]
        if not LENGTH_RANGE[0] <= length <= LENGTH_RANGE[1] or length < WINDOW[1]:
            raise DataError(f"{source}: recording {index} has {length} samples; expected "
                            f"{max(LENGTH_RANGE[0], WINDOW[1])}-{LENGTH_RANGE[1]} for the window "
                            f"[{WINDOW[0]}, {WINDOW[1]})")
    return np.stack([r[:, WINDOW[0]:WINDOW[1]] for r in recordings]).astype(np.float32)[..., None]


def _split_plan(count: int, images_per_class: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels ``(N,)``, each trial's image number within its class and its subject (1-6).

    The ``j``-th trial of a class sees image ``j mod images_per_class`` of that class and is
    subject ``1 + j mod 6``'s: each stimulus is seen by several subjects, every subject sees every
    class.
    """
    labels = balanced_labels(count, len(CLASS_NAMES), rng)
    order = np.zeros(count, dtype=np.int64)
    for c in range(len(CLASS_NAMES)):
        members = np.flatnonzero(labels == c)
        order[members] = np.arange(members.size)
    image = order % images_per_class
    subject = 1 + order % NUM_SUBJECTS
    return labels, image, subject.astype(np.int64)


def check_cvpr40_sizes(n_train: int, n_test: int, images_per_class: int,
                       test_images_per_class: int) -> None:
    """Refuse (:class:`DataError`, one line) sizes that leave an image without a trial: every
    image is seen at least once, ``n_train >= 40 * images_per_class`` and
    ``n_test >= 40 * test_images_per_class``."""
    num_classes = len(CLASS_NAMES)
    for trials, images, flags in ((n_train, images_per_class, "--n-train/--images-per-class"),
                                  (n_test, test_images_per_class,
                                   "--n-test/--test-images-per-class")):
        if images < 1 or trials < num_classes * images:
            raise DataError(f"{CVPR40_SET}: {flags} {trials}/{images}; expected at least one image "
                            f"per class and a trial for each of the {num_classes} x {images} images")


def make_cvpr40_synthetic(seed: int = 45, n_train: int = DEFAULT_SIZES["n_train"],
                          n_test: int = DEFAULT_SIZES["n_test"],
                          images_per_class: int = DEFAULT_SIZES["images_per_class"],
                          test_images_per_class: int = DEFAULT_SIZES["test_images_per_class"],
                          source: str = CVPR40_SET) -> EEGSplits:
    """The set's EEG, labels, stimuli and subjects (validation as large as the test split).

    Every image is seen at least once: ``n_train >= 40 * images_per_class`` and
    ``n_test >= 40 * test_images_per_class``. The same arguments give the same arrays.
    """
    check_cvpr40_sizes(n_train, n_test, images_per_class, test_images_per_class)
    num_classes = len(CLASS_NAMES)
    rng = np.random.default_rng([seed, 40])
    templates = _templates(rng, num_classes)
    gain = rng.uniform(0.75, 1.25, size=NUM_SUBJECTS + 1)
    noise = rng.uniform(0.8, 1.25, size=NUM_SUBJECTS + 1)
    arrays: dict[str, Any] = {}
    for split, count, images in (("train", n_train, images_per_class),
                                 ("val", n_test, test_images_per_class),
                                 ("test", n_test, test_images_per_class)):
        labels, image, subject = _split_plan(count, images, rng)
        recordings = _recordings(labels, subject, templates, gain, noise, rng)
        arrays[f"x_{split}"] = window_trials(recordings, f"{source} ({split})")
        arrays[f"y_{split}"] = labels
        arrays[f"image_{split}"] = np.array(
            [f"{CLASS_NAMES[c]}/{image_file_name(CLASS_NAMES[c], k)}"
             for c, k in zip(labels.tolist(), image.tolist())], dtype=np.str_)
        arrays[f"subject_{split}"] = subject
    # Standardised per channel over the whole set, as EEGCVPR40's "_std" files.
    stacked = np.concatenate([arrays[f"x_{split}"] for split in SPLITS])
    mean = stacked.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = stacked.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    for split in SPLITS:
        arrays[f"x_{split}"] = ((arrays[f"x_{split}"] - mean) / std).astype(np.float32)
    return EEGSplits(class_names=CLASS_NAMES, source=source, normalisation=NORMALISATION, **arrays)


def write_cvpr40_synthetic(out_root: str | os.PathLike, seed: int = 45,
                           n_train: int = DEFAULT_SIZES["n_train"],
                           n_test: int = DEFAULT_SIZES["n_test"],
                           images_per_class: int = DEFAULT_SIZES["images_per_class"],
                           test_images_per_class: int = DEFAULT_SIZES["test_images_per_class"],
                           flag: str = "--out") -> dict[str, Any]:
    """Write ``eeg/cvpr40-synthetic/data.npz`` (with ``synthetic.json``, its SHA-256) and
    ``images/{train,val,test}/<Class>/*.png`` under ``out_root``; return what was written (paths
    and counts), as ``write_synthetic_set`` does.

    ``n_train``/``n_test``: trials of the train and test splits (validation: as test);
    ``images_per_class``/``test_images_per_class``: stimuli per class in train and in test (and
    validation). Everything is a function of ``seed``. As ``write_synthetic_set``, folders holding
    what it did not write are refused before anything is written (``flag`` names ``out_root``).
    """
    out_root = Path(out_root)
    image_roots = {split: out_root / IMAGES_DIR / split for split in SPLITS}
    eeg_path = out_root / EEG_DIR / CVPR40_SET / EEG_NPZ_FILE
    check_builtin_root(out_root, CVPR40_SET, CLASS_NAMES, SPLITS, EEG_NPZ_FILE, flag)
    splits = make_cvpr40_synthetic(seed, n_train, n_test, images_per_class, test_images_per_class,
                                   source=str(eeg_path))
    write_recorded_eeg(eeg_path, lambda tmp: write_npz(splits, tmp), CVPR40_SET, seed)

    image_rng = np.random.default_rng([seed, 40, 1])

    def render(class_name: str, rng: np.random.Generator) -> np.ndarray:
        return render_character(CLASS_GLYPHS[class_name], rng)

    counts = {split: write_class_images(image_roots[split], CLASS_NAMES, per_class, image_rng,
                                         CVPR40_SET, render=render)
              for split, per_class in (("train", images_per_class), ("val", test_images_per_class),
                                       ("test", test_images_per_class))}
    return {
        "set": CVPR40_SET, "seed": seed, "eeg": str(eeg_path),
        "x_train_shape": tuple(splits.x_train.shape), "x_test_shape": tuple(splits.x_test.shape),
        "class_names": CLASS_NAMES,
        "images_train": str(image_roots["train"]), "images_test": str(image_roots["test"]),
        "num_train_images": counts["train"], "num_test_images": counts["test"],
    }
