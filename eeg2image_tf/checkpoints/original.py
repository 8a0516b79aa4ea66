"""Load the authors' TF 2.8 checkpoints into our Keras 3 models, by key (docs/method.md sections 3-4).

Keras 3 cannot restore them through the object graph: the attribute names differ and the optimizer
state belongs to the legacy Keras 2 optimizer. Model variables are read one key at a time with
``tf.train.load_checkpoint``; optimizer slots, ``step`` and ``save_counter`` are ignored.

Layouts match ours one to one: Keras 2 and Keras 3 LSTMs share the ``[i, f, c, o]`` gate order,
the transposed-convolution kernels are ``(kh, kw, out, in)`` in both, and the original's
tensorflow-addons spectral-norm vectors ``sn_u`` ``(1, kernel.shape[-1])`` become Keras'
``vector_u`` unchanged (both wrappers use the stored kernel as is at inference; see models.gan).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from ..errors import CheckpointError
from ..models import build_discriminator, build_encoder, build_generator
from ..runs import checkpoint_prefix, latest_checkpoint_in

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
ENCODER_PREFIX = "model/encoder/"
GAN_PREFIX = "model/gen/"


def resolve_original_checkpoint(path: str | Path) -> str:
    """The checkpoint prefix (``.../ckpt-2420``) for a prefix or a checkpoint directory.

    A directory's ``checkpoint`` index file names the prefix; without one, the highest-numbered
    ``*.index`` file is taken.
    """
    path = Path(path)
    if path.is_dir():
        return latest_checkpoint_in(path)
    return checkpoint_prefix(path, original=True)


def checkpoint_variable_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of every variable stored under ``prefix``."""
    try:
        return {key: tuple(shape) for key, shape in tf.train.list_variables(prefix)}
    except (tf.errors.OpError, ValueError) as exc:
        raise CheckpointError(f"{prefix}: unreadable checkpoint ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _KeyReader:
    """Reads ``<key>/.ATTRIBUTES/VARIABLE_VALUE`` tensors, failing with the file and key named."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.shapes = checkpoint_variable_shapes(prefix)
        self._reader = tf.train.load_checkpoint(prefix)

    def shape(self, key: str) -> tuple[int, ...]:
        full_key = key + VALUE_SUFFIX
        if full_key not in self.shapes:
            raise CheckpointError(f"{self.prefix}: missing key '{key}' "
                                  "(not an original EEG2Image checkpoint of this kind?)")
        return self.shapes[full_key]

    def read(self, key: str, expected_shape: tuple[int, ...]) -> np.ndarray:
        found = self.shape(key)
        if found != tuple(expected_shape):
            raise CheckpointError(f"{self.prefix}: '{key}' has shape {found}, "
                                  f"expected {tuple(expected_shape)}")
        return self._reader.get_tensor(key + VALUE_SUFFIX)


def _assign_all(reader: _KeyReader, pairs: list[tuple[str, object]]) -> None:
    """Check every (key, variable) pair first, then assign: a bad file leaves no half-loaded model."""
    values = [reader.read(key, tuple(variable.shape)) for key, variable in pairs]
    for (_, variable), value in zip(pairs, values):
        variable.assign(value)


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------

def _encoder_pairs(encoder) -> list[tuple[str, object]]:
    pairs = []
    for index, lstm in enumerate((encoder.sequence_lstm, encoder.feature_lstm)):
        cell = lstm.cell
        for name, variable in (("kernel", cell.kernel), ("recurrent_kernel", cell.recurrent_kernel),
                               ("bias", cell.bias)):
            pairs.append((f"model/encoder/{index}/cell/{name}", variable))
    return pairs


def load_original_encoder(path: str | Path):
    """The authors' ``TripleNet`` checkpoint (e.g. ``ckpt-2420``) as an :class:`EEGEncoder`.

    ``path``: a checkpoint prefix or a checkpoint directory. The sizes (input
    channels, hidden units, feature size) are read from the stored kernels, then every variable is
    checked against them. Raises :class:`CheckpointError` naming the file and the missing key or the
    expected vs found shape.
    """
    prefix = resolve_original_checkpoint(path)
    reader = _KeyReader(prefix)
    num_channels = _first_dim(reader, "model/encoder/0/cell/kernel")
    hidden = _first_dim(reader, "model/encoder/0/cell/recurrent_kernel")
    feature_dim = _first_dim(reader, "model/encoder/1/cell/recurrent_kernel")
    encoder = build_encoder(feature_dim=feature_dim, hidden=hidden, num_channels=num_channels)
    _assign_all(reader, _encoder_pairs(encoder))
    return encoder


def _first_dim(reader: _KeyReader, key: str) -> int:
    shape = reader.shape(key)
    if len(shape) != 2 or shape[0] < 1:
        raise CheckpointError(f"{reader.prefix}: '{key}' has shape {shape}, expected a matrix")
    return int(shape[0])


# --------------------------------------------------------------------------------------------------
# GAN
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class OriginalGAN:
    """The generator and discriminator of an original-format GAN checkpoint, as our models."""

    generator: object
    discriminator: object
    source: str


_BATCH_NORM_VARIABLES: tuple[tuple[str, Callable], ...] = (
    ("gamma", lambda norm: norm.gamma),
    ("beta", lambda norm: norm.beta),
    ("moving_mean", lambda norm: norm.moving_mean),
    ("moving_variance", lambda norm: norm.moving_variance),
)


def _generator_pairs(generator) -> list[tuple[str, object]]:
    pairs = []
    for index, wrapper in enumerate(generator.upsampling_convs):
        pairs.append((f"model/gen/conv/{index}/w", wrapper.layer.kernel))
        pairs.append((f"model/gen/conv/{index}/sn_u", wrapper.vector_u))
    # The original's bnorm/0 exists in its code but block 0 never calls it, so it is not stored.
    for block, norm in enumerate(generator.norms, start=1):
        for name, get in _BATCH_NORM_VARIABLES:
            pairs.append((f"model/gen/bnorm/{block}/{name}", get(norm)))
    pairs.append(("model/gen/last_conv/w", generator.to_rgb.layer.kernel))
    pairs.append(("model/gen/last_conv/sn_u", generator.to_rgb.vector_u))
    return pairs


def _discriminator_pairs(discriminator) -> list[tuple[str, object]]:
    pairs = []
    for index, (conv, norm) in enumerate(zip(discriminator.convs, discriminator.norms)):
        pairs.append((f"model/disc/cnn_conv/{index}/kernel", conv.kernel))
        for name, get in _BATCH_NORM_VARIABLES:
            pairs.append((f"model/disc/cnn_bnorm/{index}/{name}", get(norm)))
    pairs.append(("model/disc/disc_out/kernel", discriminator.score.kernel))
    pairs.append(("model/disc/disc_out/bias", discriminator.score.bias))
    return pairs


def load_original_gan(path: str | Path, split_condition_conv: bool = False) -> OriginalGAN:
    """An original-format GAN checkpoint (``model/gen/...``, ``model/disc/...``) as our models.

    ``path``: a checkpoint prefix or a checkpoint directory. The condition size
    comes from the discriminator's first kernel (``3 + condition_dim`` input channels) and the latent
    size from the generator's first kernel (``latent_dim + condition_dim`` inputs). Optimizer state
    (``gopt/``, ``copt/``) is ignored. Raises :class:`CheckpointError` naming the file and the
    missing key or the expected vs found shape.
    """
    prefix = resolve_original_checkpoint(path)
    reader = _KeyReader(prefix)
    first_generator_kernel = reader.shape("model/gen/conv/0/w")
    first_discriminator_kernel = reader.shape("model/disc/cnn_conv/0/kernel")
    if len(first_generator_kernel) != 4 or len(first_discriminator_kernel) != 4:
        raise CheckpointError(
            f"{prefix}: first kernels have shapes {first_generator_kernel} (model/gen/conv/0/w) and "
            f"{first_discriminator_kernel} (model/disc/cnn_conv/0/kernel), expected 4-D kernels")
    condition_dim = first_discriminator_kernel[2] - 3
    latent_dim = first_generator_kernel[3] - condition_dim
    if condition_dim < 1 or latent_dim < 1:
        raise CheckpointError(
            f"{prefix}: generator input size {first_generator_kernel[3]} and discriminator input "
            f"channels {first_discriminator_kernel[2]} do not fit [z, c] and [image, c]")
    generator = build_generator(latent_dim=latent_dim, condition_dim=condition_dim)
    discriminator = build_discriminator(condition_dim=condition_dim,
                                        split_condition_conv=split_condition_conv)
    _assign_all(reader, _generator_pairs(generator) + _discriminator_pairs(discriminator))
    return OriginalGAN(generator=generator, discriminator=discriminator, source=prefix)
