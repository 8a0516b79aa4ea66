"""Evaluation: metrics.json contents, IS/FID with and without an Inception backend, the classifier
metrics, reading a generated folder, and the three figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_generation import CLASS_NAMES, make_gan_run


# --------------------------------------------------------------------------------------------------
# Test doubles for the networks (the real ones need files that tests do not have)
# --------------------------------------------------------------------------------------------------

class StubInception:
    """``compute(uint8 images) -> (features (N, 6), probs (N, 5))``, deterministic in the pixels."""

    name = "stub"
    paper_comparable = False

    def __init__(self):
        self.calls: list[tuple[tuple[int, ...], np.dtype]] = []

    def compute(self, images):
        images = np.asarray(images)
        self.calls.append((images.shape, images.dtype))
        x = images.astype(np.float64) / 255.0
        features = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
        half = x.shape[1] // 2
        logits = 8.0 * np.stack([x[..., 0].mean((1, 2)), x[..., 1].mean((1, 2)),
                                 x[..., 2].mean((1, 2)), x[:, :half].mean((1, 2, 3)),
                                 x[:, half:].mean((1, 2, 3))], axis=1)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return features.astype(np.float32), probs / probs.sum(axis=1, keepdims=True)


class StubClassifier:
    """Predicts the class from the dominant colour channel (the test images' class colour)."""

    class_names = CLASS_NAMES

    def features_and_probs(self, images):
        images = np.asarray(images)
        assert images.dtype == np.float32 and images.min() >= -1.0 and images.max() <= 1.0
        means = images.mean(axis=(1, 2))
        probs = np.exp(10.0 * means)
        return means.astype(np.float32), probs / probs.sum(axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def no_inception_from_environment(monkeypatch):
    from eeg2image_tf.evaluation import inception

    monkeypatch.delenv(inception.GRAPH_ENV, raising=False)
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

def test_loss_curves_read_the_scalars_written_with_tf_summary(tmp_path):
    import tensorflow as tf

    from eeg2image_tf.evaluation.figures import GAN_LOSS_TAGS, read_scalars, save_loss_curves

    events = tmp_path / "tensorboard" / "train"
    writer = tf.summary.create_file_writer(str(events))
    with writer.as_default():
        for step in range(0, 60, 5):
            for i, tag in enumerate(GAN_LOSS_TAGS):
                tf.summary.scalar(tag, 0.5 * i + 1.0 / (step + 1), step=step)
            tf.summary.scalar("other/lr", 3e-4, step=step)
        tf.summary.image("samples", np.zeros((1, 4, 4, 3), np.float32), step=0)
    writer.close()

    scalars = read_scalars(events)
    assert set(scalars) == set(GAN_LOSS_TAGS) | {"other/lr"}   # the image summary is not a scalar
    steps, values = scalars["gan/mode_seeking"]
    np.testing.assert_array_equal(steps, np.arange(0, 60, 5))
    np.testing.assert_allclose(values, 1.0 + 1.0 / (steps + 1), rtol=1e-6)

    path, tags = save_loss_curves(events, tmp_path / "figures" / "loss_curves.png")
    assert tags == list(GAN_LOSS_TAGS)   # the GAN's losses when present, not every scalar
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_curves_without_scalars_is_a_clear_error(tmp_path):
    from eeg2image_tf.errors import DataError
    from eeg2image_tf.evaluation.figures import save_loss_curves

    with pytest.raises(DataError, match="no TensorBoard events"):
        save_loss_curves(tmp_path / "missing", tmp_path / "x.png")


def test_generated_grid_has_the_documented_pixel_size_and_layout(tmp_path):
    import cv2

    from eeg2image_tf.evaluation.figures import grid_pixel_size, save_generated_grid

    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    rows = [np.tile(np.array(c, np.uint8), (n, 16, 16, 1)) for c, n in zip(colours, (8, 8, 5))]
    path = save_generated_grid(rows, CLASS_NAMES, tmp_path / "grid.png", columns=8,
                               label_width=100)
    bgr = cv2.imread(str(path))
    assert grid_pixel_size(3, 8, 16, 16, 100) == (228, 48)
    assert bgr.shape == (48, 228, 3)
    rgb = bgr[..., ::-1].astype(int)
    for r, colour in enumerate(colours):
        centre = rgb[r * 16 + 8, 100 + 16 * 2 + 8]
        np.testing.assert_allclose(centre, colour, atol=2)
    np.testing.assert_array_equal(rgb[2 * 16 + 8, 100 + 16 * 6 + 8], [255, 255, 255])  # empty cell
    assert (rgb[:, :90] < 128).any()   # the class names are drawn in the label margin


def test_format_table_reports_unavailable_metrics():
    from eeg2image_tf.evaluation import format_table, unavailable

    evaluation = {
        "config": {"run": "runs/gan"}, "class_names": list(CLASS_NAMES),
        "generated": {"count": 30, "source": "generated in memory"},
        "inception_score": unavailable("no Inception network given"),
        "frechet_inception_distance": unavailable("no Inception network given"),
        "classifier": unavailable("no image classifier run at x"),
        "encoder": {"kmeans_accuracy": 0.5, "knn_accuracy": 0.25, "linear_probe_accuracy": 1.0},
        "figures": {"dir": "runs/gan/figures", "generated_grid": "g.png",
                    "notes": {"loss_curves": "no events"}},
    }
    table = format_table(evaluation)
    assert "Inception Score" in table and "unavailable: no Inception network given" in table
    assert "0.500" in table and "0.250" in table and "g.png" in table
    assert "loss_curves      not made: no events" in table


# --------------------------------------------------------------------------------------------------
# Reading a generated folder
# --------------------------------------------------------------------------------------------------

def _solid_folder(root: Path, with_manifest: bool) -> None:
    from eeg2image_tf.generation import generate_images

    class Solid:
        """A 'generator' painting class c's colour, read off the condition (one-hot in c)."""

        latent_dim = 2

        def __call__(self, inputs, training=False):
            import tensorflow as tf

            colour = inputs[:, 2:5] * 2.0 - 1.0
            return tf.tile(colour[:, None, None, :], (1, 16, 16, 1))

    features = [np.eye(3, dtype=np.float32)[[c]] for c in range(3)]
    generate_images(Solid(), features, CLASS_NAMES, root, per_class=4, batch_size=5,
                    show_progress=False)
    if not with_manifest:
        (root / "manifest.csv").unlink()


@pytest.mark.parametrize("with_manifest", [True, False])
def test_generated_folder_is_read_class_major_with_its_conditions(tmp_path, with_manifest):
    from eeg2image_tf.evaluation import folder_chunks, list_generated_folder, run_pass

    _solid_folder(tmp_path, with_manifest)
    paths, labels = list_generated_folder(tmp_path, CLASS_NAMES)
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 4))
    result = run_pass(folder_chunks(paths, labels, chunk_size=5), inception=StubInception(),
                      classifier=StubClassifier(), grid_classes=3, grid_columns=2)
    assert result.count == 12 and [len(row) for row in result.grid] == [2, 2, 2]
    np.testing.assert_array_equal(result.classifier_probs.argmax(axis=1), labels)
    assert result.inception_features.shape == (12, 6) and result.inception_probs.shape == (12, 5)


