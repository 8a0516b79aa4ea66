"""Our checkpoint format, and loaders that accept every place a trained model may live.

Format: a TF object-based checkpoint whose root holds ``encoder=`` (encoder runs: with
``optimizer=`` and ``epoch=`` too) or ``generator=`` and ``discriminator=`` (GAN runs: with ``step=``,
``g_optimizer=``, ``d_optimizer=``, and ``generator_ema=`` when trained with ``--ema-decay``).
Weights-only exports (:func:`save_encoder_weights`, :func:`save_gan_weights`, used by
``import_original``) write the model objects only, through a
``CheckpointManager`` (``<dir>/checkpoint`` + ``<dir>/ckpt-1.*``), and a ``model.json`` beside them::

    {"format": "eeg2image_tf-checkpoint/1", "kind": "encoder" | "gan",
     "architecture": {"feature_dim": 128, "hidden": 32, "num_channels": 14}
                     | {"latent_dim": 128, "condition_dim": 128},
     "checkpoint": "ckpt-1", "provenance": {...}}

:func:`load_encoder` and :func:`load_gan` accept:

- a run directory of ours (``config.json`` + ``checkpoints/``); for an encoder run the checkpoint
  named by ``best_checkpoint.json`` (written by ``select_encoder``) when present, else the latest;
- a checkpoint directory (with a ``checkpoint`` index file, or ``*.index`` files: the highest number);
- a checkpoint prefix (``.../ckpt-10``);
- any of these in the authors' original format (recognised by its ``model/encoder/`` or
  ``model/gen/`` keys), handed to :mod:`eeg2image_tf.checkpoints.original`.

Architecture sizes come from ``model.json`` beside the checkpoint, else from the run's
``config.json`` (``feature_dim``, ``hidden``, ``latent_dim``, ``condition_dim``), else the defaults;
the encoder's input channel count is read from the stored kernel. A checkpoint of another
architecture fails with :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import collections
import dataclasses
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Optional

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from ..errors import CheckpointError
from ..io_utils import atomic_write_json
from ..models import build_discriminator, build_encoder, build_generator
from ..runs import (CHECKPOINT_DIR, CHECKPOINT_NAME, CONFIG_FILE, MODEL_FILE, EncoderRun,
                    best_checkpoint, checkpoint_prefix, is_checkpoint_dir, latest_checkpoint_in)
from ..runs import _read_json_as_checkpoint_error as _read_json
from .original import (ENCODER_PREFIX, GAN_PREFIX, checkpoint_variable_shapes,
                       load_original_encoder, load_original_gan)

FORMAT = "eeg2image_tf-checkpoint/1"
ENCODER_KIND = "encoder"
GAN_KIND = "gan"
_A_KIND = {ENCODER_KIND: "an encoder", GAN_KIND: "a GAN"}

ENCODER_DEFAULTS = {"feature_dim": 128, "hidden": 32}
GAN_DEFAULTS = {"latent_dim": 128, "condition_dim": 128}
DEFAULT_NUM_CHANNELS = 14
_ENCODER_INPUT_KERNEL_PATH = "encoder/sequence_lstm/cell/kernel"
# The weight-averaged generator of a GAN checkpoint (train_gan --ema-decay).
EMA_OBJECT = "generator_ema"
# The weight-averaged generator of a GAN checkpoint (train_gan --ema-decay).
class LoadedGAN(NamedTuple):
    """What :func:`load_gan` returns; unpacks as ``generator, discriminator = load_gan(path)``."""

    generator: Any
    discriminator: Any


@dataclasses.dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint prefix and the architecture sizes recorded beside it (empty if none)."""

    prefix: str
    architecture: dict


# --------------------------------------------------------------------------------------------------
# Saving (weights only)
# --------------------------------------------------------------------------------------------------

def write_model_record(directory: str | Path, kind: str, architecture: dict,
                       provenance: Optional[dict], checkpoint: Optional[str] = None) -> Path:
    """``<directory>/model.json``: the format, the kind, the architecture sizes the loaders build
    from, the checkpoint it describes (weights-only exports) and where the weights came from."""
    record = {"format": FORMAT, "kind": kind, "architecture": architecture}
    if checkpoint is not None:
        record["checkpoint"] = checkpoint
    record["provenance"] = dict(provenance or {})
    return atomic_write_json(Path(directory) / MODEL_FILE, record)


