"""Batched, reproducible per-class image generation from test-set EEG features (spec section 5).

The original generates its 50,000 evaluation images one at a time. Here the generator runs in fixed
size batches inside one ``tf.function`` while a thread pool encodes and writes the JPEGs of the
previous batch (OpenCV releases the GIL while encoding, so the two overlap on two cores). For our
Generator the transposed convolutions on small inputs are computed as matrix products, an exact
re-expression that TensorFlow's CPU kernels run several times faster (see "Fast inference" below).

Reproducibility: image ``k`` of class ``c`` is conditioned on the test trial ``k mod m_c`` of that
class (``m_c`` trials, in trial order) and gets the ``k``-th latent vector of a random stream seeded
by ``(seed, c)``. The images therefore depend on the seed only: not on the batch size, not on the
number of writer threads, and ``per_class=n`` yields exactly the first ``n`` images of any larger run.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import io
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .errors import CheckpointError, DataError, Eeg2ImageError
from .io_utils import atomic_write_text, replace_bytes

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("file", "class", "class_index", "source_trial")
DEFAULT_LATENT_DIM = 128


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One generated image: ``file`` relative to the output folder, with forward slashes."""

    file: str
    class_name: str
    class_index: int
    source_trial: int


@dataclasses.dataclass(frozen=True)
class GenerationManifest:
    """What :func:`generate_images` wrote (``rows`` in class-major order, ``k`` ascending)."""

    out_dir: Path
    rows: tuple[ManifestRow, ...]
    class_names: tuple[str, ...]
    seconds: float                  # generating and writing, after start-up
    startup_seconds: float = 0.0    # building, checking and tracing the forward pass, once

    @property
    def path(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def images_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


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


@dataclasses.dataclass(frozen=True)
class GenerationSources:
    """Everything generation needs, loaded from a GAN run or from explicit checkpoints."""

    generator: Any
    encoder: Any
    features_by_class: tuple[np.ndarray, ...]   # (m_c, condition_dim) float32 test features
    trials_by_class: tuple[np.ndarray, ...]     # (m_c,) int64 indices into x_test
    test_features: np.ndarray                   # (N_test, condition_dim) float32, trial order
    class_names: tuple[str, ...]
    latent_dim: int
    splits: Any                                 # the EEGSplits the features came from
    normalisation: str
    images_root: Optional[Path]                 # the images folder the GAN was trained on, if known
    gan_config: Any                             # GanTrainConfig of the run, or None


# --------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------

def to_uint8(images: np.ndarray) -> np.ndarray:
    """The original's conversion of generator output in [-1, 1] to uint8 0-255 (truncating).

    ``uint8(clip((x * 0.5 + 0.5) * 255, 0, 255))`` computed in float32; shape unchanged.
    """
    scaled = (np.asarray(images, dtype=np.float32) * np.float32(0.5) + np.float32(0.5)) \
        * np.float32(255.0)
    return np.clip(scaled, 0.0, 255.0).astype(np.uint8)


def encode_jpeg(rgb: np.ndarray, quality: int = 95, name: str = "<image>") -> bytes:
    """JPEG bytes of one uint8 ``(H, W, 3)`` RGB image (channels reversed for OpenCV, as the original)."""
    import cv2

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise DataError(f"{name}: OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def decode_jpeg(data: bytes, name: str = "<image>") -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB from JPEG (or PNG) bytes."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{name}: not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def jpeg_round_trip(images: np.ndarray, quality: int = 95) -> np.ndarray:
    """What the images become once written as JPEG and read back: uint8 ``(N, H, W, 3)`` RGB."""
    return np.stack([decode_jpeg(encode_jpeg(image, quality)) for image in images]) \
        if len(images) else np.asarray(images)


def image_file_name(class_name: str, k: int) -> str:
    """``<ClassName>/<ClassName>_<k>.jpg``, the original's layout."""
    return f"{class_name}/{class_name}_{k}.jpg"


# --------------------------------------------------------------------------------------------------
# Conditions and latents
# --------------------------------------------------------------------------------------------------

def encoder_features(encoder, eeg, batch_size: int = 1024) -> np.ndarray:
    """The encoder's 128-d **feature** (not the embedding), ``training=False``.

    ``eeg`` is preprocessed ``(N, T, C)`` float32; returns float32 ``(N, feature_dim)``.
    """
    import tensorflow as tf

    eeg = tf.convert_to_tensor(eeg, dtype=tf.float32)
    n = int(eeg.shape[0])
    if n == 0:
        raise DataError("encoder_features: no EEG trials")
    parts = []
    for start in range(0, n, batch_size):
        _, feature = encoder(eeg[start:start + batch_size], training=False)
        parts.append(np.asarray(feature, dtype=np.float32))
    return np.concatenate(parts, axis=0)


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
    """One Uniform(-1, 1) stream per class, seeded by ``(seed, class_index)``.

    Drawing ``n`` then ``m`` vectors gives the same numbers as drawing ``n + m`` at once, which is
    what makes the images independent of the batch size.
    """

    def __init__(self, seed: int, num_classes: int, latent_dim: int):
        self.latent_dim = latent_dim
        self._streams = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, c])))
                         for c in range(num_classes)]

    def draw(self, class_index: int, count: int) -> np.ndarray:
        """Next ``count`` latent vectors of ``class_index``: float32 ``(count, latent_dim)``."""
        values = self._streams[class_index].uniform(-1.0, 1.0, size=(count, self.latent_dim))
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


