"""Conversion of the authors' TF 2.8 checkpoints into our format (``import_original``).

Weights only, plus ``model.json``: the result loads with :func:`~eeg2image_tf.checkpoints.load_encoder`
/ :func:`~eeg2image_tf.checkpoints.load_gan` and gives the same numbers as loading the original
directly: after writing, every converted variable is read back and compared. ``model.json`` records
the architecture sizes and where the weights came from (source checkpoint name, SHA-256 of its
files, its stored ``step``); optimizer state is not converted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..config import ImportOriginalConfig
from ..errors import CheckpointError
from ..io_utils import file_sha256
from ..runs import CHECKPOINT_INDEX, MODEL_FILE, STEP_COUNTER, checkpoint_step
from .original import load_original_encoder, load_original_gan, resolve_original_checkpoint
from .ours import load_encoder, load_gan, save_encoder_weights, save_gan_weights

SOURCE_FORMAT = "EEG2Image original code (TF 2.8 object-based checkpoint)"


def source_provenance(prefix: str) -> dict:
    """Name, file hashes and stored ``step`` of an original checkpoint (no local paths)."""
    prefix_path = Path(prefix)
    files = sorted(prefix_path.parent.glob(prefix_path.name + ".*"))
    provenance = {
        "converted_by": "eeg2image_tf.import_original",
        "eeg2image_tf_version": __version__,
        "source_format": SOURCE_FORMAT,
        "source_checkpoint": prefix_path.name,
        "source_sha256": {path.name: file_sha256(path) for path in files},
    }
    step = checkpoint_step(prefix, counters=(STEP_COUNTER,))
    if step is not None:
        provenance["source_step"] = step
    return provenance


def _refuse_to_overwrite(out: Path, force: bool) -> None:
    if force or not out.exists():
        return
    if (out / MODEL_FILE).exists() or (out / CHECKPOINT_INDEX).exists():
        raise CheckpointError(f"{out}: already holds a checkpoint; choose another --out or --force")


def _check_same_weights(expected_models, loaded_models, out: Path) -> None:
    """Every variable read back from ``out`` must equal the converted one, bit for bit."""
    for expected, loaded in zip(expected_models, loaded_models):
        for want, got in zip(expected.weights, loaded.weights):
            if want.shape != got.shape or not np.array_equal(np.asarray(want), np.asarray(got)):
                raise CheckpointError(f"{out}: {got.path} read back differs from the source")


def convert_original_encoder(source: str | Path, out: str | Path, force: bool = False) -> str:
    """Convert an original encoder checkpoint into ``out``; return the new checkpoint prefix."""
    out = Path(out)
    _refuse_to_overwrite(out, force)
    prefix = resolve_original_checkpoint(source)
    encoder = load_original_encoder(prefix)
    saved = save_encoder_weights(encoder, out, metadata=source_provenance(prefix))
    _check_same_weights([encoder], [load_encoder(out)], out)
    return saved


def convert_original_gan(source: str | Path, out: str | Path, force: bool = False) -> str:
    """Convert an original GAN checkpoint into ``out``; return the new checkpoint prefix."""
    out = Path(out)
    _refuse_to_overwrite(out, force)
    prefix = resolve_original_checkpoint(source)
    original = load_original_gan(prefix)
    saved = save_gan_weights(original.generator, original.discriminator, out,
                             metadata=source_provenance(prefix))
    loaded = load_gan(out)
    _check_same_weights([original.generator, original.discriminator],
                        [loaded.generator, loaded.discriminator], out)
    return saved


def import_original(config: ImportOriginalConfig) -> str:
    """Convert ``config.encoder`` or ``config.gan`` (exactly one) into ``config.out``."""
    config.validate()
    if config.encoder is not None:
        return convert_original_encoder(config.encoder, config.out, force=config.force)
    return convert_original_gan(config.gan, config.out, force=config.force)
