"""Batched, reproducible per-class generation from test-set EEG features (docs/method.md section 5).

The original generates its 50,000 evaluation images one at a time. Here the generator runs in fixed
size batches inside one ``tf.function`` that also converts the images to uint8; for our Generator
that is its fast forward (:mod:`eeg2image_tf.models.inference`), an exact re-expression that
TensorFlow's CPU kernels run several times faster.

Reproducibility: image ``k`` of class ``c`` is conditioned on the test trial ``k mod m_c`` of that
class (``m_c`` trials, in trial order) and gets the ``k``-th latent vector of a random stream seeded
by ``(seed, c)``. The images therefore depend on the seed only: not on the batch size, not on the
number of writer threads, and ``per_class=n`` yields exactly the first ``n`` images of any larger run.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from ..errors import DataError, Eeg2ImageError
from ..io_utils import progress_bar
from ..models import precision as precisions
from ..models.inference import images_to_uint8, verified_fast_call
from .jpeg import jpeg_round_trip

DEFAULT_LATENT_DIM = 128


@dataclasses.dataclass(frozen=True)
class GeneratedSet:
    """Generated images held in memory.

    ``images`` uint8 ``(N, H, W, 3)`` RGB, 0-255; ``class_index``, ``source_trial`` and ``k`` (the
    image's number within its class) int64 ``(N,)``; rows in class-major order.
    """

    images: np.ndarray
    class_index: np.ndarray
    source_trial: np.ndarray
    k: np.ndarray


@dataclasses.dataclass(frozen=True)
class GeneratedBatch:
    """One batch from :func:`iterate_generated`: uint8 RGB images and their bookkeeping, ``(n,)`` each."""

    images: np.ndarray
    class_index: np.ndarray
    source_trial: np.ndarray
    k: np.ndarray


def group_by_class(features: np.ndarray, labels: np.ndarray, num_classes: int,
                   class_names: Optional[Sequence[str]] = None,
                   source: str = "test set") -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Split ``features`` ``(N, D)`` by ``labels`` ``(N,)`` keeping trial order.

    Returns ``(features_by_class, trials_by_class)``: per class ``(m_c, D)`` and the ``(m_c,)`` trial
    indices. Every class must have at least one trial (it could not be conditioned on otherwise).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    features = np.asarray(features, dtype=np.float32)
    by_class, trials = [], []
    for c in range(num_classes):
        index = np.flatnonzero(labels == c)
        if index.size == 0:
            name = class_names[c] if class_names is not None else str(c)
            raise DataError(f"{source}: class {name} (index {c}) has no trials to condition on")
        by_class.append(features[index])
        trials.append(index.astype(np.int64))
    return tuple(by_class), tuple(trials)


class LatentStreams:
    """One Uniform(-latent_range, latent_range) stream per class, seeded by ``(seed, class_index)``.

    Drawing ``n`` then ``m`` vectors gives the same numbers as drawing ``n + m`` at once, which is
    what makes the images independent of the batch size. ``latent_range`` 1 is training's U(-1, 1);
    below 1 is the truncation trick (samples nearer the generator's typical output, less variety).
    """

    def __init__(self, seed: int, num_classes: int, latent_dim: int, latent_range: float = 1.0):
        if not np.isfinite(latent_range) or latent_range < 0:
            raise Eeg2ImageError(f"latent_range must be a finite number >= 0, got {latent_range}")
        self.latent_dim = latent_dim
        self.latent_range = float(latent_range)
        self._streams = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, c])))
                         for c in range(num_classes)]

    def draw(self, class_index: int, count: int) -> np.ndarray:
        """Next ``count`` latent vectors of ``class_index``: float32 ``(count, latent_dim)``."""
        values = self._streams[class_index].uniform(-self.latent_range, self.latent_range,
                                                    size=(count, self.latent_dim))
        return values.astype(np.float32)


def _plan(per_class: int, trials_per_class: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class index, k and row in the class's trial list of every image, class-major: ``(N,)`` each."""
    class_index = np.repeat(np.arange(len(trials_per_class), dtype=np.int64), per_class)
    k = np.tile(np.arange(per_class, dtype=np.int64), len(trials_per_class))
    row = k % np.asarray(trials_per_class, dtype=np.int64)[class_index]
    return class_index, k, row


def _infer_latent_dim(generator, condition_dim: int, latent_dim: Optional[int]) -> int:
    if latent_dim is not None:
        return int(latent_dim)
    declared = getattr(generator, "latent_dim", None)
    if declared is not None:
        return int(declared)
    try:
        return int(generator.input_shape[-1]) - condition_dim
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_LATENT_DIM


def make_uint8_forward(generator, batch_size: int, input_dim: int, fast: bool = True,
                       precision: str = "float32"):
    """A ``tf.function`` with one fixed signature: ``(batch_size, input_dim)`` -> uint8 RGB images.

    The conversion to uint8 runs in the graph so the Python thread only hands bytes to the writers.
    ``fast`` uses the Generator's fast forward (:func:`~eeg2image_tf.models.inference.verified_fast_call`).
    ``precision`` other than float32 needs that fast call (ours is the only generator it knows); a
    generator it does not apply to runs its own float32 call, with a warning.
    """
    precisions.check_precision(precision)
    precisions.warn_if_slow(precision)
    call = verified_fast_call(generator, input_dim, precision) if fast or \
        precision != "float32" else None
    if call is None and precision != "float32":
        warnings.warn(f"{precision} generation needs the fast generator call, which this "
                      "generator cannot use (not our Generator); running float32", RuntimeWarning,
                      stacklevel=2)
    if call is None:
        def call(inputs):
            return generator(inputs, training=False)

    @tf.function(input_signature=[tf.TensorSpec((batch_size, input_dim), tf.float32)],
                 autograph=False)
    def forward(inputs):
        return images_to_uint8(call(inputs))

    return forward


def iterate_generated(generator, features_by_class: Sequence[np.ndarray], per_class: int,
                      batch_size: int = 256, seed: int = 45, *,
                      trials_by_class: Optional[Sequence[np.ndarray]] = None,
                      latent_dim: Optional[int] = None, latent_range: float = 1.0,
                      precision: str = "float32", forward=None) -> Iterator[GeneratedBatch]:
    """Yield the generated images in class-major order, ``batch_size`` at a time (last one shorter).

    ``features_by_class``: per class a ``(m_c, condition_dim)`` array of conditions, cycled in order to
    ``per_class`` images; the generator input is ``concat([z, c])`` with
    ``z ~ U(-latent_range, latent_range)`` from :class:`LatentStreams`. ``trials_by_class`` names
    the trial of each condition row (default: the row number) for the bookkeeping. ``precision``:
    see :func:`make_uint8_forward`. ``forward``: one made already by :func:`make_uint8_forward`
    for ``min(batch_size, total)`` rows.
    """
    _check_counts(per_class, batch_size)
    features_by_class = _checked_features(features_by_class)
    condition_dim = features_by_class[0].shape[1]
    if trials_by_class is None:
        trials_by_class = [np.arange(f.shape[0], dtype=np.int64) for f in features_by_class]
    latent_dim = _infer_latent_dim(generator, condition_dim, latent_dim)

    class_index, k, row = _plan(per_class, [f.shape[0] for f in features_by_class])
    total = class_index.size
    batch_size = _rows_per_call(per_class, len(features_by_class), batch_size)
    streams = LatentStreams(seed, len(features_by_class), latent_dim, latent_range)
    if forward is None:
        forward = make_uint8_forward(generator, batch_size, latent_dim + condition_dim,
                                     precision=precision)

    inputs = np.zeros((batch_size, latent_dim + condition_dim), dtype=np.float32)
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        n = stop - start
        batch_classes = class_index[start:stop]
        # A batch may span two classes; each class draws its own latents in k order.
        for c in np.unique(batch_classes):
            members = np.flatnonzero(batch_classes == c)
            inputs[members, :latent_dim] = streams.draw(int(c), members.size)
            inputs[members, latent_dim:] = features_by_class[c][row[start:stop][members]]
        # The tail is padded to the fixed signature (BatchNorm uses moving statistics, so padding
        # rows cannot affect the real ones) and cut off again.
        inputs[n:] = 0.0
        images = forward(inputs).numpy()[:n]
        source_trial = np.array([trials_by_class[c][r] for c, r in
                                 zip(batch_classes, row[start:stop])], dtype=np.int64)
        yield GeneratedBatch(images=images, class_index=batch_classes.copy(),
                             source_trial=source_trial, k=k[start:stop].copy())


def _rows_per_call(per_class: int, num_classes: int, batch_size: int) -> int:
    """Rows of the forward pass's fixed signature: the batch, or all images when fewer."""
    return min(batch_size, per_class * num_classes)


def prepare_forward(generator, features_by_class: Sequence[np.ndarray], per_class: int,
                    batch_size: int, latent_dim: Optional[int] = None,
                    precision: str = "float32"):
    """The traced forward pass :func:`iterate_generated` would build, for passing to it.

    Validates the arguments first, then builds, checks and traces the forward pass once (the
    start-up cost of a run, which callers may time apart from the images).
    """
    _check_counts(per_class, batch_size)
    features_by_class = _checked_features(features_by_class)
    condition_dim = features_by_class[0].shape[1]
    input_dim = _infer_latent_dim(generator, condition_dim, latent_dim) + condition_dim
    rows = _rows_per_call(per_class, len(features_by_class), batch_size)
    forward = make_uint8_forward(generator, rows, input_dim, precision=precision)
    forward(np.zeros((rows, input_dim), np.float32))
    return forward


def _check_counts(per_class: int, batch_size: int) -> None:
    if per_class < 1:
        raise Eeg2ImageError(f"per_class must be at least 1, got {per_class}")
    if batch_size < 1:
        raise Eeg2ImageError(f"batch_size must be at least 1, got {batch_size}")


def _checked_features(features_by_class: Sequence[np.ndarray]) -> list[np.ndarray]:
    features = [np.asarray(f, dtype=np.float32) for f in features_by_class]
    if not features or any(f.ndim != 2 or f.shape[0] == 0 for f in features):
        raise DataError("generation: every class needs a non-empty (m, condition_dim) array")
    return features


def generate_arrays(generator, features_by_class: Sequence[np.ndarray], per_class: int,
                    batch_size: int = 256, seed: int = 45, *,
                    trials_by_class: Optional[Sequence[np.ndarray]] = None,
                    latent_dim: Optional[int] = None, latent_range: float = 1.0,
                    jpeg_quality: Optional[int] = None, show_progress: bool = False,
                    precision: str = "float32") -> GeneratedSet:
    """The images :func:`generate_images` would write, in memory (uint8 RGB).

    With ``jpeg_quality`` the images go through JPEG encoding and decoding, so that metrics computed
    on them match metrics computed on the written files.
    """
    total = per_class * len(features_by_class)
    parts: list[GeneratedBatch] = []
    bar = progress_bar(total, desc="generate", unit="img") if show_progress else None
    for batch in iterate_generated(generator, features_by_class, per_class, batch_size, seed,
                                   trials_by_class=trials_by_class, latent_dim=latent_dim,
                                   latent_range=latent_range, precision=precision):
        images = batch.images
        if jpeg_quality is not None:
            images = jpeg_round_trip(images, jpeg_quality)
        parts.append(dataclasses.replace(batch, images=images))
        if bar is not None:
            bar.update(len(images))
    if bar is not None:
        bar.close()
    return GeneratedSet(images=np.concatenate([p.images for p in parts]),
                        class_index=np.concatenate([p.class_index for p in parts]),
                        source_trial=np.concatenate([p.source_trial for p in parts]),
                        k=np.concatenate([p.k for p in parts]))

