"""Losses: the encoder's semi-hard triplet loss and the GAN losses (docs/method.md sections 3-4).

Everything here is a pure function of tensors, usable eagerly, inside ``tf.function`` and under
``jit_compile=True``. All losses are computed in float32 whatever the input dtype, so a mixed-precision
model still gets a float32 loss.

Triplet loss
------------
:func:`triplet_semihard_loss` reproduces tensorflow-addons 0.23 ``TripletSemiHardLoss`` value for value
(the encoder of the original was trained with it). It was written from the definition, not from TFA's
source. Two details matter for exact parity:

* Distances come from the Gram expansion ``|a|^2 + |b|^2 - 2 a.b`` (as TFA computes them), clipped at
  zero; a clipped or exactly zero squared distance gives distance 0, and the diagonal is 0.
* TFA takes masked minima/maxima by shifting the row: ``max_n((d_an - min_j d_aj) * mask_an) +
  min_j d_aj`` (and the mirror image for the minimum). When the masked set is empty this is not an error
  but the row's minimum (for the maximum) or maximum (for the minimum). The only place where TFA uses
  an empty-set value is the fallback "farthest negative" of an anchor that has no negative at all,
  i.e. every sample of a one-class batch: the value is ``min_j d(a, j)``, which is ``d(a, a) = 0``.
  So in a one-class batch every pair costs ``margin + d(a, p)`` and the loss is
  ``margin + mean over anchor-positive pairs of d(a, p)`` (fixture case 4: 1 + 1.3777626 = 2.3777626).
  The farthest negative keeps TFA's shifted arithmetic; the closest semi-hard negative is found by
  sorting and binary search (the same sample TFA selects) and its distance gathered directly, which
  differs from TFA's ``(d - m) + m`` by float32 rounding only (about 1e-7).

The one deliberate difference: a batch with no anchor-positive pair (every label distinct) is 0/0 in
TFA, i.e. NaN; here it is 0, so one unlucky batch cannot poison the weights.

GAN losses
----------
:func:`discriminator_hinge`, :func:`generator_hinge` and :func:`mode_seeking` are the terms of
docs/method.md section 4. The generator loss of one step is
``generator_hinge(D(f1)) + generator_hinge(D(f2)) + weight * mode_seeking(f1, f2, in1, in2)``.

Under a ``tf.distribute`` strategy each replica sees ``global_batch / replicas`` samples and the
gradients of the replicas are summed. Pass ``global_batch_size`` to the hinge losses so that each
replica returns ``sum / global_batch_size``: the replica losses then add up to the global mean.
The mode-seeking term is a ratio of means, which does not decompose over replicas; it is computed
per replica on the local batch and averaged over replicas (``num_replicas``, see :func:`mode_seeking`).
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import tensorflow as tf

__all__ = [
    "pairwise_distances",
    "triplet_semihard_loss",
    "TripletSemiHardLoss",
    "discriminator_hinge",
    "generator_hinge",
    "mode_seeking",
]


# --------------------------------------------------------------------------------------------------
# Semi-hard triplet loss
# --------------------------------------------------------------------------------------------------

def pairwise_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """Plain (not squared) Euclidean distances between all rows, with a finite gradient everywhere.

    Args:
        embeddings: ``(B, D)`` float; cast to float32.

    Returns:
        ``(B, B)`` float32, symmetric, zero diagonal, all entries ``>= 0``.
    """
    embeddings = tf.cast(embeddings, tf.float32)
    squared_norms = tf.reduce_sum(tf.square(embeddings), axis=1)
    squared = (squared_norms[:, None] + squared_norms[None, :]
               - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True))
    # Cancellation in the Gram expansion can make a squared distance slightly negative.
    squared = tf.maximum(squared, 0.0)
    positive = squared > 0.0
    # sqrt has an infinite derivative at 0. Feeding it 1 where the distance is 0 and selecting 0
    # afterwards keeps both where-branches finite, so the gradient stays finite for duplicates too.
    distances = tf.where(positive, tf.sqrt(tf.where(positive, squared, tf.ones_like(squared))),
                         tf.zeros_like(squared))
    off_diagonal = 1.0 - tf.eye(tf.shape(embeddings)[0], dtype=tf.float32)
    return distances * off_diagonal


def _closest_farther_negatives(distances: tf.Tensor, is_negative: tf.Tensor
                               ) -> tuple[tf.Tensor, tf.Tensor]:
    """For every pair ``(a, p)``: the smallest ``d(a, n)`` over negatives ``n`` with ``d(a, n) > d(a, p)``.

    Args:
        distances: ``(B, B)`` float32 pairwise distances.
        is_negative: ``(B, B)`` bool, ``True`` where the labels differ.

    Returns:
        ``(closest, exists)``, both ``(B, B)``: ``closest[a, p]`` is that distance (gathered from
        ``distances``, so the gradient reaches the chosen negative only) and ``exists[a, p]`` says
        whether such a negative exists (where it does not, ``closest`` is meaningless).
    """
    batch_size = tf.shape(distances)[0]
    # Same-label entries sort after every negative, so the first ``count`` columns of each sorted
    # row are exactly the anchor's negatives in increasing distance.
    negative_rows = tf.where(is_negative, distances, tf.fill(tf.shape(distances), float("inf")))
    order = tf.argsort(tf.stop_gradient(negative_rows), axis=-1, stable=True)
    sorted_rows = tf.gather(tf.stop_gradient(negative_rows), order, batch_dims=1)
    negative_count = tf.reduce_sum(tf.cast(is_negative, tf.int32), axis=-1, keepdims=True)
    # side="right" counts the negatives with d(a, n) <= d(a, p): the next one is strictly farther.
    farther_start = tf.searchsorted(sorted_rows, tf.stop_gradient(distances), side="right",
                                    out_type=tf.int32)
    exists = farther_start < negative_count
    chosen = tf.gather(order, tf.minimum(farther_start, batch_size - 1), batch_dims=1)
    return tf.gather(distances, chosen, batch_dims=1), exists


def _shifted_masked_max(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Maximum of ``values`` over the last axis where ``mask``; an empty mask yields the row minimum."""
    row_min = tf.reduce_min(values, axis=-1, keepdims=True)
    shifted = (values - row_min) * tf.cast(mask, values.dtype)
    return tf.squeeze(tf.reduce_max(shifted, axis=-1, keepdims=True) + row_min, axis=-1)