# --------------------------------------------------------------------------------------------------
# Fast inference of our Generator
# --------------------------------------------------------------------------------------------------
#
# Two exact re-expressions make inference faster on CPU, with the same sums added in another order
# (outputs agree to float32 rounding; the function is checked against
# ``generator(x, training=False)`` before use):
#
# - transposed convolutions on small inputs as one matrix product plus a phase-wise overlap-add
#   (TensorFlow's CPU kernel is slow when the input is small and the channels many; on some machines
#   of this kind the 4x4x1024 -> 8x8x512 layer took 2.8 s at batch 64 against 0.15 s as a product);
# - BatchNorm with moving statistics folded into the preceding kernel: ``conv(x, W) * s + t`` is
#   ``conv(x, W * s) + t`` with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``.

# Transposed convolutions on inputs of at most GENERATION_MATMUL_MAX_PIXELS pixels use the
# matrix-product form (models.matmul_conv; measured at inference: faster at 1x1 and 4x4 inputs,
# slower from 8x8 on, where training still gains from it).
GENERATION_MATMUL_MAX_PIXELS = 16
FAST_PATH_TOLERANCE = 1e-4
# The mixed-precision paths are checked against the float32 model too, by the MEAN absolute
# difference (images in [-1, 1]): bfloat16 rounding moves a few pixels a lot where tanh's input is
# near a sharp edge. Measured: on the old demo's generator max 0.054, mean 0.0015; on an as-run
# generator (raw kernels, never divided by sigma, norms up to 43) max 0.28, mean 0.0009, the same
# as Keras's own bfloat16 model of it (max 0.29, mean 0.0010). A wrong fast path differs by tenths
# on average. The float32 path is held to its maximum difference.
BFLOAT16_TOLERANCE = 0.01
# float16 keeps 3 more mantissa bits than bfloat16: on the same random generator its difference
# measured a tenth of bfloat16's (max 4.9e-7 vs 4.7e-6), so a fifth of bfloat16's tolerance.
FLOAT16_TOLERANCE = 0.002
FAST_CALL_TOLERANCES = {"float32": FAST_PATH_TOLERANCE, "mixed_bfloat16": BFLOAT16_TOLERANCE,
                        "mixed_float16": FLOAT16_TOLERANCE}


