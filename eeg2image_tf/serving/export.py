"""Export: a self-contained SavedModel from raw EEG trials to images (``python -m eeg2image_tf.export``).

Two sources:

- ``--run DIR --out DIR``: a GAN run of ``train_gan``; its latest checkpoint, the encoder named in its
  ``config.json``, its normalisation and latent size; the run's data file gives the trial shape
  ``(C, T)`` and the range of its values (``--data`` overrides it), the run's training image
  folder (else the data file) the class names.
- ``--original-encoder PATH --original-gan PATH --out DIR``: the authors' published checkpoints
  (docs/method.md sections 3-4), with ThoughtViz trials of 14 x 32 unless ``--data`` or
  ``--num-channels`` / ``--num-samples`` say otherwise; ``--class-set image`` records the objects
  set's class names.

The export directory holds the SavedModel (signatures in :mod:`eeg2image_tf.serving.module`) and, beside
``saved_model.pb``, ``signature.json`` (machine-readable shapes, dtypes, ranges, class names and
provenance) and ``README.txt`` (the same for people). Everything is written into a temporary sibling
directory that replaces ``--out`` only once complete, so a failed export never leaves a half model in
place of a good one. An ``--out`` holding anything an export does not hold is refused, so no file of
a user's is ever replaced or deleted; one holding the export of another run is replaced only with
``--force``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from .. import __version__
from ..checkpoints import (checkpoint_has_ema, encoder_normalisation, load_encoder, load_gan,
                           load_original_encoder, load_original_gan, resolve_checkpoint)
from ..checkpoints.original import resolve_original_checkpoint
from ..config import ExportConfig
from ..data import CLASS_NAMES, known_class_names, load_thoughtviz, resolve_normalisation
from ..errors import ConfigError
from ..io_utils import atomic_write_json, atomic_write_text
from ..runs import (EXPORT_ENTRIES, EXPORT_README, SIGNATURE_FILE, TRAIN_SPLIT, GanRun,
                    check_export_folder, check_output_folder, checkpoint_step, image_split_folder)
from .module import EEG_SHAPE_HINT, IMAGE_SIZE, EEG2ImageServing

# ThoughtViz trials: 14 Emotiv channels x 32 samples (250 ms at 128 Hz), docs/method.md section 1.
DEFAULT_NUM_CHANNELS = 14
DEFAULT_NUM_SAMPLES = 32
FORMAT_NAME = "eeg2image-tf SavedModel"
FORMAT_VERSION = 1


def export_saved_model(encoder: Any, generator: Any, out_dir: str | os.PathLike, *, num_channels: int,
                       num_samples: int, latent_dim: int, normalisation: str,
                       class_names: Optional[Sequence[str]], provenance: Mapping[str, Any],
                       training_values: Optional[tuple[float, float]] = None) -> Path:
    """Write the SavedModel of ``encoder`` + ``generator`` with its README.txt and signature.json.

    Args:
        encoder: ``encoder(x (B, T, C), training=False) -> (embedding, feature)``.
        generator: ``(B, latent_dim + feature_dim) -> (B, 128, 128, 3)`` in [-1, 1].
        out_dir: the export directory; an earlier export there is replaced, a folder holding
            anything else refused.
        num_channels, num_samples: raw trial shape ``(C, T)`` the signatures require.
        latent_dim: noise width.
        normalisation: ``eeg2image_tf.data.preprocess`` method, run inside the graph.
        class_names: recorded in signature.json (``None`` when unknown).
        provenance: where the weights came from (run, checkpoint, encoder, step, ...); the export
            time and package versions are added.
        training_values: 1st and 99th percentiles of the training trials' raw values, stated in
            signature.json beside the eeg input when known.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, "--out", "export", entries=EXPORT_ENTRIES)
    module = EEG2ImageServing(encoder, generator, num_channels=num_channels, num_samples=num_samples,
                              latent_dim=latent_dim, normalisation=normalisation)
    metadata = build_metadata(module, class_names, provenance, training_values)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _save_module(module, staging)
        atomic_write_json(staging / SIGNATURE_FILE, metadata)
        atomic_write_text(staging / EXPORT_README, render_readme(metadata))
        _use_umask_permissions([staging, staging / SIGNATURE_FILE, staging / EXPORT_README])
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def export_from_run(config: ExportConfig) -> Path:
    """Export a GAN run (``config.run``) or the original checkpoints; return the export directory."""
    check_export_folder(config.validate().out, config.run, config.force)
    sources = _sources_from_run(config) if config.run else _sources_from_original(config)
    return export_saved_model(sources.encoder, sources.generator, config.out,
                              num_channels=sources.num_channels, num_samples=sources.num_samples,
                              latent_dim=sources.latent_dim, normalisation=sources.normalisation,
                              class_names=sources.class_names, provenance=sources.provenance,
                              training_values=sources.training_values)


