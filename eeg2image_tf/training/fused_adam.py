"""``FusedAdam``: ``keras.optimizers.Adam`` applied by TensorFlow's fused ``ResourceApplyAdam`` kernel.

Keras 3's Adam updates each variable with a chain of element-wise ops (subtract, multiply, add,
square, sqrt, divide, three assignments), each a pass over the variable's memory. Over the GAN's
15M weights those passes are a visible part of an iteration; the fused kernel does the same
arithmetic in one pass (docs/performance.md). It is also the kernel the authors' code
ran: TF 2.8's ``tf.keras.optimizers.Adam`` applies every dense update with ``ResourceApplyAdam``.

Same arithmetic as Keras 3's ``Adam.update_step`` (and TensorFlow's kernel):
``alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``, ``m += (g - m) * (1 - beta_1)``,
``v += (g^2 - v) * (1 - beta_2)``, ``w -= m * alpha / (sqrt(v) + epsilon)``, with ``t`` the step
count (iterations + 1). Same variables, slot names and checkpoint layout as ``keras.optimizers.Adam``
(it is a subclass that changes only how a dense update is applied).

Falls back to the parent's update (same numbers) for what the kernel does not cover: other backends,
AMSGrad, sparse gradients, variables of a dtype other than float32, and variables distributed over
several replicas (their per-device components are updated by the parent's distributed path).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose dense float32 updates run as one ``ResourceApplyAdam`` op.

    Takes Adam's arguments; named ``"adam"`` unless told otherwise, so that its variables' paths
    are Adam's too.
    """

    def __init__(self, *args, name: str = "adam", **kwargs):
        super().__init__(*args, name=name, **kwargs)

    def _fusable(self, gradient, variable, momentum, velocity) -> bool:
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return False
        if isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32:
            return False
        slots = [getattr(slot, "value", slot) for slot in (momentum, velocity)]
        return all(isinstance(slot, tf.Variable) and not isinstance(slot, tf.distribute.DistributedValues)
                   and hasattr(slot, "handle") for slot in slots + [variable]) \
            and not isinstance(variable, tf.distribute.DistributedValues)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        if not self._fusable(gradient, variable, momentum, velocity):
            return super().update_step(gradient, variable, learning_rate)
        local_step = tf.cast(self.iterations + 1, tf.float32)
        beta_1 = tf.cast(self.beta_1, tf.float32)
        beta_2 = tf.cast(self.beta_2, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.value.handle, v=velocity.value.handle,
            beta1_power=tf.pow(beta_1, local_step), beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, tf.float32), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, tf.float32), grad=tf.cast(gradient, tf.float32),
            use_locking=False)
