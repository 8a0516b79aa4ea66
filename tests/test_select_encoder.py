"""Checkpoint selection: k-means accuracy of every checkpoint, best_checkpoint.json, t-SNE, projector."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from eeg2image_tf.config import SelectEncoderConfig
from eeg2image_tf.errors import CheckpointError
from eeg2image_tf.io_utils import read_json

from test_train_encoder import toy_config, write_toy_set


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Three checkpoints (epochs 1, 2, 3) of a toy encoder."""
    from eeg2image_tf.training.encoder import train_encoder

    root = tmp_path_factory.mktemp("select")
    data = write_toy_set(root / "eeg" / "toy" / "data.npz", n_test=48)
    config = toy_config(data, root / "encoder", epochs=3, checkpoint_every=1)
    train_encoder(config)
    return config


@pytest.fixture
def run_copy(trained_run, tmp_path):
    shutil.copytree(trained_run.run, tmp_path / "encoder")
    return dataclasses.replace(trained_run, run=str(tmp_path / "encoder"))


def test_selects_the_best_checkpoint_and_writes_its_outputs(run_copy, capsys):
    from eeg2image_tf.errors import run_main
    from eeg2image_tf.select_encoder import main

    run = Path(run_copy.run)
    assert run_main(main, ["--run", str(run), "--n-clusters", "4"]) == 0
    out = capsys.readouterr().out

    selection = read_json(run / "best_checkpoint.json")
    table = selection["table"]
    assert [row["epoch"] for row in table] == [1, 2, 3]
    assert [Path(row["checkpoint"]).name for row in table] == ["ckpt-1", "ckpt-2", "ckpt-3"]
    accuracies = [row["kmeans_accuracy"] for row in table]
    assert all(0.0 <= acc <= 1.0 for acc in accuracies)
    assert selection["accuracy"] == max(accuracies)
    best_row = table[accuracies.index(max(accuracies))]  # the first of equal bests wins
    assert selection["best_checkpoint"] == best_row["checkpoint"]
    assert selection["epoch"] == best_row["epoch"]
    assert Path(selection["best_checkpoint"] + ".index").is_file()

    # Selection recomputes exactly what training recorded at the same checkpoints.
    metrics = read_json(run / "metrics.json")
    history = metrics["encoder/kmeans_acc_history"]
    assert {str(row["epoch"]): row["kmeans_accuracy"] for row in table} == history
    assert metrics["encoder/kmeans_acc_best"] == selection["accuracy"]
    assert metrics["encoder/best_checkpoint"] == selection["best_checkpoint"]

    assert f"{selection['accuracy']:.4f}" in out and "best:" in out
    assert out.count("ckpt-") >= 3

    image = (run / "tsne.png").read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 5000

    projector = run / "tensorboard" / "projector"
    names = (projector / "metadata.tsv").read_text().splitlines()
    assert len(names) == 48 and set(names) == {"alpha", "beta", "gamma", "delta"}
    pbtxt = (projector / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "embedding/.ATTRIBUTES/VARIABLE_VALUE"' in pbtxt
    assert 'metadata_path: "metadata.tsv"' in pbtxt
    import tensorflow as tf

    stored = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(projector)))
    assert stored.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE").shape == (48, 16)
    assert read_json(run / "select_config.json")["n_clusters"] == 4


def test_load_encoder_takes_the_selected_checkpoint(run_copy):
    checkpoints = pytest.importorskip("eeg2image_tf.checkpoints")
    import tensorflow as tf

    from eeg2image_tf.models import build_encoder
    from eeg2image_tf.training.selection import select_encoder

    result = select_encoder(SelectEncoderConfig(run=run_copy.run, n_clusters=4))
    loaded = checkpoints.load_encoder(run_copy.run)
    expected = build_encoder(feature_dim=16, hidden=8, num_channels=6, num_samples=12)
    tf.train.Checkpoint(encoder=expected).read(result["best_checkpoint"]).expect_partial()
    x = np.random.default_rng(0).normal(size=(3, 12, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[1].numpy(), expected(x)[1].numpy())


def test_tsne_clips_perplexity_to_few_samples(tmp_path):
    from eeg2image_tf.evaluation.figures import save_tsne

    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, 5)).astype(np.float32)
    labels = np.arange(12) % 3
    path = save_tsne(features, labels, ("a", "b", "c"), tmp_path / "tsne.png", title="t",
                     perplexity=40.0, iterations=250, legend_outside=True)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_a_run_without_checkpoints_is_an_error(tmp_path):
    from eeg2image_tf.runs import prepare_run_dir
    from eeg2image_tf.training.selection import select_encoder

    data = write_toy_set(tmp_path / "eeg" / "toy" / "data.npz")
    prepare_run_dir(toy_config(data, tmp_path / "empty"), tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        select_encoder(SelectEncoderConfig(run=str(tmp_path / "empty"), n_clusters=4))
