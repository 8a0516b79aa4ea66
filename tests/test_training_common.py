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


def _driven_run(tmp_path, name, budget_s=None):
    """A run over a one-variable checkpoint, started: (run, counter)."""
    import tensorflow as tf

    from eeg2image_tf.config import EncoderTrainConfig
    from eeg2image_tf.training.run import TrainingRun

    config = EncoderTrainConfig(data="d", run=str(tmp_path / name), time_budget_s=budget_s)
    run = TrainingRun(config, budget_s=budget_s)
    counter = tf.Variable(0, dtype=tf.int64)
    start = run.start(tf.train.Checkpoint(epoch=counter), counter, max_to_keep=None)
    return run, counter, start


def test_the_run_skeleton_gives_a_budgeted_loop_its_budget_bar(tmp_path):
    bars = {}

    def units(loop):
        bars["bar"] = str(loop.bar), loop.bar
        yield from ()

    for name, budget in (("budgeted", 60.0), ("plain", None)):
        run, _, _ = _driven_run(tmp_path, name, budget)
        run.drive(units, total=3000, start=0, save_every=10, saved=lambda *_: None,
                  desc="encoder", unit="epoch")
        text, bar = bars.pop("bar")
        if budget:
            assert isinstance(bar, common.BudgetBar) and "budget 60 s" in text
        else:
            assert bar.total == 3000 and "budget" not in text


def test_the_run_skeleton_saves_on_its_cadence_and_the_last_unit_and_says_why_it_stopped(tmp_path):
    from eeg2image_tf.runs import CHECKPOINT_DIR

    run, counter, start = _driven_run(tmp_path, "run")
    assert (start.unit, start.metrics) == (0, {})
    events = []

    def units(loop):
        for unit in range(1, 6):
            counter.assign(unit)
            events.append(("unit", unit, loop.save_due(unit)))
            yield unit

    stopped = run.drive(units, total=5, start=0, save_every=2,
                        saved=lambda unit, loop: events.append(
                            ("saved", unit, run.last_saved, loop.stopped)),
                        end=lambda unit, reason: events.append(("end", unit, reason)),
                        desc="encoder", unit="epoch")
    assert stopped == "completed"
    # Each checkpoint is recorded once; the last one already knows why the loop stops.
    assert [event for event in events if event[0] != "unit"] == [
        ("saved", 2, 2, None), ("saved", 4, 4, None), ("saved", 5, 5, "completed"),
        ("end", 5, "completed")]
    assert [event[2] for event in events if event[0] == "unit"] == [False, True, False, True, True]
    saved = sorted(path.name for path in (tmp_path / "run" / CHECKPOINT_DIR).glob("ckpt-*.index"))
    assert saved == ["ckpt-2.index", "ckpt-4.index", "ckpt-5.index"]

    # A rerun of the finished run restores unit 5 and trains, saves and records nothing anew.
    del run
    rerun, _, restarted = _driven_run(tmp_path, "run")
    assert restarted.unit == 5
    calls = []
    assert rerun.drive(lambda loop: iter(()), total=5, start=5, save_every=2,
                       saved=lambda *args: calls.append(args),
                       end=lambda unit, reason: calls.append((unit, reason)),
                       desc="encoder", unit="epoch") == "completed"
    assert calls == [(5, "completed")]


def test_the_run_skeleton_stops_a_loop_whose_budget_is_used_up_after_saving_its_unit(tmp_path):
    run, counter, _ = _driven_run(tmp_path, "run", budget_s=1e-9)
    ends, saves = [], []

    def units(loop):
        for unit in range(1, 100):
            counter.assign(unit)
            yield unit

    stopped = run.drive(units, total=99, start=0, save_every=50,
                        saved=lambda unit, loop: saves.append((unit, loop.stopped)),
                        end=lambda unit, reason: ends.append((unit, reason)), desc="encoder",
                        unit="epoch")
    assert stopped == "time_budget" and ends == [(1, "time_budget")]
    assert saves == [(1, "time_budget")]
    assert run.latest_checkpoint.endswith("ckpt-1")