def build_metadata(module: Any, class_names: Optional[Sequence[str]],
                   provenance: Mapping[str, Any],
                   training_values: Optional[tuple[float, float]] = None) -> dict[str, Any]:
    """The content of signature.json for an :class:`~eeg2image_tf.serving.module.EEG2ImageServing`."""
    shape = f"[batch, {module.num_channels}, {module.num_samples}]"
    completed = dict(provenance)
    completed.setdefault("export_time", datetime.datetime.now(datetime.timezone.utc)
                         .isoformat(timespec="seconds"))
    completed.setdefault("package_version", __version__)
    completed.setdefault("tensorflow_version", tf.__version__)
    completed.setdefault("keras_version", keras.__version__)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": {
            "num_channels": module.num_channels,
            "num_samples": module.num_samples,
            "latent_dim": module.latent_dim,
            "feature_dim": module.feature_dim,
            "image_size": IMAGE_SIZE,
            "normalisation": module.normalisation,
            "noise": "uniform(-1, 1)",
        },
        "class_names": list(class_names) if class_names is not None else None,
        "signatures": module.describe(training_values),
        "input_specs": ("declared with unknown rank; the graph checks every shape and fails with "
                        "InvalidArgumentError 'assertion failed: [<input> must have shape [...]"),
        "errors": {
            "wrong eeg shape": f"assertion failed: [eeg must have shape {shape}{EEG_SHAPE_HINT}, "
                               "got] [<shape>]",
            "eeg and noise batch sizes differ": "assertion failed: [eeg and noise must have the same "
                                                "batch size, got] [<n>] [and] [<m>]",
        },
        "provenance": completed,
    }


