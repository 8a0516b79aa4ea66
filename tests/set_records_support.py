"""A tiny set that is not ThoughtViz-shaped and records what EEGCVPR40-like sets record: 8 channels x
20 samples, 5 classes without class names, zero-centred values with ``normalisation="zscore"``,
each trial's stimulus (``image_*``) and subject (``subject_*``). Shared by tests/test_set_records.py
and tests/test_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_CHANNELS = 8
NUM_SAMPLES = 20
# Image class folders (natsort order = class index); the EEG set itself names no classes.
CLASSES = ("Ant", "Bee", "Cat", "Dog", "Eel")
TRAIN_IMAGES_PER_CLASS = 2
TEST_IMAGES_PER_CLASS = 1
N_TRAIN = 80
N_TEST = 20


def _write_images(folder: Path, per_class: int, rng: np.random.Generator) -> None:
    import cv2

    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            # A different flat colour per image, so that each stimulus can be told from the others.
            image = np.full((16, 16, 3), 40 * c + 60 * k, dtype=np.uint8)
            image[::2] = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
            assert cv2.imwrite(str(folder / name / f"{name}_{k}.png"), image)


def _split(count: int, images_per_class: int, pattern: np.ndarray, rng: np.random.Generator) -> dict:
    """Trials of a class: ``2 * pattern[class] * sin`` over unit noise; classes in turn."""
    labels = np.arange(count, dtype=np.int64) % len(CLASSES)
    wave = np.sin(np.linspace(0.0, 2.0 * np.pi, NUM_SAMPLES))[None, None, :]
    x = 2.0 * pattern[labels] * wave + rng.normal(size=(count, NUM_CHANNELS, NUM_SAMPLES))
    image = (np.arange(count) // len(CLASSES)) % images_per_class
    return {"x": x[..., None].astype(np.float32), "y": labels,
            "image": np.array([f"{CLASSES[c]}/{CLASSES[c]}_{k}.png" for c, k in zip(labels, image)]),
            "subject": 1 + (np.arange(count, dtype=np.int64) // len(CLASSES)) % 2}


def write_recorded_set(data_root: Path, set_name: str, seed: int = 5,
                       normalisation: str = "zscore") -> dict:
    """``data_root/eeg/<set_name>/data.npz`` and ``data_root/images/{train,test}/<Class>/*.png``."""
    from eeg2image_tf.data import EEGSplits, save_npz

    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=(len(CLASSES), NUM_CHANNELS, 1))
    train = _split(N_TRAIN, TRAIN_IMAGES_PER_CLASS, pattern, rng)
    test = _split(N_TEST, TEST_IMAGES_PER_CLASS, pattern, rng)
    splits = EEGSplits(x_train=train["x"], y_train=train["y"], x_test=test["x"], y_test=test["y"],
                       class_names=None, source="test", image_train=train["image"],
                       image_test=test["image"], subject_train=train["subject"],
                       subject_test=test["subject"], normalisation=normalisation)
    data = save_npz(splits, data_root / "eeg" / set_name / "data.npz")
    _write_images(data_root / "images" / "train", TRAIN_IMAGES_PER_CLASS, rng)
    _write_images(data_root / "images" / "test", TEST_IMAGES_PER_CLASS, rng)
    return {"data": str(data), "images": str(data_root / "images"), "splits": splits}
