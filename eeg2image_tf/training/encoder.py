"""Encoder training (semi-hard triplet loss) and checkpoint selection by k-means accuracy (spec section 3).

Run layout (``<run>`` is ``config.run``)::

    config.json                 the EncoderTrainConfig (prepare_run_dir)
    checkpoints/ckpt-<epoch>    tf.train.Checkpoint(encoder=, optimizer=, epoch=) via CheckpointManager
    tensorboard/train/          encoder/train_triplet, encoder/val_triplet (every epoch),
                                encoder/kmeans_acc (every checkpoint)
    metrics.json                latest losses, k-means history {epoch: accuracy}, best so far
    best_checkpoint.json        written by select_encoder: {"best_checkpoint": prefix, ...}
    tsne.png                    written by select_encoder
    tensorboard/projector/      written by select_encoder: the best checkpoint's test features

The checkpoint number is the number of completed epochs, so ``ckpt-2420`` means "after epoch 2420" as
in the authors' published checkpoint, and a checkpoint is only ever written at an epoch boundary: a
resumed run continues at exactly the next epoch. (The shuffled order of the resumed epochs restarts
from the config's seed; only the data order differs from an uninterrupted run.)

TensorFlow and the other heavy modules are imported inside the functions, so importing this module
(and ``python -m eeg2image_tf.train_encoder --help``) stays cheap.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import EncoderTrainConfig, SelectEncoderConfig, load_config, prepare_run_dir, save_config
from ..errors import CheckpointError, ConfigError, DataError
from ..io_utils import atomic_savefig, atomic_write_json, atomic_write_text, read_json
from .common import (Deadline, SignalGuard, check_finite, make_checkpoint_manager, progress_bar,
                     restore_latest, set_seeds, summary_writer)

__all__ = [
    "TRAIN_TAG",
    "VAL_TAG",
    "KMEANS_TAG",
    "CHECKPOINT_DIR",
    "METRICS_FILE",
    "BEST_CHECKPOINT_FILE",
    "TSNE_FILE",
    "PROJECTOR_DIR",
    "EncoderData",
    "load_encoder_data",
    "make_encoder_steps",
    "compute_features",
    "checkpoint_epoch",
    "train_encoder",
    "select_encoder",
    "write_tsne_figure",
    "write_projector",
]

TRAIN_TAG = "encoder/train_triplet"
VAL_TAG = "encoder/val_triplet"
KMEANS_TAG = "encoder/kmeans_acc"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
BEST_CHECKPOINT_FILE = "best_checkpoint.json"
TSNE_FILE = "tsne.png"
PROJECTOR_DIR = Path("tensorboard") / "projector"

# Keys of <run>/metrics.json. They share the TensorBoard namespace so that a number can be found under
# the same name in both places.
_EPOCH_KEY = "encoder/epoch"
_HISTORY_KEY = "encoder/kmeans_acc_history"
_BEST_KEY = "encoder/kmeans_acc_best"
_BEST_EPOCH_KEY = "encoder/kmeans_acc_best_epoch"


# --------------------------------------------------------------------------------------------------
# Building blocks shared by training and selection
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EncoderData:
    """Preprocessed splits: ``x_*`` float32 ``(N, T, C)``, ``y_*`` int64 ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_encoder_data(data_path: str, normalisation: str) -> EncoderData:
    """Load a ThoughtViz set and preprocess both splits (spec section 2) once, up front."""
    from ..data import load_thoughtviz, preprocess

    splits = load_thoughtviz(data_path)
    try:
        x_train = np.asarray(preprocess(splits.x_train, method=normalisation), dtype=np.float32)
        x_test = np.asarray(preprocess(splits.x_test, method=normalisation), dtype=np.float32)
    except (DataError, ValueError) as exc:
        # preprocess names the trial; the user also needs to know which file (and split) it was in.
        raise DataError(f"{data_path}: {exc}") from None
    names = splits.class_names
    if names is None:
        names = tuple(str(label) for label in range(splits.num_classes))
    return EncoderData(x_train=x_train, y_train=np.asarray(splits.y_train, dtype=np.int64),
                       x_test=x_test, y_test=np.asarray(splits.y_test, dtype=np.int64),
                       class_names=tuple(names))


