"""Opening what generation needs: a GAN run's generator, its frozen encoder and the test features
per class (:func:`load_generation_sources`), and ``generate`` as a library call."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..checkpoints import encoder_normalisation, load_encoder, load_gan
from ..config import GenerateConfig
from ..data import known_class_names, load_thoughtviz, preprocess, resolve_normalisation
from ..errors import CheckpointError
from ..models import encoder_features
from ..runs import (GENERATE_CONFIG_FILE, TRAIN_SPLIT, GanRun, check_output_folder, check_run_dir,
                    image_split_folder, lock_run, prepare_run_dir)
from .batches import _infer_latent_dim, group_by_class
from .files import GenerationManifest, generate_images


@dataclasses.dataclass(frozen=True)
class GenerationSources:
    """Everything generation needs, loaded from a GAN run or from explicit checkpoints."""

    generator: Any
    encoder: Any
    # per class, the conditions (m_c, condition_dim) float32 and their (m_c,) int64 trial indices:
    # of the test split (into x_test), or of the training split (:func:`with_training_conditions`)
    features_by_class: tuple[np.ndarray, ...]
    trials_by_class: tuple[np.ndarray, ...]
    test_features: np.ndarray                   # (N_test, condition_dim) float32, trial order
    class_names: tuple[str, ...]
    latent_dim: int
    splits: Any                                 # the EEGSplits the features came from
    normalisation: str
    images_root: Optional[Path]                 # the images folder the GAN was trained on, if known
    gan_config: Any                             # GanTrainConfig of the run, or None


def generator_of(loaded) -> Any:
    """The generator out of what ``checkpoints.load_gan`` returns (an object or a pair)."""
    if hasattr(loaded, "generator"):
        return loaded.generator
    if isinstance(loaded, (tuple, list)) and loaded:
        return loaded[0]
    return loaded


def _class_names(images: Optional[str], splits, num_classes: int) -> tuple[str, ...]:
    folder = image_split_folder(images, TRAIN_SPLIT) if images else None
    names = known_class_names(folder, splits.class_names, num_classes, splits.source)
    return names if names is not None else tuple(f"class_{c}" for c in range(num_classes))


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
    gan_config = None
    if run is not None:
        gan_config = GanRun.open(run).config
        gan = gan or run
        encoder = encoder or gan_config.encoder
        data = data or gan_config.data
        images = images or gan_config.images
    splits = load_thoughtviz(data)
    # The run's record, else the encoder run's, else the set's, else the original.
    recorded = gan_config.normalisation if gan_config is not None else None
    normalisation = resolve_normalisation(recorded or encoder_normalisation(encoder),
                                          splits.normalisation, data)
    num_classes = splits.num_classes
    class_names = _class_names(images, splits, num_classes)
    encoder_model = load_encoder(encoder)
    generator = generator_of(load_gan(gan, ema=ema))
    if generator is None:
        raise CheckpointError(f"{gan}: no generator in this checkpoint")
    test_features = encoder_features(encoder_model, preprocess(splits.x_test, method=normalisation),
                                     source=f"{data} (test split)",
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


def with_training_conditions(sources: GenerationSources,
                             feature_batch_size: int = 1024) -> GenerationSources:
    """``sources`` conditioned on the training trials: ``features_by_class`` become the encoder's
    features of each class's training trials and ``trials_by_class`` their indices into
    ``x_train``. What the GAN was trained on, so images made from them judge a checkpoint without
    the test set."""
    splits = sources.splits
    features = encoder_features(sources.encoder,
                                preprocess(splits.x_train, method=sources.normalisation),
                                source=f"{splits.source} (training split)",
                                batch_size=feature_batch_size)
    features_by_class, trials_by_class = group_by_class(
        features, splits.y_train, splits.num_classes, sources.class_names,
        source=f"{splits.source} (training set)")
    return dataclasses.replace(sources, features_by_class=features_by_class,
                               trials_by_class=trials_by_class)


def generate_from_run(config: GenerateConfig, force: bool = False, show_progress: bool = True) -> GenerationManifest:
    """``generate`` as a library call: :class:`~eeg2image_tf.config.GenerateConfig` -> files.

    The config is saved as ``<out>/generate_config.json``; regenerating into the same folder with a
    different config is refused unless ``force`` (the batch size and thread count may change: they
    do not change the images).
    """
    config.validate()
    check_output_folder(config.out, "--out", "generate", record=GENERATE_CONFIG_FILE)
    check_run_dir(config, config.out, force=force, filename=GENERATE_CONFIG_FILE)
    sources = load_generation_sources(run=config.run, gan=config.gan, encoder=config.encoder,
                                      data=config.data, images=config.images, ema=config.ema)
    with lock_run(config.out, "--out"):
        prepare_run_dir(config, config.out, force=force, filename=GENERATE_CONFIG_FILE)
        return generate_images(sources.generator, sources.features_by_class, sources.class_names,
                               config.out, config.per_class, config.batch_size, config.seed,
                               trials_by_class=sources.trials_by_class,
                               latent_dim=sources.latent_dim, latent_range=config.latent_range,
                               jpeg_quality=config.jpeg_quality,
                               writer_threads=config.writer_threads, show_progress=show_progress,
                               precision=config.precision)

