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


class FakeClock:
    """Seconds that move only when the test moves them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_deadline():
    assert not common.Deadline(None).expired
    assert common.Deadline(0.0).expired
    clock = FakeClock()
    deadline = common.Deadline(10.0, clock)
    clock.now = 9.5
    assert deadline.elapsed == 9.5 and not deadline.expired
    clock.now = 10.0
    assert deadline.expired


def test_a_loop_under_a_budget_counts_towards_what_the_budget_leaves_room_for():
    """The demo profile's GAN: at most 3000 steps in 420 s. The bar names the budget and counts to
    the steps the rest of it has room for at the seconds per step measured from the end of the
    first (tracing) step, never to the 3000 the budget cuts short."""
    clock = FakeClock()
    deadline = common.Deadline(420.0, clock)
    clock.now = 20.0                                # start-up, inside the budget
    bar = common.loop_bar(deadline, 3000, 0, "gan", "step")
    assert isinstance(bar, common.BudgetBar)
    assert bar.total is None and "gan (budget 420 s)" in str(bar) and "3000" not in str(bar)
    clock.now = 40.0
    bar.update(1)                                   # the first step traces: no time per step yet
    assert bar.total is None
    # 0.5 s per step, 379.5 s left: 759 steps more; a steady pace keeps the total.
    for now, total in ((40.5, 2 + 759), (41.0, 3 + 758), (42.5, 4 + 453)):
        clock.now = now
        bar.update(1)
        assert bar.total == total
    assert "4/457" in str(bar)
    clock.now = 421.0                               # the loop stops after this step
    bar.update(1)
    assert bar.total == 5
    bar.close()
    assert (bar.n, bar.total) == (5, 5)


def test_a_budget_never_raises_the_loops_total():
    clock = FakeClock()
    deadline = common.Deadline(1e6, clock)
    # A resumed loop at unit 100 of 102: its first unit here traces again.
    bar = common.loop_bar(deadline, 102, 100, "encoder", "epoch")
    clock.now = 30.0
    bar.update(1)
    clock.now = 31.0
    bar.update(1)
    assert (bar.n, bar.total) == (102, 102)
    bar.close()
    finished = common.loop_bar(deadline, 102, 102, "encoder", "epoch")
    assert finished.total == 102 and "102/102" in str(finished)
    finished.close()
    # A budget-less loop counts to its total.
    plain = common.loop_bar(common.Deadline(None), 3000, 0, "gan", "step")
    assert not isinstance(plain, common.BudgetBar) and plain.total == 3000
    assert "budget" not in str(plain)
    plain.close()


def test_the_run_skeleton_gives_a_budgeted_loop_its_budget_bar(tmp_path):
    from eeg2image_tf.config import EncoderTrainConfig
    from eeg2image_tf.training.run import TrainingRun

    config = EncoderTrainConfig(data="d", run=str(tmp_path / "run"), time_budget_s=60.0)
    run = TrainingRun(config, budget_s=config.time_budget_s)
    with run.loop(3000, 0, desc="encoder", unit="epoch") as loop:
        assert isinstance(loop.bar, common.BudgetBar) and "budget 60 s" in str(loop.bar)
    unbudgeted = TrainingRun(EncoderTrainConfig(data="d", run=str(tmp_path / "other")))
    with unbudgeted.loop(3000, 0, desc="encoder", unit="epoch") as loop:
        assert loop.bar.total == 3000 and "budget" not in str(loop.bar)
