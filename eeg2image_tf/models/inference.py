"""Inference of the Generator: a fast forward pass built from its own layers, and pixels from it.

Two exact re-expressions make inference faster on CPU, with the same sums added in another order
(outputs agree to float32 rounding; :func:`verified_fast_call` checks the function against
``generator(x, training=False)`` before use):

- transposed convolutions on small inputs as one matrix product plus a phase-wise overlap-add
  (TensorFlow's CPU kernel is slow when the input is small and the channels many: more than ten
  times slower than the product for the 4x4x1024 -> 8x8x512 layer, docs/performance.md);
- BatchNorm with moving statistics folded into the preceding kernel: ``conv(x, W) * s + t`` is
  ``conv(x, W * s) + t`` with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``.

Where a GPU is visible the folding stays and the products give way to TensorFlow's own kernels
(:func:`~eeg2image_tf.models.matmul_conv.use_matmul_convs`).

The forward is built from :meth:`Generator.inference_layers
<eeg2image_tf.models.gan.Generator.inference_layers>`, the Generator's declaration of what its
inference computes. A Generator whose layers the forward cannot reproduce is refused with an error
(never a silent fall back to the slow call); any other model (a test double, a user's own) has no
fast forward, and its own call is used.

Pixels: :func:`images_to_uint8` is the original's ``uint8(clip((x * 0.5 + 0.5) * 255, 0, 255))``
(truncating), the one conversion of generator output to bytes that generation, evaluation and the
SavedModel share; :func:`to_uint8` is it for numpy, or with ``rounding="nearest"`` the conversion of
the training sample grids and the inverse of ``data.load_images``.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from . import precision as precisions
from .gan import Generator, GeneratorInference
from .matmul_conv import (conv_transpose_as_matmul, live_after_conv_transpose, narrow_conv3x3,
                          use_matmul_convs)

# Transposed convolutions on inputs of at most GENERATION_MATMUL_MAX_PIXELS pixels use the
# matrix-product form (models.matmul_conv): at inference it is faster at 1x1 and 4x4 inputs and
# slower from 8x8 on, where training still gains from it.
GENERATION_MATMUL_MAX_PIXELS = 16
FAST_PATH_TOLERANCE = 1e-4
# The mixed-precision paths are judged by the MEAN absolute difference from the float32 model
# (images in [-1, 1]), against what Keras's own model at that precision makes of the same weights
# on the same CPU: how far 16-bit rounding moves the images depends on the generator (an as-run
# generator's raw kernels, never divided by sigma, saturate tanh, and rounding flips whole pixels
# from -1 to 1) and on the CPU's bfloat16 instructions (native dot products round differently
# from emulated ones). The fast path may be off by up to twice Keras's own rounding, or the floor
# below where that rounding is tiny; a wrong fast path is off by tenths, and the float32 path,
# checked first, is held to its maximum difference.
MIXED_PRECISION_FLOORS = {"mixed_bfloat16": 0.01, "mixed_float16": 0.002}
MIXED_PRECISION_FACTOR = 2.0


class FastForwardError(RuntimeError):
    """The Generator changed in a way its fast forward does not reproduce: update this module."""


# --------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------

def images_to_uint8(images) -> tf.Tensor:
    """Generator output in [-1, 1] ``(..., 3)`` float -> uint8 in 0-255, shape unchanged.

    The original's ``np.uint8(np.clip((x * 0.5 + 0.5) * 255, 0, 255))`` in float32: the cast
    truncates towards zero like numpy's, after the clip has made every value a valid uint8. Works
    eagerly and inside graphs (generation's forward, the SavedModel's signatures).
    """
    scaled = (tf.cast(images, tf.float32) * 0.5 + 0.5) * 255.0
    return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)


def to_uint8(images, rounding: str = "truncate") -> np.ndarray:
    """Images in [-1, 1] ``(..., 3)`` float, numpy or tensor -> numpy uint8 in 0-255, shape unchanged.

    ``rounding="truncate"``: :func:`images_to_uint8`, the original's conversion. ``"nearest"``:
    ``rint((x + 1) * 127.5)`` (ties to even), clipped: what the training sample grids have always
    been written with (the truncating one would change their PNGs), and the exact inverse of
    ``data.load_images``, which maps byte ``b`` to ``b / 127.5 - 1``.
    """
    values = np.asarray(images, dtype=np.float32)
    if rounding == "nearest":
        return np.clip(np.rint((values + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if rounding != "truncate":
        raise ValueError(f"to_uint8: rounding must be 'truncate' or 'nearest', not {rounding!r}")
    return images_to_uint8(values).numpy()


# --------------------------------------------------------------------------------------------------
# The fast forward
# --------------------------------------------------------------------------------------------------

def _check_conv_transpose(layer, index: int) -> None:
    plain = (isinstance(layer, keras.layers.Conv2DTranspose) and not layer.use_bias
             and layer.padding == "same" and tuple(layer.dilation_rate) == (1, 1)
             and layer.strides[0] == layer.strides[1] and layer.output_padding is None
             and layer.data_format == "channels_last"
             and getattr(layer.activation, "__name__", None) == "linear")
    if not plain:
        raise FastForwardError(f"generator block {index}: {type(layer).__name__} is not a plain "
                               "'same', bias-free, linear transposed convolution; the fast forward "
                               "(models.inference) does not reproduce it")


def _check_batch_norm(layer, index: int) -> None:
    axis = layer.axis if isinstance(layer.axis, int) else None
    plain = (isinstance(layer, keras.layers.BatchNormalization) and axis in (-1, 3)
             and layer.scale and layer.center and not layer.renorm)
    if not plain:
        raise FastForwardError(f"generator block {index}: {type(layer).__name__} is not a plain "
                               "channels-last BatchNormalization; the fast forward "
                               "(models.inference) does not reproduce it")


def _checked_layers(generator: Generator) -> GeneratorInference:
    layers = generator.inference_layers()
    if len(layers.norms) != len(layers.convs):
        raise FastForwardError(f"generator: {len(layers.convs)} blocks but {len(layers.norms)} "
                               "norms in its inference_layers()")
    for index, (conv, norm) in enumerate(zip(layers.convs, layers.norms)):
        _check_conv_transpose(conv, index)
        if norm is not None:
            _check_batch_norm(norm, index)
    rgb = layers.to_rgb
    if not (isinstance(rgb, keras.layers.Conv2D) and not rgb.use_bias and rgb.padding == "same"
            and tuple(rgb.strides) == (1, 1) and tuple(rgb.kernel_size) == (3, 3)):
        raise FastForwardError("generator: its RGB layer is not a bias-free 'same' 3x3 convolution; "
                               "the fast forward (models.inference) does not reproduce it")
    return layers


def fast_generator_call(generator, precision: str = "float32", *,
                        matmul_max_pixels: Optional[int] = None,
                        narrow_rgb: Optional[bool] = None) -> Optional[Callable]:
    """``call(inputs) -> images`` equal to ``generator(inputs, training=False)``, faster on CPU.

    ``precision="mixed_bfloat16"`` runs the same arithmetic in bfloat16 (folded in float32, then
    rounded; images returned as float32): the convolutions run several times as fast on CPUs with
    AVX512-BF16 or AMX, and the images equal the float32 ones to bfloat16 rounding only
    (``models.precision``). ``"mixed_float16"`` likewise in float16 (for GPUs).

    Only for our :class:`~eeg2image_tf.models.Generator` (also what the original checkpoints load
    into), built from its :meth:`~eeg2image_tf.models.gan.Generator.inference_layers`; returns None
    for any other model, whose own call is then used, and raises :class:`FastForwardError` for a
    Generator whose layers it cannot reproduce. The folded kernels are computed inside the call
    from the current variables, so the function stays right when the weights change (a restored
    checkpoint); folding once, outside the call, is no faster, since the products read the kernels
    without a transposed copy.

    ``matmul_max_pixels``: transposed convolutions on inputs of at most this many pixels run as
    matrix products (:func:`~eeg2image_tf.models.matmul_conv.conv_transpose_as_matmul`), larger
    ones by TensorFlow's kernel. ``narrow_rgb``: the 3-channel layer by
    :func:`~eeg2image_tf.models.matmul_conv.narrow_conv3x3`. Either None: as
    :func:`~eeg2image_tf.models.matmul_conv.use_matmul_convs` chooses for this machine
    (:data:`GENERATION_MATMUL_MAX_PIXELS` and True on CPUs, TensorFlow's kernels where a GPU is
    visible).
    """
    if not isinstance(generator, Generator):
        return None
    on_cpu = use_matmul_convs()
    if matmul_max_pixels is None:
        matmul_max_pixels = GENERATION_MATMUL_MAX_PIXELS if on_cpu else 0
    if narrow_rgb is None:
        narrow_rgb = on_cpu
    layers = _checked_layers(generator)
    dtype = tf.as_dtype(precisions.compute_dtype(precision))

    def folded(index):
        """Kernel ``(k, k, C_out, C_in)`` and offset ``(C_out,)`` (None: no BatchNorm) of block ``index``."""
        kernel = tf.convert_to_tensor(layers.convs[index].kernel)
        norm = layers.norms[index]
        if norm is None:   # block 0 has no BatchNorm (docs/method.md section 6)
            return kernel, None
        scale = norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
        offset = norm.beta - norm.moving_mean * scale
        return kernel * scale[None, None, :, None], offset

    def call(inputs):
        x = tf.cast(tf.reshape(inputs, (-1, 1, 1, layers.input_dim)), dtype)
        # Rows and columns of x that can be non-zero (all, except after block 0: see below).
        live = x.shape[1]
        for index, layer in enumerate(layers.convs):
            stride = int(layer.strides[0])
            kernel, offset = folded(index)
            kernel = tf.cast(kernel, dtype)
            size = x.shape[1]
            if size * size <= matmul_max_pixels:
                x = conv_transpose_as_matmul(x, kernel, stride, live=live)
            else:
                batch = tf.shape(x)[0]
                x = tf.nn.conv2d_transpose(
                    x, kernel, tf.stack([batch, x.shape[1] * stride, x.shape[2] * stride,
                                         kernel.shape[2]]), stride, padding="SAME")
            if offset is not None:
                x = x + tf.cast(offset, dtype)
            x = tf.nn.leaky_relu(x, alpha=layers.negative_slope)
            # Without a BatchNorm offset, a transposed convolution whose stride exceeds its kernel
            # (block 0: 1x1 -> 4x4 with 3 taps) leaves its last (stride - k) rows and columns at
            # exactly zero, and LeakyReLU(0) = 0; the next layer may skip them.
            live = x.shape[1] if offset is not None else \
                live_after_conv_transpose(live, stride, int(layer.kernel_size[0]), x.shape[1])
        rgb_kernel = tf.cast(layers.to_rgb.kernel, dtype)
        rgb = narrow_conv3x3(x, rgb_kernel) if narrow_rgb else \
            tf.nn.conv2d(x, rgb_kernel, 1, padding="SAME")
        return tf.tanh(tf.cast(rgb, tf.float32))

    return call


def verified_fast_call(generator, input_dim: int, precision: str = "float32") -> Optional[Callable]:
    """:func:`fast_generator_call`, checked on a probe batch of 8 against the Generator's own call;
    None where there is no fast forward (not our Generator).

    First the float32 fast forward against ``generator(x, training=False)`` in float32: the largest
    difference within :data:`FAST_PATH_TOLERANCE`. For a mixed precision then, the mean difference
    of its fast forward from the float32 images must be at most :data:`MIXED_PRECISION_FACTOR`
    times that of Keras's own model at that precision (a twin of ``generator`` with its weights),
    or the precision's floor in :data:`MIXED_PRECISION_FLOORS`. The generator may carry any policy.

    Raises :class:`FastForwardError` when the two differ: the forward has gone stale.
    """
    call = fast_generator_call(generator, precision)
    if call is None:
        return None
    probe = np.random.default_rng(0).uniform(-1.0, 1.0, (8, input_dim)).astype(np.float32)
    float32_model = _with_policy(generator, "float32")
    expected = np.asarray(float32_model(probe, training=False))
    # The float32 forward is the call itself; a mixed precision's is checked beside its float32 one.
    forwards = (call,) if precision == "float32" else (fast_generator_call(generator, "float32"), call)
    # The probes in one traced function: TensorFlow counts the traces of every closure of
    # fast_generator_call together, and a process that verifies a forward for each of its stages
    # (a pipeline's select_gan, generate and curve) would pass its retracing-warning threshold.
    images = [np.asarray(result) for result in tf.function(
        lambda inputs: tuple(forward(inputs) for forward in forwards), autograph=False)(probe)]
    exact_images, fast_images = images[0], images[-1]
    difference = float(np.max(np.abs(exact_images - expected)))
    if not difference <= FAST_PATH_TOLERANCE:
        raise FastForwardError(f"the fast generator forward differs from the Generator's own call "
                               f"by {difference:.2g} (tolerance {FAST_PATH_TOLERANCE:g}); "
                               "models.inference no longer matches models.gan")
    if precision == "float32":
        return call
    keras_rounding = float(np.mean(np.abs(
        np.asarray(_with_policy(generator, precision)(probe, training=False)) - expected)))
    fast_rounding = float(np.mean(np.abs(fast_images - expected)))
    tolerance = max(MIXED_PRECISION_FLOORS[precision], MIXED_PRECISION_FACTOR * keras_rounding)
    if not fast_rounding <= tolerance:
        raise FastForwardError(f"the {precision} fast generator forward differs from the float32 "
                               f"images by {fast_rounding:.2g} on average, Keras's own {precision} "
                               f"model by {keras_rounding:.2g} (tolerance {tolerance:.2g}); "
                               "models.inference no longer matches models.gan")
    return call


def _with_policy(generator: Generator, policy: str) -> Generator:
    """``generator`` if it computes in ``policy``, else a twin that does, holding its weights."""
    if generator.dtype_policy.name == policy:
        return generator
    twin = type(generator).from_config({**generator.get_config(), "dtype": policy})
    twin(np.zeros((1, generator.latent_dim + generator.condition_dim), np.float32), training=False)
    twin.set_weights(generator.get_weights())
    return twin

