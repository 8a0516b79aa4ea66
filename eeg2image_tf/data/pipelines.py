"""``tf.data`` input pipelines for the encoder and the GAN.

Training pipelines shuffle with a buffer of twice the batch (as the original), seeded, drop the last
partial batch (fixed shapes for XLA and distribution strategies; the original keeps it) and
prefetch. Evaluation pipelines keep file order and every trial. The per-batch work (EEG
normalisation, image look-up) runs in a ``map`` with ``AUTOTUNE`` parallelism, after batching so
that it is vectorised.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import DataError
from .preprocess import preprocess


def encoder_dataset(x: Any, y: Any, batch_size: int, shuffle: bool, seed: int = 45, *,
                    normalisation: Optional[str] = None, drop_remainder: Optional[bool] = None):
    """Batches of ``(x float32 (B, T, C), label int64 (B,))`` for the EEG encoder.

    ``x``: model input ``(N, T, C)`` (already normalised) passed through as is, or raw trials
    ``(N, C, T, 1)``/``(N, C, T)`` normalised in the pipeline when ``normalisation`` names a
    :func:`~eeg2image_tf.data.preprocess` method. A 4-D ``x`` can only be raw, so with
    ``normalisation=None`` it gets the original normalisation. ``y``: int labels ``(N,)`` or one-hot
    ``(N, K)``. ``drop_remainder`` defaults to ``shuffle`` (training).
    """
    # Imported here, not above: importing eeg2image_tf.data must not load TensorFlow.
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    labels = _labels(y, "encoder_dataset")
    _check_lengths("encoder_dataset", x=len(x), y=len(labels))
    if normalisation is None and x.ndim == 4:
        normalisation = "original"
    drop = shuffle if drop_remainder is None else drop_remainder
    _check_batch("encoder_dataset", len(x), batch_size, drop)

    dataset = tf.data.Dataset.from_tensor_slices((x, labels))
    if shuffle:
        dataset = dataset.shuffle(2 * batch_size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop)
    if normalisation is not None:
        method = normalisation
        dataset = dataset.map(lambda eeg, label: (preprocess(eeg, method), label),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def gan_dataset(eeg: Any, labels: Any, images: Any, image_index: Any, batch_size: int, shuffle: bool,
                seed: int = 45, *, drop_remainder: Optional[bool] = None):
    """Batches of ``(eeg float32 (B, ...), label int64 (B,), image float32 (B, H, W, 3))``.

    ``eeg``: per-trial rows passed through unchanged (the GAN trainer gives cached encoder features
    ``(N, 128)``). ``images``: the image bank ``(M, H, W, 3)`` in ``[-1, 1]``; ``image_index``
    ``(N,)`` maps trial -> bank row (see :func:`~eeg2image_tf.data.pair_images`). The bank is held
    once in memory (not copied into the graph) and gathered per batch, so the pipeline cannot be
    serialised (tf.data service, SavedModel); in-process strategies work. ``drop_remainder``
    defaults to ``shuffle``.
    """
    # Imported here, not above: importing eeg2image_tf.data must not load TensorFlow.
    import tensorflow as tf

    eeg = np.asarray(eeg, dtype=np.float32)
    label_ids = _labels(labels, "gan_dataset")
    index = np.asarray(image_index)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise DataError(f"gan_dataset: image_index has shape {index.shape} dtype {index.dtype}, "
                        "expected integer (N,)")
    index = index.astype(np.int64)
    bank = np.ascontiguousarray(images, dtype=np.float32)
    if bank.ndim != 4 or bank.shape[-1] != 3:
        raise DataError(f"gan_dataset: images have shape {bank.shape}, expected (M, H, W, 3)")
    _check_lengths("gan_dataset", eeg=len(eeg), labels=len(label_ids), image_index=len(index))
    if len(index) and (index.min() < 0 or index.max() >= len(bank)):
        raise DataError(f"gan_dataset: image_index ranges over [{index.min()}, {index.max()}], "
                        f"expected rows of the {len(bank)}-image bank")
    drop = shuffle if drop_remainder is None else drop_remainder
    _check_batch("gan_dataset", len(eeg), batch_size, drop)

    dataset = tf.data.Dataset.from_tensor_slices((eeg, label_ids, index))
    if shuffle:
        dataset = dataset.shuffle(2 * batch_size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop)
    image_shape = [batch_size if drop else None, *bank.shape[1:]]

    def gather_images(rows):
        # The bank stays a numpy array read from Python: captured as a tensor it would be serialised
        # into the dataset graph (several copies, and a hard 2 GB limit) every time this is built.
        images = tf.numpy_function(lambda r: bank[r], [rows], tf.float32, stateful=False)
        images.set_shape(image_shape)
        return images

    dataset = dataset.map(lambda e, y, i: (e, y, gather_images(i)),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _labels(y: Any, where: str) -> np.ndarray:
    array = np.asarray(y)
    if array.ndim == 2:
        array = np.argmax(array, axis=1)
    if array.ndim != 1:
        raise DataError(f"{where}: labels have shape {array.shape}, expected (N,) or one-hot (N, K)")
    return array.astype(np.int64)


def _check_lengths(where: str, **lengths: int) -> None:
    if len(set(lengths.values())) > 1:
        found = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise DataError(f"{where}: inputs differ in length ({found}), expected one row per trial")


def _check_batch(where: str, n: int, batch_size: int, drop_remainder: bool) -> None:
    if batch_size < 1:
        raise DataError(f"{where}: batch_size is {batch_size}, expected >= 1")
    if drop_remainder and n < batch_size:
        raise DataError(f"{where}: {n} trials make no full batch of {batch_size}; lower the batch "
                        "size or pass drop_remainder=False")
