"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The GAN augments real and generated images alike before the discriminator sees them (docs/method.md
section 4), with the policy ``"color,translation"``. Every operation draws its parameters per image
and is differentiable with respect to the images, so the generator's gradient passes through it.

Operations (images NHWC, float, nominally in [-1, 1]; results are not clipped, as in the original):

=========== =================================================================================
brightness  ``x + b``, ``b ~ U(-0.5, 0.5)`` per image
saturation  ``(x - mean_c x) * s + mean_c x``, mean over the channels of each pixel, ``s ~ U(0, 2)``
contrast    ``(x - mean x) * k + mean x``, mean over the whole image, ``k ~ U(0.5, 1.5)``
translation integer shift in ``[-r, r]`` along y and along x independently, ``r = round(side / 8)``,
            uncovered pixels are 0
cutout      a ``round(side / 2)`` square (per axis) set to 0; its centre is uniform over the image,
            so near a border only the part inside the image is cut
=========== =================================================================================

:data:`AUGMENTATIONS` maps a policy name to its operations; ``color`` is brightness, saturation and
contrast, applied in that order. A policy string names policies separated by commas.

Randomness: with ``seed=None`` the operations use ``tf.random.uniform`` (global and op seeds, a new
draw at every call). With a seed (a Python int or a shape-``[2]`` integer tensor) they use stateless
random ops, and each operation of the pipeline gets its own sub-seed (the seed folded with the
operation's position), so one seed gives a reproducible augmentation whose operations are independent.
Seeded draws are also the same with and without XLA (``jit_compile=True``); only the low 31 bits
of each seed word are used.
Under a ``tf.distribute`` strategy a seeded call draws the same parameters on every replica. To give
each replica its own part of one batch's draws, pass ``rows=(first, total)``: the parameters are drawn
for all ``total`` images of the global batch and the replica keeps rows ``first .. first + B - 1``, so
N replicas holding the N slices of a batch augment it exactly as one process augmenting the whole
batch would (the GAN's multi-worker training relies on it).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import tensorflow as tf

__all__ = [
    "AUGMENTATIONS",
    "diff_augment",
    "random_brightness",
    "random_saturation",
    "random_contrast",
    "random_translation",
    "random_cutout",
]

SeedLike = Union[None, int, tf.Tensor]
# (first row, rows in the global batch), ints or int32 scalars; None: the batch is the whole batch.
DrawRows = Optional[tuple]


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def _canonical_seed(seed: tf.Tensor) -> tf.Tensor:
    # XLA's stateless kernels read negative seed words differently from the regular kernels; keeping
    # both words in [0, 2**31) makes seeded draws identical with and without jit_compile.
    return tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), tf.constant(0x7FFFFFFF, tf.int64))


def _as_seed(seed: SeedLike) -> Optional[tf.Tensor]:
    """``None`` stays ``None``; an int ``s`` becomes ``[s, 0]``; a shape-``[2]`` int tensor is used as is.

    Returns a shape-``[2]`` int64 tensor with both words in ``[0, 2**31)``.
    """
    if seed is None:
        return None
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return _canonical_seed(tf.constant([int(seed) % 2**63, 0], dtype=tf.int64))
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"diff_augment: seed must be an int or a shape-[2] int tensor, got {seed.dtype.name}")
    if not seed.shape.is_compatible_with([2]):
        raise ValueError(f"diff_augment: seed tensor must have shape [2], got {seed.shape}")
    return _canonical_seed(seed)


def _sub_seed(seed: Optional[tf.Tensor], index: int) -> Optional[tf.Tensor]:
    if seed is None:
        return None
    return _canonical_seed(tf.random.experimental.stateless_fold_in(seed, index))


_FLOAT_RESOLUTION_BITS = 24  # a float32 mantissa: every k / 2**24 in [0, 1) is exact


