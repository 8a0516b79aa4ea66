"""``encoder_step``: one full encoder training step (LSTM forward, triplet loss, Adam) at batch 256."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import ORIGINAL, median_seconds


def run(repeats: int = 20, batch_size: int = 256, jit: bool = False,
        unroll: bool = True) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from eeg2image_tf.models import build_encoder
    from eeg2image_tf.training.encoder import make_encoder_steps

    rng = np.random.default_rng(0)
    # Preprocessed trials are in about [-1, 1] (spec section 2); 10 balanced classes.
    x = tf.constant(rng.uniform(0.7, 1.0, size=(batch_size, 32, 14)).astype(np.float32))
    y = tf.constant(rng.permutation(np.arange(batch_size) % 10).astype(np.int64))
    encoder = build_encoder(unroll=unroll)
    optimizer = keras.optimizers.Adam(3e-4)
    optimizer.build(encoder.trainable_variables)
    train_step, _, _ = make_encoder_steps(encoder, optimizer, margin=1.0, jit=jit)
    seconds, _ = median_seconds(lambda: float(train_step(x, y)), repeats, warmup=3)
    ms = seconds * 1000.0
    return {"name": "encoder_step", "batch_size": batch_size, "ms_per_step": round(ms, 2),
            "jit": jit, "unroll": unroll, "repeats": repeats,
            "original_ms_per_step": ORIGINAL["encoder_step_ms_b256"],
            "speedup_vs_original": round(ORIGINAL["encoder_step_ms_b256"] / ms, 2)}
