"""``generate``: 2000 images from the generator to JPEG files in a temporary folder.

Beside our rate it measures, on the same machine and in the same process, a loop in the style of
the original evaluation: one image at a time through the generator (``training=False``, compiled
once), converted and written with ``cv2.imwrite``. This machine kind's speed drifts by 10-20% over
minutes, so the ratio to that loop (``speedup_vs_one_at_a_time``) is the steadier figure; the ratio
to the 60 images/s measured while planning is printed too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Any, Optional

import numpy as np

from .common import ORIGINAL


def one_at_a_time_rate(generator, features, names, out_dir: str, count: int = 200) -> float:
    """Images per second of the original's loop: one generator call and one imwrite per image."""
    import cv2
    import tensorflow as tf

    from eeg2image_tf.models.inference import to_uint8

    forward = tf.function(lambda x: generator(x, training=False),
                          input_signature=[tf.TensorSpec((1, 256), tf.float32)])
    rng = np.random.default_rng(1)
    forward(np.zeros((1, 256), np.float32))  # trace outside the timing
    start = time.perf_counter()
    for k in range(count):
        c = k % len(features)
        z = rng.uniform(-1, 1, size=(1, 128)).astype(np.float32)
        image = to_uint8(forward(np.concatenate([z, features[c][:1]], axis=1)).numpy()[0])
        folder = os.path.join(out_dir, names[c])
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(os.path.join(folder, f"{names[c]}_{k}.jpg"), image[..., ::-1])
    return count / (time.perf_counter() - start)


def run(total: int = 2000, batch_size: int = 128, writer_threads: int = 1,
        repeats: int = 3, precision: str = "float32",
        compare_one_at_a_time: bool = True, scratch: Optional[str] = None) -> dict[str, Any]:
    """``scratch``: a folder to write into (left for the caller to delete), else a temporary one."""
    with contextlib.nullcontext(scratch) if scratch else tempfile.TemporaryDirectory() as folder:
        return _run(total, batch_size, writer_threads, repeats, precision, compare_one_at_a_time,
                    folder)


def _run(total: int, batch_size: int, writer_threads: int, repeats: int, precision: str,
         compare_one_at_a_time: bool, scratch: str) -> dict[str, Any]:
    from eeg2image_tf.generation import generate_images
    from eeg2image_tf.models import build_generator

    generator = build_generator()
    rng = np.random.default_rng(0)
    num_classes = 10
    features = [rng.normal(size=(20, 128)).astype(np.float32) for _ in range(num_classes)]
    names = [f"class{k}" for k in range(num_classes)]
    # Every repeat writes into a new folder, and the caller deletes them all only at the end: on
    # this machine's ext4 (no journal) the inode allocator skips recently freed inodes one by one,
    # so creating files for minutes after deleting thousands costs 0.6-0.9 ms each instead of
    # 0.03-0.09 ms (measured). Deleting between repeats would time that state of our own making.
    run_folder = tempfile.mkdtemp(prefix=f"generate_{precision}_", dir=scratch)
    # Traces the forward pass and warms the writers.
    generate_images(generator, features, names, os.path.join(run_folder, "warm"),
                    per_class=batch_size // num_classes + 1, batch_size=batch_size,
                    writer_threads=writer_threads, show_progress=False, precision=precision)
    rates, startups, baseline = [], [], []
    for repeat in range(repeats):
        manifest = generate_images(generator, features, names,
                                   os.path.join(run_folder, f"ours_{repeat}"),
                                   per_class=total // num_classes, batch_size=batch_size,
                                   writer_threads=writer_threads, show_progress=False,
                                   precision=precision)
        rates.append(manifest.images_per_second)
        startups.append(manifest.startup_seconds)
        if compare_one_at_a_time:   # alternated with ours, so both see the same machine
            baseline.append(one_at_a_time_rate(generator, features, names,
                                               os.path.join(run_folder, f"loop_{repeat}")))
    rate = float(np.median(rates))
    record = {"name": "generate", "batch_size": batch_size, "images": total,
              "items_per_s": round(rate, 1), "writer_threads": writer_threads,
              "precision": precision, "repeats": repeats,
              "startup_s": round(float(np.median(startups)), 2),
              "original_items_per_s": ORIGINAL["generate_images_per_s"],
              "speedup_vs_original": round(rate / ORIGINAL["generate_images_per_s"], 2)}
    if baseline:
        one_at_a_time = float(np.median(baseline))
        record["one_at_a_time_items_per_s"] = round(one_at_a_time, 1)
        record["speedup_vs_one_at_a_time"] = round(rate / one_at_a_time, 2)
    return record
