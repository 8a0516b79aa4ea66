"""Loading the image classifier of a ``train_image_classifier`` run (for conditional accuracy)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from ..errors import CheckpointError
from ..io_utils import read_json
from ..models.classifier import ImageClassifier
from ..runs import ClassifierRun, newest_readable_checkpoint


def build_classifier(num_classes: int, image_size: int, class_names=None,
                     synchronized_batch_norm: bool = False) -> ImageClassifier:
    """An :class:`ImageClassifier` whose variables exist (``synchronized_batch_norm``: for
    training on several replicas; the same variables)."""
    return ImageClassifier(num_classes, image_size=image_size, class_names=class_names,
                           synchronized_batch_norm=synchronized_batch_norm).build_for_images()


def load_image_classifier(run_dir: str | Path) -> ImageClassifier:
    """The trained :class:`~eeg2image_tf.models.classifier.ImageClassifier` of a classifier run.

    Reads ``classes.json`` and restores the latest checkpoint of ``<run_dir>/checkpoints`` (the
    optimizer and augmentation state in it are not needed for inference, hence ``expect_partial``;
    every variable of the model must be there). ``classifier.class_names`` holds the class names.
    """
    run = ClassifierRun(Path(run_dir))
    if not run.dir.is_dir():
        raise CheckpointError(f"{run.dir}: image classifier run not found")
    classes = read_json(run.classes)
    try:
        class_names = tuple(str(name) for name in classes["class_names"])
        image_size = int(classes["image_size"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{run.classes}: expected class_names and image_size") from None
    latest = newest_readable_checkpoint(run.checkpoints) if run.checkpoints.is_dir() else None
    if latest is None:
        raise CheckpointError(f"{run.checkpoints}: no checkpoint (train the classifier first)")
    classifier = build_classifier(len(class_names), image_size, class_names)
    try:
        tf.train.Checkpoint(classifier=classifier).restore(latest).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{latest}: not a checkpoint of this classifier ({first_line})") \
            from None
    return classifier
