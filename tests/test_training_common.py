"""Shared training plumbing: strategies, divergence checks, signal guard, resume guard."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from eeg2image_tf.errors import CheckpointError, Eeg2ImageError, TrainingDivergedError
from eeg2image_tf.training import common


def test_check_finite_names_the_step_and_the_checkpoint():
    common.check_finite({"loss": 0.5}, "step 3", None)
    with pytest.raises(TrainingDivergedError, match=r"gan/d_hinge became nan at step 7; last good "
                                                    r"checkpoint: ck/ckpt-2"):
        common.check_finite({"gan/g_total": 1.0, "gan/d_hinge": np.float32("nan")}, "step 7",
                            "ck/ckpt-2")
    with pytest.raises(TrainingDivergedError, match="inf"):
        common.check_finite({"loss": float("inf")}, "epoch 1", None)


def test_strategies():
    import tensorflow as tf

    assert common.make_strategy("default") is tf.distribute.get_strategy()
    assert common.make_strategy("auto").num_replicas_in_sync >= 1
    with pytest.raises(Eeg2ImageError, match="unknown strategy"):
        common.make_strategy("bogus")
    if "TF_CONFIG" not in os.environ:
        with pytest.raises(Eeg2ImageError, match="TF_CONFIG"):
            common.make_strategy("multiworker")


def test_signal_guard_turns_sigterm_into_a_flag():
    with common.SignalGuard() as guard:
        assert not guard.triggered
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.triggered
        interrupted = guard.interrupted("step 5", "run/checkpoints/ckpt-1")
    assert interrupted.exit_code == 128 + signal.SIGTERM
    assert "SIGTERM received at step 5: checkpoint saved to run/checkpoints/ckpt-1" in str(interrupted)
    # the previous handler is back
    assert signal.getsignal(signal.SIGTERM) is not guard._handle


def test_restore_latest_refuses_another_architecture(tmp_path):
    import tensorflow as tf

    saved = tf.train.Checkpoint(weights=tf.Variable(np.ones((3, 4), np.float32)))
    manager = common.make_checkpoint_manager(saved, tmp_path, max_to_keep=2)
    manager.save()
    same = tf.train.Checkpoint(weights=tf.Variable(np.zeros((3, 4), np.float32)))
    assert common.restore_latest(same, common.make_checkpoint_manager(same, tmp_path, 2))
    np.testing.assert_array_equal(same.weights.numpy(), 1.0)
    other = tf.train.Checkpoint(weights=tf.Variable(np.zeros((5, 4), np.float32)))
    with pytest.raises(CheckpointError, match="cannot resume"):
        common.restore_latest(other, common.make_checkpoint_manager(other, tmp_path, 2))
    empty = tmp_path / "empty"
    assert common.restore_latest(same, common.make_checkpoint_manager(same, empty, 2)) is None


def test_deadline():
    assert not common.Deadline(None).expired
    assert common.Deadline(0.0).expired
