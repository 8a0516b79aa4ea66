"""Training of the domain image classifier used to score generated images (no download needed).

The classifier (:class:`~eeg2image_tf.models.classifier.ImageClassifier`) learns the set's classes
from ``<images>/train`` and is tested on ``<images>/test``. Evaluation then asks it whether a generated
image shows the class of the EEG trial that conditioned it (``metrics.conditional_accuracy``).

Run layout (``<run>`` is ``config.run``; names in :mod:`eeg2image_tf.runs`; loading:
:func:`eeg2image_tf.checkpoints.load_image_classifier`)::

    <run>/config.json               the ImageClassifierConfig (runs.prepare_run_dir)
    <run>/classes.json              {"class_names": [...], "image_size": ...}, to rebuild the model
    <run>/checkpoints/ckpt-<epoch>  tf.train.Checkpoint(classifier=, optimizer=, epoch=,
                                    augment_rng=, dropout_rng=), the two RNG states for an exact
                                    resume
    <run>/tensorboard/train/        classifier/train_loss, classifier/train_accuracy (augmented
                                    batches), classifier/test_loss, classifier/test_accuracy, every
                                    epoch
    <run>/metrics.json              test_accuracy, per_class_accuracy {class name: accuracy}, and
                                    more

Augmentation keeps letters legible: small random rotation, scale and shift (one affine warp, edges
replicated), brightness and contrast; never a horizontal flip (a mirrored "J" is no "J"). The epoch's
shuffle and the augmentation generator are seeded and the generator is checkpointed, so a resumed run
continues as an uninterrupted one would (up to the nondeterminism of parallel float sums).
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np
import tensorflow as tf

from ..checkpoints import build_classifier
from ..config import ImageClassifierConfig
from ..data import list_image_folder, list_split_folders, load_images
from ..errors import ConfigError
from ..evaluation.metrics import per_class_accuracy
from ..io_utils import atomic_write_json
from ..runs import EPOCH_COUNTER, TEST_SPLIT, TRAIN_SPLIT, ClassifierRun
from .common import check_finite
from .distributed import on_replica_device, replica_rows
from .run import TrainingRun

__all__ = [
    "TRAIN_LOSS_TAG", "TRAIN_ACCURACY_TAG", "TEST_LOSS_TAG", "TEST_ACCURACY_TAG",
    "ClassifierImages", "load_classifier_images", "affine_warp_rows", "AugmentationDraws",
    "draw_augmentation", "apply_augmentation", "augment_images",
    "train_image_classifier",
]

TRAIN_LOSS_TAG = "classifier/train_loss"
TRAIN_ACCURACY_TAG = "classifier/train_accuracy"
TEST_LOSS_TAG = "classifier/test_loss"
TEST_ACCURACY_TAG = "classifier/test_accuracy"

# Augmentation strengths: enough to cover the jitter of real and generated images, not enough to
# turn one letter into another.
MAX_ROTATION_DEGREES = 10.0
MAX_SCALE_CHANGE = 0.1       # zoom factor in [0.9, 1.1]
MAX_SHIFT_FRACTION = 0.1     # of the image side
MAX_BRIGHTNESS_SHIFT = 0.2   # in [-1, 1] units
MAX_CONTRAST_CHANGE = 0.2    # deviation from the image mean scaled by [0.8, 1.2]

_LOAD_CHUNK = 256            # images decoded at 128 x 128 at a time before downscaling


@dataclasses.dataclass(frozen=True)
class ClassifierImages:
    """Both splits at the classifier's input size: ``x_*`` float32 ``(N, S, S, 3)`` in [-1, 1],
    ``y_*`` int64 ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_classifier_images(images_root: str | Path, classifier) -> ClassifierImages:
    """Decode ``<images_root>/{train,test}`` and shrink them with the classifier's own resize.

    Images are decoded at 128 x 128 (the GAN's size) and downscaled by ``classifier.resize_inputs``,
    the very operation applied to generated images, so real and generated images reach the
    convolutions through the same resampling. Train and test must have the same class folders.
    """
    root = Path(images_root)
    train, test = list_split_folders(root, (TRAIN_SPLIT, TEST_SPLIT))

    def load_resized(paths: tuple[str, ...]) -> np.ndarray:
        size = classifier.image_size
        out = np.empty((len(paths), size, size, 3), np.float32)
        for start in range(0, len(paths), _LOAD_CHUNK):
            chunk = load_images(paths[start:start + _LOAD_CHUNK], size=128)
            out[start:start + len(chunk)] = np.asarray(classifier.resize_inputs(chunk))
        return out

    return ClassifierImages(x_train=load_resized(train.paths), y_train=train.labels,
                            x_test=load_resized(test.paths), y_test=test.labels,
                            class_names=train.class_names)


