"""The GAN's inputs (docs/method.md section 4): the frozen encoder's features of the training trials
(cached in ``<run>/conditions.npz``), the image bank and its pairing with the trials, the batch
order of each epoch, and the fixed inputs of the sample grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..checkpoints import encoder_normalisation, load_encoder
from ..config import GanTrainConfig
from ..data import (EEGSplits, list_image_folder, load_images, load_thoughtviz, normalisation_note,
                    pair_images, preprocess, resolve_normalisation, stimulus_images)
from ..errors import ConfigError, DataError
from ..io_utils import atomic_path
from ..models import encoder_features
from ..models import precision as precisions
from ..models.matmul_conv import use_matmul_convs
from ..runs import TENSORBOARD_DIR, TRAIN_SPLIT, GanRun, stimulus_roots, training_image_folder
from .run import SettledConfig

SAMPLE_COUNT = 16
SAMPLE_LATENT_RANGE = 0.2           # the original's fixed sample latent is U(-0.2, 0.2)

__all__ = ["GanData", "settle_gan_config", "resolve_gan_config", "load_gan_data", "save_conditions",
           "epoch_shuffle_seed", "SampleInputs", "sample_inputs"]


@dataclasses.dataclass(frozen=True, eq=False)
class GanData:
    """Training inputs of the GAN.

    ``conditions`` float32 ``(N, condition_dim)``: encoder features of the training trials;
    ``labels`` int64 ``(N,)``; ``images`` float32 ``(M, 128, 128, 3)`` in ``[-1, 1]``, the image bank;
    ``image_index`` int64 ``(N,)``: trial -> bank row (one fixed image of its class, or the trial's
    own stimulus);
    ``class_names`` from the image folder; ``conditions_cached``: the features came from
    ``conditions.npz``; ``fingerprint``: what the features depend on (the cache's key).
    """

    conditions: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    image_index: np.ndarray
    class_names: tuple[str, ...]
    conditions_cached: bool
    fingerprint: str = ""


def _files_signature(path: Path) -> list:
    """(name, size, mtime) of the files under ``path`` (a file, a directory or a checkpoint prefix).

    Directories are read three levels deep, TensorBoard logs and hidden files (the run's lock)
    excepted: enough to see a retrained or reselected encoder (its checkpoints and JSON records)
    without hashing gigabytes.
    """
    def stat(file: Path, name: str) -> list:
        info = file.stat()
        return [name, info.st_size, info.st_mtime_ns]

    if path.is_file():
        return [stat(path, path.name)]
    if path.is_dir():
        found = []
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if file.is_file() and TENSORBOARD_DIR not in relative.parts and len(relative.parts) <= 3 \
                    and not any(part.startswith(".") for part in relative.parts):
                found.append(stat(file, str(relative)))
        return found
    # A checkpoint prefix (".../ckpt-12"): its index and data shards.
    return [stat(file, file.name) for file in sorted(path.parent.glob(path.name + ".*"))]


def _conditions_fingerprint(config: GanTrainConfig, num_trials: int) -> str:
    """A digest of everything the cached features depend on: encoder files, data file, settings."""
    encoder = Path(config.encoder).resolve()
    data = Path(config.data).resolve()
    description = {
        "encoder": str(encoder), "encoder_files": _files_signature(encoder),
        "data": str(data), "data_files": _files_signature(data),
        "normalisation": config.normalisation, "condition_dim": config.condition_dim,
        "num_trials": num_trials,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _read_cached_conditions(path: Path, fingerprint: str, num_trials: int) -> Optional[np.ndarray]:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            if str(cache["fingerprint"]) != fingerprint:
                return None
            conditions = np.asarray(cache["conditions"], dtype=np.float32)
    except (OSError, KeyError, ValueError):
        return None     # unreadable or from another version: recompute and overwrite
    return conditions if conditions.shape[0] == num_trials else None


def resolve_gan_config(config: GanTrainConfig, splits: EEGSplits) -> tuple[GanTrainConfig, Optional[str]]:
    """``config`` with its normalisation made concrete, and a note for the log (or None).

    ``normalisation`` None: the encoder run's (the features must come from the inputs the encoder
    learned), else the set's record, else ``original``; an explicit one that differs from the
    encoder run's is refused. ``--pairing stimulus`` needs a set that records each trial's image.
    Raises :class:`ConfigError` (one line).
    """
    if config.pairing == "stimulus" and splits.image_train is None:
        raise ConfigError(f"{config.data}: records no stimulus image per trial (no image_train); "
                          "--pairing stimulus needs one, use --pairing class")
    trained_on = encoder_normalisation(config.encoder)
    if config.normalisation and trained_on and config.normalisation != trained_on:
        raise ConfigError(f"{config.encoder}: the encoder was trained on {trained_on!r}-normalised "
                          f"trials; --normalisation {config.normalisation!r} would give it other "
                          "inputs (leave the flag out)")
    method = resolve_normalisation(config.normalisation or trained_on, splits.normalisation,
                                   config.data)
    note = normalisation_note(config.normalisation, splits.normalisation, config.data)
    return dataclasses.replace(config, normalisation=method), note


def settle_gan_config(config: GanTrainConfig) -> SettledConfig:
    """Make every choice of a GAN run once, before anything is written (no run directory; TensorFlow
    only lists this machine's devices).

    In order: the config's own checks; the precision (a slow one on this CPU is warned about);
    the matrix-product convolutions by this machine's devices when ``matmul_convs`` is None; the
    EEG set read, and with it the normalisation (:func:`resolve_gan_config`). The training loop
    reads only the settled config. Raises :class:`ConfigError` or :class:`DataError` (one line).
    """
    config = config.validate()
    precisions.warn_if_slow(config.precision, stacklevel=4)
    config = dataclasses.replace(config, matmul_convs=use_matmul_convs(config.matmul_convs))
    splits = load_thoughtviz(config.data)
    config, note = resolve_gan_config(config, splits)
    return SettledConfig(config=config, splits=splits, note=note)


def load_gan_data(config: GanTrainConfig, run_dir: str | os.PathLike,
                  write_cache: bool = True, splits: Optional[EEGSplits] = None) -> GanData:
    """Load EEG and images, pair them, and get the conditions (from the cache or the encoder).

    ``write_cache``: write ``conditions.npz`` when the features were computed (else
    :func:`save_conditions` does it later; a multi-worker run's other workers only read the chief's).
    ``splits``: the set of ``config.data`` when already loaded. ``config`` is resolved first
    (:func:`resolve_gan_config`) when its normalisation is None.

    Pairing (``config.pairing``): ``class``, the original's, gives each trial one image of its class
    from the training folder (numpy seed ``config.seed``, drawn once; the bank is the whole folder);
    ``stimulus`` gives each trial the image the set records for it (``image_train``; the bank is
    those images).

    Raises :class:`DataError` when the EEG set and the image folder disagree on the class count,
    a stimulus is missing or of another class, or the encoder's feature size differs from
    ``config.condition_dim``.
    """
    if splits is None:
        splits = load_thoughtviz(config.data)
    if config.normalisation is None:
        config, _ = resolve_gan_config(config, splits)
    image_root = training_image_folder(config.images)
    folder = list_image_folder(image_root, class_names=splits.class_names)
    if splits.num_classes != folder.num_classes:
        raise DataError(f"{image_root}: {folder.num_classes} image classes but the EEG set "
                        f"{config.data} has {splits.num_classes}")
    labels = np.asarray(splits.y_train, dtype=np.int64)
    if config.pairing == "stimulus":
        try:
            paths, image_index = stimulus_images(splits.image_train,
                                                 stimulus_roots(config.images, TRAIN_SPLIT),
                                                 labels, folder.class_names, source="image_train")
        except DataError as exc:
            raise DataError(f"{config.data}: {exc}") from None
    else:
        paths = folder.paths
        image_index = pair_images(labels, folder.labels, seed=config.seed,
                                  class_names=folder.class_names)
    images = load_images(paths)

    cache_path = GanRun(Path(run_dir)).conditions
    fingerprint = _conditions_fingerprint(config, len(labels))
    conditions = _read_cached_conditions(cache_path, fingerprint, len(labels))
    cached = conditions is not None
    if conditions is None:
        encoder = load_encoder(config.encoder)
        eeg = preprocess(splits.x_train, method=config.normalisation)
        conditions = encoder_features(encoder, eeg, source=f"{config.data} (train split)")
    if conditions.shape[1] != config.condition_dim:
        raise DataError(f"{config.encoder}: encoder features have {conditions.shape[1]} dimensions, "
                        f"the GAN expects --condition-dim {config.condition_dim}")
    if not np.all(np.isfinite(conditions)):
        raise DataError(f"{config.encoder}: the encoder gives NaN/Inf features for {config.data}")
    data = GanData(conditions=conditions, labels=labels, images=images, image_index=image_index,
                   class_names=folder.class_names, conditions_cached=cached,
                   fingerprint=fingerprint)
    if write_cache and not cached:
        save_conditions(data, run_dir)
    return data


def save_conditions(data: GanData, run_dir: str | os.PathLike) -> Path:
    """Cache ``data``'s conditions in ``<run_dir>/conditions.npz`` under their fingerprint."""
    cache_path = GanRun(Path(run_dir)).conditions
    with atomic_path(cache_path) as tmp:
        np.savez(tmp, conditions=data.conditions, labels=data.labels,
                 fingerprint=np.asarray(data.fingerprint))
    return cache_path


def epoch_shuffle_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of epoch ``epoch``: a resumed epoch replays the same batch order."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


@dataclasses.dataclass(frozen=True, eq=False)
class SampleInputs:
    generator_inputs: np.ndarray     # (16, latent + condition) float32: fixed latent and conditions
    titles: tuple[str, ...]


def sample_inputs(config: GanTrainConfig, data: GanData) -> SampleInputs:
    """The original's sample grid: a fixed latent ``U(-0.2, 0.2)`` and the first 16 conditions."""
    rows = np.arange(SAMPLE_COUNT) % len(data.conditions)     # a tiny set repeats its trials
    latent = np.random.default_rng(config.seed).uniform(
        -SAMPLE_LATENT_RANGE, SAMPLE_LATENT_RANGE, (SAMPLE_COUNT, config.latent_dim))
    inputs = np.concatenate([latent.astype(np.float32), data.conditions[rows]], axis=1)
    titles = tuple(data.class_names[int(label)] for label in data.labels[rows])
    return SampleInputs(generator_inputs=inputs, titles=titles)