def _uniform(shape, seed: Optional[tf.Tensor], minval, maxval, dtype=tf.float32) -> tf.Tensor:
    """``U[minval, maxval)`` draws (integers: ``minval..maxval-1``), stateless when a seed is given."""
    if seed is None:
        return tf.random.uniform(shape, minval=minval, maxval=maxval, dtype=dtype)
    if dtype.is_integer:
        return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval, dtype=dtype)
    # Stateless float draws differ between XLA and the regular kernels, integer draws do not: building
    # the floats from integers keeps a seeded augmentation the same with and without jit_compile.
    steps = 2 ** _FLOAT_RESOLUTION_BITS
    unit = tf.cast(tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=steps, dtype=tf.int32),
                   tf.float32) / float(steps)
    return tf.cast(minval + (maxval - minval) * unit, dtype)


def _check_images(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        raise TypeError(f"diff_augment: images must be float, got {images.dtype.name}")
    if images.shape.rank is not None and images.shape.rank != 4:
        raise ValueError(f"diff_augment: images must be NHWC (rank 4), got shape {images.shape}")
    return images


def _per_image(batch, rows: DrawRows, seed: Optional[tf.Tensor], minval, maxval, dtype=tf.float32,
               trailing: tuple = ()) -> tf.Tensor:
    """``(batch, *trailing)`` draws of ``_uniform``; with ``rows=(first, total)`` rows
    ``first .. first + batch - 1`` of the ``(total, *trailing)`` draws of the whole batch."""
    if rows is None:
        return _uniform([batch, *trailing], seed, minval, maxval, dtype)
    first, total = (tf.cast(value, tf.int32) for value in rows)
    return _uniform([total, *trailing], seed, minval, maxval, dtype)[first:first + batch]


def _per_image_factor(images: tf.Tensor, seed: Optional[tf.Tensor], low: float, high: float,
                      rows: DrawRows = None) -> tf.Tensor:
    """One ``U(low, high)`` value per image, shaped ``(B, 1, 1, 1)`` and in the images' dtype."""
    factor = _per_image(tf.shape(images)[0], rows, seed, low, high, trailing=(1, 1, 1))
    return tf.cast(factor, images.dtype)


def _fraction_of_size(size: tf.Tensor, ratio: float) -> tf.Tensor:
    """``int(size * ratio + 0.5)``: the original's rounding of a fraction of an image side."""
    return tf.cast(tf.cast(size, tf.float32) * ratio + 0.5, tf.int32)


# --------------------------------------------------------------------------------------------------
# Operations: f(images (B, H, W, C) float, seed, rows) -> same shape and dtype
# --------------------------------------------------------------------------------------------------

def random_brightness(images, seed: SeedLike = None, rows: DrawRows = None) -> tf.Tensor:
    """Add one offset ``U(-0.5, 0.5)`` per image."""
    images = _check_images(images)
    return images + _per_image_factor(images, _as_seed(seed), -0.5, 0.5, rows)


def random_saturation(images, seed: SeedLike = None, rows: DrawRows = None) -> tf.Tensor:
    """Scale each pixel's deviation from its channel mean by ``U(0, 2)`` per image (0: gray)."""
    images = _check_images(images)
    pixel_mean = tf.reduce_mean(images, axis=3, keepdims=True)
    return (images - pixel_mean) * _per_image_factor(images, _as_seed(seed), 0.0, 2.0, rows) + pixel_mean


def random_contrast(images, seed: SeedLike = None, rows: DrawRows = None) -> tf.Tensor:
    """Scale the deviation from the image mean (over H, W and C) by ``U(0.5, 1.5)`` per image."""
    images = _check_images(images)
    image_mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - image_mean) * _per_image_factor(images, _as_seed(seed), 0.5, 1.5, rows) + image_mean


def _shift_along(images: tf.Tensor, shifts: tf.Tensor, axis: int) -> tf.Tensor:
    """Move image ``i`` by ``shifts[i]`` pixels along ``axis`` (1: y, 2: x), filling with zeros.

    Output pixel ``j`` reads input pixel ``j - shift``; a gather with per-image indices keeps the
    operation differentiable with respect to ``images`` (its gradient is a scatter of the upstream).
    """
    size = tf.shape(images)[axis]
    source = tf.range(size)[None, :] - shifts[:, None]                    # (B, size)
    inside = tf.logical_and(source >= 0, source < size)
    moved = tf.gather(images, tf.clip_by_value(source, 0, size - 1), axis=axis, batch_dims=1)
    keep = tf.cast(inside, images.dtype)
    keep = keep[:, :, None, None] if axis == 1 else keep[:, None, :, None]
    return moved * keep


