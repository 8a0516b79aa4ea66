"""The conditional-accuracy curve over a GAN run's kept checkpoints (``eeg2image_tf.curve``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_evaluation import StubClassifier
from test_generation import CLASS_NAMES, make_gan_run


def _touch_checkpoint(directory: Path, name: str, data: bool = True) -> None:
    (directory / f"{name}.index").write_bytes(b"i")
    if data:
        (directory / f"{name}.data-00000-of-00001").write_bytes(b"d")


def test_kept_checkpoints_are_complete_ones_in_step_order(tmp_path):
    from eeg2image_tf.checkpoints import kept_checkpoints
    from eeg2image_tf.errors import CheckpointError

    for name in ("ckpt-10", "ckpt-3", "ckpt-200"):
        _touch_checkpoint(tmp_path, name)
    _touch_checkpoint(tmp_path, "ckpt-7", data=False)   # a save cut between its two renames
    _touch_checkpoint(tmp_path, "notes")                # no step number
    found = kept_checkpoints(tmp_path)
    assert [step for step, _ in found] == [3, 10, 200]
    assert all(Path(prefix).parent == tmp_path for _, prefix in found)

    with pytest.raises(CheckpointError, match="no complete checkpoints"):
        kept_checkpoints(_empty(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        kept_checkpoints(tmp_path / "missing")


def _empty(root: Path) -> Path:
    folder = root / "empty"
    folder.mkdir()
    return folder


def test_every_kth_keeps_the_newest():
    from eeg2image_tf.evaluation.curve import every_kth
    from eeg2image_tf.errors import ConfigError

    points = [(s, f"ckpt-{s}") for s in range(1, 8)]
    assert [s for s, _ in every_kth(points, 3)] == [1, 4, 7]
    assert [s for s, _ in every_kth(points + [(8, "ckpt-8")], 3)] == [1, 4, 7, 8]
    assert every_kth(points, 1) == points
    with pytest.raises(ConfigError, match="--every"):
        every_kth(points, 0)


class CountingClassifier(StubClassifier):
    def __init__(self):
        self.images = 0

    def features_and_probs(self, images):
        self.images += len(images)
        return super().features_and_probs(images)


def _save_checkpoints(run: Path, steps, blank: set[int]) -> None:
    """Checkpoints ``ckpt-<step>``; for steps in ``blank`` the generator's output kernel is zero,
    so every image is tanh(0), flat grey,, which the stub classifier cannot tell apart."""
    import tensorflow as tf

    from eeg2image_tf.models import build_discriminator, build_generator

    rng = np.random.default_rng(1)
    generator = build_generator(latent_dim=8, condition_dim=8)
    discriminator = build_discriminator(condition_dim=8)
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step, generator=generator, discriminator=discriminator)
    manager = tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=None)
    for s in steps:
        for variable in generator.trainable_variables:
            if not variable.path.endswith("kernel"):
                continue
            value = np.zeros(variable.shape) if (s in blank and "to_rgb" in variable.path) else \
                rng.normal(0.0, 0.05, size=variable.shape)
            variable.assign(value.astype(np.float32))
        step.assign(s)
        manager.save(checkpoint_number=s)


# Expected: an untrained generator makes near-identical images, so k-means of their classifier
# features (conditional separability) finds fewer distinct clusters than classes.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.slow
def test_curve_points_match_evaluate_and_a_rerun_adds_only_new_checkpoints(tmp_path):
    from eeg2image_tf.evaluation.curve import evaluate_checkpoints
    from eeg2image_tf.runs import CURVE_FIGURE
    from eeg2image_tf.config import CurveConfig, EvaluateConfig
    from eeg2image_tf.evaluation import evaluate_run
    from eeg2image_tf.evaluation.figures import read_scalars

    paths = make_gan_run(tmp_path, test_per_class=3)
    run = paths["run"]
    for old in (run / "checkpoints").iterdir():   # make_gan_run's own step-1 checkpoint
        old.unlink()
    _save_checkpoints(run, steps=[100, 200], blank={100})

    classifier = CountingClassifier()
    config = CurveConfig(run=str(run), per_class=4, batch_size=5)
    record = evaluate_checkpoints(config, classifier=classifier, show_progress=False, echo=None)
    assert [p["step"] for p in record["points"]] == [100, 200]
    assert classifier.images == 2 * 4 * len(CLASS_NAMES)

    blank = record["points"][0]
    # Grey images give the stub equal probabilities: it names class 0 for every image.
    assert blank["conditional_accuracy"] == pytest.approx(1.0 / len(CLASS_NAMES))
    assert blank["per_class_accuracy"] == {"Apple": 1.0, "Car": 0.0, "Dog": 0.0}
    assert blank["images"] == 12 and blank["checkpoint"] == "ckpt-100"
    # Flat images have no gradient: one point of the feature space, whose k-NN balls have radius 0.
    assert blank["recall"] == 0.0 and blank["diversity_ratio"] == 0.0

    # The newest point is what evaluate reports for the run (its latest checkpoint), same settings.
    evaluation = evaluate_run(EvaluateConfig(run=str(run), per_class=4, batch_size=5,
                                             figures=False),
                              classifier=StubClassifier(), show_progress=False, echo=None)
    newest = record["points"][1]
    # One generator serves every point, its weights set to each checkpoint's in turn: the newest
    # point (random kernels, varied images) is not the blank one's weights left over.
    assert newest["diversity_ratio"] > 0.0
    assert newest["conditional_accuracy"] == pytest.approx(evaluation["conditional_accuracy"])
    assert newest["conditional_separability"] == pytest.approx(
        evaluation["conditional_separability"])
    for key in ("precision", "recall", "diversity_ratio", "precision_distance", "recall_distance"):
        assert newest[key] == pytest.approx(evaluation[key]), key
        assert record[f"last_{key}"] == newest[key]
    assert record["last_step"] == 200 and record["chance"] == pytest.approx(1 / 3)

    stored = json.loads((run / "curve.json").read_text())
    assert [p["step"] for p in stored["points"]] == [100, 200]
    figure = run / "figures" / CURVE_FIGURE
    assert figure.stat().st_size > 5000
    assert json.loads((run / "curve_config.json").read_text())["per_class"] == 4
    scalars = read_scalars(run / "tensorboard" / "curve")
    steps, values = scalars["curve/conditional_accuracy"]
    assert list(steps) == [100, 200] and values[0] == pytest.approx(1 / 3)
    steps, values = scalars["curve/diversity_ratio"]
    assert list(steps) == [100, 200] and values[0] == 0.0
    assert stored["settings"]["realism_reference"] == "../images/train"    # beside the run

    # More training: only the new checkpoint is evaluated; the old points are kept as they were.
    _save_checkpoints(run, steps=[300], blank=set())
    classifier.images = 0
    again = evaluate_checkpoints(config, classifier=classifier, show_progress=False, echo=None)
    assert [p["step"] for p in again["points"]] == [100, 200, 300]
    assert classifier.images == 4 * len(CLASS_NAMES)
    assert again["points"][:2] == record["points"]
    assert list(read_scalars(run / "tensorboard" / "curve")["curve/precision_distance"][0]) == \
        [100, 200, 300]

    # A point stored before the manifold distances existed is scored again, and only that one.
    stored = json.loads((run / "curve.json").read_text())
    del stored["points"][0]["precision_distance"]
    (run / "curve.json").write_text(json.dumps(stored))
    classifier.images = 0
    rescored = evaluate_checkpoints(config, classifier=classifier, show_progress=False, echo=None)
    assert classifier.images == 4 * len(CLASS_NAMES)
    untimed = [[{key: value for key, value in point.items() if key != "seconds"}
                for point in result["points"]] for result in (rescored, again)]
    assert untimed[0] == untimed[1]

    # Other settings make other numbers: nothing is reused.
    classifier.images = 0
    other = evaluate_checkpoints(CurveConfig(run=str(run), per_class=2, batch_size=5, every=2),
                                 classifier=classifier, show_progress=False, echo=None)
    assert [p["step"] for p in other["points"]] == [100, 300]
    assert classifier.images == 2 * 2 * len(CLASS_NAMES)

    # The run moved together with its images (its config naming them at the new place): the points
    # stay valid and are reused. A copy of the run alone, still reading the old images, names its
    # reference by another path from the run: it is scored afresh.
    moved = tmp_path.parent / f"{tmp_path.name}_moved"
    shutil.copytree(tmp_path, moved)
    recorded = (moved / "gan" / "config.json").read_text()
    (moved / "gan" / "config.json").write_text(recorded.replace(str(tmp_path), str(moved)))
    alone = tmp_path.parent / f"{tmp_path.name}_alone" / "runs" / "gan"
    shutil.copytree(run, alone)
    for copy, images in ((moved / "gan", 0), (alone, 2 * 2 * len(CLASS_NAMES))):
        classifier.images = 0
        same = evaluate_checkpoints(CurveConfig(run=str(copy), per_class=2, batch_size=5, every=2),
                                    classifier=classifier, show_progress=False, echo=None)
        assert classifier.images == images, copy
        assert [p["step"] for p in same["points"]] == [100, 300]
    assert same["points"][1]["precision"] == other["points"][1]["precision"]


def test_curve_without_a_classifier_is_a_clear_error(tmp_path):
    from eeg2image_tf.evaluation.curve import evaluate_checkpoints
    from eeg2image_tf.config import CurveConfig
    from eeg2image_tf.errors import Eeg2ImageError

    run = tmp_path / "gan"
    (run / "checkpoints").mkdir(parents=True)
    _touch_checkpoint(run / "checkpoints", "ckpt-5")
    with pytest.raises(Eeg2ImageError, match="no image classifier run at"):
        evaluate_checkpoints(CurveConfig(run=str(run)), show_progress=False, echo=None)


# --------------------------------------------------------------------------------------------------
# Weight averaging
# --------------------------------------------------------------------------------------------------

def test_curve_figure_has_a_panel_for_each_kind_of_number_the_points_hold(tmp_path):
    import cv2

    from eeg2image_tf.evaluation.curve import save_curve_figure

    base = [{"step": s, "conditional_accuracy": a, "conditional_separability": a}
            for s, a in ((100, 0.2), (200, 0.6))]
    realism = [{**p, "precision": 0.0, "recall": 0.1, "diversity_ratio": 0.8} for p in base]
    # Points stored before the distances existed sit beside rescored ones: one panel more.
    # An infinite distance (every ball of radius 0) is left out of the plot, not an error.
    distances = [{**realism[0], "precision_distance": float("inf"), "recall_distance": 2.0},
                 {**realism[1], "precision_distance": 1.3, "recall_distance": 1.25}]
    distances.insert(0, {**realism[0], "step": 50})
    for points, panels in ((base, 1), (realism, 2), (distances, 3)):
        figure = save_curve_figure(points, tmp_path / f"curve{panels}.png", chance=0.1, title="t")
        height, width = cv2.imread(str(figure)).shape[:2]
        assert (width, height) == (640 * panels, 360), panels


def test_mean_weights_is_the_elementwise_mean_and_refuses_other_shapes():
    from eeg2image_tf.checkpoints import mean_weights
    from eeg2image_tf.errors import CheckpointError

    a = [np.float32([1.0, 2.0]), np.float32([[3.0]])]
    b = [np.float32([3.0, 6.0]), np.float32([[0.0]])]
    mean = mean_weights([a, b])
    np.testing.assert_array_equal(mean[0], [2.0, 4.0])
    np.testing.assert_array_equal(mean[1], [[1.5]])
    assert mean[0].dtype == np.float32
    with pytest.raises(CheckpointError, match="different shapes"):
        mean_weights([a, [np.float32([1.0, 2.0, 3.0]), a[1]]])
    with pytest.raises(CheckpointError, match="no checkpoints"):
        mean_weights([])


@pytest.mark.slow
def test_averaged_run_and_averaged_curve(tmp_path):
    from eeg2image_tf.evaluation.curve import evaluate_checkpoints
    from eeg2image_tf.checkpoints import (generator_weights, kept_checkpoints, load_gan,
                                          write_averaged_run)
    from eeg2image_tf.config import AverageConfig, CurveConfig
    from eeg2image_tf.errors import ConfigError
    from eeg2image_tf.generation import load_generation_sources

    paths = make_gan_run(tmp_path, test_per_class=3)
    run = paths["run"]
    for old in (run / "checkpoints").iterdir():
        old.unlink()
    _save_checkpoints(run, steps=[10, 20, 30], blank=set())
    kept = kept_checkpoints(run / "checkpoints")
    weights = {step: generator_weights(prefix) for step, prefix in kept}

    # One chosen checkpoint: --step with --last 1 is that checkpoint's generator.
    chosen = tmp_path / "gan_step20"
    record = write_averaged_run(AverageConfig(run=str(run), out=str(chosen), last=1, step=20))
    assert record["steps"] == [20] and record["step"] == 20
    for k, value in enumerate(load_gan(chosen).generator.get_weights()):
        np.testing.assert_array_equal(value, weights[20][k])
    with pytest.raises(ConfigError, match="--step 25: no kept checkpoint"):
        write_averaged_run(AverageConfig(run=str(run), out=str(tmp_path / "none"), step=25))
    assert not (tmp_path / "none").exists()

    out = tmp_path / "gan_avg2"
    record = write_averaged_run(AverageConfig(run=str(run), out=str(out), last=2))
    assert record["steps"] == [20, 30] and record["step"] == 30
    averaged = load_gan(out).generator.get_weights()
    for k, value in enumerate(averaged):
        np.testing.assert_allclose(value, (weights[20][k] + weights[30][k]) / 2, rtol=1e-6,
                                   atol=1e-7)
    assert not np.allclose(averaged[0], weights[30][0])
    # The averaged run is a run: generation finds its config, data and encoder.
    sources = load_generation_sources(run=str(out))
    assert sources.class_names == CLASS_NAMES
    assert json.loads((out / "average.json").read_text())["checkpoints"] == ["ckpt-20", "ckpt-30"]
    with pytest.raises(ConfigError, match="--force"):
        write_averaged_run(AverageConfig(run=str(run), out=str(out), last=2))
    write_averaged_run(AverageConfig(run=str(run), out=str(out), last=3, force=True))
    np.testing.assert_allclose(load_gan(out).generator.get_weights()[0],
                               (weights[10][0] + weights[20][0] + weights[30][0]) / 3,
                               rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="beside the source run"):
        write_averaged_run(AverageConfig(run=str(run), out=str(run)))

    plain = evaluate_checkpoints(CurveConfig(run=str(run), per_class=4, batch_size=6),
                                 classifier=StubClassifier(), show_progress=False, echo=None)
    smooth = evaluate_checkpoints(CurveConfig(run=str(run), per_class=4, batch_size=6, average=2),
                                  classifier=StubClassifier(), show_progress=False, echo=None)
    assert [p["averaged_steps"] for p in smooth["points"]] == [[10], [10, 20], [20, 30]]
    # A window of one checkpoint is that checkpoint: the first points agree.
    assert smooth["points"][0]["conditional_accuracy"] == plain["points"][0]["conditional_accuracy"]
    assert smooth["points"][0]["conditional_separability"] == \
        plain["points"][0]["conditional_separability"]
    # Both curves live side by side.
    assert (run / "curve.json").exists() and (run / "curve_avg2.json").exists()
    assert (run / "figures" / "conditional_curve_avg2.png").exists()
    assert json.loads((run / "curve.json").read_text())["settings"]["average"] == 1

    # The averaged run's own curve (one checkpoint) equals the last averaged point of average=2...
    out2 = tmp_path / "gan_last2"
    write_averaged_run(AverageConfig(run=str(run), out=str(out2), last=2))
    own = evaluate_checkpoints(CurveConfig(run=str(out2), per_class=4, batch_size=6,
                                           classifier=None),
                               classifier=StubClassifier(), show_progress=False, echo=None)
    assert own["points"][0]["conditional_accuracy"] == pytest.approx(
        smooth["points"][-1]["conditional_accuracy"])
    assert own["points"][0]["conditional_separability"] == pytest.approx(
        smooth["points"][-1]["conditional_separability"])


def test_curve_and_evaluate_find_the_classifier_an_earlier_evaluation_recorded(tmp_path):
    """Not a sibling folder: the run's own records (evaluate's metrics.json, curve.json) name it."""
    from eeg2image_tf.config import CurveConfig, EvaluateConfig
    from eeg2image_tf.evaluation import find_classifier_run
    from eeg2image_tf.io_utils import atomic_write_json

    run = tmp_path / "experiments" / "gan"
    run.mkdir(parents=True)
    classifier = tmp_path / "elsewhere" / "clf"
    classifier.mkdir(parents=True)
    assert find_classifier_run(CurveConfig(run=str(run)))[0] is None
    atomic_write_json(run / "metrics.json", {"evaluation": {"classifier": {"run": str(classifier)}}})
    assert find_classifier_run(CurveConfig(run=str(run)))[0] == classifier
    assert find_classifier_run(EvaluateConfig(run=str(run)))[0] == classifier
    # an explicit one wins; the newest record wins over older ones
    other = tmp_path / "other"
    other.mkdir()
    assert find_classifier_run(CurveConfig(run=str(run), classifier=str(other)))[0] == other
    atomic_write_json(run / "curve.json", {"settings": {"classifier": str(other)}, "points": []})
    import os
    os.utime(run / "metrics.json", (1, 1))
    assert find_classifier_run(CurveConfig(run=str(run)))[0] == other
    # curve names it relative to the run's folder, wherever the command runs from
    atomic_write_json(run / "curve.json", {"settings": {"classifier": "../../other"}, "points": []})
    found = find_classifier_run(CurveConfig(run=str(run)))[0]
    assert found is not None and found.resolve() == other.resolve()
    # a record whose classifier is gone falls back to the sibling folder, then says what it tried
    shutil.rmtree(other)
    shutil.rmtree(classifier)
    (run.parent / "image_classifier").mkdir()
    assert find_classifier_run(CurveConfig(run=str(run)))[0] == run.parent / "image_classifier"
    (run.parent / "image_classifier").rmdir()
    from eeg2image_tf.evaluation import load_classifier_or_reason

    _, reason, _ = load_classifier_or_reason(CurveConfig(run=str(run)))
    assert "no image classifier run at" in reason and str(other) in reason


class RecordingClassifier(StubClassifier):
    """The stub, keeping every image it is shown."""

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def features_and_probs(self, images):
        self.seen.append(np.asarray(images).copy())
        return super().features_and_probs(images)


@pytest.mark.filterwarnings("ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.slow
def test_a_training_conditions_curve_is_generated_from_the_training_trials_beside_the_test_one(
        tmp_path):
    from eeg2image_tf.checkpoints import load_encoder, load_gan
    from eeg2image_tf.config import CurveConfig
    from eeg2image_tf.data import load_thoughtviz, preprocess
    from eeg2image_tf.errors import ConfigError
    from eeg2image_tf.evaluation.curve import evaluate_checkpoints
    from eeg2image_tf.generation import generate_arrays
    from eeg2image_tf.models import encoder_features

    paths = make_gan_run(tmp_path, test_per_class=2, train_per_class=5)
    run = paths["run"]
    seen = RecordingClassifier()
    config = CurveConfig(run=str(run), per_class=5, batch_size=5, conditions="train")
    record = evaluate_checkpoints(config, classifier=seen, show_progress=False, echo=None)

    # The images are those the newest generator makes from each class's training trials (five per
    # class, each used once), with the curve's latents, through JPEG: computed here from the data.
    splits = load_thoughtviz(paths["data"])
    features = encoder_features(load_encoder(paths["encoder"]), preprocess(splits.x_train))
    by_class = [features[splits.y_train == c] for c in range(len(CLASS_NAMES))]
    expected = generate_arrays(load_gan(run).generator, by_class, 5, batch_size=5, seed=45,
                               latent_dim=8, jpeg_quality=95)
    shown = np.concatenate(seen.seen)
    np.testing.assert_allclose(shown, expected.images.astype(np.float32) / 127.5 - 1.0, atol=1e-6)
    # The test trials make other images (two a class, so each is used more than once).
    test_record = evaluate_checkpoints(CurveConfig(run=str(run), per_class=5, batch_size=5),
                                       classifier=StubClassifier(), show_progress=False, echo=None)

    # Its own files beside the test curve's, each curve keeping its settings.
    assert (run / "curve_train.json").exists() and (run / "curve.json").exists()
    assert (run / "figures" / "conditional_curve_train.png").exists()
    assert (run / "tensorboard" / "curve_train").is_dir()
    assert json.loads((run / "curve_config_train.json").read_text())["conditions"] == "train"
    assert record["settings"]["conditions"] == "train"
    assert test_record["settings"]["conditions"] == "test"
    assert json.loads((run / "curve_train.json").read_text())["points"] == record["points"]
    with pytest.raises(ConfigError, match="--conditions"):
        CurveConfig(run=str(run), conditions="validation").validate()


def test_averaging_window_ends_at_the_chosen_step():
    from eeg2image_tf.checkpoints.averaging import averaging_window
    from eeg2image_tf.errors import ConfigError

    kept = [(step, f"ckpt-{step}") for step in (300, 600, 900, 1200)]
    assert averaging_window(kept, 2) == kept[2:]
    assert averaging_window(kept, 1, step=600) == [(600, "ckpt-600")]
    assert averaging_window(kept, 3, step=900) == kept[:3]
    assert averaging_window(kept, 5, step=600) == kept[:2]
    with pytest.raises(ConfigError, match=r"--step 700: .*kept: 300, 600, 900, 1200"):
        averaging_window(kept, 1, step=700)
