"""The EEG encoder of EEG2Image ("TripleNet", docs/method.md section 3): two stacked LSTMs.

``LSTM(hidden, return_sequences=True) -> LSTM(feature_dim)`` gives the **feature**; its L2-normalised
copy is the **embedding** the triplet loss trains. The GAN is conditioned on the feature.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from ..errors import DataError

FEATURE_BATCH = 1024     # trials per encoder call when computing features

# tf.math.l2_normalize's floor on the squared norm; the original normalises with it, so an all-zero
# feature gives an all-zero embedding instead of NaN.
L2_NORMALIZE_EPSILON = 1e-12


def l2_normalize(x, axis: int = -1):
    """``x / max(||x||_2, 1e-6)`` along ``axis``, exactly as ``tf.math.l2_normalize``."""
    squared_norm = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, L2_NORMALIZE_EPSILON))


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class EEGEncoder(keras.Model):
    """Two stacked LSTMs with Keras default settings (tanh/sigmoid, unit forget bias, no dropout).

    Call: ``encoder(x, training=False) -> (embedding, feature)``, ``x`` preprocessed EEG
    ``(B, T, C)`` float32 (time steps by channels; T and C are free, C is fixed by the first call),
    both outputs ``(B, feature_dim)``. ``embedding`` has unit L2 norm.
    """

    def __init__(self, feature_dim: int = 128, hidden: int = 32, unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = int(feature_dim)
        self.hidden = int(hidden)
        # unroll=True writes the 32 time steps out in the graph instead of a while loop: the same
        # ops on the same numbers (bit-identical features), a few percent faster to train on CPU;
        # it needs the number of time steps to be known when a function is traced.
        self.unroll = bool(unroll)
        self.sequence_lstm = keras.layers.LSTM(self.hidden, return_sequences=True,
                                               unroll=self.unroll, name="sequence_lstm")
        self.feature_lstm = keras.layers.LSTM(self.feature_dim, unroll=self.unroll,
                                              name="feature_lstm")

    def call(self, x, training=False):
        feature = self.feature_lstm(self.sequence_lstm(x, training=training), training=training)
        return l2_normalize(feature, axis=-1), feature

    def get_config(self):
        return {**super().get_config(), "feature_dim": self.feature_dim, "hidden": self.hidden,
                "unroll": self.unroll}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_encoder(feature_dim: int = 128, hidden: int = 32, num_channels: int = 14,
                  num_samples: int = 32, unroll: bool = False) -> EEGEncoder:
    """An :class:`EEGEncoder` whose variables exist (one dummy call on ``(1, num_samples, num_channels)``).

    The LSTM kernels depend on ``num_channels`` only; ``num_samples`` merely sizes the dummy input.
    """
    encoder = EEGEncoder(feature_dim=feature_dim, hidden=hidden, unroll=unroll)
    encoder(ops.zeros((1, num_samples, num_channels), dtype="float32"), training=False)
    return encoder


def encoder_features(encoder, eeg, batch_size: int = FEATURE_BATCH, source: str = "EEG") -> np.ndarray:
    """The encoder's **feature** (not the embedding) with ``training=False``, in batches.

    Args:
        encoder: ``encoder(x, training=False) -> (embedding, feature)``: an :class:`EEGEncoder`, or
            a compiled function of one (``training.encoder`` passes its run's compiled step, so that
            the features equal those recorded during training bit for bit).
        eeg: preprocessed ``(N, T, C)`` float32, numpy or tensor.
        batch_size: trials per call.
        source: where the trials came from, for the :class:`DataError` raised when their shape
            does not fit the encoder (another channel count than it was trained on).

    Returns:
        float32 ``(N, feature_dim)``.
    """
    eeg = tf.convert_to_tensor(eeg, dtype=tf.float32)
    n = int(eeg.shape[0])
    if n == 0:
        raise DataError("encoder_features: no EEG trials")
    parts = []
    for start in range(0, n, batch_size):
        try:
            _, feature = encoder(eeg[start:start + batch_size], training=False)
        except (ValueError, tf.errors.InvalidArgumentError) as exc:
            if parts:
                raise
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DataError(f"{source}: trials of {eeg.shape[2]} channels x {eeg.shape[1]} samples "
                            f"do not fit the encoder ({detail})") from None
        parts.append(np.asarray(feature, dtype=np.float32))
    return np.concatenate(parts, axis=0)
