"""The skeleton every training loop runs in: the encoder's, the GAN's and the image classifier's.

A loop supplies its data, its step and its cadence; :class:`TrainingRun` supplies the rest, in the
same order for all three:

1. the wall-clock budget starts (it covers start-up and tracing too), the config is validated,
   the ``tf.distribute`` strategy chosen where asked, the run directory checked without writing
   anything (a run made with another config, or written by another process, is refused), and the
   seeds are set; the loop then reads its data and builds its models, so that a bad input is
   refused before the run directory is touched;
2. :meth:`TrainingRun.track`: the run directory is locked for this process
   (:func:`~eeg2image_tf.runs.lock_run`) and its ``config.json`` written, temporary folders of a
   save cut short are removed, the loop's ``tf.train.Checkpoint`` is managed in
   ``<run>/checkpoints`` and the newest checkpoint that reads is restored (every object written
   is expected back; :func:`~eeg2image_tf.runs.settle_checkpoints`);
3. :meth:`TrainingRun.loop`: inside it the TensorBoard writer of ``tensorboard/train`` is the
   default, SIGINT/SIGTERM only set a flag, and a progress bar counts the loop's units (epochs or
   steps; under a budget, towards what it leaves room for: :func:`.common.loop_bar`). After each unit the loop calls :meth:`RunLoop.end_of_unit`, which owns how every loop
   ends: None to go on; else the reason to stop (``"completed"`` once the last unit is done, else
   ``"interrupted"`` after a signal, else ``"time_budget"`` once the budget is used up), after
   the loop's own ``finish`` has saved the unit; after a signal it then raises the
   :class:`~eeg2image_tf.errors.TrainingInterrupted` naming the checkpoint;
4. :meth:`TrainingRun.save` writes a checkpoint numbered by the unit (once per unit; a save that
   fails, e.g. on a full disk, is one :class:`~eeg2image_tf.errors.CheckpointError` line and leaves
   no temporary folder), :meth:`TrainingRun.write_metrics` the run's ``metrics.json``.

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
import dataclasses
import re
import shutil
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import tensorflow as tf

from ..config import COLLECTIVE_TIMEOUT_S
from ..data import EEGSplits
from ..errors import CheckpointError, ConfigError, TrainingInterrupted
from ..io_utils import SilentBar, print_line
from ..runs import (CHECKPOINT_DIR, check_run_dir, check_run_unlocked, lock_run, prepare_run_dir,
                    read_metrics, remove_temporary_checkpoints, settle_checkpoints, summary_writer)
from ..runs import write_metrics as write_metrics_file
from .common import (Deadline, SignalGuard, loop_bar, make_checkpoint_manager, make_strategy,
                     restore_latest, set_seeds)
from .distributed import (COLLECTIVE_ERRORS, WorkerRole, agree_on_start, agree_on_stop,
                          worker_lost, worker_role)


class RunLoop:
    """What a loop consults between its units: the bar, the signal flag, the budget, the writer."""

    def __init__(self, total: int, unit: str, deadline: Deadline, guard: SignalGuard, bar, writer,
                 run):
        self.total = total
        self.unit = unit
        self.deadline = deadline
        self.guard = guard
        self.bar = bar
        self.writer = writer
        self._run = run

    def end_of_unit(self, done: int, finish: Callable[[str], Any]) -> Optional[str]:
        """After the loop's unit ``done``: None to go on; else why it stops (the module docstring),
        once ``finish(reason)`` has saved the unit (the loop's checkpoint and records; a unit saved
        already need not be saved again). After a signal this raises the
        :class:`~eeg2image_tf.errors.TrainingInterrupted` to exit with instead of returning.

        On several workers this is a collective: every worker calls it after the same unit.
        """
        reason = self.stop_reason(done)
        if reason is None:
            return None
        finish(reason)
        self.writer.flush()
        if reason == "interrupted":
            raise self.interrupted(f"{self.unit} {done}")
        if reason == "time_budget":
            self._run.log(f"time budget of {self.deadline.budget_s:g} s used up after {self.unit} "
                          f"{done} of {self.total}; rerun the same command to continue")
        return reason

    def stop_reason(self, done: int) -> Optional[str]:
        """Why to stop after ``done`` units, or None to go on (see the module docstring).

        On several workers this is a collective: every worker calls it after the same unit and all
        get the most urgent reason any of them has (:func:`~.distributed.agree_on_stop`).
        """
        if done >= self.total:
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
        self._force = force
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
        self._lock = None
        if self.writes:
            # Nothing is written before the loop has read its data (track): a refused run, or a
            # bad input found while reading, leaves no config.json behind.
            check_run_dir(config, self.dir, force)
            check_run_unlocked(self.dir)
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
        The chief first locks the run directory and records its config: the run's first write.
        """
        if self.writes:
            if self._lock is None:
                self._lock = lock_run(self.dir)
                prepare_run_dir(self.config, self.dir, self._force)
            settle_checkpoints(self.checkpoint_dir)
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
            where = f"at epoch {epoch + 1} of {epochs}" if epoch < epochs else \
                f"with all {epochs} epochs done"
            print(f"resuming {self.restored} {where}", file=sys.stderr)

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
            try:
                self.manager.save(checkpoint_number=unit)
            except (tf.errors.OpError, OSError) as exc:
                remove_temporary_checkpoints(self.checkpoint_dir)
                # TensorFlow's message ends with the system's reason: "...; No space left on device"
                text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                reason = re.sub(r"\s*\[Op:\w+\]$", "", text.rsplit("; ", 1)[-1])
                kept = (f"the latest one, {self.latest_checkpoint}, is kept"
                        if self.latest_checkpoint else "none was saved before")
                raise CheckpointError(
                    f"{self.checkpoint_dir}: checkpoint {unit} could not be written ({reason}); "
                    f"{kept}: make room and rerun the same command to resume") from None
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
             bar_total: Optional[int] = None, bar_unit: Optional[str] = None,
             progress: bool = True) -> Iterator[RunLoop]:
        """The writer, the signal guard and the progress bar around a loop of ``total`` units.

        ``bar_total`` and ``bar_unit`` count the bar in other units than the loop (the classifier's
        bar counts steps, its loop epochs); ``initial`` is where the bar starts.
        """
        with self._writer() as writer, SignalGuard() as guard:
            bar = loop_bar(self.deadline, total if bar_total is None else bar_total, initial,
                           desc + self.label, bar_unit or unit) if progress else SilentBar()
            try:
                yield RunLoop(total, unit, self.deadline, guard, bar, writer, self)
            except COLLECTIVE_ERRORS as exc:
                if not self.role.distributed:
                    raise
                where = f"{bar_unit or unit} {getattr(bar, 'n', '?')}"
                raise worker_lost(exc, self.role, where, self.latest_checkpoint) from None
            finally:
                bar.close()
                writer.flush()


@dataclasses.dataclass(frozen=True, eq=False)
class SettledConfig:
    """A training run's configuration with every choice it left open made, before the run exists.

    ``config``: validated, its open fields concrete (what ``config.json`` records); ``splits``: the
    EEG set the choices were made on, as read; ``note``: a line for the run's log about the
    normalisation chosen, or None.
    """

    config: Any
    splits: EEGSplits
    note: Optional[str]


@contextlib.contextmanager
def _default_writer(writer) -> Iterator[object]:
    with writer.as_default():
        yield writer
