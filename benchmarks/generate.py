"""``generate``: 2000 images from the generator to JPEG files in a temporary folder.

Beside our rate, in the same run and alternately with it, repeat by repeat:

- ``compare_one_at_a_time``: a loop in the style of the authors' ``test_generation.py`` with our
  model: one image at a time through the generator (``training=False``, compiled once), converted
  and written with ``cv2.imwrite`` (``speedup_vs_one_at_a_time``);
- ``compare_original``: the same loop with the authors' own generator and stack (TF 2.15 +
  tensorflow-addons) in their interpreter, when ``../shared/reference/setup.sh`` has built it
  (``speedup_vs_original``); otherwise the record says it was not measured.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Any, Optional

import numpy as np

from .reference import ReferenceProcess, compared_with_original

LOOP_IMAGES = 200     # images per timed call of a one-at-a-time loop


def one_at_a_time_rate(generator, features, names, out_dir: str, count: int = LOOP_IMAGES) -> float:
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
        repeats: int = 3, precision: str = "float32", compare_one_at_a_time: bool = True,
        compare_original: bool = False, scratch: Optional[str] = None) -> dict[str, Any]:
    """``scratch``: a folder to write into (left for the caller to delete), else a temporary one."""
    original = (ReferenceProcess.for_benchmark("generate", count=LOOP_IMAGES)
                if compare_original else None)
    try:
        with contextlib.nullcontext(scratch) if scratch else tempfile.TemporaryDirectory() as folder:
            record, original_rate = _run(total, batch_size, writer_threads, repeats, precision,
                                         compare_one_at_a_time, original, folder)
    finally:
        if original is not None:
            original.close()
    if compare_original:
        record.update(compared_with_original(record["items_per_s"], original_rate, "items/s"))
    return record


def _run(total: int, batch_size: int, writer_threads: int, repeats: int, precision: str,
         compare_one_at_a_time: bool, original: Optional[ReferenceProcess],
         scratch: str) -> tuple[dict[str, Any], Optional[float]]:
    """The record of our rate and the one-at-a-time loop's; the authors' loop's rate or None."""
    from eeg2image_tf.generation import generate_images
    from eeg2image_tf.models import build_generator

    generator = build_generator()
    rng = np.random.default_rng(0)
    num_classes = 10
    features = [rng.normal(size=(20, 128)).astype(np.float32) for _ in range(num_classes)]
    names = [f"class{k}" for k in range(num_classes)]
    # Every repeat writes into a new folder, and the caller deletes them all only at the end: on
    # ext4 without a journal the inode allocator skips recently freed inodes one by one, so file
    # creation stays many times slower for minutes after thousands of deletions
    # (docs/performance.md). Deleting between repeats would time that state instead of ours.
    run_folder = tempfile.mkdtemp(prefix=f"generate_{precision}_", dir=scratch)
    # Traces the forward pass and warms the writers.
    generate_images(generator, features, names, os.path.join(run_folder, "warm"),
                    per_class=batch_size // num_classes + 1, batch_size=batch_size,
                    writer_threads=writer_threads, show_progress=False, precision=precision)
    rates, startups, baseline, original_rates = [], [], [], []
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
        if original is not None:
            original_rates.append(LOOP_IMAGES / original.run())
    rate = float(np.median(rates))
    record = {"name": "generate", "batch_size": batch_size, "images": total,
              "items_per_s": round(rate, 1), "writer_threads": writer_threads,
              "precision": precision, "repeats": repeats,
              "startup_s": round(float(np.median(startups)), 2)}
    if baseline:
        one_at_a_time = float(np.median(baseline))
        record["one_at_a_time_items_per_s"] = round(one_at_a_time, 1)
        record["speedup_vs_one_at_a_time"] = round(rate / one_at_a_time, 2)
    return record, float(np.median(original_rates)) if original_rates else None