def _build_encoder(config: EncoderTrainConfig, num_samples: int, num_channels: int):
    # The variables must exist before any tf.function traces the model (a variable created inside a
    # trace would be created per trace) and before a checkpoint is restored into them.
    from ..models import build_encoder

    return build_encoder(feature_dim=config.feature_dim, hidden=config.hidden,
                         num_channels=num_channels, num_samples=num_samples, unroll=config.unroll)


def make_encoder_steps(encoder, optimizer, margin: float, jit: bool):
    """Compiled ``(train_step, val_step, feature_step)`` for ``encoder``.

    - ``train_step(x (B, T, C) float32, y (B,) int64) -> loss`` scalar: one Adam update on the triplet
      loss of the L2-normalised embedding.
    - ``val_step(x, y) -> loss``: the same loss with ``training=False``, no update.
    - ``feature_step(x) -> (B, feature_dim)``: the un-normalised features (what k-means and the GAN use).

    ``jit`` compiles them with XLA. Same numbers up to float32 rounding (the tests compare both paths).
    ``optimizer`` may be None when only ``val_step`` and ``feature_step`` will be called.
    """
    import tensorflow as tf

    from ..losses import triplet_semihard_loss

    variables = encoder.trainable_variables

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            embedding, _ = encoder(x, training=True)
            loss = triplet_semihard_loss(y, embedding, margin=margin)
        gradients = tape.gradient(loss, variables)
        optimizer.apply(gradients, variables)
        return loss

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def val_step(x, y):
        embedding, _ = encoder(x, training=False)
        return triplet_semihard_loss(y, embedding, margin=margin)

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def feature_step(x):
        _, feature = encoder(x, training=False)
        return feature

    return train_step, val_step, feature_step