def triplet_semihard_loss(labels: tf.Tensor, embeddings: tf.Tensor,
                          margin: float = 1.0) -> tf.Tensor:
    """Semi-hard triplet loss with the semantics of tensorflow-addons 0.23 ``TripletSemiHardLoss``.

    For every anchor-positive pair ``(a, p)`` (same label, ``a != p``) the negative is the closest
    sample of another label that is strictly farther from ``a`` than ``p``; if there is none, the
    farthest negative of ``a`` (``0`` if ``a`` has no negative at all, see the module docstring).
    The loss is the mean over all anchor-positive pairs of ``max(margin + d(a, p) - d(a, n), 0)``,
    with plain Euclidean distances. A batch without any anchor-positive pair gives 0 (TFA: NaN).

    Cost is ``O(B^2 log B)`` time and ``O(B^2)`` memory: each anchor's negative distances are sorted
    once and every positive distance is located in them by binary search, instead of TFA's
    ``B x B x B`` mask (64 MB and most of an encoder step at ``B = 256``). The selected negative is
    the same sample, so the value is TFA's up to float32 rounding of its shifted minimum (~1e-7).

    Args:
        labels: ``(B,)`` or ``(B, 1)`` class ids, any integer dtype (floats holding integers work too,
            which is what a Keras ``Loss`` passes).
        embeddings: ``(B, D)`` float; computed in float32 (the encoder feeds L2-normalised vectors,
            but no normalisation is assumed).
        margin: the margin, in distance units.

    Returns:
        Scalar float32 loss.
    """
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    distances = pairwise_distances(embeddings)
    batch_size = tf.shape(distances)[0]

    same_label = tf.equal(labels[:, None], labels[None, :])
    is_negative = tf.logical_not(same_label)
    is_positive = tf.logical_and(same_label, tf.logical_not(tf.eye(batch_size, dtype=tf.bool)))

    closest_semihard, has_semihard = _closest_farther_negatives(distances, is_negative)
    farthest_negative = _shifted_masked_max(distances, is_negative)
    negative_distances = tf.where(has_semihard, closest_semihard, farthest_negative[:, None])

    margin = tf.cast(margin, tf.float32)
    positive_weight = tf.cast(is_positive, tf.float32)
    pair_losses = tf.maximum((margin + distances - negative_distances) * positive_weight, 0.0)
    # divide_no_nan turns TFA's 0/0 (no anchor-positive pair) into 0.
    return tf.math.divide_no_nan(tf.reduce_sum(pair_losses), tf.reduce_sum(positive_weight))


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class TripletSemiHardLoss(keras.losses.Loss):
    """Keras ``Loss`` around :func:`triplet_semihard_loss`: ``loss(labels, embeddings)`` -> scalar.

    ``y_true`` are the class ids ``(B,)`` or ``(B, 1)``, ``y_pred`` the embeddings ``(B, D)``.
    The loss is already a batch mean, so the default reduction leaves it unchanged.
    """

    def __init__(self, margin: float = 1.0, name: str = "triplet_semihard_loss",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return triplet_semihard_loss(y_true, y_pred, margin=self.margin)

    def get_config(self) -> dict:
        config = super().get_config()
        config["margin"] = self.margin
        return config


# --------------------------------------------------------------------------------------------------
# GAN losses
# --------------------------------------------------------------------------------------------------

def _batch_mean(values: tf.Tensor, global_batch_size: Optional[int]) -> tf.Tensor:
    """Mean of ``values`` (``(B, ...)``), or per-sample means summed and divided by the global batch."""
    values = tf.cast(values, tf.float32)
    if global_batch_size is None:
        return tf.reduce_mean(values)
    per_sample = tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
    return tf.reduce_sum(per_sample) / tf.cast(global_batch_size, tf.float32)


def discriminator_hinge(d_real: tf.Tensor, d_fake: tf.Tensor,
                        global_batch_size: Optional[int] = None) -> tf.Tensor:
    """Hinge loss of the discriminator: ``(mean(relu(1 - d_real)) + mean(relu(1 + d_fake))) / 2``.

    Args:
        d_real: ``(B, 1)`` raw discriminator outputs (no sigmoid) on augmented real images.
        d_fake: ``(B, 1)`` raw outputs on augmented generated images.
        global_batch_size: ``None`` for plain means over the given batch. Under a distribution
            strategy pass the global batch size: each mean becomes ``sum / global_batch_size``, so the
            replicas' losses add up to the loss of the global batch.

    Returns:
        Scalar float32.
    """
    real_term = _batch_mean(tf.nn.relu(1.0 - tf.cast(d_real, tf.float32)), global_batch_size)
    fake_term = _batch_mean(tf.nn.relu(1.0 + tf.cast(d_fake, tf.float32)), global_batch_size)
    return (real_term + fake_term) / 2.0


def generator_hinge(d_fake: tf.Tensor, global_batch_size: Optional[int] = None) -> tf.Tensor:
    """Adversarial loss of the generator for one fake batch: ``-mean(d_fake)``.

    Args:
        d_fake: ``(B, 1)`` raw discriminator outputs on (augmented) generated images.
        global_batch_size: as in :func:`discriminator_hinge`.

    Returns:
        Scalar float32.
    """
    return -_batch_mean(d_fake, global_batch_size)


def mode_seeking(f1: tf.Tensor, f2: tf.Tensor, in1: tf.Tensor, in2: tf.Tensor,
                 epsilon: float = 1e-5, num_replicas: int = 1,
                 sum_over_replicas: Optional[Callable] = None) -> tf.Tensor:
    """Mode-seeking term (Mao et al. 2019) as the original uses it: ``1 / (ms + epsilon)``.

    ``ms = mean|f2 - f1| / mean|in2 - in1|``: how far two images move per unit of input change. Minimising
    ``1 / ms`` pushes the generator to make different latents give different images.

    Args:
        f1, f2: ``(B, H, W, C)`` generated images of the two latent draws, before augmentation.
        in1, in2: ``(B, 256)`` the full generator inputs ``[z1, c]`` and ``[z2, c]``. The identical
            condition halves count as zeros in the denominator mean (a quirk kept from the original).
        epsilon: added to ``ms`` before inverting.
        num_replicas: the term is divided by this. Under a strategy every replica computes the same
            global term, and dividing it by ``strategy.num_replicas_in_sync`` makes the summed
            replica gradients its gradient.
        sum_over_replicas: under a strategy, a function summing a list of tensors over the replicas
            (differentiably, e.g. ``ReplicaContext.all_reduce``): both means are then the global
            batch's, as one process computing the whole batch would get them. None: the local batch.

    Returns:
        Scalar float32 (``1e5`` when the two images are identical). Identical inputs make the
        denominator 0, and the term Inf or NaN, as in the original; distinct latents avoid that.
    """
    image_change = tf.abs(tf.cast(f2, tf.float32) - tf.cast(f1, tf.float32))
    input_change = tf.abs(tf.cast(in2, tf.float32) - tf.cast(in1, tf.float32))
    if sum_over_replicas is None:
        ratio = tf.reduce_mean(image_change) / tf.reduce_mean(input_change)
    else:
        image_sum, image_count, input_sum, input_count = sum_over_replicas(
            [tf.reduce_sum(image_change), tf.cast(tf.size(image_change), tf.float32),
             tf.reduce_sum(input_change), tf.cast(tf.size(input_change), tf.float32)])
        ratio = (image_sum / image_count) / (input_sum / input_count)
    return 1.0 / (ratio + epsilon) / tf.cast(num_replicas, tf.float32)