def test_generated_folder_of_another_class_set_is_refused(tmp_path):
    from eeg2image_tf.errors import DataError
    from eeg2image_tf.evaluation import list_generated_folder

    _solid_folder(tmp_path, with_manifest=True)
    with pytest.raises(DataError, match="manifest.csv: class 'Apple'"):
        list_generated_folder(tmp_path, ("Car", "Apple", "Dog"))
    (tmp_path / "manifest.csv").unlink()
    with pytest.raises(DataError, match="are not classes of this run"):
        list_generated_folder(tmp_path, ("A", "B", "C"))


def test_classifier_columns_follow_the_run_class_order():
    from eeg2image_tf.evaluation import align_classifier

    class Shuffled(StubClassifier):
        class_names = ("Dog", "Apple", "Car")

    aligned, reason = align_classifier(Shuffled(), CLASS_NAMES)
    images = np.zeros((1, 4, 4, 3), np.float32)
    images[..., 2] = 1.0   # channel 2 wins: the stub says its class 2, "Car"
    _, probs = aligned.features_and_probs(images)
    assert reason == "" and CLASS_NAMES[int(probs.argmax())] == "Car"
    missing, reason = align_classifier(Shuffled(), ("Dog", "Apple", "Bee"))
    assert missing is None and "Bee" in reason