def _save_weights(objects: dict, directory: str | Path, kind: str, architecture: dict,
                  metadata: Optional[dict]) -> str:

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = tf.train.Checkpoint(**objects)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1,
                                         checkpoint_name=CHECKPOINT_NAME)
    prefix = manager.save()
    write_model_record(directory, kind, architecture, metadata, checkpoint=Path(prefix).name)
    return prefix


def save_encoder_weights(encoder, directory: str | Path, metadata: Optional[dict] = None) -> str:
    """Write ``tf.train.Checkpoint(encoder=encoder)`` and ``model.json`` into ``directory``.

    ``encoder`` must be built. ``metadata`` (JSON-serialisable) is stored as ``provenance``.
    Returns the checkpoint prefix.
    """
    architecture = {"feature_dim": encoder.feature_dim, "hidden": encoder.hidden,
                    "num_channels": int(encoder.sequence_lstm.cell.kernel.shape[0])}
    return _save_weights({"encoder": encoder}, directory, ENCODER_KIND, architecture, metadata)


def save_gan_weights(generator, discriminator, directory: str | Path,
                     metadata: Optional[dict] = None) -> str:
    """Write ``tf.train.Checkpoint(generator=, discriminator=)`` and ``model.json`` into ``directory``.

    Both models must be built. Returns the checkpoint prefix.
    """
    architecture = {"latent_dim": generator.latent_dim, "condition_dim": generator.condition_dim}
    return _save_weights({"generator": generator, "discriminator": discriminator}, directory,
                         GAN_KIND, architecture, metadata)


# --------------------------------------------------------------------------------------------------
# Resolving a path to a checkpoint prefix
# --------------------------------------------------------------------------------------------------

def _architecture_beside(prefix: str, kind: str) -> dict:
    """Sizes from ``model.json`` in the checkpoint's directory, else from a run's ``config.json``."""
    directory = Path(prefix).parent
    model_path = directory / MODEL_FILE
    if model_path.exists():
        record = _read_json(model_path)
        if isinstance(record, dict):
            if record.get("kind") not in (None, kind):
                found = _A_KIND.get(record.get("kind"), repr(record.get("kind")))
                raise CheckpointError(f"{model_path}: describes {found} checkpoint, not "
                                      f"{_A_KIND[kind]} one")
            return dict(record.get("architecture") or {})
    config_path = directory.parent / CONFIG_FILE
    if directory.name == CHECKPOINT_DIR and config_path.exists():
        config = _read_json(config_path)
        if isinstance(config, dict):
            wanted = ENCODER_DEFAULTS if kind == ENCODER_KIND else GAN_DEFAULTS
            return {name: config[name] for name in wanted if config.get(name) is not None}
    return {}


def encoder_normalisation(path: str | Path) -> Optional[str]:
    """The normalisation the encoder at ``path`` (any place :func:`load_encoder` accepts) was
    trained with, as its run's ``config.json`` records it; None when no run records one, or there
    is no checkpoint there (loading it says so)."""
    try:
        directory = Path(resolve_checkpoint(path, ENCODER_KIND).prefix).parent
    except CheckpointError:
        return None
    config_path = directory.parent / CONFIG_FILE
    if directory.name != CHECKPOINT_DIR or not config_path.exists():
        return None
    config = _read_json(config_path)
    method = config.get("normalisation") if isinstance(config, dict) else None
    return method if isinstance(method, str) else None


