"""Layers shared by the models.

``FusedBatchNormalization`` is ``keras.layers.BatchNormalization`` computed by TensorFlow's fused
kernel (one op forward, one op backward, oneDNN on CPU) instead of Keras 3's chain of reductions and
element-wise ops. Keras 3 dropped the ``fused`` argument that Keras 2 (and so the original code on
TF 2.8) used by default; in training the chain costs several times the fused op, a noticeable
part of a GAN iteration (docs/performance.md).

Same variables (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``), same checkpoint layout,
same arithmetic up to float32 rounding:

- training: normalise with the batch mean and the *biased* batch variance, then update the moving
  statistics exactly as Keras 3 does, ``moving = moving * momentum + batch * (1 - momentum)``, with
  the biased variance. The fused kernel reports the variance with Bessel's correction
  (``n / (n - 1)``); it is removed again, as Keras 2 also did, so the moving variance matches
  Keras 3's (and the original's);
- inference: ``(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta``;
- bfloat16 / float16 activations (mixed precision) go into the kernel as they are; it keeps the
  statistics in float32, as Keras's own upcast does.

Anything the fused kernel does not cover (another backend, a rank other than 4, a normalised axis
other than the last, masks, renormalisation, synchronised statistics, no scale or no centre) falls
back to the Keras implementation, so the layer is a drop-in replacement everywhere.

``SynchronizedBatchNormalization`` normalises, in training under a strategy of several replicas,
with the statistics of the global batch: what one process holding the whole batch computes. Keras's
own ``synchronized=True`` sums ``x`` and ``x**2`` and takes ``E[x**2] - E[x]**2``, which loses the
variance's digits when the mean is large against the spread (activations over a white background).
Here the replicas all-reduce the sum, then the sum of squared deviations from the global mean: the
two passes of ``tf.nn.moments`` on one process, up to the order of float32 sums. Measured on two
replicas against one process (``tests/test_layers.py``, mean 3, spread 0.1): input gradients 9e-7
apart relative, Keras's 3e-4. With one replica, or a mask, it is Keras's layer.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` for NHWC tensors through TensorFlow's fused kernel."""

    def _fusable(self, inputs, mask) -> bool:
        axis = self.axis if isinstance(self.axis, int) else None
        rank = len(inputs.shape)
        return (keras.backend.backend() == "tensorflow" and rank == 4 and mask is None
                and axis in (-1, rank - 1) and not self.renorm and not self.synchronized
                and self.scale and self.center
                # tf.nn.fused_batch_norm silently raises a smaller epsilon to this floor.
                and self.epsilon > 1.001e-5)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # The fused kernel takes float16/bfloat16 activations as they are and keeps its statistics
        # in float32, which is what Keras's upcast achieves, without two casts of the tensor.
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16) else tf.cast(inputs, tf.float32)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            count = tf.cast(tf.size(x, out_type=tf.int64) // tf.cast(tf.shape(x)[-1], tf.int64),
                            tf.float32)
            variance = unbiased_variance * ((count - 1.0) / tf.maximum(count, 1.0))
            momentum = self.momentum
            self.moving_mean.assign(tf.cast(self.moving_mean, tf.float32) * momentum
                                    + mean * (1.0 - momentum))
            self.moving_variance.assign(tf.cast(self.moving_variance, tf.float32) * momentum
                                        + variance * (1.0 - momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        return tf.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class SynchronizedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training statistics are the global batch's over the
    replicas of a ``tf.distribute`` strategy, in two passes (module docstring)."""

    def _moments(self, inputs, mask):
        # Keras's BatchNormalization.call asks this for the batch's (mean, variance), shape (C,),
        # from inputs already cast to float32.
        context = tf.distribute.get_replica_context()
        if mask is not None or context is None or context.num_replicas_in_sync < 2:
            return super()._moments(inputs, mask)
        axes = list(self._reduction_axes)
        shape = tf.shape(inputs)
        count = tf.cast(tf.reduce_prod(tf.gather(shape, axes)), inputs.dtype)
        total, total_count = context.all_reduce(
            tf.distribute.ReduceOp.SUM, [tf.reduce_sum(inputs, axes, keepdims=True), count])
        mean = total / total_count
        # As tf.nn.moments: the deviations from a mean whose gradient is not taken twice.
        squares = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(
            tf.math.squared_difference(inputs, tf.stop_gradient(mean)), axes, keepdims=True))
        return tf.squeeze(mean, axes), tf.squeeze(squares / total_count, axes)
