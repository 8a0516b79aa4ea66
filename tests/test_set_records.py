"""What a set records, used through the chain: its normalisation (training, GAN, export follow it),
each trial's stimulus (``--pairing stimulus``, the stimulus figure) and subject (per-subject
evaluation), on a tiny 8-channel x 20-sample, 5-class set (tests/set_records_support.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from eeg2image_tf.config import EncoderTrainConfig, GanTrainConfig
from eeg2image_tf.data import load_thoughtviz, normalisation_note, resolve_normalisation
from eeg2image_tf.errors import ConfigError, DataError

from set_records_support import CLASSES, N_TRAIN, write_recorded_set

FEATURE_DIM = 8


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    return write_recorded_set(tmp_path_factory.mktemp("recorded"), "tiny")


@pytest.fixture(scope="module")
def encoder_run(recorded, tmp_path_factory) -> Path:
    """One epoch of train_encoder on the set, every setting left to the set."""
    from eeg2image_tf.training.encoder import train_encoder

    run = tmp_path_factory.mktemp("encoder") / "run"
    train_encoder(EncoderTrainConfig(data=recorded["data"], run=str(run), epochs=1, batch_size=40,
                                     checkpoint_every=1, hidden=4, feature_dim=FEATURE_DIM,
                                     unroll=False))
    return run


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

def test_normalisation_is_the_request_else_the_sets_else_original():
    assert resolve_normalisation(None, "zscore") == "zscore"
    assert resolve_normalisation(None, None) == "original"
    # An explicit request wins over the set's record, and the log says so.
    assert resolve_normalisation("original", "zscore") == "original"
    assert "records normalisation 'zscore'; using --normalisation 'original'" in \
        normalisation_note("original", "zscore", "data.npz")
    assert normalisation_note("zscore", "zscore", "data.npz") is None
    assert normalisation_note("zscore", None, "data.npz") is None
    with pytest.raises(ConfigError, match="--normalisation 'max' is not one of original, zscore"):
        resolve_normalisation("max", "zscore")
    with pytest.raises(ConfigError, match="set.npz records normalisation 'max'"):
        resolve_normalisation(None, "max", "set.npz")


def test_encoder_run_records_the_sets_normalisation_and_class_count(encoder_run):
    from eeg2image_tf.runs import load_config

    recorded_config = load_config(EncoderTrainConfig, encoder_run)
    assert recorded_config.normalisation == "zscore"
    assert recorded_config.n_clusters == len(CLASSES)
    # Rerunning with the settings left open is the same config (nothing to refuse), before the set
    # is read (the command's check) and after (the run's); another normalisation is refused.
    from eeg2image_tf.data.inputs import check_inputs
    from eeg2image_tf.runs import prepare_run_dir

    left_open = dataclasses.replace(recorded_config, normalisation=None, n_clusters=None)
    check_inputs(left_open)
    prepare_run_dir(dataclasses.replace(recorded_config), encoder_run)
    with pytest.raises(ConfigError, match=r"normalisation: 'zscore' -> 'original'.*--force"):
        check_inputs(dataclasses.replace(left_open, normalisation="original"))


def test_settling_an_encoder_config_makes_every_choice_before_anything_is_written(recorded,
                                                                                  tmp_path):
    from eeg2image_tf.training.encoder import settle_encoder_config

    run = tmp_path / "encoder"
    config = EncoderTrainConfig(data=recorded["data"], run=str(run), batch_size=8)
    settled = settle_encoder_config(config)
    assert settled.config.normalisation == "zscore" and settled.note is None
    assert settled.config.n_clusters == len(CLASSES)
    np.testing.assert_array_equal(settled.splits.x_train,
                                  load_thoughtviz(recorded["data"]).x_train)
    assert not run.exists()


def test_long_trials_are_not_unrolled(monkeypatch):
    from eeg2image_tf.training import encoder

    # A small limit: building an unrolled LSTM of the real limit's length takes a while.
    monkeypatch.setattr(encoder, "MAX_UNROLLED_SAMPLES", 3)
    config = EncoderTrainConfig(data="d", run="r", hidden=2, feature_dim=2, unroll=True)
    assert encoder.build_run_encoder(config, 3, 2).unroll
    assert not encoder.build_run_encoder(config, 4, 2).unroll


def test_gan_takes_the_encoder_runs_normalisation_and_refuses_another(recorded, encoder_run,
                                                                      tmp_path):
    from eeg2image_tf.training.gan_data import resolve_gan_config

    splits = load_thoughtviz(recorded["data"])
    config = GanTrainConfig(data=recorded["data"], images=recorded["images"],
                            encoder=str(encoder_run), run=str(tmp_path / "gan"),
                            condition_dim=FEATURE_DIM)
    resolved, note = resolve_gan_config(config, splits)
    assert resolved.normalisation == "zscore" and note is None
    # The set records zscore too, but the encoder run decides: it learned from those inputs.
    other_set = dataclasses.replace(splits, normalisation=None)
    assert resolve_gan_config(config, other_set)[0].normalisation == "zscore"
    with pytest.raises(ConfigError, match=r"trained on 'zscore'-normalised trials; "
                                          r"--normalisation 'original' would give it other inputs"):
        resolve_gan_config(dataclasses.replace(config, normalisation="original"), splits)


def test_settling_a_gan_config_makes_every_choice_before_anything_is_written(recorded,
                                                                             encoder_run, tmp_path):
    from eeg2image_tf.training.gan_data import settle_gan_config

    run = tmp_path / "gan"
    config = GanTrainConfig(data=recorded["data"], images=recorded["images"],
                            encoder=str(encoder_run), run=str(run), condition_dim=FEATURE_DIM)
    assert config.matmul_convs is None and config.normalisation is None
    settled = settle_gan_config(config)
    # What config.json will record: no field left for the loop to decide.
    assert isinstance(settled.config.matmul_convs, bool)
    assert settled.config.normalisation == "zscore" and settled.note is None
    assert settled.splits.x_train.shape == load_thoughtviz(recorded["data"]).x_train.shape
    assert not run.exists()
    with pytest.raises(ConfigError, match="trained on 'zscore'-normalised trials"):
        settle_gan_config(dataclasses.replace(config, normalisation="original"))
    assert not run.exists()


# --------------------------------------------------------------------------------------------------
# Stimuli
# --------------------------------------------------------------------------------------------------

def test_stimulus_pairing_needs_a_set_that_records_stimuli(recorded, encoder_run, tmp_path):
    from eeg2image_tf.training.gan_data import resolve_gan_config

    splits = dataclasses.replace(load_thoughtviz(recorded["data"]), image_train=None,
                                 image_test=None)
    config = GanTrainConfig(data=recorded["data"], images=recorded["images"],
                            encoder=str(encoder_run), run=str(tmp_path / "gan"), pairing="stimulus",
                            condition_dim=FEATURE_DIM)
    with pytest.raises(ConfigError, match=r"records no stimulus image per trial \(no image_train\); "
                                          "--pairing stimulus needs one, use --pairing class"):
        resolve_gan_config(config, splits)
    # A pairing that is not one is the config's rule (refused before any file is read).
    with pytest.raises(ConfigError, match="--pairing must be one of class, stimulus, got 'own'"):
        dataclasses.replace(config, pairing="own").validate()


def test_stimulus_pairing_trains_each_trial_with_its_own_image(recorded, encoder_run, tmp_path):
    from eeg2image_tf.data import load_image
    from eeg2image_tf.training.gan_data import load_gan_data, resolve_gan_config

    splits = load_thoughtviz(recorded["data"])
    images_root = Path(recorded["images"])
    config, _ = resolve_gan_config(GanTrainConfig(
        data=recorded["data"], images=recorded["images"], encoder=str(encoder_run),
        run=str(tmp_path / "gan"), pairing="stimulus", condition_dim=FEATURE_DIM), splits)
    data = load_gan_data(config, tmp_path / "gan", splits=splits)
    # The bank holds the distinct stimuli of the training trials, each trial points at its own.
    assert len(data.images) == len(set(splits.image_train.tolist()))
    for trial in (0, 1, 7, N_TRAIN - 1):
        expected = load_image(images_root / "train" / splits.image_train[trial])
        np.testing.assert_array_equal(data.images[data.image_index[trial]], expected)
    # The original's pairing draws one image of the class instead: the same classes, and with
    # two images per class some trials get the other one.
    drawn = load_gan_data(dataclasses.replace(config, pairing="class"), tmp_path / "gan",
                          splits=splits)
    assert len(drawn.images) == len(CLASSES) * 2


def test_a_stimulus_of_another_class_or_missing_is_refused(recorded):
    from eeg2image_tf.data import stimulus_images

    root = Path(recorded["images"]) / "train"
    labels = np.array([0, 1])
    paths, index = stimulus_images(["Ant/Ant_0.png", "Bee/Bee_1.png"], [root], labels, CLASSES)
    assert [Path(p).relative_to(root).as_posix() for p in paths] == ["Ant/Ant_0.png", "Bee/Bee_1.png"]
    assert index.tolist() == [0, 1]
    with pytest.raises(DataError, match=r"image_train\[1\] is 'Ant/Ant_1.png', in class folder "
                                        r"'Ant', but the trial's label 1 is class 'Bee'"):
        stimulus_images(["Ant/Ant_0.png", "Ant/Ant_1.png"], [root], labels, CLASSES)
    with pytest.raises(DataError, match=r"image_train\[0\]: stimulus 'Ant/Ant_9.png' not found under"):
        stimulus_images(["Ant/Ant_9.png"], [root])
    with pytest.raises(DataError, match=r"image_train\[0\] is '../x.png'; expected a path inside"):
        stimulus_images(["../x.png"], [root])


# --------------------------------------------------------------------------------------------------
# Subjects and the stimulus figure
# --------------------------------------------------------------------------------------------------

def _sources(recorded):
    """What evaluation reads of a run, with an 'encoder' whose feature is the trial's mean channel
    values (class patterns survive it, so kNN finds the classes)."""
    import tensorflow as tf

    from eeg2image_tf.data import preprocess
    from eeg2image_tf.generation.batches import group_by_class
    from eeg2image_tf.models import encoder_features

    splits = load_thoughtviz(recorded["data"])

    def encoder(x, training=False):
        feature = tf.reduce_mean(x * tf.sin(tf.linspace(0.0, 2.0 * np.pi, x.shape[1]))[None, :, None],
                                 axis=1)
        return feature, feature

    test_features = encoder_features(encoder, preprocess(splits.x_test, method="zscore"))
    by_class, trials = group_by_class(test_features, splits.y_test, len(CLASSES), CLASSES)
    return SimpleNamespace(splits=splits, encoder=encoder, normalisation="zscore",
                           test_features=test_features, features_by_class=by_class,
                           trials_by_class=trials, class_names=CLASSES,
                           images_root=Path(recorded["images"]) / "train")


def test_per_subject_section_splits_the_metrics_by_the_trials_subject(recorded):
    from eeg2image_tf.evaluation.images import PassResult
    from eeg2image_tf.evaluation.trials import subject_lines, subject_section

    sources = _sources(recorded)
    subjects = sources.splits.subject_test
    # Six generated images: from trials 0 (subject 1), 5 (subject 2) and 10 (subject 1); the
    # classifier is right on subject 1's images only.
    trials = np.array([0, 0, 5, 5, 10, 10])
    labels = sources.splits.y_test[trials]
    probs = np.eye(len(CLASSES))[np.where(subjects[trials] == 1, labels, (labels + 1) % 5)]
    generated = PassResult(class_index=labels, count=6, source_trial=trials)
    section = subject_section(sources, generated, probs)
    assert section["available"] and set(section["subjects"]) == {"1", "2"}
    one, two = section["subjects"]["1"], section["subjects"]["2"]
    assert (one["test_trials"], two["test_trials"]) == (int(np.sum(subjects == 1)),
                                                         int(np.sum(subjects == 2)))
    assert (one["generated_images"], one["conditional_accuracy"]) == (4, 1.0)
    assert (two["generated_images"], two["conditional_accuracy"]) == (2, 0.0)
    # The class patterns are strong: the kNN on the features finds most classes for both.
    assert one["knn_accuracy"] > 0.5 and two["knn_accuracy"] > 0.5
    rows = subject_lines(section).splitlines()
    assert rows[3].split() == ["1", str(one["test_trials"]), f"{one['knn_accuracy']:.3f}", "1.000"]
    assert rows[4].split()[-1] == "0.000"
    no_subjects = SimpleNamespace(**{**vars(sources), "splits": dataclasses.replace(
        sources.splits, subject_train=None, subject_test=None)})
    assert subject_section(no_subjects, generated, probs)["available"] is False


def test_stimulus_figure_sets_each_trials_stimulus_before_its_images(recorded, tmp_path):
    import cv2

    from eeg2image_tf.evaluation.images import PassResult
    from eeg2image_tf.evaluation.trials import (STIMULUS_LABEL_WIDTH, save_stimulus_figure,
                                                stimulus_trials)

    sources = _sources(recorded)
    trials = stimulus_trials(sources)
    # One trial per class (five classes, fewer than the figure's rows), row r its class's r-th.
    assert trials == tuple(int(t[row % len(t)]) for row, t in enumerate(sources.trials_by_class))
    made = {t: [np.full((128, 128, 3), 7 * t, np.uint8)] * 2 for t in trials}
    path = save_stimulus_figure(sources, PassResult(class_index=np.zeros(0), count=0,
                                                    by_trial=made), trials, tmp_path / "s.png")
    figure = cv2.imread(str(path))
    # Rows of 128 px; the label column, then the stimulus, then the two images.
    assert figure.shape[:2] == (128 * len(trials), STIMULUS_LABEL_WIDTH + 4 * 128)
    stimulus = cv2.resize(cv2.imread(str(Path(recorded["images"]) / "test" /
                                         sources.splits.image_test[trials[1]])), (128, 128),
                          interpolation=cv2.INTER_LINEAR)
    left = STIMULUS_LABEL_WIDTH
    cell = figure[128:256, left:left + 128].astype(int)
    assert np.abs(cell - stimulus).mean() < 4.0
    assert np.all(figure[128:256, left + 128:left + 256] == 7 * trials[1])
