"""``generate``: 2000 images from the generator to JPEG files in a temporary folder."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from .common import ORIGINAL


def run(total: int = 2000, batch_size: int = 32, writer_threads: int = 1,
        repeats: int = 3, precision: str = "float32") -> dict[str, Any]:
    from eeg2image_tf.generation import generate_images
    from eeg2image_tf.models import build_generator

    generator = build_generator()
    rng = np.random.default_rng(0)
    num_classes = 10
    features = [rng.normal(size=(20, 128)).astype(np.float32) for _ in range(num_classes)]
    names = [f"class{k}" for k in range(num_classes)]
    with tempfile.TemporaryDirectory() as warm:  # traces the forward pass and warms the writers
        generate_images(generator, features, names, warm, per_class=batch_size // num_classes + 1,
                        batch_size=batch_size, writer_threads=writer_threads, show_progress=False,
                        precision=precision)
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            manifest = generate_images(generator, features, names, out,
                                       per_class=total // num_classes, batch_size=batch_size,
                                       writer_threads=writer_threads, show_progress=False,
                                       precision=precision)
            rates.append(manifest.images_per_second)
    rate = float(np.median(rates))
    return {"name": "generate", "batch_size": batch_size, "images": total,
            "items_per_s": round(rate, 1), "writer_threads": writer_threads,
            "precision": precision, "repeats": repeats,
            "original_items_per_s": ORIGINAL["generate_images_per_s"],
            "speedup_vs_original": round(rate / ORIGINAL["generate_images_per_s"], 2)}
