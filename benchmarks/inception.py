"""``inception``: images per second through the Inception Score backend (random weights)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .common import median_seconds


def run(images: int = 200, batch_size: int = 50, repeats: int = 3) -> dict[str, Any]:
    import keras

    from eeg2image_tf.evaluation.inception import KerasInception

    # Random weights need no download and cost exactly the same FLOPs as the real ones.
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "inception_v3_random.weights.h5"
        keras.applications.InceptionV3(include_top=True, weights=None).save_weights(str(weights))
        backend = KerasInception(weights)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, size=(images, 128, 128, 3)).astype(np.float32)
    seconds, _ = median_seconds(lambda: backend.compute(batch, batch_size=batch_size), repeats,
                                warmup=1)
    return {"name": "inception", "batch_size": batch_size, "images": images,
            "items_per_s": round(images / seconds, 1), "backend": backend.name,
            "weights": "random (same cost as the real ones)"}
