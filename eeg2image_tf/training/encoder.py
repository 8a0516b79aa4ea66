"""Encoder training with the semi-hard triplet loss (docs/method.md section 3).

Run layout (``<run>`` is ``config.run``; names in :mod:`eeg2image_tf.runs`)::

    <run>/config.json               the EncoderTrainConfig (runs.prepare_run_dir)
    <run>/checkpoints/ckpt-<epoch>  tf.train.Checkpoint(encoder=, optimizer=, epoch=) via
                                    CheckpointManager
    <run>/checkpoints/model.json    the architecture sizes checkpoints.load_encoder builds from
    <run>/tensorboard/train/        encoder/train_triplet, encoder/val_triplet (every epoch),
                                    encoder/kmeans_acc (every checkpoint)
    <run>/metrics.json              latest losses, k-means history {epoch: accuracy}, best so far
    best_checkpoint.json, tsne.png, tensorboard/projector/ in <run>: written by select_encoder
                                    (training.selection)

The checkpoint number is the number of completed epochs, so ``ckpt-2420`` means "after epoch 2420" as
in the authors' published checkpoint, and a checkpoint is only ever written at an epoch boundary: a
resumed run continues at exactly the next epoch. (The shuffled order of the resumed epochs restarts
from the config's seed; only the data order differs from an uninterrupted run.)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf

from ..checkpoints import ENCODER_KIND, write_model_record
from ..config import EncoderTrainConfig
from ..data import (EEGSplits, encoder_dataset, load_thoughtviz, normalisation_note, preprocess,
                    resolve_normalisation)
from ..errors import ConfigError, DataError
from ..evaluation.metrics import kmeans_accuracy
from ..models import build_encoder, encoder_features
from ..runs import EPOCH_COUNTER, checkpoint_step
from . import losses
from .common import check_finite
from .distributed import (distribute_global_batches, gather_rows, on_replica_device,
                          replica_share)
from .run import SettledConfig, TrainingRun

__all__ = [
    "TRAIN_TAG",
    "VAL_TAG",
    "KMEANS_TAG",
    "EncoderData",
    "settle_encoder_config",
    "load_encoder_data",
    "build_run_encoder",
    "make_encoder_steps",
    "compiled_features",
    "checkpoint_epoch",
    "train_encoder",
]

TRAIN_TAG = "encoder/train_triplet"


VAL_TAG = "encoder/val_triplet"


KMEANS_TAG = "encoder/kmeans_acc"

# Keys of <run>/metrics.json. They share the TensorBoard namespace so that a number can be found under
# the same name in both places.
_EPOCH_KEY = "encoder/epoch"


_HISTORY_KEY = "encoder/kmeans_acc_history"


BEST_KEY = "encoder/kmeans_acc_best"


BEST_EPOCH_KEY = "encoder/kmeans_acc_best_epoch"


# --------------------------------------------------------------------------------------------------
# Building blocks shared by training and selection
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EncoderData:
    """Preprocessed splits: ``x_*`` float32 ``(N, T, C)``, ``y_*`` int64 ``(N,)``; the
    ``normalisation`` they went through (the one asked for, else the set's)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    normalisation: str = "original"


def load_encoder_data(data_path: str, normalisation: Optional[str],
                      splits: Optional[EEGSplits] = None) -> EncoderData:
    """Load a set (unless ``splits`` is it already) and preprocess both splits once, up front
    (docs/method.md section 2).

    ``normalisation`` None: the one the set records, else ``original``
    (:func:`~eeg2image_tf.data.resolve_normalisation`).
    """
    splits = splits if splits is not None else load_thoughtviz(data_path)
    method = resolve_normalisation(normalisation, splits.normalisation, data_path)
    try:
        x_train = np.asarray(preprocess(splits.x_train, method=method), dtype=np.float32)
        x_test = np.asarray(preprocess(splits.x_test, method=method), dtype=np.float32)
    except (DataError, ValueError) as exc:
        # preprocess names the trial; the user also needs to know which file (and split) it was in.
        raise DataError(f"{data_path}: {exc}") from None
    names = splits.class_names
    if names is None:
        names = tuple(str(label) for label in range(splits.num_classes))
    return EncoderData(x_train=x_train, y_train=np.asarray(splits.y_train, dtype=np.int64),
                       x_test=x_test, y_test=np.asarray(splits.y_test, dtype=np.int64),
                       class_names=tuple(names), normalisation=method)


def settle_encoder_config(config: EncoderTrainConfig) -> SettledConfig:
    """Make every choice of an encoder run once, before anything is written (numpy only; the
    splits are preprocessed once the run's strategy exists, as preprocessing runs TensorFlow).

    The config's own checks; the set read, and with it the normalisation (the config's, else the
    set's record, else ``original``) and the number of k-means clusters (the set's classes). Raises
    :class:`ConfigError` or :class:`DataError` (one line).
    """
    splits = load_thoughtviz(config.validate().data)
    note = normalisation_note(config.normalisation, splits.normalisation, config.data)
    config = dataclasses.replace(
        config, normalisation=resolve_normalisation(config.normalisation, splits.normalisation,
                                                    config.data),
        n_clusters=config.n_clusters or splits.num_classes)
    return SettledConfig(config=config, splits=splits, note=note)


# Trials longer than this run their LSTMs as a loop even with ``unroll``: every written-out step is
# traced into each compiled function, and for EEGCVPR40's 440 samples the tracing costs far more than
# the few percent a step saves (benchmarks/encoder_step.py, docs/datasets-results.md).
MAX_UNROLLED_SAMPLES = 64


def build_run_encoder(config: EncoderTrainConfig, num_samples: int, num_channels: int):
    """The encoder of ``config``, built for trials of ``num_samples`` x ``num_channels``."""
    # The variables must exist before any tf.function traces the model (a variable created inside a
    # trace would be created per trace) and before a checkpoint is restored into them.
    unroll = config.unroll and num_samples <= MAX_UNROLLED_SAMPLES
    return build_encoder(feature_dim=config.feature_dim, hidden=config.hidden,
                         num_channels=num_channels, num_samples=num_samples, unroll=unroll)


def make_encoder_steps(encoder, optimizer, margin: float, jit: bool):
    """Compiled ``(train_step, val_step, feature_step)`` for ``encoder``.

    - ``train_step(x (B, T, C) float32, y (B,) int64) -> loss`` scalar: one Adam update on the triplet
      loss of the L2-normalised embedding.
    - ``val_step(x, y) -> loss``: the same loss with ``training=False``, no update.
    - ``feature_step(x) -> (B, feature_dim)``: the un-normalised features (what k-means and the GAN use).

    ``jit`` compiles them with XLA. Same numbers up to float32 rounding (the tests compare both paths).
    ``optimizer`` may be None when only ``val_step`` and ``feature_step`` will be called.
    """
    variables = encoder.trainable_variables

    @tf.function(jit_compile=jit, reduce_retracing=True, autograph=False)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            embedding, _ = encoder(x, training=True)
            loss = losses.triplet_semihard_loss(y, embedding, margin=margin)
        gradients = tape.gradient(loss, variables)
        optimizer.apply(gradients, variables)
        return loss

    @tf.function(jit_compile=jit, reduce_retracing=True, autograph=False)
    def val_step(x, y):
        embedding, _ = encoder(x, training=False)
        return losses.triplet_semihard_loss(y, embedding, margin=margin)

    @tf.function(jit_compile=jit, reduce_retracing=True, autograph=False)
    def feature_step(x):
        _, feature = encoder(x, training=False)
        return feature

    return train_step, val_step, feature_step


def make_distributed_train_step(encoder, optimizer, margin: float, strategy):
    """``train_step(x, y) -> loss`` over the replicas of ``strategy`` (``x``, ``y``: a distributed
    dataset's per-replica batch).

    The semi-hard triplet loss mines the whole batch, so every replica gathers the embeddings and
    labels of all replicas and computes the global batch's loss, as one process at that batch
    would; :func:`~.distributed.replica_share` makes the replicas' summed gradients its gradient.
    """
    variables = encoder.trainable_variables

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            embedding, _ = encoder(x, training=True)
            loss = losses.triplet_semihard_loss(gather_rows(y), gather_rows(embedding),
                                                margin=margin)
            share = replica_share(loss)
        optimizer.apply(tape.gradient(share, variables), variables)
        return loss

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(x, y):
        per_replica = strategy.run(on_replica_device(replica_step), args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return train_step


def compiled_features(feature_step, x: np.ndarray, batch_size: int) -> np.ndarray:
    """:func:`~eeg2image_tf.models.encoder_features` through a compiled ``feature_step`` of
    :func:`make_encoder_steps` (the run's own compilation: the same numbers as during training)."""
    return encoder_features(lambda batch, training=False: (None, feature_step(batch)), x, batch_size)


def checkpoint_epoch(prefix: str) -> int:
    """The epoch stored in an encoder checkpoint (its ``epoch`` variable), else its number suffix."""
    return checkpoint_step(prefix, counters=(EPOCH_COUNTER,), from_name=True)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------

def _write_architecture(checkpoint_dir, config: EncoderTrainConfig, num_channels: int) -> None:
    """``model.json`` beside the checkpoints: the sizes ``checkpoints.load_encoder`` builds from.

    It is needed because the checkpoint keys cannot tell the input channel count: a Keras 3
    optimizer tracks the variables it updates, and a checkpoint names each variable by its shortest
    path from the root, so the encoder's kernels are stored as ``optimizer/_trainable_variables/<i>``
    rather than under ``encoder/`` (restoring goes by the object graph and is unaffected).
    """
    write_model_record(checkpoint_dir, ENCODER_KIND,
                       {"feature_dim": config.feature_dim, "hidden": config.hidden,
                        "num_channels": int(num_channels)},
                       {"written_by": "train_encoder", "data": config.data})


def train_encoder(config: EncoderTrainConfig, force: bool = False) -> dict[str, Any]:
    """Train the encoder of ``config`` into ``config.run``, resuming from its latest checkpoint.

    Every ``checkpoint_every`` epochs (and at the end, on SIGINT/SIGTERM, and when ``time_budget_s``
    runs out) the run gets a checkpoint, the test-set k-means accuracy of the features
    (``metrics.kmeans_accuracy``), a TensorBoard point and an updated ``metrics.json``. A signal lets
    the current epoch finish (an epoch is a few seconds) so that checkpoints stay on epoch boundaries,
    then raises :class:`~eeg2image_tf.errors.TrainingInterrupted`. A NaN/Inf loss raises
    :class:`~eeg2image_tf.errors.TrainingDivergedError` naming the epoch and step; the previous
    checkpoint stays the latest one. The run skeleton is :class:`~.run.TrainingRun`.

    ``force`` accepts a config that differs from the run's ``config.json``; training still continues
    from the checkpoints that are there (a different architecture then fails to restore, with a
    :class:`~eeg2image_tf.errors.CheckpointError`).

    The training and validation losses of an epoch are the means of its per-batch losses (the
    validation set is the whole test set, in batches of ``batch_size``; training batches drop the
    remainder).

    Returns the final numbers: ``epoch``, ``train_triplet``, ``val_triplet``, ``kmeans_acc`` (last
    checkpoint), ``kmeans_acc_best`` and ``kmeans_acc_best_epoch``, ``checkpoint`` (latest prefix),
    ``stopped`` (``"completed"`` or ``"time_budget"``), ``seconds`` (wall time of this call).
    """
    started = time.monotonic()
    # Every choice is made before the run directory is written (numpy only: a multi-worker strategy
    # must come before TensorFlow runs); the run reads only the settled config.
    settled = settle_encoder_config(config)
    config = settled.config
    run = TrainingRun(config, force, budget_s=config.time_budget_s, strategy=config.strategy)
    if settled.note:
        run.log(settled.note)

    strategy = run.strategy
    replicas = strategy.num_replicas_in_sync
    data = load_encoder_data(config.data, config.normalisation, settled.splits)
    if len(data.x_train) < config.batch_size:
        # Training batches drop the remainder, so there would be no step at all.
        raise DataError(f"{config.data}: {len(data.x_train)} training trials make no full batch of "
                        f"{config.batch_size} (lower --batch-size)")

    _, num_samples, num_channels = data.x_train.shape
    with strategy.scope():
        encoder = build_run_encoder(config, num_samples, num_channels)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
        # Adam's slots must exist before a restore, or their saved values could not be put anywhere.
        optimizer.build(encoder.trainable_variables)
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name=EPOCH_COUNTER,
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        checkpoint = tf.train.Checkpoint(encoder=encoder, optimizer=optimizer, epoch=epoch_counter)
    start = run.start(checkpoint, epoch_counter, config.max_to_keep,
                      announce_epochs=config.epochs)
    _write_architecture(run.manager.directory, config, num_channels)
    start_epoch = start.unit

    train_ds = encoder_dataset(data.x_train, data.y_train, config.batch_size, shuffle=True,
                               seed=config.seed)
    val_ds = encoder_dataset(data.x_test, data.y_test, config.batch_size, shuffle=False,
                             seed=config.seed)
    train_step, val_step, feature_step = make_encoder_steps(encoder, optimizer, config.margin,
                                                            config.jit)
    if replicas > 1:
        if config.jit:
            raise ConfigError(f"{config.run}: --jit needs a single replica, the strategy has "
                              f"{replicas}: use --no-jit")
        # Every worker walks the one-process batches and keeps its replicas' rows of each.
        local_batches = train_ds
        train_ds = distribute_global_batches(strategy, lambda: local_batches, config.batch_size)
        train_step = make_distributed_train_step(encoder, optimizer, config.margin, strategy)
    metrics = dict(start.metrics)
    history: dict[str, float] = dict(metrics.get(_HISTORY_KEY, {}))
    last_losses: dict[str, float] = {"train_triplet": metrics.get(TRAIN_TAG, float("nan")),
                                     "val_triplet": metrics.get(VAL_TAG, float("nan"))}

    def train_epochs(loop) -> Iterator[int]:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            epoch_started = time.monotonic()
            step_losses = [train_step(x, y) for x, y in train_ds]
            val_losses = [val_step(x, y) for x, y in val_ds]
            # One host sync per epoch: the step losses stay on the device until here.
            train_values = np.array([loss.numpy() for loss in step_losses], dtype=np.float64)
            for step, value in enumerate(train_values, start=1):
                check_finite({TRAIN_TAG: value}, f"epoch {epoch} step {step}", run.latest_checkpoint)
            val_value = float(np.mean([loss.numpy() for loss in val_losses]))
            check_finite({VAL_TAG: val_value}, f"epoch {epoch} (validation)", run.latest_checkpoint)
            last_losses.update(train_triplet=float(train_values.mean()) if len(train_values) else
                               float("nan"), val_triplet=val_value)
            tf.summary.scalar(TRAIN_TAG, last_losses["train_triplet"], step=epoch)
            tf.summary.scalar(VAL_TAG, val_value, step=epoch)
            loop.bar.set_postfix(train=f"{last_losses['train_triplet']:.4f}", val=f"{val_value:.4f}",
                                 refresh=False)
            loop.bar.update(1)
            epoch_counter.assign(epoch)
            if epoch == start_epoch + 1 and not loop.save_due(epoch):
                # The progress bar is sparse in logs; one early line shows the run is alive and
                # how long an epoch takes (this one includes tracing and compilation).
                run.log(f"epoch {epoch}: train {last_losses['train_triplet']:.4f}  "
                        f"val {val_value:.4f}  ({time.monotonic() - epoch_started:.1f} s with "
                        "compilation)")
            yield epoch

    def record(epoch: int, _loop) -> None:
        """After ``epoch`` is checkpointed: score it with k-means, record everything."""
        path = run.latest_checkpoint
        if not run.writes:      # the chief scores and records the checkpoint
            run.log(f"epoch {epoch}: train {last_losses['train_triplet']:.4f}  -> {path}")
            return
        features = compiled_features(feature_step, data.x_test, config.batch_size)
        accuracy, _ = kmeans_accuracy(features, data.y_test, n_clusters=config.n_clusters,
                                      random_state=config.kmeans_random_state)
        tf.summary.scalar(KMEANS_TAG, accuracy, step=epoch)
        history[str(epoch)] = float(accuracy)
        best_epoch = max(history, key=lambda e: (history[e], -int(e)))  # earliest of equal bests
        metrics.update({
            _EPOCH_KEY: epoch,
            TRAIN_TAG: last_losses["train_triplet"],
            VAL_TAG: last_losses["val_triplet"],
            KMEANS_TAG: float(accuracy),
            _HISTORY_KEY: dict(sorted(history.items(), key=lambda item: int(item[0]))),
            BEST_KEY: history[best_epoch],
            BEST_EPOCH_KEY: int(best_epoch),
            "encoder/latest_checkpoint": path,
        })
        run.write_metrics(metrics)
        run.log(f"epoch {epoch}: train {last_losses['train_triplet']:.4f}  "
                f"val {last_losses['val_triplet']:.4f}  k-means accuracy {accuracy:.4f}  "
                f"-> {path}")

    stopped = run.drive(train_epochs, total=config.epochs, start=start_epoch,
                        save_every=config.checkpoint_every, saved=record, desc="encoder",
                        unit="epoch")

    return {
        "epoch": int(metrics.get(_EPOCH_KEY, run.last_saved or start_epoch)),
        "train_triplet": metrics.get(TRAIN_TAG),
        "val_triplet": metrics.get(VAL_TAG),
        "kmeans_acc": metrics.get(KMEANS_TAG),
        "kmeans_acc_best": metrics.get(BEST_KEY),
        "kmeans_acc_best_epoch": metrics.get(BEST_EPOCH_KEY),
        "checkpoint": run.latest_checkpoint,
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 1),
    }
