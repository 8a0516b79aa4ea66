"""``--strategy multiworker``: two local worker processes on loopback ports, as README's recipe runs
them, for the encoder, the GAN and the image classifier on a tiny set.

Checked: the chief alone writes the run and the other worker leaves no temporary folder; two workers
at global batch B end with the weights of one process at batch B (measured figures beside each
tolerance). Faults and resume: ``test_multiworker_faults.py``; the pipeline:
``test_multiworker_pipeline.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from adam_support import assert_same_adam_training
from multiworker_support import (LEARNING_RATE, checkpoint_weights, files_under, gan_args,
                                 run_single, run_workers, write_tiny_set)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> dict:
    return write_tiny_set(tmp_path_factory.mktemp("multiworker_set"))


def test_encoder_two_workers_write_one_run_equal_to_one_process(tiny_set, tmp_path):
    args = ["--data", tiny_set["data"], "--batch-size", "8", "--epochs", "3",
            "--checkpoint-every", "2", "--n-clusters", "2"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    results = run_workers("train_encoder", [*args, "--run", str(tmp_path / "two")], scratch)
    run_single("train_encoder", [*args, "--run", str(tmp_path / "one")], scratch)

    # One writer: the chief's run has what one process writes; the other worker left nothing.
    assert list(scratch.iterdir()) == []
    two, one = files_under(tmp_path / "two"), files_under(tmp_path / "one")
    assert {name for name in two if "events" not in name} == \
        {name for name in one if "events" not in name}
    assert len([name for name in two if "events" in name]) == 1
    # Each worker's bar and lines name it.
    assert "encoder [worker 0/2]" in results[0][2] and "encoder [worker 1/2]" in results[1][2]
    assert "worker 1/2: epoch 2" in results[1][1]

    # Measured: the first moments 6e-5 of their variables' largest apart, the weights 2.5e-6 (on
    # another CPU 7e-4 after these 6 steps: rounding-noise gradients of opposite signs).
    assert_same_adam_training(tmp_path / "two" / "checkpoints" / "ckpt-3",
                              tmp_path / "one" / "checkpoints" / "ckpt-3", 3 * 2, LEARNING_RATE)
    # The last epoch's mean loss, computed with those weights: measured 4e-7 relative.
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("two", "one")]
    assert metrics[0]["encoder/train_triplet"] == pytest.approx(
        metrics[1]["encoder/train_triplet"], rel=1e-3)


def test_gan_two_workers_write_one_run_equal_to_one_process(tiny_set, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run_workers("train_gan", gan_args(tiny_set, tmp_path / "two", 1), scratch)
    run_single("train_gan", gan_args(tiny_set, tmp_path / "one", 1), scratch)

    assert list(scratch.iterdir()) == []
    two, one = files_under(tmp_path / "two"), files_under(tmp_path / "one")
    assert {name for name in two if "events" not in name} == \
        {name for name in one if "events" not in name}
    assert len([name for name in two if "events" in name]) == 1

    # After one iteration (15 M weights): measured 99.95 % within 1e-5; the weights at most
    # 6.0e-4 = 2 x lr apart: Adam's first step moves every weight by about lr whatever its
    # gradient's size, so a weight whose gradient is rounding noise (opposite signs in the two runs)
    # ends 2 x lr apart. BatchNorm's moving variances at most 1.4e-3 apart: one process with
    # Keras's unfused BatchNorm (the arithmetic the synchronised layer shares) is as far from the
    # fused kernel's (1.4e-3), and the two workers are 2.2e-4 from that unfused process.
    two, one = (checkpoint_weights(tmp_path / run / "checkpoints" / "ckpt-1") for run in ("two", "one"))
    first = np.concatenate([np.abs(two[key] - one[key]).ravel() for key in one])
    assert np.mean(first > 1e-5) < 2e-3, np.mean(first > 1e-5)
    weights = max(float(np.abs(two[key] - one[key]).max()) for key in one if "moving" not in key)
    statistics = max(float(np.abs(two[key] - one[key]).max()) for key in one if "moving" in key)
    assert weights <= 2 * LEARNING_RATE + 1e-5, weights
    assert statistics < 5e-3, statistics
    # The losses of that iteration, relative: measured d_hinge 1.0e-5, mode_seeking 6e-7, g_hinge
    # 2.3e-4 (computed after D's update, so with the weights above). Those of a second iteration
    # are no bar: one process with unfused instead of fused BatchNorm has its second g_hinge 1.8 %
    # away, through the weights Adam's first step moved by +-lr on rounding-noise gradients.
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text())["losses"]
               for run in ("two", "one")]
    for name, value in metrics[1].items():
        assert metrics[0][name] == pytest.approx(value, rel=1e-3), name


def test_image_classifier_two_workers_write_one_run_equal_to_one_process(tiny_set, tmp_path):
    """Global-batch augmentation and dropout draws, synchronised BatchNorm, summed gradients: two
    workers take the steps one process takes (BatchNorm's moving statistics compared too)."""
    args = ["--images", tiny_set["images"], "--batch-size", "4", "--epochs", "2",
            "--image-size", "32"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    results = run_workers("train_image_classifier", [*args, "--run", str(tmp_path / "two")],
                           scratch)
    run_single("train_image_classifier", [*args, "--run", str(tmp_path / "one")], scratch)

    assert list(scratch.iterdir()) == []
    two, one = files_under(tmp_path / "two"), files_under(tmp_path / "one")
    assert {name for name in two if "events" not in name} == \
        {name for name in one if "events" not in name}
    assert len([name for name in two if "events" in name]) == 1
    assert "classifier [worker 1/2]" in results[1][2] and "worker 1/2: epoch 2" in results[1][1]

    # 2 epochs of 2 steps (Adam, learning rate 2e-3): measured 0.06 % of the weights more than 1e-6
    # apart, the largest 7.9e-5 (conv_4's kernel: weights whose gradients are near rounding noise).
    # A replica drawing its own dropout mask instead ends 0.31 apart (99.9 % of the weights above
    # 1e-6); per-replica BatchNorm statistics leave 99.2 % of them more than 1e-5 apart.
    assert_same_adam_training(tmp_path / "two" / "checkpoints" / "ckpt-2",
                              tmp_path / "one" / "checkpoints" / "ckpt-2", 2 * 2, 2e-3)
    two, one = (checkpoint_weights(tmp_path / run / "checkpoints" / "ckpt-2")
                for run in ("two", "one"))
    statistics = [np.abs(two[key] - one[key]).max() for key in one if "moving" in key]
    assert statistics and max(statistics) < 1e-3, statistics
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("two", "one")]
    assert metrics[0]["train_loss"] == pytest.approx(metrics[1]["train_loss"], rel=1e-5)
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