def _plain_conv_transpose_layer(layer) -> bool:
    import keras

    return (isinstance(layer, keras.layers.Conv2DTranspose) and not layer.use_bias
            and layer.padding == "same" and tuple(layer.dilation_rate) == (1, 1)
            and layer.strides[0] == layer.strides[1] and layer.output_padding is None
            and layer.data_format == "channels_last"
            and getattr(layer.activation, "__name__", None) == "linear")


def _plain_batch_norm(layer) -> bool:
    import keras

    axis = layer.axis if isinstance(layer.axis, int) else None
    return (isinstance(layer, keras.layers.BatchNormalization) and axis in (-1, 3)
            and layer.scale and layer.center and not layer.renorm)


def fast_generator_call(generator, precision: str = "float32", *,
                        matmul_max_pixels: int = GENERATION_MATMUL_MAX_PIXELS,
                        narrow_rgb: bool = True) -> Optional[Any]:
    """``call(inputs) -> images`` equal to ``generator(inputs, training=False)``, faster on CPU.

    ``precision="mixed_bfloat16"`` runs the same arithmetic in bfloat16 (folded in float32, then
    rounded; images returned as float32): the convolutions run 2-6x as fast on CPUs with
    AVX512-BF16 or AMX, and the images equal the float32 ones to bfloat16 rounding only
    (``precision`` module). ``"mixed_float16"`` likewise in float16 (for GPUs).

    Only for our :class:`~eeg2image_tf.models.Generator` (also what the original checkpoints load
    into); returns None for any other model, whose own call is then used. Spectral normalisation at
    inference convolves with the stored kernel (models.gan), so the wrapped layer's kernel is used.
    The folded kernels are computed inside the call from the current variables, so the function
    stays right when the weights change (a restored checkpoint). (Folding once, outside the call,
    measured no faster at batch 32 once the products read the kernels without a transposed copy.)

    ``matmul_max_pixels``: transposed convolutions on inputs of at most this many pixels run as
    matrix products (:func:`~eeg2image_tf.models.matmul_conv.conv_transpose_as_matmul`), larger
    ones by TensorFlow's kernel. ``narrow_rgb``: the 3-channel layer by
    :func:`~eeg2image_tf.models.matmul_conv.narrow_conv3x3`.
    """
    convs = getattr(generator, "upsampling_convs", None)
    norms = getattr(generator, "norms", None)
    to_rgb = getattr(generator, "to_rgb", None)
    activation = getattr(generator, "activation", None)
    input_dim = getattr(generator, "input_dim", None)
    if not convs or norms is None or len(norms) != len(convs) - 1 or to_rgb is None \
            or activation is None or input_dim is None:
        return None
    layers = [getattr(conv, "layer", None) for conv in convs]
    if not all(_plain_conv_transpose_layer(layer) for layer in layers) \
            or not all(_plain_batch_norm(norm) for norm in norms):
        return None

    import tensorflow as tf

    from .models.matmul_conv import (conv_transpose_as_matmul, live_after_conv_transpose,
                                     narrow_conv3x3)
    from .precision import compute_dtype

    dtype = tf.as_dtype(compute_dtype(precision))

    def folded(index):
        """Kernel ``(k, k, C_out, C_in)`` and offset ``(C_out,)`` (None: no BatchNorm) of block ``index``."""
        kernel = tf.convert_to_tensor(layers[index].kernel)
        if index == 0:   # block 0 has no BatchNorm (spec section 6)
            return kernel, None
        norm = norms[index - 1]
        scale = norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
        offset = norm.beta - norm.moving_mean * scale
        return kernel * scale[None, None, :, None], offset

    def call(inputs):
        x = tf.cast(tf.reshape(inputs, (-1, 1, 1, input_dim)), dtype)
        # Rows and columns of x that can be non-zero (all, except after block 0: see below).
        live = x.shape[1]
        for index, layer in enumerate(layers):
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
            x = tf.nn.leaky_relu(x, alpha=activation.negative_slope)
            # Without a BatchNorm offset, a transposed convolution whose stride exceeds its kernel
            # (block 0: 1x1 -> 4x4 with 3 taps) leaves its last (stride - k) rows and columns at
            # exactly zero, and LeakyReLU(0) = 0; the next layer may skip them.
            live = x.shape[1] if offset is not None else \
                live_after_conv_transpose(live, stride, int(layer.kernel_size[0]), x.shape[1])
        rgb_kernel = tf.cast(to_rgb.layer.kernel, dtype)
        rgb = narrow_conv3x3(x, rgb_kernel) if narrow_rgb else \
            tf.nn.conv2d(x, rgb_kernel, 1, padding="SAME")
        return tf.tanh(tf.cast(rgb, tf.float32))

    return call