def render_readme(metadata: Mapping[str, Any]) -> str:
    """README.txt: the signatures, shapes and provenance of ``metadata`` for a human reader."""
    model = metadata["model"]
    lines = [
        "EEG2Image SavedModel (eeg2image-tf)",
        "====================================",
        "",
        "Raw EEG trials in, 128 x 128 RGB images out. The preprocessing of training",
        f"('{model['normalisation']}' normalisation), the LSTM encoder and the conditional generator "
        "all run",
        "inside the graph: nothing from eeg2image-tf is needed to use this model.",
        "",
        f"Trials: {model['num_channels']} channels x {model['num_samples']} samples; latent noise "
        f"{model['latent_dim']}-d, U(-1, 1); encoder features {model['feature_dim']}-d.",
        f"Classes (index: name): {_class_list(metadata.get('class_names'))}",
        "",
        "Signatures (shape: batch = any number of rows)",
        "----------------------------------------------",
    ]
    for name, signature in metadata["signatures"].items():
        alias = signature.get("alias_of")
        title = f"{name}  (same function as {alias})" if alias else name
        lines += ["", title, f"  {signature['description']}"]
        for direction in ("inputs", "outputs"):
            lines.append(f"  {direction}:")
            for tensor_name, tensor in signature[direction].items():
                lines.append(f"    {tensor_name:<13} {tensor['dtype']:<8} {_shape_list(tensor['shape']):<22} "
                             f"{tensor['range']}")
                lines.append(f"    {'':<13} {tensor['description']}")
    shape = f"[batch, {model['num_channels']}, {model['num_samples']}]"
    lines += [
        "",
        "Input checks",
        "------------",
        "The input specs are declared with unknown rank so that the graph itself can check every",
        "shape and say what it expected, in any client; a wrong shape fails with InvalidArgumentError:",
        f"  {metadata['errors']['wrong eeg shape']}",
        "A set's x_* arrays store trials as [N, C, T, 1]: drop the last axis (x[..., 0]).",
        "",
        "Use",
        "---",
        "  import tensorflow as tf",
        "  model = tf.saved_model.load(EXPORT_DIR)",
        f"  out = model.signatures['generate_seeded'](eeg=trials,   # float32 {shape}",
        "                                             seed=tf.constant(45, tf.int64))",
        "  out['images']   # uint8 [batch, 128, 128, 3]",
        "",
        "  saved_model_cli show --dir EXPORT_DIR --all",
        "  saved_model_cli run --dir EXPORT_DIR --tag_set serve --signature_def generate \\",
        "      --inputs 'eeg=eeg.npy;noise=noise.npy' --outdir OUT",
        "",
        "Provenance",
        "----------",
    ]
    for key, value in metadata["provenance"].items():
        lines.append(f"  {key}: {value}")
    lines += ["", "signature.json holds all of the above in machine-readable form.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _ExportSources:
    encoder: Any
    generator: Any
    num_channels: int
    num_samples: int
    latent_dim: int
    normalisation: str
    class_names: Optional[tuple[str, ...]]
    provenance: dict[str, Any]
    training_values: Optional[tuple[float, float]] = None


@dataclasses.dataclass(frozen=True)
class _SetFacts:
    """What an export takes from the EEG set: trial shape, class names, the normalisation it
    records, and the 1st/99th percentiles of its training values."""

    num_channels: int
    num_samples: int
    class_names: Optional[tuple[str, ...]]
    normalisation: Optional[str]
    training_values: tuple[float, float]


# Trials whose values the signature's description summarises (a sample keeps large sets cheap).
_VALUE_SAMPLE_TRIALS = 256


def _sources_from_run(config: ExportConfig) -> _ExportSources:
    run = Path(config.run)
    config_path = GanRun(run).config_path
    gan_config = GanRun.open(run, named_by_run=True).config
    data_path = config.data or gan_config.data
    images = image_split_folder(gan_config.images, TRAIN_SPLIT) if gan_config.images else None
    facts = _set_facts(config, data_path, images)

    # What the run trained with (recorded as used; else its encoder's, else the set's).
    used = resolve_normalisation(gan_config.normalisation or encoder_normalisation(gan_config.encoder),
                                 facts.normalisation, data_path)
    normalisation = _agree("normalisation", config.normalisation, used, config_path)
    # Resolve to exact prefixes first, so that the provenance names the weights actually exported.
    gan_checkpoint = resolve_checkpoint(run, "gan").prefix
    encoder_checkpoint = resolve_checkpoint(gan_config.encoder, "encoder").prefix
    generator = load_gan(gan_checkpoint, ema=config.ema).generator
    encoder = load_encoder(encoder_checkpoint)
    provenance = {
        "source": "run",
        "run": str(run.resolve()),
        "checkpoint": gan_checkpoint,
        "step": checkpoint_step(gan_checkpoint),
        "generator": "ema" if config.ema and checkpoint_has_ema(gan_checkpoint) else "trained",
        "encoder": encoder_checkpoint,
        "encoder_step": checkpoint_step(encoder_checkpoint),
        "data": str(data_path),
    }
    return _ExportSources(encoder, generator, facts.num_channels, facts.num_samples,
                          gan_config.latent_dim, normalisation, facts.class_names, provenance,
                          facts.training_values)


def _sources_from_original(config: ExportConfig) -> _ExportSources:
    facts = _set_facts(config, config.data) if config.data else None
    if facts is not None:
        num_channels, num_samples, class_names = facts.num_channels, facts.num_samples, facts.class_names
    else:
        num_channels = config.num_channels or DEFAULT_NUM_CHANNELS
        num_samples = config.num_samples or DEFAULT_NUM_SAMPLES
        class_names = _class_set_names(config.class_set)
    gan_checkpoint = resolve_original_checkpoint(config.original_gan)
    encoder_checkpoint = resolve_original_checkpoint(config.original_encoder)
    encoder = load_original_encoder(encoder_checkpoint)
    generator = load_original_gan(gan_checkpoint).generator
    provenance = {
        "source": "original checkpoints",
        "checkpoint": gan_checkpoint,
        "step": checkpoint_step(gan_checkpoint),
        "encoder": encoder_checkpoint,
        "encoder_step": checkpoint_step(encoder_checkpoint),
    }
    if config.data:
        provenance["data"] = str(config.data)
    normalisation = resolve_normalisation(config.normalisation,
                                          facts.normalisation if facts else None,
                                          config.data or "the published checkpoints")
    return _ExportSources(encoder, generator, num_channels, num_samples, generator.latent_dim,
                          normalisation, class_names, provenance,
                          facts.training_values if facts else None)


def _set_facts(config: ExportConfig, data_path: str | os.PathLike,
               images: Optional[Path] = None) -> _SetFacts:
    """The set's facts, checked against any explicit values; class names from the run's training
    image folder ``images`` when there is one (what the GAN was paired with), else the set's."""
    splits = load_thoughtviz(data_path)
    num_channels = _agree("num_channels", config.num_channels, splits.num_channels, data_path)
    num_samples = _agree("num_samples", config.num_samples, splits.num_samples, data_path)
    class_names = known_class_names(images, splits.class_names, splits.num_classes, str(data_path))
    if config.class_set is not None:
        named = _class_set_names(config.class_set)
        if class_names is not None and tuple(class_names) != named:
            raise ConfigError(f"{data_path}: holds the classes {', '.join(class_names)}, "
                              f"not those of --class-set {config.class_set}")
        class_names = named
    low, high = np.percentile(splits.x_train[:_VALUE_SAMPLE_TRIALS], [1.0, 99.0])
    return _SetFacts(num_channels, num_samples, class_names, splits.normalisation,
                     (float(low), float(high)))


def _class_set_names(class_set: Optional[str]) -> Optional[tuple[str, ...]]:
    if class_set is None:
        return None
    if class_set not in CLASS_NAMES:
        raise ConfigError(f"export: unknown --class-set {class_set!r}; expected one of "
                          f"{', '.join(sorted(CLASS_NAMES))}")
    return tuple(CLASS_NAMES[class_set])


def _agree(name: str, requested: Any, found: Any, source: str | os.PathLike) -> Any:
    """``found``, unless the user asked for a different value (which would export a wrong model)."""
    if requested is not None and requested != found:
        raise ConfigError(f"{source}: gives {name} = {found!r} but --{name.replace('_', '-')} "
                          f"{requested!r} was requested")
    return found


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

def _save_module(module: Any, directory: Path) -> None:
    tf.saved_model.save(module, str(directory), signatures=module.signature_functions())


def _use_umask_permissions(paths: Sequence[Path]) -> None:
    """Give ``paths`` the permissions of ordinary new files and directories under the umask.

    ``mkdtemp``/``mkstemp`` (behind the staging directory and the atomic writes) create private
    entries (0700/0600); an export is made to be copied to and read by a server.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the complete ``staging`` directory to ``out_dir``, replacing an earlier export."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    # A directory cannot be renamed over a non-empty one: the old export steps aside first, and comes
    # back if the new one cannot take its place.
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, retired)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        os.replace(retired, out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _class_list(class_names: Optional[Sequence[str]]) -> str:
    if not class_names:
        return "unknown (not recorded at export)"
    return ", ".join(f"{index}: {name}" for index, name in enumerate(class_names))


def _shape_list(shape: Sequence[Optional[int]]) -> str:
    return json.dumps(["batch" if d is None else d for d in shape]).replace('"', "")