def compute_features(feature_step: Callable, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Features ``(N, feature_dim)`` float32 of ``x`` ``(N, T, C)``, in batches of ``batch_size``."""
    parts = [feature_step(x[start:start + batch_size]).numpy()
             for start in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def checkpoint_epoch(prefix: str) -> int:
    """The epoch stored in an encoder checkpoint (its ``epoch`` variable), else its number suffix."""
    import tensorflow as tf

    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        match = re.search(r"-(\d+)$", prefix)
        if match is None:
            raise CheckpointError(f"{prefix}: no epoch variable and no number in its name") from None
        return int(match.group(1))


def _print_line(message: str) -> None:
    """Print a line to stdout without tearing an active progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def _write_architecture(checkpoint_dir: Path, config: EncoderTrainConfig, num_channels: int) -> None:
    """``model.json`` beside the checkpoints: the sizes ``checkpoints.load_encoder`` builds from.

    It is needed because the checkpoint keys cannot tell the input channel count: a Keras 3
    optimizer tracks the variables it updates, and a checkpoint names each variable by its shortest
    path from the root, so the encoder's kernels are stored as ``optimizer/_trainable_variables/<i>``
    rather than under ``encoder/`` (restoring goes by the object graph and is unaffected).
    """
    atomic_write_json(checkpoint_dir / "model.json", {
        "format": "eeg2image_tf-checkpoint/1", "kind": "encoder",
        "architecture": {"feature_dim": config.feature_dim, "hidden": config.hidden,
                         "num_channels": int(num_channels)},
        "provenance": {"written_by": "train_encoder", "data": config.data}})


def _load_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_FILE
    return read_json(path) if path.exists() else {}


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------

def train_encoder(config: EncoderTrainConfig, force: bool = False) -> dict[str, Any]:
    """Train the encoder of ``config`` into ``config.run``, resuming from its latest checkpoint.

    Every ``checkpoint_every`` epochs (and at the end, on SIGINT/SIGTERM, and when ``time_budget_s``
    runs out) the run gets a checkpoint, the test-set k-means accuracy of the features
    (``metrics.kmeans_accuracy``), a TensorBoard point and an updated ``metrics.json``. A signal lets
    the current epoch finish (an epoch is a few seconds) so that checkpoints stay on epoch boundaries,
    then raises :class:`~eeg2image_tf.training.common.TrainingInterrupted`. A NaN/Inf loss raises
    :class:`~eeg2image_tf.errors.TrainingDivergedError` naming the epoch and step; the previous
    checkpoint stays the latest one.

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
    import keras
    import tensorflow as tf

    from ..data import encoder_dataset
    from ..metrics import kmeans_accuracy

    started = time.monotonic()
    deadline = Deadline(config.time_budget_s)
    from ..data import PREPROCESS_METHODS

    if config.checkpoint_every < 1:
        raise ConfigError(f"{config.run}: checkpoint_every must be >= 1, got {config.checkpoint_every}")
    if config.normalisation not in PREPROCESS_METHODS:
        raise ConfigError(f"{config.run}: normalisation {config.normalisation!r} is not one of "
                          f"{', '.join(PREPROCESS_METHODS)}")
    run_dir = prepare_run_dir(config, config.run, force)
    set_seeds(config.seed)

    data = load_encoder_data(config.data, config.normalisation)
    if len(data.x_train) < config.batch_size:
        # Training batches drop the remainder, so there would be no step at all.
        raise DataError(f"{config.data}: {len(data.x_train)} training trials make no full batch of "
                        f"{config.batch_size} (lower --batch-size)")
    _, num_samples, num_channels = data.x_train.shape
    encoder = _build_encoder(config, num_samples, num_channels)
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    # Adam's slots must exist before a restore, or their saved values could not be put anywhere.
    optimizer.build(encoder.trainable_variables)
    _write_architecture(run_dir / CHECKPOINT_DIR, config, num_channels)
    epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(encoder=encoder, optimizer=optimizer, epoch=epoch_counter)
    manager = make_checkpoint_manager(checkpoint, run_dir / CHECKPOINT_DIR, config.max_to_keep)
    restored = restore_latest(checkpoint, manager)
    start_epoch = int(epoch_counter.numpy())

    train_ds = encoder_dataset(data.x_train, data.y_train, config.batch_size, shuffle=True,
                               seed=config.seed)
    val_ds = encoder_dataset(data.x_test, data.y_test, config.batch_size, shuffle=False,
                             seed=config.seed)
    train_step, val_step, feature_step = make_encoder_steps(encoder, optimizer, config.margin,
                                                            config.jit)
    metrics = _load_metrics(run_dir)
    history: dict[str, float] = dict(metrics.get(_HISTORY_KEY, {}))
    last_saved_epoch = start_epoch if restored else None
    last_losses: dict[str, float] = {"train_triplet": metrics.get(TRAIN_TAG, float("nan")),
                                     "val_triplet": metrics.get(VAL_TAG, float("nan"))}
    if restored:
        print(f"resuming {restored} at epoch {start_epoch + 1} of {config.epochs}", file=sys.stderr)

    def save_checkpoint(epoch: int) -> str:
        """Checkpoint after ``epoch`` completed epochs, score it with k-means, record everything."""
        nonlocal last_saved_epoch
        epoch_counter.assign(epoch)
        path = manager.save(checkpoint_number=epoch)
        last_saved_epoch = epoch
        features = compute_features(feature_step, data.x_test, config.batch_size)
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
            _BEST_KEY: history[best_epoch],
            _BEST_EPOCH_KEY: int(best_epoch),
            "encoder/latest_checkpoint": path,
        })
        atomic_write_json(run_dir / METRICS_FILE, metrics)
        _print_line(f"epoch {epoch}: train {last_losses['train_triplet']:.4f}  "
                   f"val {last_losses['val_triplet']:.4f}  k-means accuracy {accuracy:.4f}  "
                   f"-> {path}")
        return path

    stopped = "completed"
    with summary_writer(run_dir, "train") as writer, SignalGuard() as guard, \
            progress_bar(config.epochs, initial=start_epoch, desc="encoder", unit="epoch") as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            epoch_started = time.monotonic()
            step_losses = [train_step(x, y) for x, y in train_ds]
            val_losses = [val_step(x, y) for x, y in val_ds]
            # One host sync per epoch: the step losses stay on the device until here.
            train_values = np.array([loss.numpy() for loss in step_losses], dtype=np.float64)
            for step, value in enumerate(train_values, start=1):
                check_finite({TRAIN_TAG: value}, f"epoch {epoch} step {step}", manager.latest_checkpoint)
            val_value = float(np.mean([loss.numpy() for loss in val_losses]))
            check_finite({VAL_TAG: val_value}, f"epoch {epoch} (validation)", manager.latest_checkpoint)
            last_losses.update(train_triplet=float(train_values.mean()) if len(train_values) else
                               float("nan"), val_triplet=val_value)
            tf.summary.scalar(TRAIN_TAG, last_losses["train_triplet"], step=epoch)
            tf.summary.scalar(VAL_TAG, val_value, step=epoch)
            bar.set_postfix(train=f"{last_losses['train_triplet']:.4f}", val=f"{val_value:.4f}",
                            refresh=False)
            bar.update(1)

            if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
                save_checkpoint(epoch)
                writer.flush()
            elif epoch == start_epoch + 1:
                # The progress bar is sparse in logs; one early line shows the run is alive and
                # how long an epoch takes (this one includes tracing and compilation).
                _print_line(f"epoch {epoch}: train {last_losses['train_triplet']:.4f}  "
                            f"val {val_value:.4f}  ({time.monotonic() - epoch_started:.1f} s with "
                            "compilation)")
            if guard.triggered:
                path = save_checkpoint(epoch) if last_saved_epoch != epoch else manager.latest_checkpoint
                writer.flush()
                raise guard.interrupted(f"epoch {epoch}", path)
            if deadline.expired and epoch < config.epochs:
                if last_saved_epoch != epoch:
                    save_checkpoint(epoch)
                stopped = "time_budget"
                _print_line(f"time budget of {config.time_budget_s:.0f} s used up after epoch "
                            f"{epoch} of {config.epochs}; rerun to continue")
                break

    return {
        "epoch": int(metrics.get(_EPOCH_KEY, start_epoch)),
        "train_triplet": metrics.get(TRAIN_TAG),
        "val_triplet": metrics.get(VAL_TAG),
        "kmeans_acc": metrics.get(KMEANS_TAG),
        "kmeans_acc_best": metrics.get(_BEST_KEY),
        "kmeans_acc_best_epoch": metrics.get(_BEST_EPOCH_KEY),
        "checkpoint": manager.latest_checkpoint,
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 1),
    }


# --------------------------------------------------------------------------------------------------
# Checkpoint selection
# --------------------------------------------------------------------------------------------------

def select_encoder(config: SelectEncoderConfig) -> dict[str, Any]:
    """Score every checkpoint of an encoder run by test-set k-means accuracy and keep the best.

    For each checkpoint listed by the run's ``checkpoints/checkpoint`` index (all of them, oldest
    first): features of the test set -> ``metrics.kmeans_accuracy`` (KMeans with ``n_clusters`` and
    ``random_state``, Hungarian matching). The first checkpoint with the highest accuracy wins, as in
    the original's ``acc > best`` loop. Recomputed here rather than read from ``metrics.json`` so that
    the selection depends on nothing but the checkpoints and the data.

    Writes ``best_checkpoint.json``, ``tsne.png``, the projector files under
    ``tensorboard/projector/``, ``select_config.json``, and the ``encoder/kmeans_acc_best*`` keys of
    ``metrics.json``. The data path and preprocessing come from the run's ``config.json``.

    Returns ``{"best_checkpoint": prefix, "accuracy": float, "epoch": int, "table": [...],
    "tsne": path}``.
    """
    import tensorflow as tf

    from ..metrics import kmeans_accuracy

    run_dir = Path(config.run)
    train_config = load_config(EncoderTrainConfig, run_dir)
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    state = tf.train.get_checkpoint_state(str(checkpoint_dir))
    prefixes = list(state.all_model_checkpoint_paths) if state is not None else []
    if not prefixes:
        raise CheckpointError(f"{checkpoint_dir}: no checkpoints listed; train the encoder first")
    save_config(config, run_dir, "select_config.json")

    data = load_encoder_data(train_config.data, train_config.normalisation)
    _, num_samples, num_channels = data.x_test.shape
    encoder = _build_encoder(train_config, num_samples, num_channels)
    # Only the encoder is needed: the optimizer slots and epoch stored beside it are left unread.
    reader = tf.train.Checkpoint(encoder=encoder)
    # The training run's own compilation and batch size: the features, hence the k-means
    # accuracies, then equal those recorded during training bit for bit.
    _, _, feature_step = make_encoder_steps(encoder, optimizer=None, margin=train_config.margin,
                                            jit=train_config.jit)

    def features_of(prefix: str) -> np.ndarray:
        if not tf.io.gfile.exists(prefix + ".index"):
            raise CheckpointError(f"{prefix}: listed in {checkpoint_dir / 'checkpoint'} but missing")
        try:
            reader.read(prefix).assert_existing_objects_matched().expect_partial()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{prefix}: not an encoder checkpoint of this run ({first_line})") \
                from None
        return compute_features(feature_step, data.x_test, train_config.batch_size)

    table = []
    for prefix in prefixes:
        accuracy, _ = kmeans_accuracy(features_of(prefix), data.y_test,
                                      n_clusters=config.n_clusters, random_state=config.random_state)
        table.append({"checkpoint": prefix, "epoch": checkpoint_epoch(prefix),
                      "kmeans_accuracy": float(accuracy)})
    best = table[0]
    for row in table[1:]:
        if row["kmeans_accuracy"] > best["kmeans_accuracy"]:
            best = row

    best_features = features_of(best["checkpoint"])
    selection = {"best_checkpoint": best["checkpoint"], "accuracy": best["kmeans_accuracy"],
                 "epoch": best["epoch"], "table": table}
    atomic_write_json(run_dir / BEST_CHECKPOINT_FILE, selection)
    tsne_path = write_tsne_figure(best_features, data.y_test, data.class_names, run_dir / TSNE_FILE,
                                  title=f"t-SNE of test features, epoch {best['epoch']}: k-means "
                                        f"accuracy {best['kmeans_accuracy']:.3f}",
                                  perplexity=config.tsne_perplexity,
                                  iterations=config.tsne_iterations, random_state=config.random_state)
    write_projector(best_features, [data.class_names[label] for label in data.y_test],
                    run_dir / PROJECTOR_DIR)

    metrics = _load_metrics(run_dir)
    metrics.update({_BEST_KEY: best["kmeans_accuracy"], _BEST_EPOCH_KEY: best["epoch"],
                    "encoder/best_checkpoint": best["checkpoint"],
                    "encoder/kmeans_acc_by_checkpoint": {row["checkpoint"]: row["kmeans_accuracy"]
                                                         for row in table}})
    atomic_write_json(run_dir / METRICS_FILE, metrics)

    width = max([len("checkpoint")] + [len(Path(row["checkpoint"]).name) for row in table])
    print(f"{'checkpoint':<{width}}  {'epoch':>6}  k-means accuracy")
    for row in table:
        print(f"{Path(row['checkpoint']).name:<{width}}  {row['epoch']:>6}  "
              f"{row['kmeans_accuracy']:.4f}")
    print(f"best: {best['checkpoint']} (epoch {best['epoch']}), test k-means accuracy "
          f"{best['kmeans_accuracy']:.4f}")
    return {**selection, "tsne": str(tsne_path)}


def write_tsne_figure(features: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                      destination: Path, title: str, perplexity: float = 40.0, iterations: int = 700,
                      random_state: int = 45) -> Path:
    """2-D t-SNE of ``features`` ``(N, D)`` as a scatter coloured by class name, saved atomically.

    ``perplexity`` is clipped below ``N`` (scikit-learn requires it); ``iterations`` is ``max_iter``
    (``n_iter`` before scikit-learn 1.5).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 3:
        raise DataError(f"{destination}: t-SNE needs at least 3 test trials, got {n}")
    iteration_arg = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(n_components=2, perplexity=min(float(perplexity), n - 1.0),
                random_state=random_state, **{iteration_arg: iterations})
    points = tsne.fit_transform(np.asarray(features, dtype=np.float32))

    # A figure on its own Agg canvas: no pyplot state, no display needed, safe from threads.
    figure = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(class_names))]
    for label, name in enumerate(class_names):
        mask = labels == label
        if mask.any():
            axes.scatter(points[mask, 0], points[mask, 1], s=8, color=colours[label], label=name)
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2, frameon=False)
    figure.tight_layout()
    return atomic_savefig(figure, destination)


def write_projector(features: np.ndarray, names: list[str], projector_dir: Path) -> Path:
    """TensorBoard projector files: an ``embedding`` checkpoint, ``metadata.tsv``, the config."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    projector_dir.mkdir(parents=True, exist_ok=True)
    # A single-column metadata file has no header row (the projector's convention).
    atomic_write_text(projector_dir / "metadata.tsv", "".join(f"{name}\n" for name in names))
    embedding = tf.Variable(np.asarray(features, dtype=np.float32), trainable=False)
    checkpoint = tf.train.Checkpoint(embedding=embedding)
    # max_to_keep=1: a rerun replaces the previous embedding instead of piling up copies.
    manager = tf.train.CheckpointManager(checkpoint, str(projector_dir), max_to_keep=1,
                                         checkpoint_name="embedding.ckpt")
    manager.save()
    projector_config = projector.ProjectorConfig()
    entry = projector_config.embeddings.add()
    entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    atomic_write_text(projector_dir / "projector_config.pbtxt",
                      text_format.MessageToString(projector_config))
    return projector_dir