def _verified_fast_call(generator, input_dim: int, precision: str = "float32") -> Optional[Any]:
    """The fast call if it reproduces ``generator(x, training=False)`` on a probe batch, else None."""
    import warnings

    import tensorflow as tf

    call = fast_generator_call(generator, precision)
    if call is None:
        return None
    tolerance = FAST_CALL_TOLERANCES[precision]
    probe = np.random.default_rng(0).uniform(-1.0, 1.0, (8, input_dim)).astype(np.float32)
    try:
        expected = np.asarray(generator(probe, training=False))
        found = np.asarray(tf.function(call)(probe))
    except Exception as exc:  # noqa: BLE001 - any failure means: use the generator's own call
        warnings.warn(f"fast generator inference unavailable ({type(exc).__name__}: {exc}); "
                      "using the generator's own call", RuntimeWarning, stacklevel=3)
        return None
    errors = np.abs(expected - found)
    difference = float(np.max(errors) if precision == "float32" else np.mean(errors))
    if not difference <= tolerance:
        warnings.warn(f"fast generator inference differs by {difference:.2g}; using the "
                      "generator's own call", RuntimeWarning, stacklevel=3)
        return None
    return call


def make_uint8_forward(generator, batch_size: int, input_dim: int, fast: bool = True,
                       precision: str = "float32"):
    """A ``tf.function`` with one fixed signature: ``(batch_size, input_dim)`` -> uint8 RGB images.

    The conversion to uint8 runs in the graph so the Python thread only hands bytes to the writers.
    ``fast`` uses :func:`fast_generator_call` when it applies and passes its check.
    ``precision`` other than float32 needs that fast call (ours is the only generator it knows); a
    generator it does not apply to runs its own float32 call, with a warning.
    """
    import tensorflow as tf

    from .precision import check_precision, warn_if_slow

    check_precision(precision)
    warn_if_slow(precision)
    call = _verified_fast_call(generator, input_dim, precision) if fast or \
        precision != "float32" else None
    if call is None and precision != "float32":
        import warnings

        warnings.warn(f"{precision} generation needs the fast generator call, which this "
                      "generator cannot use (see above); running float32", RuntimeWarning,
                      stacklevel=2)
    if call is None:
        def call(inputs):
            return generator(inputs, training=False)

    @tf.function(input_signature=[tf.TensorSpec((batch_size, input_dim), tf.float32)])
    def forward(inputs):
        images = call(inputs)
        scaled = (tf.cast(images, tf.float32) * 0.5 + 0.5) * 255.0
        return tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8)

    return forward