def affine_warp_rows(angle, scale, shift_x, shift_y, size):
    """Rows ``(B, 8)`` for ``ImageProjectiveTransformV3``: rotate by ``angle`` (radians) and scale by
    ``scale`` about the image centre, then shift by ``(shift_x, shift_y)`` pixels; all ``(B,)``.

    The op maps each *output* pixel to the input pixel it samples, so the rows hold the inverse map
    ``in = R(-angle) (out - centre - shift) / scale + centre``.
    """
    centre = (tf.cast(size, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    source_x, source_y = centre + shift_x, centre + shift_y
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, sin, centre - cos * source_x - sin * source_y,
                     -sin, cos, centre + sin * source_x - cos * source_y,
                     zeros, zeros], axis=1)


class AugmentationDraws(typing.NamedTuple):
    """The random numbers of one batch's augmentation, each ``(B,)`` float32 (see
    :func:`draw_augmentation`); ``rows(first, count)`` keeps rows ``first .. first + count - 1``.
    (A named tuple: ``strategy.run`` passes its tensors to every replica.)"""

    angle: tf.Tensor          # radians
    scale: tf.Tensor          # zoom factor
    shift_x: tf.Tensor        # fraction of the image side
    shift_y: tf.Tensor
    brightness: tf.Tensor     # in [-1, 1] units
    contrast: tf.Tensor       # factor on the deviation from the image mean

    def rows(self, first, count) -> "AugmentationDraws":
        return AugmentationDraws(*(value[first:first + count] for value in self))


def draw_augmentation(generator, batch) -> AugmentationDraws:
    """Draw the augmentation of ``batch`` images from ``generator`` (a ``tf.random.Generator``).

    Drawn for the whole (global) batch in one place, so that replicas sharing a batch slice the
    numbers one process would draw (:meth:`AugmentationDraws.rows`).
    """
    angle = generator.uniform([batch], -1.0, 1.0) * (MAX_ROTATION_DEGREES * math.pi / 180.0)
    scale = 1.0 + generator.uniform([batch], -MAX_SCALE_CHANGE, MAX_SCALE_CHANGE)
    shift_x = generator.uniform([batch], -MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION)
    shift_y = generator.uniform([batch], -MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION)
    brightness = generator.uniform([batch], -MAX_BRIGHTNESS_SHIFT, MAX_BRIGHTNESS_SHIFT)
    contrast = 1.0 + generator.uniform([batch], -MAX_CONTRAST_CHANGE, MAX_CONTRAST_CHANGE)
    return AugmentationDraws(angle, scale, shift_x, shift_y, brightness, contrast)