# --------------------------------------------------------------------------------------------------
# A whole GAN run (real modules)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    import tensorflow as tf

    paths = make_gan_run(tmp_path_factory.mktemp("eval_run"))
    writer = tf.summary.create_file_writer(str(paths["run"] / "tensorboard" / "train"))
    with writer.as_default():
        for step in range(20):
            tf.summary.scalar("gan/d_hinge", 1.0 / (step + 1), step=step)
            tf.summary.scalar("gan/g_total", 2.0 - step / 20, step=step)
    writer.close()
    return paths


@pytest.mark.slow
def test_evaluate_without_networks_reports_them_unavailable(gan_run, capsys):
    import cv2

    from eeg2image_tf.evaluate import main
    from eeg2image_tf.evaluation.figures import PAIR_GAP, TITLE_HEIGHT
    from eeg2image_tf.runs import GRID_FILE, LOSS_CURVES_FILE, NEAREST_TRAINING_FILE, TSNE_FILE

    run = gan_run["run"]
    (run / "metrics.json").write_text(json.dumps({"gan": {"steps": 1}}))
    tsne_source = gan_run["encoder"] / "tsne.png"
    cv2.imwrite(str(tsne_source), np.full((10, 12, 3), 90, np.uint8))

    assert main(["--run", str(run), "--per-class", "4", "--splits", "2", "--batch-size", "8",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["gan"] == {"steps": 1}   # merged, not replaced
    evaluation = metrics["evaluation"]
    for key in ("inception", "inception_score", "frechet_inception_distance", "classifier",
                "encoder", "generated", "figures", "config", "conditional_accuracy",
                "kmeans_accuracy", "knn_accuracy", "linear_probe_accuracy"):
        assert key in evaluation, key
    for key in ("inception_score", "frechet_inception_distance"):
        assert evaluation[key]["available"] is False
        assert "no Inception network given" in evaluation[key]["reason"]
    assert evaluation["inception"].startswith("unavailable: ")
    assert evaluation["classifier"]["available"] is False
    assert "image_classifier" in evaluation["classifier"]["reason"]
    assert evaluation["conditional_accuracy"] is None
    assert evaluation["generated"]["count"] == 12
    assert evaluation["generated"]["per_class_counts"] == {name: 4 for name in CLASS_NAMES}
    for key in ("kmeans_accuracy", "knn_accuracy", "linear_probe_accuracy"):
        assert 0.0 <= evaluation["encoder"][key] <= 1.0

    # Realism needs no network: gradient histograms against the 9 training images, the 9 test
    # images scored the same way; per class, 3 training images give no k-NN radius for k = 3.
    realism = evaluation["realism"]
    assert realism["inception"]["available"] is False
    space = realism["gradient_histogram"]
    assert space["available"] and space["k"] == 3 and space["feature_dim"] == 1764
    assert space["real_count"] == 9 and space["generated_count"] == 12
    assert space["reference"] == str(gan_run["images"] / "train")
    assert all(not scores["available"] for scores in space["per_class"].values())
    assert space["real_test"]["available"] and space["real_test"]["generated_count"] == 9
    for key in ("precision", "recall", "real_test_precision", "real_test_recall"):
        assert 0.0 <= evaluation[key] <= 1.0, key
    assert evaluation["diversity_ratio"] == space["diversity_ratio"] >= 0.0
    assert evaluation["inception_precision"] is None
    assert "precision / recall (gradients)" in printed
    assert "precision / recall (Inception)     unavailable (as above)" in printed

    from eeg2image_tf.evaluation.figures import read_scalars

    logged = read_scalars(run / "tensorboard" / "eval")
    assert {"eval/precision", "eval/recall", "eval/diversity_ratio"} <= set(logged)
    assert "eval/conditional_accuracy" not in logged and "eval/inception_precision" not in logged
    steps, values = logged["eval/precision"]
    assert steps.tolist() == [1] and values[0] == pytest.approx(evaluation["precision"])

    figures = run / "figures"
    assert cv2.imread(str(figures / GRID_FILE)).shape == (3 * 128, 160 + 8 * 128, 3)
    # Four pairs a row: generated, a grey bar, its nearest training image, a white gap.
    assert cv2.imread(str(figures / NEAREST_TRAINING_FILE)).shape == \
        (TITLE_HEIGHT + 3 * 128, 80 + 4 * (2 * 128 + 2 * PAIR_GAP), 3)
    assert (figures / LOSS_CURVES_FILE).stat().st_size > 0
    assert evaluation["figures"]["loss_curve_tags"] == ["gan/d_hinge", "gan/g_total"]
    assert (figures / TSNE_FILE).read_bytes() == tsne_source.read_bytes()   # copied, not recomputed
    assert "unavailable: no Inception network given" in printed
    assert str(figures / GRID_FILE) in printed


def test_headline_scalars_of_a_run_without_checkpoints_go_to_step_0(tmp_path):
    """A run of imported original weights has no checkpoints folder: its numbers still reach
    TensorBoard, at step 0."""
    from eeg2image_tf.evaluation.figures import read_scalars
    from eeg2image_tf.evaluation.run import log_headline

    run = tmp_path / "imported"
    run.mkdir()
    log_headline(run, {"precision": 0.25, "recall": None, "fid": float("nan")})
    logged = read_scalars(run / "tensorboard" / "eval")
    assert set(logged) == {"eval/precision"}
    steps, values = logged["eval/precision"]
    assert steps.tolist() == [0] and values.tolist() == [0.25]


# Expected: an untrained generator makes near-identical images, so k-means of their classifier
# features (conditional separability) finds fewer distinct clusters than classes.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.slow
def test_evaluate_with_backend_and_classifier_fills_the_metrics(gan_run, tmp_path):
    from eeg2image_tf.config import EvaluateConfig, GenerateConfig
    from eeg2image_tf.evaluation import evaluate_run
    from eeg2image_tf.generation import generate_arrays, generate_from_run, load_generation_sources
    from eeg2image_tf.evaluation.metrics import classifier_score, inception_score

    run = str(gan_run["run"])
    backend = StubInception()
    config = EvaluateConfig(run=run, per_class=4, splits=2, batch_size=8, seed=3, figures=False)
    evaluation = evaluate_run(config, inception_backend=backend, classifier=StubClassifier(),
                              show_progress=False, echo=None)

    # The backend saw uint8 0-255 images at 128x128: 12 generated, the 9 real test images, then
    # the 9 training images (the reference of precision and recall).
    assert sum(shape[0] for shape, _ in backend.calls) == 12 + 9 + 9
    assert all(shape[1:] == (128, 128, 3) and dtype == np.uint8 for shape, dtype in backend.calls)

    sources = load_generation_sources(run=run)
    expected = generate_arrays(sources.generator, sources.features_by_class, 4, batch_size=5,
                               seed=3, trials_by_class=sources.trials_by_class,
                               latent_dim=sources.latent_dim, jpeg_quality=95)
    _, probs = StubInception().compute(expected.images)
    inception = evaluation["inception_score"]
    assert inception["available"] is True and inception["split_order"] == "mixed"
    assert inception["mean"] == pytest.approx(inception_score(probs, 2, "mixed", seed=3)[0], 1e-9)
    assert inception["other_split_order"]["mean"] == pytest.approx(
        inception_score(probs, 2, "class-sorted")[0], 1e-9)
    assert set(inception["per_class"]) == set(CLASS_NAMES)
    fid = evaluation["frechet_inception_distance"]
    assert fid["available"] is True and fid["value"] >= 0.0 and fid["real_count"] == 9
    assert evaluation["fid"] == fid["value"] and evaluation["inception"].startswith("IS ")

    classifier = evaluation["classifier"]
    predicted = StubClassifier().features_and_probs(
        (expected.images.astype(np.float32) - 127.5) / 127.5)[1]
    assert classifier["conditional_accuracy"] == pytest.approx(
        np.mean(predicted.argmax(axis=1) == expected.class_index))
    assert classifier["classifier_score"]["mean"] == pytest.approx(
        classifier_score(predicted, 2, "mixed", seed=3)[0], 1e-6)
    assert classifier["real_accuracy"] == 1.0   # real test images carry their class colour
    assert 0.0 <= classifier["conditional_separability"] <= 1.0

    # Precision and recall are those of the images' features against the training images'.
    from eeg2image_tf.evaluation.images import real_chunks
    from eeg2image_tf.evaluation.realism import gradient_histograms, realism_scores

    training = list(real_chunks(gan_run["images"] / "train", CLASS_NAMES))
    training_images = np.concatenate([chunk.images for chunk in training])
    training_labels = np.concatenate([chunk.class_index for chunk in training])
    for space, features in (("gradient_histogram", gradient_histograms),
                            ("inception", lambda x: StubInception().compute(x)[0])):
        expected_scores = realism_scores(features(training_images), training_labels,
                                         features(expected.images), expected.class_index,
                                         CLASS_NAMES)
        for key in ("precision", "recall", "diversity_ratio"):
            assert evaluation["realism"][space][key] == pytest.approx(expected_scores[key]), key
    assert evaluation["inception_recall"] == evaluation["realism"]["inception"]["recall"]

    # Files written by generate give the very same numbers as the in-memory images.
    generate_from_run(GenerateConfig(run=run, out=str(tmp_path / "generated"), per_class=4,
                                     seed=3), show_progress=False)
    from_folder = evaluate_run(
        EvaluateConfig(run=run, images_dir=str(tmp_path / "generated"), splits=2, seed=3,
                       figures=False),
        inception_backend=StubInception(), classifier=StubClassifier(), show_progress=False,
        echo=None)
    assert from_folder["inception_score"]["mean"] == inception["mean"]
    assert from_folder["fid"] == evaluation["fid"]
    assert from_folder["conditional_accuracy"] == evaluation["conditional_accuracy"]
    for key in ("precision", "recall", "diversity_ratio", "inception_precision"):
        assert from_folder[key] == evaluation[key], key
    assert from_folder["generated"]["source"] == str(tmp_path / "generated")


def test_fid_compares_with_the_test_folder_beside_the_one_the_gan_trained_on(tmp_path):
    from types import SimpleNamespace

    from eeg2image_tf.evaluation.images import real_image_folder

    for folder in ("images/test/A", "images/other/A", "lone/A"):
        (tmp_path / folder).mkdir(parents=True)
    config = SimpleNamespace(real_images=None)
    # A GAN trained on a folder without test/ of its own: the sibling test/ (the rule of e879649).
    assert real_image_folder(config, SimpleNamespace(images_root=tmp_path / "images" / "other")) == \
        (tmp_path / "images" / "test", "")
    folder, reason = real_image_folder(config, SimpleNamespace(images_root=tmp_path / "lone"))
    assert folder is None and "no test image folder" in reason
