"""EEG trial normalisation (docs/method.md section 2), as a TensorFlow function and its numpy twin.

``original``: per trial, ``m = max(x) / 2`` over all channels and samples, ``x = (x - m) / m``, then
time-major ``(T, C)``. It assumes raw Emotiv values (all positive, about 4000-4600): there the result
lies in about ``(0.7, 1]``. On zero-centred EEG ``m`` can be zero or negative and the output is
meaningless, so that is an error naming the trial.

``zscore``: per trial and channel, subtract the mean over time and divide by the (population)
standard deviation; a flat channel becomes zeros. Suits zero-centred EEG.

A set may record the normalisation it needs (``EEGSplits.normalisation``: EEGCVPR40's band-pass
filtered, standardised files need ``zscore``); training, export and serving follow it unless told
otherwise (:func:`resolve_normalisation`).

``original`` computes in float32 (bit-identical to the authors' output on the reference trials);
``zscore`` in float64, cast to float32 at the end. TensorFlow is imported inside the functions so
that ``import eeg2image_tf.data`` stays cheap.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..config import PREPROCESS_METHODS
from ..errors import ConfigError, DataError

_POSITIVE_HINT = ("the original normalisation needs positive raw Emotiv values; "
                  "use --normalisation zscore (method='zscore') for zero-centred EEG")


def resolve_normalisation(requested: Optional[str], recorded: Optional[str],
                          source: str = "the data set") -> str:
    """The normalisation to use: ``requested`` (a command's ``--normalisation``) when given, else
    the one the set records (``EEGSplits.normalisation``), else ``original`` (ThoughtViz's).

    An explicit request wins over the set's record (the run then records what it used, and every
    later stage follows the run); :func:`normalisation_note` words the difference for the log.
    Raises :class:`ConfigError` for a name that is not a method.
    """
    method = requested or recorded or "original"
    if method not in PREPROCESS_METHODS:
        named = "--normalisation" if requested else f"{source} records normalisation"
        raise ConfigError(f"{named} {method!r} is not one of {', '.join(PREPROCESS_METHODS)}")
    return method


def normalisation_note(requested: Optional[str], recorded: Optional[str],
                       source: str) -> Optional[str]:
    """One log line when an explicit ``--normalisation`` overrides the set's record, else None."""
    if requested and recorded and requested != recorded:
        return (f"note: {source} records normalisation {recorded!r}; using --normalisation "
                f"{requested!r} as given")
    return None


def _check_method(method: str) -> None:
    if method not in PREPROCESS_METHODS:
        raise ValueError(f"unknown EEG normalisation {method!r}; "
                         f"expected one of {', '.join(PREPROCESS_METHODS)}")


def preprocess(raw: Any, method: str = "original"):
    """Normalise raw trials ``(N, C, T, 1)`` or ``(N, C, T)`` into model input ``(N, T, C)`` float32.

    ``raw`` may be a numpy array or a tensor with an unknown batch size; the function traces into
    ``tf.data`` maps, ``tf.function`` and SavedModel signatures. With ``method="original"`` a trial
    whose ``max / 2`` is not positive raises :class:`DataError` when run eagerly, and fails a
    ``tf.debugging.Assert`` (``InvalidArgumentError`` naming the trial) in a graph.
    """
    # Imported here, not above: importing eeg2image_tf.data must not load TensorFlow.
    import tensorflow as tf

    _check_method(method)
    x = tf.convert_to_tensor(raw)
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    x = _drop_singleton_axis(x)

    if method == "original":
        half_max = tf.reduce_max(x, axis=[1, 2], keepdims=True) / 2.0
        x = _require_positive(x, half_max)
        x = (x - half_max) / half_max
    else:
        # float64 keeps the small fluctuations that ride on a ~4000 offset; the result is float32.
        x = tf.cast(x, tf.float64)
        mean = tf.reduce_mean(x, axis=2, keepdims=True)
        std = tf.math.reduce_std(x, axis=2, keepdims=True)
        x = tf.cast((x - mean) / tf.where(std > 0.0, std, tf.ones_like(std)), tf.float32)
    return tf.transpose(x, [0, 2, 1])


def preprocess_numpy(raw: np.ndarray, method: str = "original") -> np.ndarray:
    """numpy version of :func:`preprocess` (same float32 arithmetic): ``(N, T, C)`` float32."""
    _check_method(method)
    x = np.asarray(raw, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise DataError(f"raw EEG has shape {x.shape}; expected (N, C, T, 1) or (N, C, T)")
    if method == "original":
        half_max = x.max(axis=(1, 2), keepdims=True) / np.float32(2.0)
        _raise_if_not_positive(half_max.reshape(-1))
        x = (x - half_max) / half_max
    else:
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=2, keepdims=True)
        std = x64.std(axis=2, keepdims=True)
        x = ((x64 - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    return np.ascontiguousarray(np.transpose(x, (0, 2, 1)), dtype=np.float32)


def _drop_singleton_axis(x):
    # Imported here, not above: importing eeg2image_tf.data must not load TensorFlow.
    import tensorflow as tf

    rank = x.shape.rank
    if rank == 3:
        return x
    if rank == 4:
        if x.shape[-1] is not None and x.shape[-1] != 1:
            raise DataError(f"raw EEG has shape {tuple(x.shape)}; expected (N, C, T, 1) or (N, C, T)")
        return tf.squeeze(x, axis=-1)
    if rank is None:
        # Unknown rank (a loose signature): (N, C, T, 1) and (N, C, T) both reshape to (N, C, T).
        return tf.reshape(x, tf.shape(x)[:3])
    raise DataError(f"raw EEG has shape {tuple(x.shape)}; expected (N, C, T, 1) or (N, C, T)")


def _raise_if_not_positive(half_max: np.ndarray) -> None:
    bad = np.flatnonzero(~(half_max > 0))  # NaN counts as bad
    if bad.size:
        first = int(bad[0])
        raise DataError(f"raw EEG trial {first} has max/2 = {float(half_max[first]):.6g} <= 0 "
                        f"({bad.size} such trial(s) of {half_max.size}): {_POSITIVE_HINT}")


def _require_positive(x, half_max):
    """Return ``x``, after checking every trial's ``max / 2 > 0`` (eagerly, or as a graph assertion)."""
    # Imported here, not above: importing eeg2image_tf.data must not load TensorFlow.
    import tensorflow as tf

    flat = tf.reshape(half_max, [-1])
    if tf.executing_eagerly():
        _raise_if_not_positive(flat.numpy())
        return x
    bad = tf.logical_not(flat > 0.0)
    trial_ids = tf.range(tf.size(flat, out_type=tf.int64), dtype=tf.int64)
    # min over an empty set is the dtype's max; it is only printed when some trial is bad.
    first_bad = tf.reduce_min(tf.where(bad, trial_ids, tf.int64.max))
    value = tf.reduce_sum(tf.where(tf.equal(trial_ids, first_bad), flat, tf.zeros_like(flat)))
    message = tf.strings.format("raw EEG trial {} (of the batch) has max/2 = {} <= 0: " + _POSITIVE_HINT,
                                (first_bad, value))
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message])
    with tf.control_dependencies([check]):
        return tf.identity(x)
