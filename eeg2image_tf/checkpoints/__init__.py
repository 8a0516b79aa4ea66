"""Checkpoints: our format, the authors' original format, loading from any location, conversion,
weight averaging, and the image classifier's runs.

- :mod:`.original`: the authors' TF 2.8 checkpoints, read by key (``load_original_encoder``,
  ``load_original_gan``);
- :mod:`.ours`: our format (weights-only exports with ``model.json``) and the loaders
  ``load_encoder`` / ``load_gan``, which accept a run directory, a checkpoint directory, a prefix,
  or an original-format checkpoint;
- :mod:`.convert`: ``import_original``, original -> ours, checked variable by variable;
- :mod:`.averaging`: the weight average of a GAN run's kept checkpoints (``average_checkpoints``);
- :mod:`.classifier`: the image classifier of a ``train_image_classifier`` run.
"""

from ..runs import kept_checkpoints, latest_checkpoint_in
from .averaging import average_gan, generator_weights, mean_weights, write_averaged_run
from .classifier import build_classifier, load_image_classifier
from .convert import convert_original_encoder, convert_original_gan, import_original
from .original import OriginalGAN, load_original_encoder, load_original_gan
from .ours import (EMA_OBJECT, ENCODER_KIND, FORMAT, GAN_KIND, LoadedGAN, ResolvedCheckpoint,
                   checkpoint_has_ema, encoder_normalisation, load_encoder, load_gan, resolve_checkpoint,
                   save_encoder_weights, save_gan_weights, write_model_record)

__all__ = [
    "EMA_OBJECT", "ENCODER_KIND", "FORMAT", "GAN_KIND", "LoadedGAN", "OriginalGAN",
    "ResolvedCheckpoint", "average_gan", "build_classifier", "checkpoint_has_ema",
    "convert_original_encoder", "convert_original_gan", "encoder_normalisation", "generator_weights", "import_original",
    "kept_checkpoints", "latest_checkpoint_in", "load_encoder", "load_gan",
    "load_image_classifier", "load_original_encoder", "load_original_gan", "mean_weights",
    "resolve_checkpoint", "save_encoder_weights", "save_gan_weights", "write_averaged_run",
    "write_model_record",
]