def iterate_generated(generator, features_by_class: Sequence[np.ndarray], per_class: int,
                      batch_size: int = 256, seed: int = 45, *,
                      trials_by_class: Optional[Sequence[np.ndarray]] = None,
                      latent_dim: Optional[int] = None,
                      precision: str = "float32", forward=None) -> Iterator[GeneratedBatch]:
    """Yield the generated images in class-major order, ``batch_size`` at a time (last one shorter).

    ``features_by_class``: per class a ``(m_c, condition_dim)`` array of conditions, cycled in order to
    ``per_class`` images; the generator input is ``concat([z, c])`` with ``z ~ U(-1, 1)`` from
    :class:`LatentStreams`. ``trials_by_class`` names the trial of each condition row (default: the
    row number) for the bookkeeping. ``precision``: see :func:`make_uint8_forward`. ``forward``:
    one made already by :func:`make_uint8_forward` for ``min(batch_size, total)`` rows.
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
    if forward is None:
        forward = make_uint8_forward(generator, batch_size, latent_dim + condition_dim,
                                     precision=precision)
    streams = LatentStreams(seed, len(features_by_class), latent_dim)

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
                    latent_dim: Optional[int] = None, jpeg_quality: Optional[int] = None,
                    show_progress: bool = False, precision: str = "float32") -> GeneratedSet:
    """The images :func:`generate_images` would write, in memory (uint8 RGB).

    With ``jpeg_quality`` the images go through JPEG encoding and decoding, so that metrics computed
    on them match metrics computed on the written files.
    """
    from .training.common import progress_bar

    total = per_class * len(features_by_class)
    parts: list[GeneratedBatch] = []
    bar = progress_bar(total, desc="generate", unit="img") if show_progress else None
    for batch in iterate_generated(generator, features_by_class, per_class, batch_size, seed,
                                   trials_by_class=trials_by_class, latent_dim=latent_dim,
                                   precision=precision):
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


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

def _write_jpegs(out_dir: Path, names: list[str], images: np.ndarray, quality: int) -> int:
    for name, image in zip(names, images):
        replace_bytes(out_dir / name, encode_jpeg(image, quality, name=str(out_dir / name)))
    return len(names)


def manifest_text(rows: Sequence[ManifestRow]) -> str:
    """The manifest CSV: header ``file,class,class_index,source_trial`` and one line per image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        writer.writerow((row.file, row.class_name, row.class_index, row.source_trial))
    return buffer.getvalue()


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a ``manifest.csv`` written by :func:`generate_images`."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
                raise DataError(f"{path}: expected columns {','.join(MANIFEST_COLUMNS)}, "
                                f"found {','.join(reader.fieldnames or ())}")
            return [ManifestRow(file=r["file"], class_name=r["class"],
                                class_index=int(r["class_index"]),
                                source_trial=int(r["source_trial"])) for r in reader]
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: malformed manifest row ({exc})") from None