def random_translation(images, seed: SeedLike = None, ratio: float = 0.125,
                       rows: DrawRows = None) -> tf.Tensor:
    """Shift each image by integers ``dy, dx`` drawn uniformly in ``[-r, r]``, ``r = round(side * ratio)``.

    Pixels moved out are dropped, pixels uncovered are 0.
    """
    images = _check_images(images)
    seed = _as_seed(seed)
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    max_dy = _fraction_of_size(height, ratio)
    max_dx = _fraction_of_size(width, ratio)
    dy = _per_image(batch, rows, _sub_seed(seed, 0), -max_dy, max_dy + 1, dtype=tf.int32)
    dx = _per_image(batch, rows, _sub_seed(seed, 1), -max_dx, max_dx + 1, dtype=tf.int32)
    return _shift_along(_shift_along(images, dy, axis=1), dx, axis=2)


def random_cutout(images, seed: SeedLike = None, ratio: float = 0.5,
                  rows: DrawRows = None) -> tf.Tensor:
    """Set a ``round(H * ratio) x round(W * ratio)`` rectangle of each image to 0 (a square if H == W).

    The centre is drawn as in the original: uniform over ``0..side`` for an even cut side (``0..side-1``
    for odd), the rectangle starting ``cut // 2`` before it, and clipped at the borders.
    """
    images = _check_images(images)
    seed = _as_seed(seed)
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]

    def inside_cut(size: tf.Tensor, sub_seed: Optional[tf.Tensor]) -> tf.Tensor:
        cut = _fraction_of_size(size, ratio)
        centre = _per_image(batch, rows, sub_seed, 0, size + 1 - cut % 2, dtype=tf.int32)
        start = (centre - cut // 2)[:, None]
        positions = tf.range(size)[None, :]
        return tf.logical_and(positions >= start, positions < start + cut)   # (B, size)

    cut_rows = inside_cut(height, _sub_seed(seed, 0))
    cut_cols = inside_cut(width, _sub_seed(seed, 1))
    cut_out = tf.logical_and(cut_rows[:, :, None], cut_cols[:, None, :])[:, :, :, None]
    return images * tf.cast(tf.logical_not(cut_out), images.dtype)


AugmentOp = Callable[..., tf.Tensor]

#: Policy name -> operations applied in order. Each takes ``(images, seed=None, rows=None)``.
AUGMENTATIONS: dict[str, list[AugmentOp]] = {
    "color": [random_brightness, random_saturation, random_contrast],
    "translation": [random_translation],
    "cutout": [random_cutout],
}


def diff_augment(images, policy: str = "color,translation", seed: SeedLike = None,
                 rows: DrawRows = None) -> tf.Tensor:
    """Apply the DiffAugment policies named in ``policy`` (comma separated, in order) to a batch.

    Args:
        images: ``(B, H, W, C)`` float images (any size and batch; dynamic shapes work in tf.function).
        policy: e.g. ``"color,translation"`` (the original's), ``"color,translation,cutout"``;
            ``""`` returns ``images`` unchanged.
        seed: ``None`` for stateful random ops; an int or a shape-``[2]`` int tensor for reproducible
            stateless draws (see the module docstring).
        rows: ``(first, total)``: ``images`` are rows ``first ..`` of a batch of ``total`` images
            and get those rows' draws (seeded calls only; see the module docstring).

    Returns:
        Augmented images, same shape and dtype.

    Raises:
        ValueError: an unknown policy name (the message lists the valid ones) or a malformed seed.
    """
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"diff_augment: unknown policy {', '.join(map(repr, unknown))}; "
                         f"valid policies: {', '.join(sorted(AUGMENTATIONS))}")
    if not names:
        return images
    images = _check_images(images)
    seed = _as_seed(seed)
    op_index = 0
    for name in names:
        for operation in AUGMENTATIONS[name]:
            images = operation(images, seed=_sub_seed(seed, op_index), rows=rows)
            op_index += 1
    return images