def apply_augmentation(images, draws: AugmentationDraws):
    """Rotate, scale, shift, brighten and re-contrast ``images`` ``(B, S, S, 3)`` in [-1, 1] by
    ``draws`` (``B`` rows).

    One affine warp per image (bilinear, edge pixels replicated into the uncovered border) so the
    image is resampled only once; the result is clipped to [-1, 1].
    """
    size = tf.cast(tf.shape(images)[1], tf.float32)
    transforms = affine_warp_rows(draws.angle, draws.scale, draws.shift_x * size,
                                  draws.shift_y * size, size)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")
    brightness = draws.brightness[:, None, None, None]
    contrast = draws.contrast[:, None, None, None]
    mean = tf.reduce_mean(warped, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((warped - mean) * contrast + mean + brightness, -1.0, 1.0)


def augment_images(images, generator):
    """Randomly augment a batch ``(B, S, S, 3)`` in [-1, 1]: :func:`draw_augmentation` from
    ``generator`` (a ``tf.random.Generator``), then :func:`apply_augmentation`."""
    return apply_augmentation(images, draw_augmentation(generator, tf.shape(images)[0]))


def _make_steps(classifier, optimizer, generator, strategy):
    """``train_step(images, labels) -> (loss, correct)`` on a global batch over ``strategy``'s
    replicas, and ``eval_step(images, labels) -> (loss sum, predicted classes)``.

    The augmentation and the dropout mask are drawn for the global batch and each replica keeps its
    rows, BatchNorm is synchronised (``build_classifier``), and each replica's loss is its rows' sum
    over the global batch size; N replicas thus take the step one process takes on the whole batch.
    """
    loss_sum = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    spec = tf.TensorSpec([None, classifier.image_size, classifier.image_size, 3], tf.float32)
    label_spec = tf.TensorSpec([None], tf.int64)
    variables = classifier.trainable_variables

    def replica_step(images, labels, draws):
        first, total = replica_rows(tf.shape(labels)[0])
        rows = total // tf.distribute.get_replica_context().num_replicas_in_sync
        images, labels = images[first:first + rows], labels[first:first + rows]
        augmented = apply_augmentation(images, draws.rows(first, rows))
        with tf.GradientTape() as tape:
            features = classifier.embed(augmented, training=True)
            # The dropout layer's own mask of the global batch (same seed on every replica), cut to
            # this replica's rows: the mask one process would draw.
            keep = classifier.dropout(tf.ones([total, classifier.feature_dim]), training=True)
            logits = classifier.head(features * keep[first:first + rows])
            loss = loss_sum(labels, logits) / tf.cast(total, tf.float32)
        optimizer.apply(tape.gradient(loss, variables), variables)
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, axis=1) == labels, tf.float32))
        return loss, correct

    @tf.function(input_signature=[spec, label_spec], autograph=False)
    def train_step(images, labels):
        draws = draw_augmentation(generator, tf.shape(images)[0])
        loss, correct = strategy.run(on_replica_device(replica_step), args=(images, labels, draws))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    @tf.function(input_signature=[spec, label_spec], autograph=False)
    def eval_step(images, labels):
        logits = classifier(images, training=False)
        return loss_sum(labels, logits), tf.argmax(logits, axis=1)

    return train_step, eval_step


def _evaluate(eval_step, images: np.ndarray, labels: np.ndarray,
              batch_size: int) -> tuple[float, np.ndarray]:
    """Mean test loss and the predicted classes ``(N,)`` of ``images``."""
    total_loss, predictions = 0.0, []
    for start in range(0, len(images), batch_size):
        loss_sum, predicted = eval_step(images[start:start + batch_size],
                                        labels[start:start + batch_size])
        total_loss += float(loss_sum)
        predictions.append(predicted.numpy())
    return total_loss / len(images), np.concatenate(predictions)


