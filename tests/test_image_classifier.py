"""Tests of the domain image classifier: model, augmentation, training run, loading, entry point."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from eeg2image_tf.checkpoints import load_image_classifier
from eeg2image_tf.config import ImageClassifierConfig
from eeg2image_tf.data import list_image_folder, load_images
from eeg2image_tf.errors import CheckpointError, run_main
from eeg2image_tf.evaluation import metrics
from eeg2image_tf.io_utils import atomic_write_json, read_json
from eeg2image_tf.models.classifier import ImageClassifier
from eeg2image_tf.train_image_classifier import main as train_image_classifier_main
from eeg2image_tf.training.image_classifier import (affine_warp_rows, augment_images,
                                                     train_image_classifier)

SHAPES = ("cross", "disc", "hbar", "vbar")


def _draw(shape: str, rng: np.random.Generator) -> np.ndarray:
    """A 128 x 128 BGR image of ``shape`` in random colours at a random position."""
    background = rng.integers(0, 256, size=3)
    foreground = (background + 128 + rng.integers(-30, 30, size=3)) % 256
    image = np.empty((128, 128, 3), np.uint8)
    image[:] = background
    cx, cy = (int(v) for v in rng.integers(44, 84, size=2))
    colour = tuple(int(v) for v in foreground)
    if shape == "disc":
        cv2.circle(image, (cx, cy), 26, colour, -1)
    elif shape == "cross":
        cv2.rectangle(image, (cx - 30, cy - 6), (cx + 30, cy + 6), colour, -1)
        cv2.rectangle(image, (cx - 6, cy - 30), (cx + 6, cy + 30), colour, -1)
    elif shape == "hbar":
        cv2.rectangle(image, (cx - 34, cy - 8), (cx + 34, cy + 8), colour, -1)
    else:
        cv2.rectangle(image, (cx - 8, cy - 34), (cx + 8, cy + 34), colour, -1)
    return image


def _write_image_folder(root, per_class_train=40, per_class_test=8, seed=0):
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True)
            for k in range(count):
                cv2.imwrite(str(folder / f"{shape}_{k}.png"), _draw(shape, rng))
    return root


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    return _write_image_folder(tmp_path_factory.mktemp("shapes") / "images")


@pytest.fixture(scope="module")
def trained_run(image_root, tmp_path_factory):
    """A short run on the shape folder (module-scoped: several tests read it)."""
    run = tmp_path_factory.mktemp("classifier") / "run"
    config = ImageClassifierConfig(images=str(image_root), run=str(run), epochs=8, batch_size=16,
                                   learning_rate=3e-3, image_size=32)
    return config, train_image_classifier(config, progress=False)


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------

def test_model_shapes_and_outputs():
    classifier = ImageClassifier(4, image_size=32, class_names=("a", "b", "c", "d"))
    classifier.build_for_images()
    images = np.random.default_rng(0).uniform(-1, 1, size=(5, 128, 128, 3)).astype(np.float32)
    assert tuple(classifier(images).shape) == (5, 4)
    features, probs = classifier.features_and_probs(images, batch_size=2)
    assert features.shape == (5, classifier.feature_dim) == (5, 128)
    assert probs.shape == (5, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Other batch sizes only reorder float sums.
    np.testing.assert_allclose(classifier.features(images), features, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(images), probs, rtol=1e-4, atol=1e-6)
    # Generated 128 x 128 images and images already shrunk by the model's own resize give the same.
    shrunk = np.asarray(classifier.resize_inputs(images))
    assert shrunk.shape == (5, 32, 32, 3)
    np.testing.assert_allclose(classifier.predict_proba(shrunk), probs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="class names"):
        ImageClassifier(3, class_names=("a", "b"))


def test_checkpoint_holds_every_model_variable(tmp_path):
    classifier = ImageClassifier(3, image_size=32).build_for_images()
    prefix = tf.train.Checkpoint(classifier=classifier).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(prefix) if name.startswith("classifier/")]
    # Per block a conv kernel and four BatchNorm variables, then the head's kernel and bias; the
    # dropout's seed state is the one model variable the model's checkpoint leaves out.
    model_variables = [v for v in classifier.variables if "seed_generator" not in v.path]
    assert len(saved) == len(model_variables) == 5 * 5 + 2
    for index in range(5):
        assert f"classifier/conv_{index}/_kernel/.ATTRIBUTES/VARIABLE_VALUE" in saved
        assert f"classifier/bn_{index}/moving_variance/.ATTRIBUTES/VARIABLE_VALUE" in saved


# --------------------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------------------

def _warp(image, angle=0.0, scale=1.0, shift_x=0.0, shift_y=0.0):
    rows = affine_warp_rows(tf.constant([angle]), tf.constant([scale]), tf.constant([shift_x]),
                            tf.constant([shift_y]), image.shape[1])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image, transforms=rows, output_shape=image.shape[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT").numpy()


def test_affine_warp_rows_shift_rotate_scale():
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 2, 6, 0] = 1.0  # row 2, column 6; the centre is (4, 4)
    np.testing.assert_allclose(_warp(image), image, atol=1e-6)
    shifted = _warp(image, shift_x=2.0, shift_y=1.0)
    assert shifted[0, 3, 8, 0] == pytest.approx(1.0) and shifted.sum() == pytest.approx(1.0)
    # A quarter turn about the centre moves (x, y) = (6, 2), i.e. offset (2, -2), to offset (2, 2).
    turned = _warp(image, angle=math.pi / 2)
    assert turned[0, 6, 6, 0] == pytest.approx(1.0, abs=1e-5)
    # Doubling the scale moves the offset (2, -2) to (4, -4): the pixel at row 0, column 8.
    image[0, 2, 6, 0], image[0, 3, 5, 0] = 0.0, 1.0  # offset (1, -1)
    zoomed = _warp(image, scale=2.0)
    assert zoomed[0, 2, 6, 0] == pytest.approx(1.0, abs=1e-5)


def test_augment_images_stays_in_range_and_never_mirrors():
    rng = np.random.default_rng(1)
    # A bright left half: a horizontal flip would put the brightness on the right.
    images = np.full((64, 32, 32, 3), -0.8, np.float32)
    images[:, :, :12] = 0.8
    images += rng.uniform(-0.1, 0.1, size=images.shape).astype(np.float32)
    augmented = augment_images(tf.constant(images), tf.random.Generator.from_seed(3)).numpy()
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    assert augmented.min() >= -1.0 and augmented.max() <= 1.0
    assert not np.allclose(augmented, images, atol=0.05)
    left, right = augmented[:, :, :8].mean(axis=(1, 2, 3)), augmented[:, :, -8:].mean(axis=(1, 2, 3))
    assert (left > right + 0.5).all()
    again = augment_images(tf.constant(images), tf.random.Generator.from_seed(3)).numpy()
    np.testing.assert_array_equal(again, augmented)


# --------------------------------------------------------------------------------------------------
# training run
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_short_training_learns_and_writes_the_documented_files(trained_run):
    config, result = trained_run
    run = config.run
    assert result["test_accuracy"] >= 0.7  # chance is 0.25 for four classes
    assert result["epoch"] == 8
    written = read_json(f"{run}/metrics.json")
    assert written["test_accuracy"] == result["test_accuracy"]
    assert set(written["per_class_accuracy"]) == set(SHAPES)
    per_class = np.array([written["per_class_accuracy"][name] for name in SHAPES])
    assert per_class.mean() == pytest.approx(written["test_accuracy"])  # 8 test images per class
    assert written["num_train"] == 160 and written["num_test"] == 32
    assert read_json(f"{run}/config.json")["epochs"] == 8
    assert read_json(f"{run}/classes.json") == {"class_names": list(SHAPES), "image_size": 32}
    assert tf.train.latest_checkpoint(f"{run}/checkpoints").endswith("ckpt-8")

    tags = {}
    for event_file in Path(run, "tensorboard", "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    for tag in ("classifier/train_loss", "classifier/train_accuracy", "classifier/test_loss",
                "classifier/test_accuracy"):
        assert sorted(tags[tag]) == list(range(1, 9))


@pytest.mark.slow
def test_conditional_accuracy_of_real_test_images_is_the_test_accuracy(trained_run, image_root):
    config, result = trained_run
    classifier = load_image_classifier(config.run)
    assert classifier.class_names == SHAPES
    test = list_image_folder(image_root / "test")
    images = load_images(test.paths, size=128)
    overall, per_class = metrics.conditional_accuracy(classifier, images, test.labels,
                                                      class_names=classifier.class_names)
    assert overall == pytest.approx(result["test_accuracy"], abs=1e-12)
    assert per_class == pytest.approx(result["per_class_accuracy"])
    separability = metrics.conditional_separability(classifier.features(images), test.labels)
    assert separability > 0.5


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(trained_run, tmp_path):
    config, straight = trained_run
    uninterrupted = load_image_classifier(config.run).get_weights()

    # A copy of the run that stopped after epoch 7: its latest checkpoint becomes ckpt-7 again.
    shutil.copytree(config.run, tmp_path / "run")
    resumed_config = dataclasses.replace(config, run=str(tmp_path / "run"))
    checkpoints = tmp_path / "run" / "checkpoints"
    tf.compat.v1.train.update_checkpoint_state(
        str(checkpoints), str(checkpoints / "ckpt-7"),
        all_model_checkpoint_paths=[str(checkpoints / "ckpt-7")])
    resumed = train_image_classifier(resumed_config, progress=False)
    assert resumed["epoch"] == straight["epoch"] == 8
    for after_resume, expected in zip(load_image_classifier(resumed_config.run).get_weights(),
                                      uninterrupted):
        np.testing.assert_allclose(after_resume, expected, rtol=1e-4, atol=1e-5)
    # Weights equal to rounding may still put one test image near a decision boundary either way.
    num_test = json.loads((Path(config.run) / "metrics.json").read_text())["num_test"]
    assert abs(resumed["test_accuracy"] - straight["test_accuracy"]) * num_test <= 1 + 1e-9

    # Rerunning a finished run trains nothing and re-evaluates the same checkpoint.
    again = train_image_classifier(resumed_config, progress=False)
    assert again["epoch"] == 8 and again["checkpoint"] == resumed["checkpoint"]
    assert again["test_accuracy"] == resumed["test_accuracy"]


def test_load_image_classifier_errors(tmp_path):
    with pytest.raises(CheckpointError, match="missing_run: image classifier run not found"):
        load_image_classifier(tmp_path / "missing_run")
    run = tmp_path / "empty_run"
    atomic_write_json(run / "classes.json", {"class_names": ["a", "b"], "image_size": 32})
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_image_classifier(run)


def test_entry_point_reports_a_missing_image_folder(tmp_path, capsys):
    code = run_main(train_image_classifier_main, ["--images", str(tmp_path / "nowhere"),
                                                  "--run", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "nowhere/train" in error
