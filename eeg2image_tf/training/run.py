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

On several workers (``--strategy multiworker``, :mod:`.distributed`) the same skeleton runs on every
worker with these differences: only the chief (:attr:`TrainingRun.writes`) writes the run directory
(config, metrics, TensorBoard events; the loops leave samples, figures and caches to it too); the
other workers save their checkpoint copies into a temporary folder, removed when the run object goes
(normal end, error or interpreter exit), and restore from the chief's ``checkpoints/`` (the run
directory must be visible to them at the same path to resume); every worker must restore the same
unit; the stop reason is agreed after every unit; a collective that fails because a peer is gone
becomes one :class:`~.distributed.WorkerLostError` line.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import tensorflow as tf

from ..config import COLLECTIVE_TIMEOUT_S
from ..errors import ConfigError, TrainingInterrupted
from ..io_utils import SilentBar, print_line, progress_bar
from ..runs import CHECKPOINT_DIR, prepare_run_dir, read_metrics, summary_writer
from ..runs import write_metrics as write_metrics_file
from .common import (Deadline, SignalGuard, make_checkpoint_manager, make_strategy, restore_latest,
                     set_seeds)
from .distributed import (COLLECTIVE_ERRORS, WorkerRole, agree_on_start, agree_on_stop,
                          worker_lost, worker_role)


class RunLoop:
    """What a loop consults between its units: the bar, the signal flag, the budget, the writer."""

    def __init__(self, total: int, deadline: Deadline, guard: SignalGuard, bar, writer, run,
                 signal_before_end: bool = False):
        self.total = total
        self.deadline = deadline
        self.guard = guard
        self.bar = bar
        self.writer = writer
        self._run = run
        self._signal_before_end = signal_before_end

    def stop_reason(self, done: int) -> Optional[str]:
        """Why to stop after ``done`` units, or None to go on (see the module docstring).

        On several workers this is a collective: every worker calls it after the same unit and all
        get the most urgent reason any of them has (:func:`~.distributed.agree_on_stop`).
        """
        if self._signal_before_end and self.guard.triggered:
            reason = "interrupted"
        elif done >= self.total:
            reason = "completed"
        elif self.guard.triggered:
            reason = "interrupted"
        elif self.deadline.expired:
            reason = "time_budget"
        else:
            reason = None
        return agree_on_stop(self._run.strategy, self._run.role, reason)

    def interrupted(self, where: str) -> TrainingInterrupted:
        """The exception to raise after a signal, naming ``where`` and the latest checkpoint.

        A worker that got no signal itself stops because another one did (agreed): it says so and
        exits with 130.
        """
        if not self.guard.triggered and self._run.role.distributed:
            saved = self._run.latest_checkpoint or "no checkpoint"
            return TrainingInterrupted(
                f"{self._run.role.label}: stopped at {where} with the other workers (a signal on "
                f"one of them); checkpoint saved to {saved}; rerun the same command to resume", 130)
        return self.guard.interrupted(where, self._run.latest_checkpoint)


