"""``encoder_step``: one full encoder training step (LSTM forward, triplet loss, Adam) at batch 256.

References, each timed alternately with ours in the same run (``common.alternated_medians``):

- ``compare_plain``: a plain Keras 3 step, two ``keras.layers.LSTM`` as a while loop and the
  semi-hard triplet loss computed the way tensorflow-addons computes it, over a ``(B, B, B)``
  anchor-positive-negative mask (``speedup_vs_plain_keras``);
- ``compare_original``: the authors' own step (their ``TripleNet`` and ``train_step``, TF 2.15 +
  tensorflow-addons) in their interpreter, when ``../shared/reference/setup.sh`` has built it
  (``speedup_vs_original``); otherwise the record says it was not measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .reference import time_alongside


def cubic_triplet_semihard_loss(labels, embeddings, margin: float = 1.0):
    """The semi-hard triplet loss by brute force over all (anchor, positive, negative) triples.

    Same definition as :func:`eeg2image_tf.training.losses.triplet_semihard_loss` (the reference
    implementation's): for each anchor-positive pair the closest negative farther than the
    positive, else the anchor's farthest negative; mean of ``relu(margin + d_ap - d_an)`` over the
    pairs. ``O(B^3)`` memory and time, as tensorflow-addons does it; a benchmark reference only.
    """
    import tensorflow as tf

    squared = tf.reduce_sum(tf.square(embeddings), axis=1)
    distances = squared[:, None] - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True) \
        + squared[None, :]
    distances = tf.sqrt(tf.maximum(distances, 0.0))
    batch = tf.shape(labels)[0]
    same = tf.equal(labels[:, None], labels[None, :])
    negative = tf.logical_not(same)
    positive = tf.logical_and(same, tf.logical_not(tf.eye(batch, dtype=tf.bool)))
    # farther[a, p, n]: n is a negative of a farther from a than p is.
    farther = tf.logical_and(negative[:, None, :], distances[:, None, :] > distances[:, :, None])
    big = tf.reduce_max(distances) + 1.0
    closest_farther = tf.reduce_min(tf.where(farther, distances[:, None, :], big), axis=2)
    farthest = tf.reduce_max(tf.where(negative, distances, 0.0), axis=1)
    chosen = tf.where(tf.reduce_any(farther, axis=2), closest_farther, farthest[:, None])
    losses = tf.nn.relu(margin + distances - chosen)
    mask = tf.cast(positive, losses.dtype)
    return tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _batch(batch_size: int, num_samples: int = 32, num_channels: int = 14, num_classes: int = 10):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    # Preprocessed trials peak at 1 (docs/method.md section 2); balanced classes.
    x = tf.constant(rng.uniform(0.7, 1.0, size=(batch_size, num_samples, num_channels))
                    .astype(np.float32))
    y = tf.constant(rng.permutation(np.arange(batch_size) % num_classes).astype(np.int64))
    return x, y


def _plain_step(batch_size: int):
    """A plain Keras 3 port: keras LSTMs (while loop), the cubic triplet loss, Adam."""
    import keras
    import tensorflow as tf

    from eeg2image_tf.models import build_encoder

    x, y = _batch(batch_size)
    encoder = build_encoder(unroll=False)
    optimizer = keras.optimizers.Adam(3e-4)
    optimizer.build(encoder.trainable_variables)
    variables = encoder.trainable_variables

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            embedding, _ = encoder(x, training=True)
            loss = cubic_triplet_semihard_loss(y, embedding, margin=1.0)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return lambda: float(train_step(x, y))


def run(repeats: int = 20, batch_size: int = 256, jit: bool = False, unroll: bool = True,
        compare_plain: bool = False, compare_original: bool = False, num_samples: int = 32,
        num_channels: int = 14, num_classes: int = 10) -> dict[str, Any]:
    """One training step's median time; ``num_samples`` x ``num_channels`` trials of ``num_classes``
    classes (ThoughtViz's 32 x 14 x 10 by default; EEGCVPR40's windows are 440 x 128 x 40). The
    plain Keras port and the authors' step are timed beside it at ThoughtViz's shape only."""
    import keras

    from eeg2image_tf.models import build_encoder
    from eeg2image_tf.training.encoder import make_encoder_steps

    x, y = _batch(batch_size, num_samples, num_channels, num_classes)
    encoder = build_encoder(num_channels=num_channels, num_samples=num_samples, unroll=unroll)
    optimizer = keras.optimizers.Adam(3e-4)
    optimizer.build(encoder.trainable_variables)
    train_step, _, _ = make_encoder_steps(encoder, optimizer, margin=1.0, jit=jit)

    def ours():
        return float(train_step(x, y))

    thoughtviz = (num_samples, num_channels, num_classes) == (32, 14, 10)
    ms, compared = time_alongside(
        ours, _plain_step(batch_size) if compare_plain and thoughtviz else None,
        "encoder_step" if compare_original and thoughtviz else None, {"batch_size": batch_size},
        repeats=repeats, warmup=3, digits=2)
    return {"name": "encoder_step", "batch_size": batch_size, "ms_per_step": round(ms, 2),
            "jit": jit, "unroll": unroll, "repeats": repeats, "trial": [num_samples, num_channels],
            "classes": num_classes, **compared}
