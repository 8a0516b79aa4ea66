"""``gan_step``: one full GAN iteration (D update then G update, docs/method.md section 4).

References, each timed alternately with ours in the same run (``common.alternated_medians``):

- ``compare_plain``: the plain Keras 3 model (every exact re-expression with a switch off: tiled
  condition, Keras BatchNorm, TensorFlow's convolutions), ``speedup_vs_plain_keras``;
- ``compare_original``: the authors' ``DCGAN`` and ``dist_train_step`` (TF 2.15 +
  tensorflow-addons) in their interpreter, when ``../shared/reference/setup.sh`` has built it
  (``speedup_vs_original``); otherwise the record says it was not measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .reference import time_alongside


def _iteration(batch_size: int, **options):
    """A compiled iteration of a fresh GAN with ``options`` (GanTrainConfig fields)."""
    import tensorflow as tf

    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training.gan_state import build_gan_state
    from eeg2image_tf.training.gan_steps import GanSteps

    config = GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=batch_size,
                            **options)
    strategy = tf.distribute.get_strategy()
    state = build_gan_state(config, strategy)
    steps = GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                     latent_dim=config.latent_dim, policy=config.policy,
                     mode_seeking_weight=config.mode_seeking_weight, seed=config.seed)
    train_step = steps.make_train_step(strategy, jit=config.jit)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.normal(size=(batch_size, config.condition_dim)).astype(np.float32)),
             tf.constant(np.arange(batch_size) % 10, dtype=tf.int64),
             tf.constant(rng.uniform(-1, 1, size=(batch_size, 128, 128, 3)).astype(np.float32)))
    counter = {"step": 0}

    def one_iteration():
        counter["step"] += 1
        losses = train_step(tf.constant(counter["step"], tf.int64), batch)
        float(losses["gan/g_total"])  # wait for the step to finish

    return one_iteration


def run(batch_size: int = 16, repeats: int = 5, jit: bool = False,
        fast_discriminator: bool = True, fused_batch_norm: bool = True,
        matmul_convs: bool = True, precision: str = "float32",
        compare_plain: bool = False, compare_original: bool = False) -> dict[str, Any]:
    options = dict(jit=jit, fast_discriminator=fast_discriminator,
                   fused_batch_norm=fused_batch_norm, matmul_convs=matmul_convs,
                   precision=precision)
    plain = (_iteration(batch_size, fast_discriminator=False, fused_batch_norm=False,
                        matmul_convs=False) if compare_plain else None)
    ms, compared = time_alongside(
        _iteration(batch_size, **options), plain, "gan_step" if compare_original else None,
        {"batch_size": batch_size}, repeats=repeats, warmup=2)
    return {"name": "gan_step", "batch_size": batch_size, "ms_per_step": round(ms, 1),
            **options, "repeats": repeats, **compared}