def resolve_checkpoint(path: str | Path, kind: str = ENCODER_KIND) -> ResolvedCheckpoint:
    """Turn a run directory, checkpoint directory or prefix into a prefix plus recorded sizes.

    ``kind`` (``"encoder"`` or ``"gan"``) decides whether a run's ``best_checkpoint.json`` applies
    (encoder runs only) and which ``config.json`` fields are read.
    """
    path = Path(path)
    if path.is_dir():
        if is_checkpoint_dir(path):
            prefix = latest_checkpoint_in(path)
        elif (path / CHECKPOINT_DIR).is_dir():
            if kind == ENCODER_KIND and EncoderRun(path).best_checkpoint_record.exists():
                prefix = best_checkpoint(path)
            else:
                prefix = latest_checkpoint_in(path / CHECKPOINT_DIR)
        else:
            raise CheckpointError(f"{path}: neither a run directory (no {CHECKPOINT_DIR}/) nor a "
                                  "checkpoint directory (no 'checkpoint' or *.index file)")
    else:
        prefix = checkpoint_prefix(path)
    return ResolvedCheckpoint(prefix=prefix, architecture=_architecture_beside(prefix, kind))


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

class _SavedGraph:
    """The object graph stored in a checkpoint, to find a variable by its object path.

    Keys are no guide: a Keras 3 optimizer tracks the model's variables too, so a training
    checkpoint may store the encoder's kernel under ``optimizer/_trainable_variables/0``. The object
    graph still records every path (``encoder/sequence_lstm/cell/kernel``) that leads to it.
    """

    def __init__(self, prefix: str):

        self.prefix = prefix
        self.shapes = checkpoint_variable_shapes(prefix)
        self.graph = trackable_object_graph_pb2.TrackableObjectGraph()
        try:
            self.graph.ParseFromString(
                tf.train.load_checkpoint(prefix).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        except (tf.errors.OpError, ValueError) as exc:
            raise CheckpointError(f"{prefix}: not an object-based checkpoint "
                                  f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})"
                                  ) from None

    def children(self, node_id: int) -> dict[str, int]:
        return {child.local_name: child.node_id for child in self.graph.nodes[node_id].children}

    def value_shape(self, node_id: int) -> Optional[tuple]:
        for attribute in self.graph.nodes[node_id].attributes:
            if attribute.name == "VARIABLE_VALUE" and attribute.checkpoint_key in self.shapes:
                return tuple(self.shapes[attribute.checkpoint_key])
        return None

    def shape_at(self, path: str) -> Optional[tuple]:
        """Shape of the variable at ``path`` (``"encoder/sequence_lstm/cell/kernel"``), if stored."""
        node_id = 0
        for name in path.split("/"):
            node_id = self.children(node_id).get(name)
            if node_id is None:
                return None
        return self.value_shape(node_id)

    def first_shape_mismatch(self, objects: dict) -> Optional[str]:
        """``"'<path>' has shape (..), expected (..)"`` for the first variable of ``objects`` whose
        stored shape differs, walking our objects and the stored graph side by side; else None."""

        root_children = self.children(0)
        # Breadth first, in declaration order: the reported variable is the first one a reader
        # of the model code would meet.
        pending = collections.deque((root_children[name], name, obj)
                                    for name, obj in objects.items() if name in root_children)
        visited = set()
        while pending:
            node_id, path, obj = pending.popleft()
            if id(obj) in visited:
                continue
            visited.add(id(obj))
            stored = self.value_shape(node_id)
            if stored is not None and hasattr(obj, "shape"):
                expected = tuple(obj.shape)
                if stored != expected:
                    return f"'{path}' has shape {stored}, expected {expected}"
                continue
            stored_children = self.children(node_id)
            for name, child in tf.train.TrackableView.children(obj).items():
                if name in stored_children:
                    pending.append((stored_children[name], f"{path}/{name}", child))
        return None


