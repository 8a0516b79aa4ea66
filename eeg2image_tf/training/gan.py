"""Training of the conditional DCGAN (spec section 4): hinge losses, DiffAugment and mode-seeking.

One iteration (both halves share ``z1``, ``z2`` and the batch's ``c``):

1. discriminator update: ``fake = G([z1, c], training=False)``; DiffAugment on the real batch and on
   ``fake``; ``D(real_aug, c, training=True)`` and ``D(fake_aug, c, training=True)`` as two calls (each
   normalises with its own batch statistics, so merging them would change the numbers); hinge loss;
   only D's variables change (its weights, Adam state, BatchNorm moving statistics).
2. generator update: ``f1 = G([z1, c])``, ``f2 = G([z2, c])``; DiffAugment each; ``D(f1_aug, c)``,
   ``D(f2_aug, c)``; loss ``hinge(D(f1)) + hinge(D(f2)) + w / (ms + 1e-5)``; only G's trainable
   variables change (and, with D in training mode, D's moving statistics, as in the original).

The modes of step 2 are options (``GanTrainConfig``). By default they are what the authors' code
ran: G with ``training=False`` (BatchNorm on its moving statistics, which stay 0 and 1; no
spectral-norm update, so the raw kernels are trained) and D with ``training=True`` (two calls, each
with its own batch statistics). The spec's text, G with ``training=True`` (batch statistics and the
spectral-norm power iteration per call) and D with ``training=False`` (moving statistics, hence
per-sample and merged into one batch of 2B with the same numbers), is
``--generator-training --no-discriminator-training-in-g-step``. ``GanSteps`` itself defaults to
the spec's text; ``train_gan`` passes the config's choice.

Distribution. Each replica sees ``global_batch / replicas`` samples and Keras sums the replicas'
gradients. The hinge terms are divided by the global batch on every replica, so the summed gradients are
the global-batch gradients. The mode-seeking term is a ratio of means, which does not split over
replicas: each replica computes it on its own batch and divides it by the number of replicas, i.e. the
replicas' average is optimised. BatchNorm normalises with per-replica batch statistics (as any
non-synchronised BatchNorm does); its moving statistics are averaged over the replicas after each
update, so all replicas (and the checkpoint) hold the same ones. With one replica everything is the
original's arithmetic.

Randomness. Everything random inside a step (``z1``, ``z2`` and the four DiffAugment draws) is
stateless, derived from ``(seed, step, replica)``. A resumed run therefore draws exactly what the
uninterrupted run would have drawn: the checkpoint's ``step`` is the whole state of the latent
generator. The batch order of epoch ``e`` depends only on ``(seed, e)``; a resumed run rebuilds that
epoch's dataset and skips the batches already trained on.

Run directory: ``config.json``, ``conditions.npz`` (cached encoder features), ``checkpoints/``,
``samples/step_NNNNNN.png`` and ``samples/latest.png``, ``tensorboard/train``, ``metrics.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..config import GanTrainConfig, prepare_run_dir
from ..errors import ConfigError, DataError
from ..io_utils import atomic_path, atomic_write_json, read_json
from .common import (Deadline, SignalGuard, check_finite, make_checkpoint_manager, make_strategy,
                     progress_bar, restore_latest, set_seeds, summary_writer)

__all__ = [
    "LOSS_NAMES",
    "StepRandomness",
    "step_randomness",
    "GanSteps",
    "GanState",
    "build_gan_state",
    "restore_gan_state",
    "GanData",
    "load_gan_data",
    "encoder_features",
    "resolve_image_root",
    "epoch_shuffle_seed",
    "train_gan",
]

LOSS_NAMES = ("gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total")
# Checkpoint names of the dynamic loss scales of G's and D's optimizers (mixed_float16 runs only).
LOSS_SCALE_OBJECTS = ("g_loss_scale", "d_loss_scale")
SCALARS_EVERY_STEPS = 10
SATURATION_WINDOW = 200             # steps behind TensorBoard's gan/d_saturated_fraction
SAMPLE_COUNT = 16
SAMPLE_COLUMNS = 4
SAMPLE_LATENT_RANGE = 0.2           # the original's fixed sample latent is U(-0.2, 0.2)
FEATURE_BATCH = 1024                # trials per encoder call when computing conditions
CONDITIONS_FILE = "conditions.npz"
METRICS_FILE = "metrics.json"
# Seeds of the four DiffAugment draws of a step, by position in StepRandomness.augment_seeds.
AUGMENT_REAL, AUGMENT_FAKE, AUGMENT_F1, AUGMENT_F2 = range(4)


# --------------------------------------------------------------------------------------------------
# Randomness of one step
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepRandomness:
    """The random inputs of one iteration on one replica.

    ``z1``, ``z2``: float32 ``(B, latent_dim)`` in ``[-1, 1)``; ``augment_seeds``: int64 ``(4, 2)``
    stateless seeds of DiffAugment for the real batch and the fake batch of the discriminator update
    and for ``f1`` and ``f2`` of the generator update (rows ``AUGMENT_REAL`` .. ``AUGMENT_F2``).
    """

    z1: Any
    z2: Any
    augment_seeds: Any


def step_randomness(seed: int, step, replica_id, batch_size, latent_dim: int) -> StepRandomness:
    """Draw the latents and augmentation seeds of ``step`` on replica ``replica_id``, statelessly.

    Args:
        seed: the run's seed.
        step: int scalar (Python or tensor), the 0-based index of the iteration.
        replica_id: int scalar; distinct replicas get independent draws.
        batch_size: the replica's batch size (int or scalar tensor).
        latent_dim: size of ``z``.
    """
    import tensorflow as tf

    base = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
    base = tf.random.experimental.stateless_fold_in(base, tf.cast(replica_id, tf.int64))
    seeds = tf.cast(tf.random.experimental.stateless_split(base, num=6), tf.int64)
    shape = tf.stack([tf.cast(batch_size, tf.int32), latent_dim])
    z1 = tf.random.stateless_uniform(shape, seed=seeds[0], minval=-1.0, maxval=1.0)
    z2 = tf.random.stateless_uniform(shape, seed=seeds[1], minval=-1.0, maxval=1.0)
    return StepRandomness(z1=z1, z2=z2, augment_seeds=seeds[2:])


# --------------------------------------------------------------------------------------------------
# The two updates
# --------------------------------------------------------------------------------------------------

class GanSteps:
    """The discriminator update, the generator update, and one compiled distributed iteration.

    ``discriminator_update`` and ``generator_update`` run on one replica's batch and may be called
    eagerly (tests run them separately); ``make_train_step`` compiles the whole iteration.

    Args:
        generator, discriminator: built models (``G(inputs (B, latent + condition))``,
            ``D(images, condition)``).
        g_optimizer, d_optimizer: Keras optimizers built on the models' trainable variables.
        latent_dim: size of ``z``.
        policy: DiffAugment policy (``""`` for none).
        mode_seeking_weight: ``w`` of the generator loss.
        seed: the run's seed (see :func:`step_randomness`).
        global_batch_size: the batch over all replicas; with more than one replica the hinge terms
            are divided by it (see the module docstring). ``None``: plain batch means.
        num_replicas: the mode-seeking term is divided by it.
    """

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, *, latent_dim: int,
                 policy: str = "color,translation", mode_seeking_weight: float = 1.0, seed: int = 45,
                 global_batch_size: Optional[int] = None, num_replicas: int = 1,
                 generator_training: bool = True, discriminator_training_in_g_step: bool = False,
                 ema_generator=None, ema_decay: float = 0.0):
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.latent_dim = int(latent_dim)
        self.policy = policy
        self.mode_seeking_weight = float(mode_seeking_weight)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        # False reproduces what the authors' code actually ran (see GanTrainConfig.generator_training):
        # G's BatchNorm on moving statistics and no spectral-norm update in the G step.
        self.generator_training = bool(generator_training)
        # True is what the authors' code ran (GanTrainConfig): D on batch statistics in the G step
        # too, each of the two calls with its own, its moving statistics updated by both.
        self.discriminator_training_in_g_step = bool(discriminator_training_in_g_step)
        # One replica: the original's reduce_mean, to the last bit.
        self.global_batch_size = global_batch_size if self.num_replicas > 1 else None
        if ema_generator is not None and not 0.0 < ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must be in (0, 1) with an EMA generator, got {ema_decay}")
        self.ema_generator = ema_generator
        self.ema_decay = float(ema_decay)

    def _augment(self, images, seed):
        from ..augment import diff_augment

        return diff_augment(images, self.policy, seed=seed)

    def discriminator_update(self, images, conditions, z1, augment_seeds) -> dict:
        """Update D on one batch; return ``{"gan/d_hinge": scalar}`` (before the update).

        Args:
            images: real images ``(B, 128, 128, 3)`` in ``[-1, 1]``.
            conditions: ``(B, condition_dim)`` encoder features.
            z1: ``(B, latent_dim)``.
            augment_seeds: ``(4, 2)`` int64 (rows ``AUGMENT_REAL`` and ``AUGMENT_FAKE`` are used).
        """
        import tensorflow as tf

        from ..losses import discriminator_hinge

        # The original calls G with training=False here: no BatchNorm or spectral-norm update of G.
        fake = self.generator(tf.concat([z1, conditions], axis=-1), training=False)
        real_augmented = self._augment(images, augment_seeds[AUGMENT_REAL])
        fake_augmented = self._augment(fake, augment_seeds[AUGMENT_FAKE])
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            d_real = self.discriminator(real_augmented, conditions, training=True)
            d_fake = self.discriminator(fake_augmented, conditions, training=True)
            d_loss = discriminator_hinge(d_real, d_fake, global_batch_size=self.global_batch_size)
            # The loss itself unless the optimizer scales losses (mixed_float16: build_gan_state).
            scaled_loss = self.d_optimizer.scale_loss(d_loss)
        self.d_optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return {"gan/d_hinge": d_loss}

    def generator_update(self, conditions, z1, z2, augment_seeds) -> dict:
        """Update G on one batch; return the generator's loss terms (before the update).

        Returns ``gan/g_hinge`` (sum of the two hinge terms), ``gan/mode_seeking`` (``1 / (ms + 1e-5)``,
        unweighted) and ``gan/g_total`` (``g_hinge + w * mode_seeking``), scalars.
        """
        import tensorflow as tf

        from ..losses import generator_hinge, mode_seeking

        inputs_1 = tf.concat([z1, conditions], axis=-1)
        inputs_2 = tf.concat([z2, conditions], axis=-1)
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            f1 = self.generator(inputs_1, training=self.generator_training)
            f2 = self.generator(inputs_2, training=self.generator_training)
            augmented_1 = self._augment(f1, augment_seeds[AUGMENT_F1])
            augmented_2 = self._augment(f2, augment_seeds[AUGMENT_F2])
            if self.discriminator_training_in_g_step:
                # Batch statistics differ per call, so the two calls cannot be merged.
                d_f1 = self.discriminator(augmented_1, conditions, training=True)
                d_f2 = self.discriminator(augmented_2, conditions, training=True)
            else:
                # training=False uses moving statistics, so one 2B batch gives the two calls' numbers.
                scores = self.discriminator(tf.concat([augmented_1, augmented_2], axis=0),
                                            tf.concat([conditions, conditions], axis=0),
                                            training=False)
                d_f1, d_f2 = tf.split(scores, 2, axis=0)
            g_hinge = (generator_hinge(d_f1, global_batch_size=self.global_batch_size)
                       + generator_hinge(d_f2, global_batch_size=self.global_batch_size))
            ms_term = mode_seeking(f1, f2, inputs_1, inputs_2, num_replicas=self.num_replicas)
            g_total = g_hinge + self.mode_seeking_weight * ms_term
            scaled_loss = self.g_optimizer.scale_loss(g_total)
        self.g_optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return {"gan/g_hinge": g_hinge, "gan/mode_seeking": ms_term, "gan/g_total": g_total}

    def replica_step(self, step, images, conditions) -> dict:
        """One iteration on one replica's batch: draws, D update, then G update (spec order)."""
        import tensorflow as tf

        replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
        draws = step_randomness(self.seed, step, replica_id, tf.shape(conditions)[0], self.latent_dim)
        losses = self.discriminator_update(images, conditions, draws.z1, draws.augment_seeds)
        self._average_over_replicas(self.discriminator.non_trainable_variables)
        losses.update(self.generator_update(conditions, draws.z1, draws.z2, draws.augment_seeds))
        self._average_over_replicas(self.generator.non_trainable_variables)
        if self.discriminator_training_in_g_step:   # the G step moved D's statistics too
            self._average_over_replicas(self.discriminator.non_trainable_variables)
        return losses

    def update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * G`` for G's trainable weights; copy the rest.

        Called in cross-replica context after the generator update: the generator's weights are the
        same on every replica then, and an assignment there updates every replica's copy.
        BatchNorm moving statistics and spectral-norm vectors are copied (an average of statistics
        is not the statistics of the averaged network; the vectors play no part at inference).
        """
        if self.ema_generator is None:
            return
        decay = self.ema_decay
        # Two models built alike list their weights alike; G says which of them it trains.
        for averaged, current in zip(self.ema_generator.weights, self.generator.weights):
            if current.trainable:
                averaged.assign(decay * averaged + (1.0 - decay) * current)
            else:
                averaged.assign(current)

    def _average_over_replicas(self, variables) -> None:
        """Replace each replica's copy of ``variables`` by the replicas' mean.

        Keras 3 creates BatchNorm moving statistics with no aggregation: under a strategy every
        replica updates its own copy from its own batch, the copies drift apart, and a checkpoint
        saves the first replica's. Averaging after each update keeps one set of statistics, the
        mean of the replicas' (spectral-norm vectors are identical on all replicas already).
        """
        import tensorflow as tf

        if self.num_replicas < 2 or not variables:
            return
        context = tf.distribute.get_replica_context()
        means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                   [tf.convert_to_tensor(variable) for variable in variables])
        for variable, mean in zip(variables, means):
            variable.assign(mean)

    def make_train_step(self, strategy, jit: bool = False) -> Callable:
        """Compile ``train_step(step, batch) -> {name: scalar}`` for batches of ``gan_dataset``.

        ``batch`` is ``(conditions, labels, images)`` as one (distributed) element; the returned
        losses are summed over replicas, which gives the global values (see the module docstring).
        ``jit`` compiles the iteration with XLA; one replica only (XLA cannot reach the variables of
        the other replicas' devices from one cluster).
        """
        import tensorflow as tf

        if jit and strategy.num_replicas_in_sync > 1:
            raise ConfigError(f"--jit needs a single replica, the strategy has "
                              f"{strategy.num_replicas_in_sync}: use --no-jit")

        def distributed_step(step, batch):
            conditions, _labels, images = batch
            per_replica = strategy.run(self.replica_step, args=(step, images, conditions))
            losses = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                      for name, value in per_replica.items()}
            self.update_ema()
            return losses

        return tf.function(distributed_step, jit_compile=jit)


# --------------------------------------------------------------------------------------------------
# Models, optimizers, checkpoint
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class GanState:
    """What a GAN checkpoint holds; ``checkpoint`` uses the names the loaders rely on."""

    generator: Any
    discriminator: Any
    g_optimizer: Any                # what the steps apply: FusedAdam, or a LossScaleOptimizer around it
    d_optimizer: Any
    step: Any                       # tf.Variable int64: iterations done
    # tf.train.Checkpoint(step, generator, discriminator, g_/d_optimizer, [generator_ema],
    # [g_/d_loss_scale]); the optimizers under their Adam names whatever the precision
    checkpoint: Any
    generator_ema: Any = None       # the weight average (GanTrainConfig.ema_decay > 0), else None
    # mixed_float16 only: the checkpoint's LOSS_SCALE_OBJECTS (the dynamic loss scales), and the
    # checkpoint without them, for resuming from a checkpoint written in another precision.
    loss_scales: dict = dataclasses.field(default_factory=dict)
    checkpoint_without_loss_scales: Any = None

    @property
    def loss_scale_values(self) -> dict:
        """``{"precision/g_loss_scale": float, ...}``; empty without loss scaling."""
        return {f"precision/{name}": float(optimizer.dynamic_scale.numpy())
                for name, optimizer in self.loss_scales.items()}


def build_gan_state(config: GanTrainConfig, strategy=None) -> GanState:
    """Create and build the models and optimizers (inside ``strategy.scope()``) and the checkpoint.

    Optimizers are built on the trainable variables here, before any tracing, so that their slots
    exist (and are restored) before the first step.
    """
    import keras
    import tensorflow as tf

    from ..checkpoints import EMA_OBJECT
    from ..models import build_discriminator, build_generator
    from ..precision import check_precision, uses_loss_scaling
    from .fused_adam import FusedAdam

    strategy = strategy or tf.distribute.get_strategy()
    policy = check_precision(config.precision)
    with strategy.scope():
        generator = build_generator(latent_dim=config.latent_dim, condition_dim=config.condition_dim,
                                    fused_batch_norm=config.fused_batch_norm, dtype=policy,
                                    matmul_convs=config.matmul_convs)
        discriminator = build_discriminator(condition_dim=config.condition_dim,
                                            split_condition_conv=config.fast_discriminator,
                                            fused_batch_norm=config.fused_batch_norm, dtype=policy,
                                            matmul_convs=config.matmul_convs)
        # FusedAdam: Keras 3's Adam (same numbers, variables and checkpoints) in one kernel per
        # variable, as the original's TF 2.8 Adam ran it; about 30 ms less per iteration.
        g_optimizer = FusedAdam(config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
        d_optimizer = FusedAdam(config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
        g_optimizer.build(generator.trainable_variables)
        d_optimizer.build(discriminator.trainable_variables)
        loss_scales = {}
        if uses_loss_scaling(policy):
            # Keras's dynamic loss scaling (skips a step whose gradients overflow, halves the scale;
            # doubles it after 2000 good steps). The Adam optimizers stay checkpointed under their
            # usual names; the scales are extra objects, so runs can change precision on resume.
            loss_scales = {name: keras.optimizers.LossScaleOptimizer(optimizer)
                           for name, optimizer in zip(LOSS_SCALE_OBJECTS, (g_optimizer, d_optimizer))}
            for optimizer, model in zip(loss_scales.values(), (generator, discriminator)):
                optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        tracked = {}
        generator_ema = None
        if config.ema_decay > 0.0:
            # float32 like every checkpointed variable; it is only ever called for inference.
            generator_ema = build_generator(latent_dim=config.latent_dim,
                                            condition_dim=config.condition_dim,
                                            fused_batch_norm=config.fused_batch_norm,
                                            matmul_convs=config.matmul_convs)
            for averaged, current in zip(generator_ema.weights, generator.weights):
                averaged.assign(current)
            tracked[EMA_OBJECT] = generator_ema     # the name the loaders look for
        tracked.update(step=step, generator=generator, discriminator=discriminator,
                       g_optimizer=g_optimizer, d_optimizer=d_optimizer)
        checkpoint = tf.train.Checkpoint(**tracked, **loss_scales)
        without_loss_scales = tf.train.Checkpoint(**tracked) if loss_scales else None
    if loss_scales:
        g_optimizer, d_optimizer = (loss_scales[name] for name in LOSS_SCALE_OBJECTS)
    return GanState(generator=generator, discriminator=discriminator, g_optimizer=g_optimizer,
                    d_optimizer=d_optimizer, step=step, checkpoint=checkpoint,
                    generator_ema=generator_ema, loss_scales=loss_scales,
                    checkpoint_without_loss_scales=without_loss_scales)


def restore_gan_state(state: GanState, manager) -> Optional[str]:
    """Restore the manager's latest checkpoint into ``state``; return its path or None.

    A mixed_float16 run resumed from a checkpoint of another precision has no loss scales to
    restore: they start from their initial value (everything else is checked as always).
    """
    import tensorflow as tf

    latest = manager.latest_checkpoint
    if latest and state.loss_scales:
        stored = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(latest)}
        if not all(name in stored for name in state.loss_scales):
            return restore_latest(state.checkpoint_without_loss_scales, manager)
    return restore_latest(state.checkpoint, manager)


# --------------------------------------------------------------------------------------------------
# Data: EEG -> frozen encoder features (cached), paired images
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class GanData:
    """Training inputs of the GAN.

    ``conditions`` float32 ``(N, condition_dim)``: encoder features of the training trials;
    ``labels`` int64 ``(N,)``; ``images`` float32 ``(M, 128, 128, 3)`` in ``[-1, 1]``, the image bank;
    ``image_index`` int64 ``(N,)``: trial -> bank row (one fixed image of its class);
    ``class_names`` from the image folder; ``conditions_cached``: the features came from
    ``conditions.npz``.
    """

    conditions: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    image_index: np.ndarray
    class_names: tuple[str, ...]
    conditions_cached: bool


def resolve_image_root(images: str | os.PathLike) -> Path:
    """The training image folder: ``<images>/train`` when it exists, else ``<images>`` itself.

    Both spellings occur: ``--images data/images`` (the data layout's root) and the train folder
    itself (``data/images/train``, as the pipeline passes it).
    """
    root = Path(images)
    return root / "train" if (root / "train").is_dir() else root


def encoder_features(encoder, eeg, batch_size: int = FEATURE_BATCH) -> np.ndarray:
    """The encoder's 128-d feature (not the embedding) with ``training=False``, in batches.

    Args:
        encoder: ``encoder(x, training=False) -> (embedding, feature)``.
        eeg: preprocessed ``(N, T, C)`` float32.

    Returns:
        float32 ``(N, feature_dim)``.
    """
    import tensorflow as tf

    eeg = tf.convert_to_tensor(eeg, tf.float32)
    chunks = []
    for start in range(0, int(eeg.shape[0]), batch_size):
        _embedding, feature = encoder(eeg[start:start + batch_size], training=False)
        chunks.append(np.asarray(feature, dtype=np.float32))
    return np.concatenate(chunks, axis=0)


def _files_signature(path: Path) -> list:
    """(name, size, mtime) of the files under ``path`` (a file, a directory or a checkpoint prefix).

    Directories are read three levels deep, TensorBoard logs excepted: enough to see a retrained or
    reselected encoder (its checkpoints and JSON records) without hashing gigabytes.
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
            if file.is_file() and "tensorboard" not in relative.parts and len(relative.parts) <= 3:
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


def load_gan_data(config: GanTrainConfig, run_dir: str | os.PathLike) -> GanData:
    """Load EEG and images, pair them, and get the conditions (from the cache or the encoder).

    Raises :class:`DataError` when the EEG set and the image folder disagree on the class count or
    the encoder's feature size differs from ``config.condition_dim``.
    """
    from ..checkpoints import load_encoder
    from ..data import list_image_folder, load_images, load_thoughtviz, pair_images, preprocess

    splits = load_thoughtviz(config.data)
    image_root = resolve_image_root(config.images)
    folder = list_image_folder(image_root)
    if splits.num_classes != folder.num_classes:
        raise DataError(f"{image_root}: {folder.num_classes} image classes but the EEG set "
                        f"{config.data} has {splits.num_classes}")
    labels = np.asarray(splits.y_train, dtype=np.int64)
    image_index = pair_images(labels, folder.labels, seed=config.seed, class_names=folder.class_names)
    images = load_images(folder.paths)

    cache_path = Path(run_dir) / CONDITIONS_FILE
    fingerprint = _conditions_fingerprint(config, len(labels))
    conditions = _read_cached_conditions(cache_path, fingerprint, len(labels))
    cached = conditions is not None
    if conditions is None:
        encoder = load_encoder(config.encoder)
        eeg = preprocess(splits.x_train, method=config.normalisation)
        conditions = encoder_features(encoder, eeg)
        with atomic_path(cache_path) as tmp:
            np.savez(tmp, conditions=conditions, labels=labels, fingerprint=np.asarray(fingerprint))
    if conditions.shape[1] != config.condition_dim:
        raise DataError(f"{config.encoder}: encoder features have {conditions.shape[1]} dimensions, "
                        f"the GAN expects --condition-dim {config.condition_dim}")
    if not np.all(np.isfinite(conditions)):
        raise DataError(f"{config.encoder}: the encoder gives NaN/Inf features for {config.data}")
    return GanData(conditions=conditions, labels=labels, images=images, image_index=image_index,
                   class_names=folder.class_names, conditions_cached=cached)


def epoch_shuffle_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of epoch ``epoch``: a resumed epoch replays the same batch order."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


# --------------------------------------------------------------------------------------------------
# Samples and metrics
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class _SampleInputs:
    generator_inputs: np.ndarray     # (16, latent + condition) float32: fixed latent and conditions
    titles: tuple[str, ...]


def _sample_inputs(config: GanTrainConfig, data: GanData) -> _SampleInputs:
    """The original's sample grid: a fixed latent ``U(-0.2, 0.2)`` and the first 16 conditions."""
    rows = np.arange(SAMPLE_COUNT) % len(data.conditions)     # a tiny set repeats its trials
    latent = np.random.default_rng(config.seed).uniform(
        -SAMPLE_LATENT_RANGE, SAMPLE_LATENT_RANGE, (SAMPLE_COUNT, config.latent_dim))
    inputs = np.concatenate([latent.astype(np.float32), data.conditions[rows]], axis=1)
    titles = tuple(data.class_names[int(label)] for label in data.labels[rows])
    return _SampleInputs(generator_inputs=inputs, titles=titles)


def _write_samples(generator, samples: _SampleInputs, run_dir: Path, step: int) -> Path:
    import tensorflow as tf

    from .samples import sample_grid, write_png

    images = generator(tf.constant(samples.generator_inputs), training=False)
    grid = sample_grid(np.asarray(images), samples.titles, columns=SAMPLE_COLUMNS)
    path = run_dir / "samples" / f"step_{step:06d}.png"
    write_png(grid, path)
    write_png(grid, run_dir / "samples" / "latest.png")
    tf.summary.image("gan/samples", grid[None], step=step)
    return path


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------

class SaturationCounter:
    """How often the discriminator's hinge loss is exactly 0 (every real score >= 1 and every fake
    one <= -1): D then gets no gradient and G follows a saturated critic.

    Counts over the whole run (carried across resumes through metrics.json) and over the last
    ``window`` steps (TensorBoard ``gan/d_saturated_fraction``, every logged step).
    """

    def __init__(self, saturated: int = 0, steps: int = 0, window: int = SATURATION_WINDOW):
        self.saturated = int(saturated)
        self.steps = int(steps)
        self.recent: collections.deque = collections.deque(maxlen=window)

    @classmethod
    def from_metrics(cls, metrics: dict) -> "SaturationCounter":
        recorded = metrics.get("d_saturation", {})
        return cls(recorded.get("saturated_steps", 0), recorded.get("steps", 0))

    def add(self, d_hinge: float) -> None:
        saturated = d_hinge == 0.0
        self.saturated += int(saturated)
        self.steps += 1
        self.recent.append(saturated)

    def recent_fraction(self) -> Optional[float]:
        return float(np.mean(self.recent)) if self.recent else None

    def summaries(self) -> dict:
        fraction = self.recent_fraction()
        return {} if fraction is None else {"gan/d_saturated_fraction": fraction}

    def as_dict(self) -> dict:
        return {"fraction": self.saturated / self.steps if self.steps else None,
                "saturated_steps": self.saturated, "steps": self.steps,
                "recent_fraction": self.recent_fraction(), "recent_steps": len(self.recent)}


def _check_config(config: GanTrainConfig, num_replicas: int) -> None:
    if config.batch_size < 1 or config.batch_size % num_replicas:
        raise ConfigError(f"{config.run}: batch size {config.batch_size} must be a positive multiple "
                          f"of the {num_replicas} replicas")
    if config.jit and num_replicas > 1:
        raise ConfigError(f"{config.run}: --jit needs a single replica, the strategy has "
                          f"{num_replicas}: use --no-jit")
    for name in ("checkpoint_every", "sample_every"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{config.run}: --{name.replace('_', '-')} must be at least 1")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ConfigError(f"{config.run}: --ema-decay must be in [0, 1) (0: no average), "
                          f"got {config.ema_decay}")
    from ..precision import warn_if_slow

    warn_if_slow(config.precision, stacklevel=4)


def train_gan(config: GanTrainConfig, force: bool = False) -> dict:
    """Train (or resume) the conditional GAN of ``config``; return the run's headline numbers.

    Stops after ``config.max_steps`` iterations in total when given, else after ``config.epochs``
    epochs, or earlier when ``config.time_budget_s`` runs out (with a checkpoint). SIGINT/SIGTERM save
    a checkpoint and raise :class:`~eeg2image_tf.training.common.TrainingInterrupted`; a NaN/Inf loss
    raises :class:`~eeg2image_tf.errors.TrainingDivergedError` and keeps the last good checkpoint.

    Returns:
        ``step``, ``epoch`` (float), ``stopped`` (``"completed"`` or ``"time_budget"``), the last
        losses (``gan/...``), ``ms_per_step``, ``wall_time_s``, ``checkpoint``, ``samples``,
        ``conditions_cached``.
    """
    import tensorflow as tf

    from ..data import gan_dataset

    wall_start = time.monotonic()
    deadline = Deadline(config.time_budget_s)     # the budget covers start-up and tracing too
    run_dir = prepare_run_dir(config, config.run, force)
    set_seeds(config.seed)
    strategy = make_strategy(config.strategy)
    num_replicas = strategy.num_replicas_in_sync
    _check_config(config, num_replicas)

    data = load_gan_data(config, run_dir)
    steps_per_epoch = len(data.labels) // config.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{config.data}: {len(data.labels)} training trials, fewer than one batch "
                        f"of {config.batch_size}")
    total_steps = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch

    state = build_gan_state(config, strategy)
    steps = GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                     latent_dim=config.latent_dim, policy=config.policy,
                     mode_seeking_weight=config.mode_seeking_weight, seed=config.seed,
                     global_batch_size=config.batch_size, num_replicas=num_replicas,
                     generator_training=config.generator_training,
                     discriminator_training_in_g_step=config.discriminator_training_in_g_step,
                     ema_generator=state.generator_ema, ema_decay=config.ema_decay)
    train_step = steps.make_train_step(strategy, jit=config.jit)
    # Samples show what generate and evaluate will use: the average when the run keeps one.
    sampler = state.generator_ema if state.generator_ema is not None else state.generator
    manager = make_checkpoint_manager(state.checkpoint, run_dir / "checkpoints", config.max_to_keep)
    restored = restore_gan_state(state, manager)
    samples = _sample_inputs(config, data)

    step = int(state.step.numpy())
    start_step = step
    # A rerun of a finished run saves and draws nothing new.
    last_saved = step if restored else None
    last_sample = step if (run_dir / "samples" / f"step_{step:06d}.png").exists() else None
    previous = read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).exists() else {}
    earlier_wall_time = float(previous.get("total_wall_time_s", 0.0)) if start_step else 0.0
    losses: dict[str, float] = dict(previous.get("losses", {})) if start_step else {}
    step_times: list[float] = []
    # Wall clock from the end of this run's first (tracing) step: steps plus checkpoints, samples
    # and summaries, i.e. what a step costs in the run's time.
    loop_clock: dict[str, float] = {}
    saturation = SaturationCounter.from_metrics(previous if start_step else {})
    stopped = "completed"

    def save_checkpoint() -> str:
        nonlocal last_saved
        if last_saved != step or manager.latest_checkpoint is None:
            manager.save(checkpoint_number=step)
            last_saved = step
        return manager.latest_checkpoint

    def write_metrics() -> dict:
        timed = step_times[1:] or step_times      # the first step of a run includes tracing
        wall = time.monotonic() - wall_start
        looped = step - start_step - 1
        wall_per_step = ((time.monotonic() - loop_clock["start"]) / looped
                         if looped > 0 and "start" in loop_clock else None)
        metrics = {
            "step": step, "epoch": step / steps_per_epoch, "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps, "steps_this_run": step - start_step, "stopped": stopped,
            "losses": losses,
            # wall time per step (checkpoints, samples and summaries included) and the step alone
            "ms_per_step": 1000.0 * wall_per_step if wall_per_step is not None else
            (1000.0 * float(np.mean(timed)) if timed else None),
            "compute_ms_per_step": 1000.0 * float(np.mean(timed)) if timed else None,
            "d_saturation": saturation.as_dict(),
            "wall_time_s": wall, "total_wall_time_s": earlier_wall_time + wall,
            "batch_size": config.batch_size, "replicas": num_replicas,
            "checkpoint": manager.latest_checkpoint,
            **({"loss_scales": state.loss_scale_values} if state.loss_scales else {}),
        }
        atomic_write_json(run_dir / METRICS_FILE, metrics)
        return metrics

    with summary_writer(run_dir) as writer, SignalGuard() as guard:
        bar = progress_bar(total_steps, initial=step, desc="gan", unit="step")
        try:
            while step < total_steps and stopped == "completed":
                epoch, position = divmod(step, steps_per_epoch)
                dataset = gan_dataset(data.conditions, data.labels, data.images, data.image_index,
                                      config.batch_size, shuffle=True,
                                      seed=epoch_shuffle_seed(config.seed, epoch)).skip(position)
                for batch in strategy.experimental_distribute_dataset(dataset):
                    started = time.perf_counter()
                    values = train_step(tf.constant(step, tf.int64), batch)
                    values = {name: float(values[name]) for name in LOSS_NAMES}
                    step_times.append(time.perf_counter() - started)
                    if len(step_times) == 1:
                        loop_clock["start"] = time.monotonic()
                    saturation.add(values["gan/d_hinge"])
                    # Weights that produced a NaN are never saved: the last checkpoint stays good.
                    check_finite(values, f"step {step + 1}", manager.latest_checkpoint)
                    step += 1
                    state.step.assign(step)
                    losses = values
                    bar.update(1)
                    bar.set_postfix({"d_hinge": f"{values['gan/d_hinge']:.3f}",
                                     "g_hinge": f"{values['gan/g_hinge']:.3f}",
                                     "mode_seeking": f"{values['gan/mode_seeking']:.3f}"},
                                    refresh=False)
                    if step >= total_steps:
                        stopped = "completed"
                    elif guard.triggered:
                        stopped = "interrupted"
                    elif deadline.expired:
                        stopped = "time_budget"
                    finishing = step >= total_steps or stopped != "completed"
                    if step % SCALARS_EVERY_STEPS == 0 or finishing:
                        for name, value in {**values, **state.loss_scale_values,
                                            **saturation.summaries()}.items():
                            tf.summary.scalar(name, value, step=step)
                    if step % config.checkpoint_every == 0 or finishing:
                        save_checkpoint()
                        write_metrics()
                    if step % config.sample_every == 0:
                        _write_samples(sampler, samples, run_dir, step)
                        last_sample = step
                    if finishing:
                        break
        finally:
            bar.close()
            writer.flush()
        if guard.triggered and step < total_steps:    # also a signal during start-up
            stopped = "interrupted"
            path = save_checkpoint()
            write_metrics()
            raise guard.interrupted(f"step {step}", path)
        checkpoint_path = save_checkpoint()
        if last_sample != step:
            _write_samples(sampler, samples, run_dir, step)
        metrics = write_metrics()

    return {"step": step, "epoch": metrics["epoch"], "stopped": stopped, **losses,
            "ms_per_step": metrics["ms_per_step"],
            "compute_ms_per_step": metrics["compute_ms_per_step"],
            "d_saturated_fraction": metrics["d_saturation"]["fraction"],
            "d_saturated_recent_fraction": metrics["d_saturation"]["recent_fraction"],
            "wall_time_s": metrics["wall_time_s"],
            "checkpoint": checkpoint_path, "samples": str(run_dir / "samples" / "latest.png"),
            "conditions_cached": data.conditions_cached}
