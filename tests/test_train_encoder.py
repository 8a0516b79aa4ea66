"""Encoder training: learning, checkpoints and resume, TensorBoard tags, divergence, signals.

One small run (a hand-written 4-class ``data.npz``, a 16-d encoder) is trained once per module and
copied into each test that needs to change it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from eeg2image_tf.config import EncoderTrainConfig
from eeg2image_tf.errors import ConfigError, TrainingDivergedError
from eeg2image_tf.io_utils import read_json

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 4


def write_toy_set(path: Path, n_train: int = 96, n_test: int = 40, seed: int = 0) -> Path:
    """A 4-class set in the ThoughtViz layout: raw values around 4000 with a class-specific
    (channel pattern x sinusoid) signal that survives the original max/2 normalisation."""
    rng = np.random.default_rng(seed)
    channels, samples = 6, 12
    patterns = rng.normal(size=(NUM_CLASSES, channels))
    frequencies = np.array([1.0, 2.0, 3.0, 4.0])
    time = np.arange(samples) / samples

    def split(n: int):
        labels = np.arange(n) % NUM_CLASSES
        rng.shuffle(labels)
        wave = np.sin(2 * np.pi * frequencies[labels][:, None] * time[None, :])
        signal_part = 800.0 * patterns[labels][:, :, None] * wave[:, None, :]
        noise = 150.0 * rng.normal(size=(n, channels, samples))
        return (4000.0 + signal_part + noise)[..., None].astype(np.float32), labels.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(["alpha", "beta", "gamma", "delta"]))
    return path


def toy_config(data: Path, run: Path, **overrides) -> EncoderTrainConfig:
    values = dict(data=str(data), run=str(run), epochs=4, batch_size=32, learning_rate=1e-2,
                  checkpoint_every=2, feature_dim=16, hidden=8, n_clusters=NUM_CLASSES, jit=False)
    values.update(overrides)
    return EncoderTrainConfig(**values)


def scalar_events(run: Path) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value), ...]`` over every event file of ``<run>/tensorboard/train``."""
    import tensorflow as tf

    found: dict[str, list[tuple[int, float]]] = {}
    for event_file in sorted((run / "tensorboard" / "train").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") \
                    else float(value.simple_value)
                found.setdefault(value.tag, []).append((int(event.step), number))
    return {tag: sorted(points) for tag, points in found.items()}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_set(tmp_path_factory.mktemp("toy") / "eeg" / "toy" / "data.npz")


@pytest.fixture(scope="module")
def trained_run(toy_data, tmp_path_factory):
    from eeg2image_tf.training.encoder import train_encoder

    run = tmp_path_factory.mktemp("runs") / "encoder"
    config = toy_config(toy_data, run)
    result = train_encoder(config)
    return config, result


def copy_run(config: EncoderTrainConfig, destination: Path, **overrides) -> EncoderTrainConfig:
    shutil.copytree(config.run, destination)
    return dataclasses.replace(config, run=str(destination), **overrides)


# --------------------------------------------------------------------------------------------------

def test_short_run_lowers_loss_and_records_everything(trained_run):
    config, result = trained_run
    run = Path(config.run)
    assert result["epoch"] == 4 and result["stopped"] == "completed"

    events = scalar_events(run)
    assert [step for step, _ in events["encoder/train_triplet"]] == [1, 2, 3, 4]
    assert [step for step, _ in events["encoder/val_triplet"]] == [1, 2, 3, 4]
    assert [step for step, _ in events["encoder/kmeans_acc"]] == [2, 4]
    train_losses = [value for _, value in events["encoder/train_triplet"]]
    assert train_losses[-1] < 0.8 * train_losses[0], train_losses

    for epoch in (2, 4):
        assert (run / "checkpoints" / f"ckpt-{epoch}.index").is_file()
    assert read_json(run / "config.json")["learning_rate"] == config.learning_rate

    metrics = read_json(run / "metrics.json")
    assert metrics["encoder/epoch"] == 4
    history = metrics["encoder/kmeans_acc_history"]
    assert set(history) == {"2", "4"}
    assert all(0.0 <= acc <= 1.0 for acc in history.values())
    assert metrics["encoder/kmeans_acc_best"] == max(history.values())
    assert history[str(metrics["encoder/kmeans_acc_best_epoch"])] == max(history.values())
    assert metrics["encoder/train_triplet"] == pytest.approx(train_losses[-1], rel=1e-6)
    # The accuracies in TensorBoard and in metrics.json are the same numbers.
    assert {str(step): value for step, value in events["encoder/kmeans_acc"]} == \
        pytest.approx(history, abs=1e-6)
    assert result["kmeans_acc_best"] == metrics["encoder/kmeans_acc_best"]


def test_checkpoint_holds_epoch_and_restores_into_a_fresh_encoder(trained_run):
    import tensorflow as tf

    from eeg2image_tf.models import build_encoder
    from eeg2image_tf.training.encoder import checkpoint_epoch

    config, _ = trained_run
    prefix = str(Path(config.run) / "checkpoints" / "ckpt-2")
    assert checkpoint_epoch(prefix) == 2
    encoder = build_encoder(feature_dim=16, hidden=8, num_channels=6, num_samples=12)
    before = [w.numpy() for w in encoder.weights]
    tf.train.Checkpoint(encoder=encoder).read(prefix).assert_existing_objects_matched().expect_partial()
    after = [w.numpy() for w in encoder.weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    # The checkpoint also holds Adam's state and the optimizer's step count (for resuming).
    keys = [key for key, _ in tf.train.list_variables(prefix)]
    assert any("optimizer/_iterations" in key for key in keys)
    architecture = read_json(Path(config.run) / "checkpoints" / "model.json")["architecture"]
    assert architecture == {"feature_dim": 16, "hidden": 8, "num_channels": 6}


def test_load_encoder_reads_the_run(trained_run):
    checkpoints = pytest.importorskip("eeg2image_tf.checkpoints")
    config, _ = trained_run
    encoder = checkpoints.load_encoder(config.run)
    embedding, feature = encoder(np.zeros((2, 12, 6), np.float32), training=False)
    assert tuple(feature.shape) == (2, 16)


def test_rerun_resumes_at_the_next_epoch_and_extends(trained_run, tmp_path, capsys):
    from eeg2image_tf.training.encoder import train_encoder

    config, _ = trained_run
    config = copy_run(config, tmp_path / "run")
    run = Path(config.run)

    again = train_encoder(config)  # already finished: nothing to train
    assert again["epoch"] == 4
    assert [step for step, _ in scalar_events(run)["encoder/train_triplet"]] == [1, 2, 3, 4]

    longer = train_encoder(dataclasses.replace(config, epochs=6))
    assert longer["epoch"] == 6
    assert "resuming" in capsys.readouterr().err
    events = scalar_events(run)
    # Epochs 5 and 6 were trained once each: no epoch was repeated or skipped.
    assert [step for step, _ in events["encoder/train_triplet"]] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in events["encoder/kmeans_acc"]] == [2, 4, 6]
    assert (run / "checkpoints" / "ckpt-6.index").is_file()
    history = read_json(run / "metrics.json")["encoder/kmeans_acc_history"]
    assert set(history) == {"2", "4", "6"}

    # An end that is not a multiple of checkpoint_every still gets its checkpoint.
    odd = train_encoder(dataclasses.replace(config, epochs=7))
    assert odd["epoch"] == 7 and (run / "checkpoints" / "ckpt-7.index").is_file()
    assert [step for step, _ in scalar_events(run)["encoder/train_triplet"]][-2:] == [6, 7]

    # A spent time budget stops after the epoch in progress, with a checkpoint to resume from.
    budget = train_encoder(dataclasses.replace(config, epochs=10, time_budget_s=0.0))
    assert budget["stopped"] == "time_budget" and budget["epoch"] == 8
    assert budget["checkpoint"].endswith("ckpt-8")


def test_other_config_is_refused_without_force(trained_run, tmp_path):
    from eeg2image_tf.training.encoder import train_encoder

    config, _ = trained_run
    config = copy_run(config, tmp_path / "run")
    with pytest.raises(ConfigError, match="learning_rate"):
        train_encoder(dataclasses.replace(config, learning_rate=1e-4))
    assert read_json(Path(config.run) / "config.json")["learning_rate"] == config.learning_rate
    # --force records the new config and continues from the checkpoints that are there.
    result = train_encoder(dataclasses.replace(config, learning_rate=1e-4), force=True)
    assert result["epoch"] == 4
    assert read_json(Path(config.run) / "config.json")["learning_rate"] == 1e-4


def test_nan_loss_stops_with_the_epoch_and_keeps_the_last_checkpoint(trained_run, tmp_path,
                                                                      monkeypatch):
    import eeg2image_tf.training.losses as losses
    from eeg2image_tf.training.encoder import train_encoder

    config, _ = trained_run
    config = copy_run(config, tmp_path / "run", epochs=6)
    real_loss = losses.triplet_semihard_loss
    monkeypatch.setattr(losses, "triplet_semihard_loss",
                        lambda labels, embeddings, margin=1.0:
                        real_loss(labels, embeddings, margin) * float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"epoch 5 step 1.*ckpt-4"):
        train_encoder(config)
    run = Path(config.run)
    assert not (run / "checkpoints" / "ckpt-5.index").exists()
    assert read_json(run / "metrics.json")["encoder/epoch"] == 4


@pytest.mark.slow
def test_xla_steps_give_the_same_numbers():
    import keras
    import tensorflow as tf

    from eeg2image_tf.models import build_encoder
    from eeg2image_tf.training.encoder import make_encoder_steps

    rng = np.random.default_rng(1)
    batches = [(rng.normal(size=(16, 12, 6)).astype(np.float32), rng.integers(0, 4, 16))
               for _ in range(3)]
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        encoder = build_encoder(feature_dim=16, hidden=8, num_channels=6, num_samples=12)
        optimizer = keras.optimizers.Adam(1e-2)
        train_step, val_step, feature_step = make_encoder_steps(encoder, optimizer, 1.0, jit)
        losses = [float(train_step(tf.constant(x), tf.constant(y))) for x, y in batches]
        losses.append(float(val_step(tf.constant(batches[0][0]), tf.constant(batches[0][1]))))
        features = feature_step(tf.constant(batches[1][0])).numpy()
        results.append((losses, features, [w.numpy() for w in encoder.weights]))
    (plain_losses, plain_features, plain_weights), (xla_losses, xla_features, xla_weights) = results
    assert plain_losses[0] > 0
    np.testing.assert_allclose(xla_losses, plain_losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xla_features, plain_features, rtol=1e-4, atol=1e-5)
    for xla_weight, plain_weight in zip(xla_weights, plain_weights):
        np.testing.assert_allclose(xla_weight, plain_weight, rtol=1e-4, atol=1e-5)


def test_cli_parses_into_the_config_and_reports_errors(toy_data, tmp_path, capsys):
    from eeg2image_tf.errors import run_main
    from eeg2image_tf.runs import prepare_run_dir
    from eeg2image_tf.train_encoder import main

    run = tmp_path / "run"
    prepare_run_dir(toy_config(toy_data, run), run)
    # Same run, another batch size: refused before any training, as one line on stderr.
    code = run_main(main, ["--data", str(toy_data), "--run", str(run), "--batch-size", "16",
                           "--epochs", "4", "--learning-rate", "1e-2", "--checkpoint-every", "2",
                           "--feature-dim", "16", "--hidden", "8", "--n-clusters", "4", "--no-jit"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "batch_size: 32 -> 16" in err[0]


@pytest.mark.slow
def test_sigterm_saves_a_loadable_checkpoint_and_exits(toy_data, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "eeg2image_tf.train_encoder", "--data", str(toy_data),
               "--run", str(run), "--epochs", "100000", "--checkpoint-every", "100000",
               "--batch-size", "32", "--feature-dim", "16", "--hidden", "8", "--n-clusters", "4",
               "--no-jit"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first_epoch = threading.Event()
    stdout_lines: list[str] = []
    stderr_lines: list[str] = []

    # Each pipe has one reader for the whole run (a second one, such as communicate(), would
    # close the pipe under the first); reading stderr throughout keeps its buffer from filling.
    def read_stdout():
        for line in process.stdout:
            stdout_lines.append(line)
            if line.startswith("epoch "):
                first_epoch.set()

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        assert first_epoch.wait(timeout=240), "no epoch finished; stdout: " + "".join(stdout_lines)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    for reader in readers:
        reader.join(timeout=10)
    stderr = "".join(stderr_lines)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM received at epoch" in stderr and "checkpoint saved to" in stderr

    import tensorflow as tf

    from eeg2image_tf.training.encoder import checkpoint_epoch

    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert latest is not None
    epoch = checkpoint_epoch(latest)
    assert epoch >= 1 and latest.endswith(f"ckpt-{epoch}")
    assert read_json(run / "metrics.json")["encoder/epoch"] == epoch
    checkpoints = pytest.importorskip("eeg2image_tf.checkpoints")
    encoder = checkpoints.load_encoder(str(run))
    assert tuple(encoder(np.zeros((1, 12, 6), np.float32))[1].shape) == (1, 16)