def generate_images(generator, features_by_class: Sequence[np.ndarray],
                    class_names: Sequence[str], out_dir: str | Path, per_class: int,
                    batch_size: int = 256, seed: int = 45, *,
                    trials_by_class: Optional[Sequence[np.ndarray]] = None,
                    latent_dim: Optional[int] = None, jpeg_quality: int = 95,
                    writer_threads: int = 2, show_progress: bool = True,
                    precision: str = "float32") -> GenerationManifest:
    """Generate ``per_class`` images per class and write them as JPEG, plus ``manifest.csv``.

    Files: ``<out_dir>/<ClassName>/<ClassName>_<k>.jpg`` (``k`` from 0 within each class), each
    written to a temporary name and renamed (never partial under its name; flushed to disk together
    before the manifest), then ``<out_dir>/manifest.csv`` (columns ``file, class, class_index,
    source_trial``) written atomically last, so a manifest only ever describes a complete set.
    Pixels: the original's ``uint8(clip((x * 0.5 + 0.5) * 255))``, RGB -> BGR for OpenCV.
    See :func:`iterate_generated` for conditions, latents and reproducibility.
    """
    from .training.common import progress_bar

    class_names = tuple(str(name) for name in class_names)
    if len(class_names) != len(features_by_class):
        raise Eeg2ImageError(f"{len(class_names)} class names for {len(features_by_class)} classes")
    if writer_threads < 1:
        raise Eeg2ImageError(f"writer_threads must be at least 1, got {writer_threads}")
    out_dir = Path(out_dir)
    for name in class_names:
        (out_dir / name).mkdir(parents=True, exist_ok=True)

    rows: list[ManifestRow] = []
    total = per_class * len(class_names)
    # Start-up (the fast path's check and the trace) is timed apart: it is paid once per run,
    # whatever the number of images, like the original's own model loading.
    startup_started = time.monotonic()
    forward = prepare_forward(generator, features_by_class, per_class, batch_size, latent_dim,
                              precision)
    startup_seconds = time.monotonic() - startup_started
    bar = progress_bar(total, desc="generate", unit="img") if show_progress else None
    started = time.monotonic()
    # At most two batches wait for the writers: enough to keep them busy while the generator runs,
    # little enough to bound memory at 50,000 images.
    max_pending = 2 * writer_threads
    pending: collections.deque = collections.deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            written = pending.popleft().result()
            if bar is not None:
                bar.update(written)

    with concurrent.futures.ThreadPoolExecutor(max_workers=writer_threads,
                                               thread_name_prefix="jpeg") as pool:
        try:
            for batch in iterate_generated(generator, features_by_class, per_class, batch_size,
                                           seed, trials_by_class=trials_by_class,
                                           latent_dim=latent_dim, precision=precision,
                                           forward=forward):
                names = [image_file_name(class_names[c], int(k))
                         for c, k in zip(batch.class_index, batch.k)]
                rows.extend(ManifestRow(file=name, class_name=class_names[c], class_index=int(c),
                                        source_trial=int(t))
                            for name, c, t in zip(names, batch.class_index, batch.source_trial))
                # One chunk per writer thread, so a batch is written by all threads at once.
                for part in np.array_split(np.arange(len(names)), writer_threads):
                    if part.size:
                        pending.append(pool.submit(_write_jpegs, out_dir,
                                                   [names[i] for i in part],
                                                   batch.images[part[0]:part[-1] + 1],
                                                   jpeg_quality))
                settle(max_pending)
            settle(0)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
    # One flush of the whole set instead of an fsync per image (io_utils.replace_bytes), before
    # the manifest that vouches for it.
    os.sync()
    seconds = time.monotonic() - started
    atomic_write_text(out_dir / MANIFEST_NAME, manifest_text(rows))
    return GenerationManifest(out_dir=out_dir, rows=tuple(rows), class_names=class_names,
                              seconds=seconds, startup_seconds=startup_seconds)


# --------------------------------------------------------------------------------------------------
# Loading a GAN run (or converted checkpoints)
# --------------------------------------------------------------------------------------------------

def generator_of(loaded) -> Any:
    """The generator out of what ``checkpoints.load_gan`` returns (an object or a pair)."""
    if hasattr(loaded, "generator"):
        return loaded.generator
    if isinstance(loaded, (tuple, list)) and loaded:
        return loaded[0]
    return loaded


def image_split_folder(images: str | Path, split: str) -> Optional[Path]:
    """``<images>/<split>`` when ``images`` is the images root, or the sibling ``<split>`` folder when
    ``images`` is itself ``.../train`` (runs store either); None when there is none."""
    images = Path(images)
    for candidate in (images / split, images.parent / split):
        if candidate.is_dir():
            return candidate
    if split == "train" and images.is_dir() and images.name == "train":
        return images
    return None


def _class_names(images: Optional[str], splits, num_classes: int) -> tuple[str, ...]:
    if images:
        from .data import list_image_folder

        folder = image_split_folder(images, "train")
        if folder is not None:
            names = tuple(list_image_folder(str(folder)).class_names)
            if len(names) != num_classes:
                raise DataError(f"{folder}: {len(names)} class folders but the EEG set has "
                                f"{num_classes} classes")
            return names
    names = getattr(splits, "class_names", None)
    if names:
        if len(names) != num_classes:
            raise DataError(f"{splits.source}: {len(names)} class names for {num_classes} classes")
        return tuple(names)
    return tuple(f"class_{c}" for c in range(num_classes))