def _read_into(objects: dict, saved: _SavedGraph, kind: str) -> None:
    """Restore ``objects`` from ``saved.prefix``; any mismatch becomes a :class:`CheckpointError`."""

    prefix = saved.prefix
    # Checked before reading: a failed read would leave a half-restored model and a page of
    # "unrestored value" warnings behind the one-line error.
    mismatch = saved.first_shape_mismatch(objects)
    if mismatch is not None:
        raise CheckpointError(f"{prefix}: {_A_KIND[kind]} checkpoint of another architecture "
                              f"({mismatch})")
    checkpoint = tf.train.Checkpoint(**objects)
    try:
        status = checkpoint.read(prefix)
    except (ValueError, tf.errors.OpError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{prefix}: unreadable checkpoint ({message})") from None
    # Training checkpoints also hold optimizer slots and a step/epoch counter that inference has no
    # use for; that every variable of the model itself has a value is asserted right after.
    status.expect_partial()
    try:
        # The assertion's message (discarded below) holds the repr of every unmatched Keras
        # variable, which Keras 3 makes with np.array: numpy 2 warns about the missing copy keyword.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            status.assert_existing_objects_matched()
    except AssertionError:
        raise CheckpointError(f"{prefix}: not {_A_KIND[kind]} checkpoint of ours (it holds no "
                              "value for some of the model's variables)") from None


def _int_size(architecture: dict, name: str, default: int, source: str) -> int:
    value = architecture.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{source}: architecture size {name}={value!r} is not a positive int")
    return value


def load_encoder(path: str | Path):
    """An :class:`~eeg2image_tf.models.EEGEncoder` from any checkpoint location (module docstring).

    Raises :class:`CheckpointError` naming the file when nothing loadable is there or the
    checkpoint belongs to another architecture.
    """
    resolved = resolve_checkpoint(path, ENCODER_KIND)
    saved = _SavedGraph(resolved.prefix)
    if any(key.startswith(ENCODER_PREFIX) for key in saved.shapes):
        return load_original_encoder(resolved.prefix)
    architecture = resolved.architecture
    stored_kernel = saved.shape_at(_ENCODER_INPUT_KERNEL_PATH)
    num_channels = architecture.get("num_channels",
                                    stored_kernel[0] if stored_kernel else DEFAULT_NUM_CHANNELS)
    encoder = build_encoder(
        feature_dim=_int_size(architecture, "feature_dim", ENCODER_DEFAULTS["feature_dim"],
                              resolved.prefix),
        hidden=_int_size(architecture, "hidden", ENCODER_DEFAULTS["hidden"], resolved.prefix),
        num_channels=_int_size({"num_channels": num_channels}, "num_channels",
                               DEFAULT_NUM_CHANNELS, resolved.prefix))
    _read_into({"encoder": encoder}, saved, ENCODER_KIND)
    return encoder


def checkpoint_has_ema(path: str | Path) -> bool:
    """Whether the GAN checkpoint at ``path`` holds a weight-averaged generator (``--ema-decay``)."""
    resolved = resolve_checkpoint(path, GAN_KIND)
    return EMA_OBJECT in _SavedGraph(resolved.prefix).children(0)


def load_gan(path: str | Path, split_condition_conv: bool = False, ema: bool = True) -> LoadedGAN:
    """``(generator, discriminator)`` from any checkpoint location (module docstring).

    ``split_condition_conv`` selects the discriminator's exact fast first convolution (same
    variables). ``ema``: when the checkpoint also holds the exponential moving average of the
    generator (``train_gan --ema-decay``), return that as the generator; ``False``: the trained
    weights themselves. Raises :class:`CheckpointError` naming the file when nothing loadable is
    there or the checkpoint belongs to another architecture.
    """
    resolved = resolve_checkpoint(path, GAN_KIND)
    saved = _SavedGraph(resolved.prefix)
    if any(key.startswith(GAN_PREFIX) for key in saved.shapes):
        original = load_original_gan(resolved.prefix, split_condition_conv=split_condition_conv)
        return LoadedGAN(original.generator, original.discriminator)
    architecture = resolved.architecture
    latent_dim = _int_size(architecture, "latent_dim", GAN_DEFAULTS["latent_dim"], resolved.prefix)
    condition_dim = _int_size(architecture, "condition_dim", GAN_DEFAULTS["condition_dim"],
                              resolved.prefix)
    generator = build_generator(latent_dim=latent_dim, condition_dim=condition_dim)
    discriminator = build_discriminator(condition_dim=condition_dim,
                                        split_condition_conv=split_condition_conv)
    generator_object = EMA_OBJECT if ema and EMA_OBJECT in saved.children(0) else "generator"
    _read_into({generator_object: generator, "discriminator": discriminator}, saved, GAN_KIND)
    return LoadedGAN(generator, discriminator)
