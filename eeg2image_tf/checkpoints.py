"""Our checkpoint format, and loaders that accept every place a trained model may live.

Format: a TF object-based checkpoint whose root holds ``encoder=`` (encoder runs: with
``optimizer=`` and ``epoch=`` too) or ``generator=`` and ``discriminator=`` (GAN runs: with ``step=``,
``g_optimizer=``, ``d_optimizer=``). Weights-only exports (:func:`save_encoder_weights`,
:func:`save_gan_weights`, used by ``import_original``) write the model objects only, through a
``CheckpointManager`` (``<dir>/checkpoint`` + ``<dir>/ckpt-1.*``), and a ``model.json`` beside them::

    {"format": "eeg2image_tf-checkpoint/1", "kind": "encoder" | "gan",
     "architecture": {"feature_dim": 128, "hidden": 32, "num_channels": 14} | {"latent_dim": 128, "condition_dim": 128},
     "checkpoint": "ckpt-1", "provenance": {...}}

:func:`load_encoder` and :func:`load_gan` accept:

- a run directory of ours (``config.json`` + ``checkpoints/``); for an encoder run the checkpoint
  named by ``best_checkpoint.json`` (written by ``select_encoder``) when present, else the latest;
- a checkpoint directory (with a ``checkpoint`` index file, or ``*.index`` files: the highest number);
- a checkpoint prefix (``.../ckpt-10``);
- any of these in the authors' original format (recognised by its ``model/encoder/`` or
  ``model/gen/`` keys), handed to :mod:`eeg2image_tf.legacy`.

Architecture sizes come from ``model.json`` beside the checkpoint, else from the run's
``config.json`` (``feature_dim``, ``hidden``, ``latent_dim``, ``condition_dim``), else the defaults;
the encoder's input channel count is read from the stored kernel. A checkpoint of another
architecture fails with :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, NamedTuple, Optional

from .errors import CheckpointError, Eeg2ImageError
from .io_utils import atomic_write_json, read_json

FORMAT = "eeg2image_tf-checkpoint/1"
MODEL_FILE = "model.json"
CONFIG_FILE = "config.json"
BEST_CHECKPOINT_FILE = "best_checkpoint.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "ckpt"
ENCODER_KIND = "encoder"
GAN_KIND = "gan"

ENCODER_DEFAULTS = {"feature_dim": 128, "hidden": 32}
GAN_DEFAULTS = {"latent_dim": 128, "condition_dim": 128}
DEFAULT_NUM_CHANNELS = 14
_ENCODER_INPUT_KERNEL_KEY = "encoder/sequence_lstm/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE"


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

def _save_weights(objects: dict, directory: str | Path, kind: str, architecture: dict,
                  metadata: Optional[dict]) -> str:
    import tensorflow as tf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = tf.train.Checkpoint(**objects)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1,
                                         checkpoint_name=CHECKPOINT_NAME)
    prefix = manager.save()
    atomic_write_json(directory / MODEL_FILE, {
        "format": FORMAT, "kind": kind, "architecture": architecture,
        "checkpoint": Path(prefix).name, "provenance": dict(metadata or {})})
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

def _checkpoint_number(prefix: Path) -> int:
    match = re.search(r"-(\d+)$", prefix.name)
    return int(match.group(1)) if match else -1


def latest_checkpoint_in(directory: str | Path) -> str:
    """The newest checkpoint prefix in ``directory``.

    The ``checkpoint`` index file decides when the prefix it names exists; a run directory that was
    moved may hold a stale absolute path there, so otherwise the highest-numbered ``*.index`` wins.
    """
    import tensorflow as tf

    directory = Path(directory)
    named = tf.train.latest_checkpoint(str(directory))
    if named is not None and Path(named + ".index").exists():
        return named
    candidates = sorted((path.with_suffix("") for path in directory.glob("*.index")),
                        key=lambda prefix: (_checkpoint_number(prefix), prefix.name))
    if not candidates:
        raise CheckpointError(f"{directory}: no checkpoint in this directory")
    return str(candidates[-1])


def _best_checkpoint(run_dir: Path) -> str:
    """The prefix named by ``<run>/best_checkpoint.json``, found even if the run was moved."""
    record_path = run_dir / BEST_CHECKPOINT_FILE
    record = _read_json(record_path)
    named = record.get("best_checkpoint") if isinstance(record, dict) else None
    if not isinstance(named, str) or not named:
        raise CheckpointError(f"{record_path}: no 'best_checkpoint' entry")
    named_path = Path(named)
    # Relative prefixes are relative to where select_encoder ran; try that, then the run itself.
    candidates = [named_path] if named_path.is_absolute() else [named_path, run_dir / named_path]
    candidates.append(run_dir / CHECKPOINT_DIR / named_path.name)
    for candidate in candidates:
        if Path(str(candidate) + ".index").exists():
            return str(candidate)
    raise CheckpointError(f"{record_path}: best checkpoint {named} does not exist")


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except Eeg2ImageError as exc:
        raise CheckpointError(str(exc)) from None


def _architecture_beside(prefix: str, kind: str) -> dict:
    """Sizes from ``model.json`` in the checkpoint's directory, else from a run's ``config.json``."""
    directory = Path(prefix).parent
    model_path = directory / MODEL_FILE
    if model_path.exists():
        record = _read_json(model_path)
        if isinstance(record, dict):
            if record.get("kind") not in (None, kind):
                raise CheckpointError(f"{model_path}: holds a {record.get('kind')} checkpoint, "
                                      f"not a {kind} one")
            return dict(record.get("architecture") or {})
    config_path = directory.parent / CONFIG_FILE
    if directory.name == CHECKPOINT_DIR and config_path.exists():
        config = _read_json(config_path)
        if isinstance(config, dict):
            wanted = ENCODER_DEFAULTS if kind == ENCODER_KIND else GAN_DEFAULTS
            return {name: config[name] for name in wanted if config.get(name) is not None}
    return {}


def resolve_checkpoint(path: str | Path, kind: str = ENCODER_KIND) -> ResolvedCheckpoint:
    """Turn a run directory, checkpoint directory or prefix into a prefix plus recorded sizes.

    ``kind`` (``"encoder"`` or ``"gan"``) decides whether a run's ``best_checkpoint.json`` applies
    (encoder runs only) and which ``config.json`` fields are read.
    """
    path = Path(path)
    if path.is_dir():
        is_checkpoint_dir = (path / "checkpoint").exists() or any(path.glob("*.index"))
        if is_checkpoint_dir:
            prefix = latest_checkpoint_in(path)
        elif (path / CHECKPOINT_DIR).is_dir():
            if kind == ENCODER_KIND and (path / BEST_CHECKPOINT_FILE).exists():
                prefix = _best_checkpoint(path)
            else:
                prefix = latest_checkpoint_in(path / CHECKPOINT_DIR)
        else:
            raise CheckpointError(f"{path}: neither a run directory (no {CHECKPOINT_DIR}/) nor a "
                                  "checkpoint directory (no 'checkpoint' or *.index file)")
    elif Path(str(path) + ".index").exists():
        prefix = str(path)
    elif path.suffix == ".index" and path.exists():
        prefix = str(path.with_suffix(""))
    else:
        raise CheckpointError(f"{path}: no such checkpoint, checkpoint directory or run directory")
    return ResolvedCheckpoint(prefix=prefix, architecture=_architecture_beside(prefix, kind))


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

def _stored_shapes(prefix: str) -> dict:
    from .legacy import checkpoint_variable_shapes

    return checkpoint_variable_shapes(prefix)


def _read_into(objects: dict, prefix: str, kind: str) -> None:
    """Restore ``objects`` from ``prefix``; any mismatch becomes a :class:`CheckpointError`."""
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(**objects)
    try:
        status = checkpoint.read(prefix)
        status.assert_existing_objects_matched()
    except AssertionError:
        raise CheckpointError(f"{prefix}: not a {kind} checkpoint of ours (it holds no value for "
                              f"some of the {kind}'s variables)") from None
    except (ValueError, tf.errors.OpError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{prefix}: {kind} checkpoint of another architecture ({message})") \
            from None
    # Training checkpoints also hold optimizer slots and a step/epoch counter that inference has no
    # use for; every variable of the model itself was matched just above.
    status.expect_partial()


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
    from .legacy import ENCODER_PREFIX, load_original_encoder
    from .models import build_encoder

    resolved = resolve_checkpoint(path, ENCODER_KIND)
    shapes = _stored_shapes(resolved.prefix)
    if any(key.startswith(ENCODER_PREFIX) for key in shapes):
        return load_original_encoder(resolved.prefix)
    architecture = resolved.architecture
    stored_kernel = shapes.get(_ENCODER_INPUT_KERNEL_KEY)
    num_channels = architecture.get("num_channels",
                                    stored_kernel[0] if stored_kernel else DEFAULT_NUM_CHANNELS)
    encoder = build_encoder(
        feature_dim=_int_size(architecture, "feature_dim", ENCODER_DEFAULTS["feature_dim"],
                              resolved.prefix),
        hidden=_int_size(architecture, "hidden", ENCODER_DEFAULTS["hidden"], resolved.prefix),
        num_channels=_int_size({"num_channels": num_channels}, "num_channels",
                               DEFAULT_NUM_CHANNELS, resolved.prefix))
    _read_into({"encoder": encoder}, resolved.prefix, ENCODER_KIND)
    return encoder


def load_gan(path: str | Path, split_condition_conv: bool = False) -> LoadedGAN:
    """``(generator, discriminator)`` from any checkpoint location (module docstring).

    ``split_condition_conv`` selects the discriminator's exact fast first convolution (same
    variables). Raises :class:`CheckpointError` naming the file when nothing loadable is there or
    the checkpoint belongs to another architecture.
    """
    from .legacy import GAN_PREFIX, load_original_gan
    from .models import build_discriminator, build_generator

    resolved = resolve_checkpoint(path, GAN_KIND)
    if any(key.startswith(GAN_PREFIX) for key in _stored_shapes(resolved.prefix)):
        original = load_original_gan(resolved.prefix, split_condition_conv=split_condition_conv)
        return LoadedGAN(original.generator, original.discriminator)
    architecture = resolved.architecture
    latent_dim = _int_size(architecture, "latent_dim", GAN_DEFAULTS["latent_dim"], resolved.prefix)
    condition_dim = _int_size(architecture, "condition_dim", GAN_DEFAULTS["condition_dim"],
                              resolved.prefix)
    generator = build_generator(latent_dim=latent_dim, condition_dim=condition_dim)
    discriminator = build_discriminator(condition_dim=condition_dim,
                                        split_condition_conv=split_condition_conv)
    _read_into({"generator": generator, "discriminator": discriminator}, resolved.prefix, GAN_KIND)
    return LoadedGAN(generator, discriminator)
