"""The conditional DCGAN of EEG2Image (docs/method.md section 4): 128 x 128 x 3 images from [z, c].

Spectral normalisation semantics. The original wraps the generator's convolutions in
tensorflow-addons' ``SpectralNormalization``: with ``training=True`` it runs one power iteration from
the stored ``u``, then *overwrites* the kernel variable with ``W / sigma`` and ``u`` with the new
estimate before convolving; with ``training=False`` it convolves with the stored kernel as it is
(no division by sigma). ``keras.layers.SpectralNormalization`` (Keras 3.15) does exactly the same,
including where the gradient flows (to the assigned kernel, not through sigma), so we use it. The
reference checkpoint confirms the inference rule: its stored kernels have spectral norms between 0.34
and 2.3, and only the raw kernels reproduce its images (1.8e-8; dividing by the power-iteration
sigma is off by 0.26).

What the reference checkpoint also shows about the original's *training* (for the GAN trainer, not
these layers): after its training steps, the generator's ``sn_u`` vectors still have their initial
norms (0.04-0.55, never 1), its kernels were never divided by sigma, and its BatchNorm moving
statistics are still exactly 0 and 1, while the discriminator's moved. The original's
``Generator.call`` is a ``tf.function`` without a ``training`` argument, so its first trace (the D
step's ``training=False`` call) is reused by the G step's ``training=True`` calls: in the original
the generator effectively always runs in inference mode, spectral normalisation and BatchNorm
statistics included.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

import keras
from keras import ops

from .layers import FusedBatchNormalization, SynchronizedBatchNormalization
from .matmul_conv import (MatmulConv2D, MatmulConv2DTranspose, live_after_conv_transpose,
                          use_matmul_convs)

GENERATOR_FILTERS = (1024, 512, 256, 128, 64, 32)
GENERATOR_STRIDES = (4, 2, 2, 2, 2, 2)
DISCRIMINATOR_FILTERS = (64, 128, 256, 512, 1024, 1)
DISCRIMINATOR_STRIDES = (2, 2, 2, 2, 1, 1)
IMAGE_SIZE = 128
IMAGE_CHANNELS = 3
KERNEL_SIZE = 3
GENERATOR_LEAKY_SLOPE = 0.3      # the Keras default the original relies on
DISCRIMINATOR_LEAKY_SLOPE = 0.2


def _batch_norm(fused: bool, name: str, dtype, synchronized: bool = False):
    # Same variables and numbers either way (models.layers); the fused kernel is several times
    # faster in training on CPU (docs/performance.md). Synchronised (replicas share the global batch's statistics, as one process
    # computing the whole batch would) takes the unfused path; it changes no variable.
    if synchronized:
        return SynchronizedBatchNormalization(name=name, dtype=dtype)
    layer_class = FusedBatchNormalization if fused else keras.layers.BatchNormalization
    return layer_class(name=name, dtype=dtype)


def _kernel_initializer():
    # A fresh instance per layer: one unseeded Keras 3 initializer reused would repeat its values.
    return keras.initializers.TruncatedNormal(mean=0.0, stddev=0.02)


@dataclasses.dataclass(frozen=True)
class GeneratorInference:
    """What :meth:`Generator.call` computes with ``training=False``, layer by layer.

    The declared interface between the Generator and its fast inference forward
    (:func:`eeg2image_tf.models.inference.fast_generator_call`), which is built from these layers
    and their weights: ``x = reshape(inputs, (-1, 1, 1, input_dim))``, then per block
    ``x = leaky_relu(norm(conv(x)), negative_slope)`` (no ``norm`` where it is None), then
    ``tanh(to_rgb(x))``. Spectral normalisation at inference convolves with the stored kernel
    (module docstring), so ``convs`` and ``to_rgb`` are the wrapped layers themselves. A change to
    :meth:`Generator.call` must be mirrored in :meth:`Generator.inference_layers`; the fast forward
    refuses layers it cannot reproduce, and a test compares it with the Generator's own call.
    """

    input_dim: int
    convs: tuple[Any, ...]                  # keras Conv2DTranspose (or MatmulConv2DTranspose)
    norms: tuple[Optional[Any], ...]        # one per conv: its BatchNormalization, or None
    negative_slope: float                   # of the LeakyReLU after every block
    to_rgb: Any                             # the 3-channel keras Conv2D before tanh


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class Generator(keras.Model):
    """``generator(inputs, training=False) -> images``.

    ``inputs`` ``(B, latent_dim + condition_dim)`` = ``concat([z, c])``; ``images``
    ``(B, 128, 128, 3)`` in [-1, 1] (tanh). Six spectrally normalised transposed convolutions
    (1 -> 4 -> 8 -> ... -> 128 pixels), BatchNorm on blocks 1-5 only, LeakyReLU(0.3), then a
    spectrally normalised 3-channel convolution and tanh. No biases.

    ``fused_batch_norm`` computes the BatchNorms with TensorFlow's fused kernel
    (:class:`~eeg2image_tf.models.layers.FusedBatchNormalization`): same variables, same numbers up
    to float32 rounding, faster. False gives plain ``keras.layers.BatchNormalization``.

    ``dtype`` (a Keras dtype policy, e.g. ``"mixed_bfloat16"``) is passed on to every layer: with a
    mixed policy the variables stay float32 (same checkpoints) and the arithmetic runs in bfloat16;
    the images are returned as float32 whatever the policy.

    ``matmul_convs`` computes the transposed convolutions of blocks 0-2 (inputs of 1x1, 4x4
    and 8x8 pixels) as matrix products, forward and backward
    (:class:`~eeg2image_tf.models.matmul_conv.MatmulConv2DTranspose`): same variables and numbers
    up to float32 rounding; TensorFlow's CPU kernels are several times slower on such small inputs.
    Block 1 also skips the last row and column of its input, which block 0 leaves at exactly zero
    (its stride, 4, exceeds its kernel, 3, and it has no BatchNorm offset; LeakyReLU(0) = 0).
    """

    def __init__(self, latent_dim: int = 128, condition_dim: int = 128,
                 fused_batch_norm: bool = True, matmul_convs: bool = True,
                 synchronized_batch_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.condition_dim = int(condition_dim)
        self.fused_batch_norm = bool(fused_batch_norm)
        self.matmul_convs = bool(matmul_convs)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        # One attribute per layer: Keras 3 leaves layers held in a Python list out of
        # tf.train.Checkpoint's object graph, so a list would silently drop them from checkpoints.
        policy = self.dtype_policy
        live = None   # rows/columns of the block's input that can be non-zero (None: all)
        for index, (filters, stride) in enumerate(zip(GENERATOR_FILTERS, GENERATOR_STRIDES)):
            conv_arguments = dict(filters=filters, kernel_size=KERNEL_SIZE, strides=stride,
                                  padding="same", use_bias=False,
                                  kernel_initializer=_kernel_initializer(),
                                  name=f"conv_transpose_{index}", dtype=policy)
            if self.matmul_convs:
                conv = MatmulConv2DTranspose(live_input=live, **conv_arguments)
            else:
                conv = keras.layers.Conv2DTranspose(**conv_arguments)
            setattr(self, f"sn_conv_transpose_{index}", keras.layers.SpectralNormalization(
                conv, power_iterations=1, name=f"sn_conv_transpose_{index}", dtype=policy))
            # Without a BatchNorm offset (block 0 only) a stride above the kernel size leaves the
            # last (stride - kernel) rows and columns of the output at zero; afterwards all live.
            live = (live_after_conv_transpose(1, stride, KERNEL_SIZE, output_size=stride)
                    if index == 0 else None)
        # Block 0 has no BatchNorm (docs/method.md section 6): batch_norm_<k> belongs to block k >= 1.
        for index in range(1, len(GENERATOR_FILTERS)):
            setattr(self, f"batch_norm_{index}",
                    _batch_norm(self.fused_batch_norm, f"batch_norm_{index}", policy,
                                self.synchronized_batch_norm))
        self.activation = keras.layers.LeakyReLU(negative_slope=GENERATOR_LEAKY_SLOPE, dtype=policy)
        self.to_rgb = keras.layers.SpectralNormalization(
            keras.layers.Conv2D(IMAGE_CHANNELS, KERNEL_SIZE, padding="same", use_bias=False,
                                kernel_initializer=_kernel_initializer(), name="conv_to_rgb",
                                dtype=policy),
            power_iterations=1, name="sn_conv_to_rgb", dtype=policy)

    @property
    def input_dim(self) -> int:
        return self.latent_dim + self.condition_dim

    @property
    def upsampling_convs(self) -> list:
        """The six spectrally normalised transposed convolutions, block 0 first."""
        return [getattr(self, f"sn_conv_transpose_{index}")
                for index in range(len(GENERATOR_FILTERS))]

    @property
    def norms(self) -> list:
        """The BatchNorms of blocks 1-5 (``norms[k]`` follows ``upsampling_convs[k + 1]``)."""
        return [getattr(self, f"batch_norm_{index}") for index in range(1, len(GENERATOR_FILTERS))]

    def inference_layers(self) -> GeneratorInference:
        """The layers :meth:`call` runs with ``training=False``, in order (see :class:`GeneratorInference`)."""
        return GeneratorInference(
            input_dim=self.input_dim,
            convs=tuple(wrapper.layer for wrapper in self.upsampling_convs),
            norms=(None, *self.norms),
            negative_slope=float(self.activation.negative_slope),
            to_rgb=self.to_rgb.layer)

    def call(self, inputs, training=False, spectral_norm=None):
        """``spectral_norm``: whether the spectral normalisation runs its training step (one power
        iteration, the kernel overwritten by ``W / sigma``); None: as ``training``. True with
        ``training=False`` bounds every layer's gain while BatchNorm keeps its moving statistics."""
        sn_training = training if spectral_norm is None else spectral_norm
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.input_dim:
            # A reshape would silently fold a wrong-sized input into another batch size.
            raise ValueError(f"generator input has {inputs.shape[-1]} features; expected "
                             f"latent_dim + condition_dim = {self.input_dim}")
        x = ops.reshape(inputs, (-1, 1, 1, self.input_dim))
        x = self.activation(self.upsampling_convs[0](x, training=sn_training))
        for conv, norm in zip(self.upsampling_convs[1:], self.norms):
            x = self.activation(norm(conv(x, training=sn_training), training=training))
        return ops.cast(ops.tanh(self.to_rgb(x, training=sn_training)), "float32")

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "condition_dim": self.condition_dim, "fused_batch_norm": self.fused_batch_norm,
                "matmul_convs": self.matmul_convs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def same_padding_tap_mask(input_size: int, kernel_size: int, stride: int) -> np.ndarray:
    """``mask[o, t] = 1`` where tap ``t`` of output position ``o`` reads inside the input.

    Follows TensorFlow's 'same' padding (the smaller half of the padding before the input).
    Shape ``(ceil(input_size / stride), kernel_size)``, float32 of 0/1.
    """
    output_size = -(-input_size // stride)
    pad_total = max((output_size - 1) * stride + kernel_size - input_size, 0)
    pad_before = pad_total // 2
    positions = (np.arange(output_size)[:, None] * stride + np.arange(kernel_size)[None, :]
                 - pad_before)
    return ((positions >= 0) & (positions < input_size)).astype(np.float32)


@keras.saving.register_keras_serializable(package="eeg2image_tf")
class Discriminator(keras.Model):
    """``discriminator(images, condition, training=False) -> scores``.

    ``images`` ``(B, 128, 128, 3)``, ``condition`` ``(B, condition_dim)`` (tiled over the image and
    concatenated as extra channels), ``scores`` ``(B, 1)`` unbounded (no sigmoid: hinge loss).
    Six convolutions (no bias) each -> BatchNorm -> LeakyReLU(0.2), flatten (8 x 8 x 1) -> Dense(1).

    ``split_condition_conv=True`` computes the first convolution without materialising the
    ``(B, 128, 128, 3 + condition_dim)`` tiled input: the condition is constant over the image, so
    its contribution at an output position is the sum over the taps that fall inside the image
    (under 'same' padding) of ``c @ W[tap, 3:]`` (docs/method.md section 8). Same variables, same
    numbers up to float rounding, about a quarter less time per GAN iteration on CPU
    (docs/performance.md).
    ``fused_batch_norm`` and ``dtype``: as for :class:`Generator` (scores are float32).
    ``matmul_convs``: the 8x8, 512 -> 1024 convolution (stride 1) runs by Winograd F(2x2, 3x3) and
    the 16x16 one's kernel gradient as a patch product
    (:class:`~eeg2image_tf.models.matmul_conv.MatmulConv2D`); same numbers up to float32 rounding,
    faster than oneDNN's float32 kernels at those sizes.
    """

    def __init__(self, condition_dim: int = 128, split_condition_conv: bool = False,
                 fused_batch_norm: bool = True, matmul_convs: bool = True,
                 synchronized_batch_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.condition_dim = int(condition_dim)
        self.split_condition_conv = bool(split_condition_conv)
        self.fused_batch_norm = bool(fused_batch_norm)
        self.matmul_convs = bool(matmul_convs)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        policy = self.dtype_policy
        conv_class = MatmulConv2D if self.matmul_convs else keras.layers.Conv2D
        # One attribute per layer (see Generator: lists are not checkpointed by Keras 3).
        for index, (filters, stride) in enumerate(zip(DISCRIMINATOR_FILTERS,
                                                      DISCRIMINATOR_STRIDES)):
            setattr(self, f"conv_{index}", conv_class(
                filters, KERNEL_SIZE, strides=stride, padding="same", use_bias=False,
                kernel_initializer=_kernel_initializer(), name=f"conv_{index}", dtype=policy))
            setattr(self, f"batch_norm_{index}",
                    _batch_norm(self.fused_batch_norm, f"batch_norm_{index}", policy,
                                self.synchronized_batch_norm))
        self.activation = keras.layers.LeakyReLU(negative_slope=DISCRIMINATOR_LEAKY_SLOPE,
                                                 dtype=policy)
        self.flatten = keras.layers.Flatten(dtype=policy)
        self.score = keras.layers.Dense(1, name="score", dtype=policy)

    @property
    def convs(self) -> list:
        return [getattr(self, f"conv_{index}") for index in range(len(DISCRIMINATOR_FILTERS))]

    @property
    def norms(self) -> list:
        return [getattr(self, f"batch_norm_{index}")
                for index in range(len(DISCRIMINATOR_FILTERS))]

    def _first_conv(self, images, condition):
        """The first convolution over ``concat([images, tile(condition)])``: ``(B, 64, 64, 64)``."""
        conv = self.convs[0]
        height, width, image_channels = images.shape[1], images.shape[2], images.shape[3]
        if not self.split_condition_conv or height is None or width is None:
            tiled = ops.tile(condition[:, None, None, :], (1, ops.shape(images)[1],
                                                           ops.shape(images)[2], 1))
            return conv(ops.concatenate([images, tiled], axis=-1))
        if not conv.built:
            conv.build((None, height, width, image_channels + self.condition_dim))
        kernel = ops.cast(conv.kernel, images.dtype)   # a mixed policy computes in bfloat16
        image_part = ops.conv(images, kernel[:, :, :image_channels, :], strides=conv.strides,
                              padding="same")
        per_tap = ops.einsum("bc,hwco->bhwo", condition, kernel[:, :, image_channels:, :])
        rows = ops.convert_to_tensor(
            same_padding_tap_mask(height, conv.kernel_size[0], conv.strides[0]), dtype=per_tap.dtype)
        cols = ops.convert_to_tensor(
            same_padding_tap_mask(width, conv.kernel_size[1], conv.strides[1]), dtype=per_tap.dtype)
        # Sum the taps over columns first, then rows: two small contractions, no 131-channel tensor.
        per_row_tap = ops.einsum("jw,bhwo->bhjo", cols, per_tap)
        condition_part = ops.einsum("ih,bhjo->bijo", rows, per_row_tap)
        return image_part + condition_part

    def call(self, images, condition, training=False):
        x = self._first_conv(images, condition)
        x = self.activation(self.norms[0](x, training=training))
        for conv, norm in zip(self.convs[1:], self.norms[1:]):
            x = self.activation(norm(conv(x), training=training))
        return ops.cast(self.score(self.flatten(x)), "float32")

    def get_config(self):
        return {**super().get_config(), "condition_dim": self.condition_dim,
                "split_condition_conv": self.split_condition_conv,
                "fused_batch_norm": self.fused_batch_norm, "matmul_convs": self.matmul_convs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_generator(latent_dim: int = 128, condition_dim: int = 128,
                    fused_batch_norm: bool = True, dtype=None, matmul_convs: Optional[bool] = None,
                    synchronized_batch_norm: bool = False) -> Generator:
    """A :class:`Generator` whose variables exist (one dummy call with ``training=False``).

    ``dtype``: a Keras dtype policy (None: the global one, normally float32).
    ``matmul_convs``: None chooses by the device (:func:`~.matmul_conv.use_matmul_convs`).
    ``synchronized_batch_norm``: under a strategy of several replicas, BatchNorm normalises with the
    global batch's statistics (the multi-worker GAN); same variables.
    """
    generator = Generator(latent_dim=latent_dim, condition_dim=condition_dim,
                          fused_batch_norm=fused_batch_norm,
                          matmul_convs=use_matmul_convs(matmul_convs),
                          synchronized_batch_norm=synchronized_batch_norm, dtype=dtype)
    generator(ops.zeros((1, latent_dim + condition_dim), dtype="float32"), training=False)
    return generator


def build_discriminator(condition_dim: int = 128, split_condition_conv: bool = False,
                        fused_batch_norm: bool = True, dtype=None,
                        matmul_convs: Optional[bool] = None,
                        synchronized_batch_norm: bool = False) -> Discriminator:
    """A :class:`Discriminator` whose variables exist (one dummy call with ``training=False``).

    ``dtype``, ``matmul_convs``, ``synchronized_batch_norm``: as for :func:`build_generator`.
    """
    discriminator = Discriminator(condition_dim=condition_dim,
                                  split_condition_conv=split_condition_conv,
                                  fused_batch_norm=fused_batch_norm,
                                  matmul_convs=use_matmul_convs(matmul_convs),
                                  synchronized_batch_norm=synchronized_batch_norm, dtype=dtype)
    discriminator(ops.zeros((1, IMAGE_SIZE, IMAGE_SIZE, IMAGE_CHANNELS), dtype="float32"),
                  ops.zeros((1, condition_dim), dtype="float32"), training=False)
    return discriminator
