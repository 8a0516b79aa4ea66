"""Selection of the encoder checkpoint by k-means accuracy (``select_encoder``).

docs/method.md section 3.

Writes into the encoder run (names in :mod:`eeg2image_tf.runs`): ``best_checkpoint.json``,
``select_config.json``, ``tsne.png``, the TensorBoard projector files of the best checkpoint's test
features under ``tensorboard/projector/``, and the ``encoder/kmeans_acc_best*`` keys of
``metrics.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins import projector

from ..config import EncoderTrainConfig, SelectEncoderConfig
from ..errors import CheckpointError
from ..evaluation.figures import save_tsne
from ..evaluation.metrics import kmeans_accuracy
from ..io_utils import atomic_write_json, atomic_write_text
from ..runs import (PROJECTOR_CHECKPOINT, PROJECTOR_CONFIG, PROJECTOR_METADATA, SELECT_CONFIG_FILE,
                    EncoderRun, kept_checkpoints, load_config, lock_run, read_metrics, save_config,
                    write_metrics)
from .encoder import (BEST_EPOCH_KEY, BEST_KEY, build_run_encoder, checkpoint_epoch,
                      compiled_features, load_encoder_data, make_encoder_steps)

__all__ = ["select_encoder", "write_projector"]


def select_encoder(config: SelectEncoderConfig) -> dict[str, Any]:
    """Score every checkpoint of an encoder run by test-set k-means accuracy and keep the best.

    For each checkpoint listed by the index ``<run>/checkpoints/checkpoint`` (all of them, oldest
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
    config.validate()
    run = EncoderRun(Path(config.run))
    run_dir = run.dir
    train_config = load_config(EncoderTrainConfig, run_dir)
    checkpoint_dir = run.checkpoints
    # The checkpoints by their files, not by TensorFlow's index file (runs.checkpoints).
    try:
        prefixes = [prefix for _, prefix in kept_checkpoints(checkpoint_dir)]
    except CheckpointError:
        raise CheckpointError(f"{checkpoint_dir}: no checkpoints; train the encoder first") from None
    data = load_encoder_data(train_config.data, train_config.normalisation)
    # The clusters of training's k-means (the set's class count unless asked otherwise), recorded
    # as used.
    config = dataclasses.replace(config, n_clusters=config.n_clusters or train_config.n_clusters
                                 or len(data.class_names))
    # One writer of the run at a time (released on an error too).
    lock = lock_run(run_dir)
    save_config(config, run_dir, SELECT_CONFIG_FILE)
    _, num_samples, num_channels = data.x_test.shape
    encoder = build_run_encoder(train_config, num_samples, num_channels)
    # Only the encoder is needed: the optimizer slots and epoch stored beside it are left unread.
    reader = tf.train.Checkpoint(encoder=encoder)
    # The training run's own compilation and batch size: the features, hence the k-means
    # accuracies, then equal those recorded during training bit for bit.
    _, _, feature_step = make_encoder_steps(encoder, optimizer=None, margin=train_config.margin,
                                            jit=train_config.jit)

    def features_of(prefix: str) -> np.ndarray:
        try:
            reader.read(prefix).assert_existing_objects_matched().expect_partial()
        except (AssertionError, ValueError, IndexError, tf.errors.OpError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{prefix}: not an encoder checkpoint of this run ({first_line})") \
                from None
        return compiled_features(feature_step, data.x_test, train_config.batch_size)

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
    atomic_write_json(run.best_checkpoint_record, selection)
    tsne_path = save_tsne(best_features, data.y_test, data.class_names, run.tsne,
                          title=f"t-SNE of test features, epoch {best['epoch']}: k-means "
                                f"accuracy {best['kmeans_accuracy']:.3f}",
                          perplexity=config.tsne_perplexity, iterations=config.tsne_iterations,
                          random_state=config.random_state, legend_outside=True)
    write_projector(best_features, [data.class_names[label] for label in data.y_test],
                    run.projector)

    metrics = read_metrics(run_dir)
    metrics.update({BEST_KEY: best["kmeans_accuracy"], BEST_EPOCH_KEY: best["epoch"],
                    "encoder/best_checkpoint": best["checkpoint"],
                    "encoder/kmeans_acc_by_checkpoint": {row["checkpoint"]: row["kmeans_accuracy"]
                                                         for row in table}})
    write_metrics(run_dir, metrics)
    lock.release()

    width = max([len("checkpoint")] + [len(Path(row["checkpoint"]).name) for row in table])
    print(f"{'checkpoint':<{width}}  {'epoch':>6}  k-means accuracy")
    for row in table:
        print(f"{Path(row['checkpoint']).name:<{width}}  {row['epoch']:>6}  "
              f"{row['kmeans_accuracy']:.4f}")
    print(f"best: {best['checkpoint']} (epoch {best['epoch']}), test k-means accuracy "
          f"{best['kmeans_accuracy']:.4f}")
    return {**selection, "tsne": str(tsne_path)}


def write_projector(features: np.ndarray, names: list[str], projector_dir: Path) -> Path:
    """TensorBoard projector files: an ``embedding`` checkpoint, ``metadata.tsv``, the config."""
    projector_dir.mkdir(parents=True, exist_ok=True)
    # A single-column metadata file has no header row (the projector's convention).
    atomic_write_text(projector_dir / PROJECTOR_METADATA, "".join(f"{name}\n" for name in names))
    embedding = tf.Variable(np.asarray(features, dtype=np.float32), trainable=False)
    checkpoint = tf.train.Checkpoint(embedding=embedding)
    # max_to_keep=1: a rerun replaces the previous embedding instead of piling up copies.
    manager = tf.train.CheckpointManager(checkpoint, str(projector_dir), max_to_keep=1,
                                         checkpoint_name=PROJECTOR_CHECKPOINT)
    manager.save()
    projector_config = projector.ProjectorConfig()
    entry = projector_config.embeddings.add()
    entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = PROJECTOR_METADATA
    atomic_write_text(projector_dir / PROJECTOR_CONFIG,
                      text_format.MessageToString(projector_config))
    return projector_dir