def train_image_classifier(config: ImageClassifierConfig, force: bool = False,
                           progress: bool = True) -> dict[str, Any]:
    """Train the classifier of ``config`` into ``config.run``; resume from its latest checkpoint.

    Adam with a cosine decay of the learning rate over ``epochs`` (a longer ``--epochs`` on a
    finished run re-stretches the schedule), batches of ``batch_size`` (the last incomplete batch
    of each epoch is dropped so BatchNorm never sees a tiny batch), a checkpoint after every epoch.
    SIGINT/SIGTERM stop after the current epoch with a checkpoint
    (:class:`~eeg2image_tf.errors.TrainingInterrupted`). The run skeleton is
    :class:`~.run.TrainingRun`.

    Returns ``test_accuracy``, ``test_loss``, ``train_accuracy`` (last epoch, augmented images),
    ``per_class_accuracy`` {class name: accuracy}, ``epoch``, ``checkpoint``, ``seconds``; the same
    numbers are in ``<run>/metrics.json``.
    """
    started = time.monotonic()
    run = TrainingRun(config, force, strategy=config.strategy)
    strategy = run.strategy
    replicas = strategy.num_replicas_in_sync

    class_names = list_image_folder(Path(config.images) / TRAIN_SPLIT).class_names
    with strategy.scope():
        classifier = build_classifier(len(class_names), config.image_size, class_names,
                                      synchronized_batch_norm=replicas > 1)
    data = load_classifier_images(config.images, classifier)

    batch_size = min(config.batch_size, len(data.x_train))
    if batch_size % replicas:
        raise ConfigError(f"{config.images}: {len(data.x_train)} training images make a batch of "
                          f"{batch_size}, which does not divide over the {replicas} replicas")
    steps_per_epoch = len(data.x_train) // batch_size
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.02)
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
        # Adam's slots must exist before a restore, or their saved values could not be put anywhere.
        optimizer.build(classifier.trainable_variables)
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name=EPOCH_COUNTER,
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # Outside the scope: drawn once per global batch in the step's cross-replica part, the same
    # numbers on every worker (a generator made in the scope would give each replica its own stream).
    generator = tf.random.Generator.from_seed(config.seed)
    # The RNG states go into the checkpoint too (dropout's is not part of the model's own
    # checkpoint), so that a resumed run draws what an uninterrupted one would have drawn.
    checkpoint = tf.train.Checkpoint(classifier=classifier, optimizer=optimizer,
                                     epoch=epoch_counter, augment_rng=generator,
                                     dropout_rng=classifier.dropout.seed_generator.state)
    start = run.start(checkpoint, epoch_counter, max_to_keep=2,
                      announce_epochs=config.epochs)
    if run.writes:
        atomic_write_json(ClassifierRun(run.dir).classes, {"class_names": list(class_names),
                                                           "image_size": config.image_size})
    start_epoch = start.unit

    train_step, eval_step = _make_steps(classifier, optimizer, generator, strategy)
    metrics: dict[str, Any] = dict(start.metrics)
    last_epoch: dict[str, float] = {}

    def record(epoch: int, train_loss: float, train_accuracy: float, summaries: bool = True) -> None:
        test_loss, predictions = _evaluate(eval_step, data.x_test, data.y_test, batch_size)
        test_accuracy = float(np.mean(predictions == data.y_test))
        if summaries:
            for tag, value in ((TRAIN_LOSS_TAG, train_loss), (TRAIN_ACCURACY_TAG, train_accuracy),
                               (TEST_LOSS_TAG, test_loss), (TEST_ACCURACY_TAG, test_accuracy)):
                tf.summary.scalar(tag, value, step=epoch)
        metrics.update({
            "epoch": epoch,
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "train_accuracy": train_accuracy,
            "train_loss": train_loss,
            "per_class_accuracy": per_class_accuracy(predictions, data.y_test, data.class_names),
            "num_train": int(len(data.x_train)),
            "num_test": int(len(data.x_test)),
            "class_names": list(data.class_names),
            "checkpoint": run.latest_checkpoint,
        })
        run.write_metrics(metrics)
        run.log(f"epoch {epoch}: train loss {train_loss:.4f} accuracy {train_accuracy:.4f}  "
                f"test loss {test_loss:.4f} accuracy {test_accuracy:.4f}")

    def train_epochs(loop) -> Iterator[int]:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            order = np.random.default_rng([config.seed, epoch]).permutation(len(data.x_train))
            losses, correct = [], 0.0
            for step in range(steps_per_epoch):
                batch = order[step * batch_size:(step + 1) * batch_size]
                loss, batch_correct = train_step(data.x_train[batch], data.y_train[batch])
                losses.append(loss)
                correct += float(batch_correct)
                loop.bar.update(1)
            last_epoch["loss"] = float(np.mean([float(loss) for loss in losses]))
            check_finite({TRAIN_LOSS_TAG: last_epoch["loss"]}, f"epoch {epoch}",
                         run.latest_checkpoint)
            last_epoch["accuracy"] = correct / (steps_per_epoch * batch_size)
            epoch_counter.assign(epoch)
            yield epoch

    def saved(epoch: int, loop) -> None:
        record(epoch, last_epoch["loss"], last_epoch["accuracy"])
        loop.bar.set_postfix(loss=f"{last_epoch['loss']:.3f}", test=f"{metrics['test_accuracy']:.3f}",
                             refresh=False)

    def end(epoch: int, _reason: str) -> None:
        if not last_epoch:
            # A finished run rerun as is: evaluate the checkpoint again rather than trust an old file
            # (TensorBoard already has this epoch).
            record(epoch, metrics.get("train_loss", float("nan")),
                   metrics.get("train_accuracy", float("nan")), summaries=False)

    # Every epoch is saved and recorded.
    run.drive(train_epochs, total=config.epochs, start=start_epoch, save_every=1, saved=saved,
              end=end, desc="classifier", unit="epoch", bar_total=config.epochs * steps_per_epoch,
              bar_initial=min(start_epoch, config.epochs) * steps_per_epoch, bar_unit="step",
              progress=progress)

    return {
        "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"],
        "train_accuracy": metrics["train_accuracy"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "epoch": metrics["epoch"],
        "checkpoint": run.latest_checkpoint,
        "seconds": round(time.monotonic() - started, 1),
    }
