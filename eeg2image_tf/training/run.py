"""The skeleton every training loop runs in: the encoder's, the GAN's and the image classifier's.

A loop supplies its data, its step and its cadence; :class:`TrainingRun` supplies the rest, in the
same order for all three:

1. the wall-clock budget starts (it covers start-up and tracing too), the run directory is created
   with its ``config.json`` (a run made with another config is refused unless ``force``), the
   seeds are set and, where asked, the ``tf.distribute`` strategy chosen;
2. :meth:`TrainingRun.track`: the loop's ``tf.train.Checkpoint`` is managed in
   ``<run>/checkpoints`` and the latest checkpoint restored (every object written is expected
   back);
3. :meth:`TrainingRun.loop`: inside it the TensorBoard writer of ``tensorboard/train`` is the
   default, SIGINT/SIGTERM only set a flag, and a progress bar counts the loop's units (epochs or
   steps). After each unit the loop asks :meth:`RunLoop.stop_reason` whether to go on:
   ``"completed"`` once the last unit is done, else ``"interrupted"`` after a signal, else
   ``"time_budget"`` once the budget is used up;
4. :meth:`TrainingRun.save` writes a checkpoint numbered by the unit (once per unit),
   :meth:`TrainingRun.write_metrics` the run's ``metrics.json``, and :meth:`RunLoop.interrupted`
   is the :class:`~eeg2image_tf.errors.TrainingInterrupted` to raise after the last save.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..errors import TrainingInterrupted
from ..io_utils import SilentBar, progress_bar
from ..runs import CHECKPOINT_DIR, prepare_run_dir, read_metrics, summary_writer
from ..runs import write_metrics as write_metrics_file
from .common import (Deadline, SignalGuard, make_checkpoint_manager, make_strategy, restore_latest,
                     set_seeds)


class RunLoop:
    """What a loop consults between its units: the bar, the signal flag, the budget, the writer."""

    def __init__(self, total: int, deadline: Deadline, guard: SignalGuard, bar, writer, run):
        self.total = total
        self.deadline = deadline
        self.guard = guard
        self.bar = bar
        self.writer = writer
        self._run = run

    def stop_reason(self, done: int) -> Optional[str]:
        """Why to stop after ``done`` units, or None to go on (see the module docstring)."""
        if done >= self.total:
            return "completed"
        if self.guard.triggered:
            return "interrupted"
        if self.deadline.expired:
            return "time_budget"
        return None

    def interrupted(self, where: str) -> TrainingInterrupted:
        """The exception to raise after a signal, naming ``where`` and the latest checkpoint."""
        return self.guard.interrupted(where, self._run.latest_checkpoint)


class TrainingRun:
    """A training run's directory, seeds, strategy, checkpoints, metrics and loop context.

    Args:
        config: the loop's frozen config; ``config.run`` is the run directory, ``config.seed`` the
            seed.
        force: accept a config that differs from the run's ``config.json``.
        budget_s: the wall-clock budget (None: none).
        strategy: a ``make_strategy`` name, or None for loops that run without one.
    """

    def __init__(self, config: Any, force: bool = False, budget_s: Optional[float] = None,
                 strategy: Optional[str] = None):
        self.deadline = Deadline(budget_s)
        self.config = config
        self.dir: Path = prepare_run_dir(config, config.run, force)
        set_seeds(config.seed)
        self.strategy = make_strategy(strategy) if strategy is not None else None
        self.manager = None
        self.restored: Optional[str] = None
        self.last_saved: Optional[int] = None

    # ----------------------------------------------------------------------------------------------
    # Checkpoints and metrics
    # ----------------------------------------------------------------------------------------------

    def track(self, checkpoint, max_to_keep: Optional[int],
              restore: Callable = restore_latest) -> Optional[str]:
        """Manage ``checkpoint`` in ``<run>/checkpoints`` and restore the latest one into it.

        ``restore(checkpoint, manager)`` (default :func:`~.common.restore_latest`) returns the
        restored path or None. Returns it too.
        """
        self.manager = make_checkpoint_manager(checkpoint, self.dir / CHECKPOINT_DIR, max_to_keep)
        self.restored = restore(checkpoint, self.manager)
        return self.restored

    def resumed_at(self, unit: int) -> None:
        """Record that the restored checkpoint holds ``unit`` units (a rerun saves nothing anew)."""
        self.last_saved = unit if self.restored else None

    def announce_resume(self, epoch: int, epochs: int) -> None:
        """One stderr line when an epoch-based run resumes."""
        if self.restored:
            print(f"resuming {self.restored} at epoch {epoch + 1} of {epochs}", file=sys.stderr)

    @property
    def latest_checkpoint(self) -> Optional[str]:
        return self.manager.latest_checkpoint if self.manager is not None else None

    def save(self, unit: int) -> str:
        """A checkpoint numbered ``unit``; none if this unit is saved already. Returns the latest."""
        if self.last_saved != unit or self.manager.latest_checkpoint is None:
            self.manager.save(checkpoint_number=unit)
            self.last_saved = unit
        return self.manager.latest_checkpoint

    def read_metrics(self) -> dict[str, Any]:
        return read_metrics(self.dir)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_metrics_file(self.dir, metrics)

    # ----------------------------------------------------------------------------------------------
    # The loop
    # ----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def loop(self, total: int, initial: int, desc: str, unit: str,
             bar_total: Optional[int] = None, progress: bool = True) -> Iterator[RunLoop]:
        """The writer, the signal guard and the progress bar around a loop of ``total`` units.

        ``bar_total`` counts the bar in other units than the loop (the classifier's bar counts
        steps, its loop epochs); ``initial`` is where the bar starts.
        """
        with summary_writer(self.dir) as writer, SignalGuard() as guard:
            bar = progress_bar(total if bar_total is None else bar_total, initial=initial,
                               desc=desc, unit=unit) if progress else SilentBar()
            try:
                yield RunLoop(total, self.deadline, guard, bar, writer, self)
            finally:
                bar.close()
                writer.flush()
