"""``gan_step``: one full GAN iteration (D update then G update, spec section 4)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import ORIGINAL, median_seconds


def run(batch_size: int = 16, repeats: int = 5, jit: bool = False,
        fast_discriminator: bool = True, fused_batch_norm: bool = True,
        precision: str = "float32") -> dict[str, Any]:
    import tensorflow as tf

    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training.gan import GanSteps, build_gan_state

    config = GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=batch_size,
                            jit=jit, fast_discriminator=fast_discriminator,
                            fused_batch_norm=fused_batch_norm, precision=precision)
    strategy = tf.distribute.get_strategy()
    state = build_gan_state(config, strategy)
    steps = GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                     latent_dim=config.latent_dim, policy=config.policy,
                     mode_seeking_weight=config.mode_seeking_weight, seed=config.seed)
    train_step = steps.make_train_step(strategy, jit=jit)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.normal(size=(batch_size, config.condition_dim)).astype(np.float32)),
             tf.constant(np.arange(batch_size) % 10, dtype=tf.int64),
             tf.constant(rng.uniform(-1, 1, size=(batch_size, 128, 128, 3)).astype(np.float32)))
    counter = {"step": 0}

    def one_iteration():
        counter["step"] += 1
        losses = train_step(tf.constant(counter["step"], tf.int64), batch)
        float(losses["gan/g_total"])  # wait for the step to finish

    seconds, _ = median_seconds(one_iteration, repeats, warmup=2)
    ms = seconds * 1000.0
    record = {"name": "gan_step", "batch_size": batch_size, "ms_per_step": round(ms, 1),
              "jit": jit, "fast_discriminator": fast_discriminator,
              "fused_batch_norm": fused_batch_norm, "precision": precision, "repeats": repeats}
    if batch_size == 16:
        record["original_ms_per_step"] = ORIGINAL["gan_step_ms_b16"]
        record["speedup_vs_original"] = round(ORIGINAL["gan_step_ms_b16"] / ms, 2)
    return record