def load_generation_sources(run: Optional[str] = None, gan: Optional[str] = None,
                            encoder: Optional[str] = None, data: Optional[str] = None,
                            images: Optional[str] = None,
                            feature_batch_size: int = 1024, ema: bool = True) -> GenerationSources:
    """Load generator, frozen encoder and per-class test features.

    From a GAN run (``run``; its ``config.json`` names data, images and encoder, the generator is its
    latest checkpoint) or from explicit paths (``gan`` checkpoint/dir, e.g. one converted by
    ``import_original``; ``encoder``; ``data``). Explicit paths override the run's. ``ema``: the
    checkpoint's weight-averaged generator when it holds one (``train_gan --ema-decay``).
    """
    from .checkpoints import load_encoder, load_gan
    from .config import GanTrainConfig, load_config
    from .data import load_thoughtviz, preprocess

    gan_config = None
    normalisation = "original"
    if run is not None:
        gan_config = load_config(GanTrainConfig, run)
        gan = gan or run
        encoder = encoder or gan_config.encoder
        data = data or gan_config.data
        images = images or gan_config.images
        normalisation = gan_config.normalisation
    missing = [flag for flag, value in (("--gan", gan), ("--encoder", encoder), ("--data", data))
               if not value]
    if missing:
        raise Eeg2ImageError(f"give --run, or all of --gan, --encoder and --data "
                             f"(missing {', '.join(missing)})")

    splits = load_thoughtviz(data)
    num_classes = splits.num_classes
    class_names = _class_names(images, splits, num_classes)
    encoder_model = load_encoder(encoder)
    generator = generator_of(load_gan(gan, ema=ema))
    if generator is None:
        raise CheckpointError(f"{gan}: no generator in this checkpoint")
    test_features = encoder_features(encoder_model, preprocess(splits.x_test, method=normalisation),
                                     batch_size=feature_batch_size)
    features_by_class, trials_by_class = group_by_class(
        test_features, splits.y_test, num_classes, class_names, source=f"{data} (test set)")
    latent_dim = gan_config.latent_dim if gan_config is not None else \
        _infer_latent_dim(generator, test_features.shape[1], None)
    images_root = Path(images) if images else None
    return GenerationSources(generator=generator, encoder=encoder_model,
                             features_by_class=features_by_class, trials_by_class=trials_by_class,
                             test_features=test_features, class_names=class_names,
                             latent_dim=int(latent_dim), splits=splits,
                             normalisation=normalisation, images_root=images_root,
                             gan_config=gan_config)


def _refuse_other_source(config, force: bool) -> None:
    # prepare_run_dir ignores a field named ``run`` (elsewhere it is the output folder itself); here
    # it names the GAN the images come from, and two GANs must not share one output folder.
    from .config import GenerateConfig, load_config
    from .errors import ConfigError

    path = Path(config.out) / "generate_config.json"
    if force or not path.exists():
        return
    previous = load_config(GenerateConfig, config.out, filename=path.name)
    if previous.run != config.run:
        raise ConfigError(f"{path}: these images came from --run {previous.run}, not "
                          f"{config.run}; use another --out, or --force")


def generate_from_run(config, force: bool = False, show_progress: bool = True) -> GenerationManifest:
    """``generate`` as a library call: :class:`~eeg2image_tf.config.GenerateConfig` -> files.

    The config is saved as ``<out>/generate_config.json``; regenerating into the same folder with a
    different config is refused unless ``force`` (the batch size and thread count may change: they
    do not change the images).
    """
    from .config import prepare_run_dir

    if config.per_class < 1:
        raise Eeg2ImageError(f"--per-class must be at least 1, got {config.per_class}")
    sources = load_generation_sources(run=config.run, gan=config.gan, encoder=config.encoder,
                                      data=config.data, images=config.images, ema=config.ema)
    _refuse_other_source(config, force)
    prepare_run_dir(config, config.out, force=force, filename="generate_config.json")
    return generate_images(sources.generator, sources.features_by_class, sources.class_names,
                           config.out, config.per_class, config.batch_size, config.seed,
                           trials_by_class=sources.trials_by_class, latent_dim=sources.latent_dim,
                           jpeg_quality=config.jpeg_quality, writer_threads=config.writer_threads,
                           show_progress=show_progress, precision=config.precision)