class TrainingRun:
    """A training run's directory, seeds, strategy, checkpoints, metrics and loop context.

    Args:
        config: the loop's frozen config; ``config.run`` is the run directory, ``config.seed`` the
            seed, ``config.collective_timeout_s`` (when it has one) the multi-worker wait,
            ``config.batch_size`` (when it has one) the global batch, refused unless it divides
            over the replicas.
        force: accept a config that differs from the run's ``config.json``.
        budget_s: the wall-clock budget (None: none).
        strategy: a ``make_strategy`` name, or None for loops that run without one.
    """

    def __init__(self, config: Any, force: bool = False, budget_s: Optional[float] = None,
                 strategy: Optional[str] = None):
        self.deadline = Deadline(budget_s)
        self.config = config.validate()
        # The strategy before anything else: a multi-worker strategy configures TensorFlow's runtime,
        # and only then is it known whether this process may write the run directory.
        timeout = getattr(config, "collective_timeout_s", COLLECTIVE_TIMEOUT_S)
        self.strategy = make_strategy(strategy, timeout) if strategy is not None else None
        self.role: WorkerRole = worker_role(self.strategy)
        self.dir = Path(config.run)
        # Before the chief writes anything: a refused run leaves no config.json behind.
        replicas = self.strategy.num_replicas_in_sync if self.strategy is not None else 1
        batch_size = getattr(config, "batch_size", None)
        if batch_size is not None and batch_size % replicas:
            raise ConfigError(f"{config.run}: --batch-size {batch_size} (the global batch) does not "
                              f"divide over the {replicas} replicas; use a multiple of {replicas}")
        self._scratch: Optional[Path] = None
        if self.writes:
            prepare_run_dir(config, config.run, force)
        else:
            prefix = f"eeg2image-{self.role.task_type}{self.role.task_id}-"
            self._scratch = Path(tempfile.mkdtemp(prefix=prefix))
            weakref.finalize(self, shutil.rmtree, str(self._scratch), True)
        set_seeds(config.seed)
        self.manager = None
        self.restored: Optional[str] = None
        self.last_saved: Optional[int] = None

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (the chief, or the only process)."""
        return self.role.is_chief

    @property
    def checkpoint_dir(self) -> Path:
        """Where this process saves: ``<run>/checkpoints``, or a worker's temporary copy."""
        return (self.dir if self._scratch is None else self._scratch) / CHECKPOINT_DIR

    @property
    def label(self) -> str:
        """`` [worker 1/2]`` after a progress bar's name on several workers, else empty."""
        return f" [{self.role.label}]" if self.role.distributed else ""

    def log(self, text: str) -> None:
        """One log line, led by the task on several workers (``worker 1/2: ...``)."""
        print_line(self.role.prefix + text)

    # ----------------------------------------------------------------------------------------------
    # Checkpoints and metrics
    # ----------------------------------------------------------------------------------------------

    def track(self, checkpoint, max_to_keep: Optional[int],
              restore: Callable = restore_latest) -> Optional[str]:
        """Manage ``checkpoint`` in ``<run>/checkpoints`` and restore the latest one into it.

        ``restore(checkpoint, manager)`` (default :func:`~.common.restore_latest`) returns the
        restored path or None. Returns it too. Every worker restores the chief's latest checkpoint.
        """
        self.manager = make_checkpoint_manager(checkpoint, self.checkpoint_dir, max_to_keep)
        source = self.manager if self.writes else make_checkpoint_manager(
            checkpoint, self.dir / CHECKPOINT_DIR, max_to_keep)
        self.restored = restore(checkpoint, source)
        return self.restored

    def resumed_at(self, unit: int) -> None:
        """Record that the restored checkpoint holds ``unit`` units (a rerun saves nothing anew).

        On several workers, refuse a start where they restored different units.
        """
        self.last_saved = unit if self.restored else None
        if self.strategy is not None:
            agree_on_start(self.strategy, self.role, unit, str(self.dir / CHECKPOINT_DIR))

    def announce_resume(self, epoch: int, epochs: int) -> None:
        """One stderr line when an epoch-based run resumes."""
        if self.restored:
            print(f"resuming {self.restored} at epoch {epoch + 1} of {epochs}", file=sys.stderr)

    @property
    def latest_checkpoint(self) -> Optional[str]:
        """The run's latest checkpoint (on another worker: the chief's copy of this one's latest)."""
        latest = self.manager.latest_checkpoint if self.manager is not None else None
        if latest is None or self.writes:
            return latest
        return str(self.dir / CHECKPOINT_DIR / Path(latest).name)

    def save(self, unit: int) -> str:
        """A checkpoint numbered ``unit``; none if this unit is saved already. Returns the latest."""
        if self.last_saved != unit or self.manager.latest_checkpoint is None:
            # Every worker saves: collectives may take part in reading distributed variables.
            self.manager.save(checkpoint_number=unit)
            self.last_saved = unit
        return self.latest_checkpoint

    def read_metrics(self) -> dict[str, Any]:
        """The run's ``metrics.json`` (another worker reads the chief's when it can see it)."""
        return read_metrics(self.dir) if self.dir.is_dir() else {}

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        if self.writes:
            write_metrics_file(self.dir, metrics)

    # ----------------------------------------------------------------------------------------------
    # The loop
    # ----------------------------------------------------------------------------------------------

    def _writer(self):
        if self.writes:
            return summary_writer(self.dir)
        return _default_writer(tf.summary.create_noop_writer())

    @contextlib.contextmanager
    def loop(self, total: int, initial: int, desc: str, unit: str,
             bar_total: Optional[int] = None, progress: bool = True,
             signal_before_end: bool = False) -> Iterator[RunLoop]:
        """The writer, the signal guard and the progress bar around a loop of ``total`` units.

        ``bar_total`` counts the bar in other units than the loop (the classifier's bar counts
        steps, its loop epochs); ``initial`` is where the bar starts. ``signal_before_end``: a
        signal during the last unit still stops as "interrupted" (the encoder's rule).
        """
        with self._writer() as writer, SignalGuard() as guard:
            bar = progress_bar(total if bar_total is None else bar_total, initial=initial,
                               desc=desc + self.label, unit=unit) if progress else SilentBar()
            try:
                yield RunLoop(total, self.deadline, guard, bar, writer, self, signal_before_end)
            except COLLECTIVE_ERRORS as exc:
                if not self.role.distributed:
                    raise
                where = f"{unit} {getattr(bar, 'n', '?')}"
                raise worker_lost(exc, self.role, where, self.latest_checkpoint) from None
            finally:
                bar.close()
                writer.flush()


@contextlib.contextmanager
def _default_writer(writer) -> Iterator[object]:
    with writer.as_default():
        yield writer
