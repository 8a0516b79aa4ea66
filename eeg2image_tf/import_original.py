"""Convert the authors' TF 2.8 checkpoints into our format (weights only, plus ``model.json``).

    python -m eeg2image_tf.import_original --encoder path/to/ckpt-2420 --out checkpoints/my_encoder
    python -m eeg2image_tf.import_original --gan path/to/gan_ckpt_dir --out checkpoints/my_gan

The source may be a checkpoint prefix or a directory holding a ``checkpoint`` file. The result loads
with :func:`eeg2image_tf.checkpoints.load_encoder` / ``load_gan`` and gives the same numbers as
loading the original directly: after writing, every converted variable is read back and compared.
``model.json`` records the architecture sizes and where the weights came from (source checkpoint
name, SHA-256 of its files, its stored ``step``); optimizer state is not converted.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import __version__
from .cli import quiet_tensorflow, run_main
from .config import ImportOriginalConfig, add_config_arguments, config_from_args
from .errors import CheckpointError

SOURCE_FORMAT = "EEG2Image original code (TF 2.8 object-based checkpoint)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_provenance(prefix: str) -> dict:
    """Name, file hashes and stored ``step`` of an original checkpoint (no local paths)."""
    import tensorflow as tf

    prefix_path = Path(prefix)
    files = sorted(prefix_path.parent.glob(prefix_path.name + ".*"))
    provenance = {
        "converted_by": "eeg2image_tf.import_original",
        "eeg2image_tf_version": __version__,
        "source_format": SOURCE_FORMAT,
        "source_checkpoint": prefix_path.name,
        "source_sha256": {path.name: _sha256(path) for path in files},
    }
    reader = tf.train.load_checkpoint(prefix)
    step_key = "step/.ATTRIBUTES/VARIABLE_VALUE"
    if reader.has_tensor(step_key):
        provenance["source_step"] = int(reader.get_tensor(step_key))
    return provenance


def _refuse_to_overwrite(out: Path, force: bool) -> None:
    from .checkpoints import MODEL_FILE

    if force or not out.exists():
        return
    if (out / MODEL_FILE).exists() or (out / "checkpoint").exists():
        raise CheckpointError(f"{out}: already holds a checkpoint; choose another --out or --force")


def _check_same_weights(expected_models, loaded_models, out: Path) -> None:
    """Every variable read back from ``out`` must equal the converted one, bit for bit."""
    for expected, loaded in zip(expected_models, loaded_models):
        for want, got in zip(expected.weights, loaded.weights):
            if want.shape != got.shape or not np.array_equal(np.asarray(want), np.asarray(got)):
                raise CheckpointError(f"{out}: {got.path} read back differs from the source")


def convert_original_encoder(source: str | Path, out: str | Path, force: bool = False) -> str:
    """Convert an original encoder checkpoint into ``out``; return the new checkpoint prefix."""
    from .checkpoints import load_encoder, save_encoder_weights
    from .legacy import load_original_encoder, resolve_original_checkpoint

    out = Path(out)
    _refuse_to_overwrite(out, force)
    prefix = resolve_original_checkpoint(source)
    encoder = load_original_encoder(prefix)
    saved = save_encoder_weights(encoder, out, metadata=source_provenance(prefix))
    _check_same_weights([encoder], [load_encoder(out)], out)
    return saved


def convert_original_gan(source: str | Path, out: str | Path, force: bool = False) -> str:
    """Convert an original GAN checkpoint into ``out``; return the new checkpoint prefix."""
    from .checkpoints import load_gan, save_gan_weights
    from .legacy import load_original_gan, resolve_original_checkpoint

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
    if (config.encoder is None) == (config.gan is None):
        raise CheckpointError(f"{config.out}: give exactly one of --encoder or --gan")
    if config.encoder is not None:
        return convert_original_encoder(config.encoder, config.out, force=config.force)
    return convert_original_gan(config.gan, config.out, force=config.force)


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(
        prog="python -m eeg2image_tf.import_original",
        description="Convert the authors' encoder or GAN checkpoint into this project's format.")
    add_config_arguments(parser, ImportOriginalConfig)
    args = parser.parse_args(argv)
    config = config_from_args(ImportOriginalConfig, args)
    if (config.encoder is None) == (config.gan is None):
        parser.error("give exactly one of --encoder or --gan")
    prefix = import_original(config)
    print(f"wrote {prefix} (and {Path(config.out) / 'model.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
