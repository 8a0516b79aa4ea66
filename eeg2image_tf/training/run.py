"""The skeleton every training loop runs in: the encoder's, the GAN's and the image classifier's.

A loop supplies its data, its step and its cadence; :class:`TrainingRun` supplies the rest, in the
same order for all three:

1. the wall-clock budget starts (it covers start-up and tracing too), the config is validated,
   the ``tf.distribute`` strategy chosen where asked, the seeds are set, and the run directory is
   checked without writing anything (a run made with another config, or written by another
   process, is refused); the loop then reads its data and builds its models, so that a bad input
   is refused before the run directory is touched;
2. :meth:`TrainingRun.start`: the run directory is locked for this process
   (:func:`~eeg2image_tf.runs.lock_run`) and its ``config.json`` written, temporary folders of a
   save cut short are removed, the loop's ``tf.train.Checkpoint`` is managed in
   ``<run>/checkpoints`` and the newest checkpoint that reads is restored (every object written
   is expected back; :func:`~eeg2image_tf.runs.settle_checkpoints`); it returns where the loop
   starts and the run's ``metrics.json`` as it stands;
3. :meth:`TrainingRun.drive` runs the loop to its end. The loop supplies its units as a generator
   that trains one unit (an epoch or a step) and yields the number of units done, and two
   callbacks: ``saved`` (what it records once a unit is checkpointed) and ``end`` (what it does
   once the loop stops). The run owns the rest: the TensorBoard writer of ``tensorboard/train``
   as the default, SIGINT/SIGTERM setting only a flag, a progress bar counting the units (under a
   budget, towards what it leaves room for: :func:`.common.loop_bar`), a checkpoint every
   ``save_every`` units and after the last, and how the loop ends: ``"completed"`` once the last
   unit is done, else ``"interrupted"`` after a signal, else ``"time_budget"`` once the budget is
   used up; the last unit is saved whatever the reason, and after a signal the
   :class:`~eeg2image_tf.errors.TrainingInterrupted` naming the checkpoint is raised;
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
from typing import Any, Callable, Iterator, Optional, Sequence

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
    """What a loop's units consult while :meth:`TrainingRun.drive` runs them: the progress bar, the
    TensorBoard writer (the default one already) and the checkpoint cadence."""

    def __init__(self, total: int, unit: str, save_every: int, deadline: Deadline,
                 guard: SignalGuard, bar, writer, run):
        self.total = total
        self.unit = unit
        self.save_every = save_every
        self.deadline = deadline
        self.guard = guard
        self.bar = bar
        self.writer = writer
        self._run = run
        # Why the loop stopped (see the module docstring), None while it runs.
        self.stopped: Optional[str] = None

    def save_due(self, done: int) -> bool:
        """Whether unit ``done`` gets a checkpoint: every ``save_every`` units, and the last one."""
        return done % self.save_every == 0 or done >= self.total

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
        set_seeds(config.seed)
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

    def start(self, checkpoint, counter, max_to_keep: Optional[int],
              optional: Sequence[str] = (), without_optional=None,
              announce_epochs: Optional[int] = None) -> "Start":
        """Manage ``checkpoint`` in ``<run>/checkpoints``, restore the latest one into it, and
        return where the loop starts: ``counter`` (a variable of ``checkpoint``: the units done)
        as restored, and the run's ``metrics.json``.

        The chief first locks the run directory and records its config: the run's first write.
        ``optional`` and ``without_optional``: objects of ``checkpoint`` an older checkpoint may
        lack, and the checkpoint without them (:func:`~.common.restore_latest`).
        ``announce_epochs``: the epochs an epoch-based run trains in all, for one stderr line when
        it resumes.
        Every worker restores the chief's latest checkpoint, and a start where the workers
        restored different units is refused.
        """
        if self.writes:
            if self._lock is None:
                self._lock = lock_run(self.dir)
                prepare_run_dir(self.config, self.dir, self._force)
            settle_checkpoints(self.checkpoint_dir)
        self.manager = make_checkpoint_manager(checkpoint, self.checkpoint_dir, max_to_keep)
        source = self.manager if self.writes else make_checkpoint_manager(
            checkpoint, self.dir / CHECKPOINT_DIR, max_to_keep)
        self.restored = restore_latest(checkpoint, source, optional, without_optional)
        unit = int(counter.numpy())
        # A rerun of a finished run saves nothing anew.
        self.last_saved = unit if self.restored else None
        if self.strategy is not None:
            agree_on_start(self.strategy, self.role, unit, str(self.dir / CHECKPOINT_DIR))
        if announce_epochs is not None and self.restored:
            total = announce_epochs
            where = f"at epoch {unit + 1} of {total}" if unit < total else \
                f"with all {total} epochs done"
            print(f"resuming {self.restored} {where}", file=sys.stderr)
        return Start(unit, self.read_metrics())

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

    def drive(self, units: Callable[[RunLoop], Iterator[int]], *, total: int, start: int,
              save_every: int, saved: Callable[[int, RunLoop], Any], desc: str, unit: str,
              end: Optional[Callable[[int, str], Any]] = None,
              bar_total: Optional[int] = None, bar_initial: Optional[int] = None,
              bar_unit: Optional[str] = None, progress: bool = True) -> str:
        """Run a loop of ``total`` units from unit ``start`` to its end; return why it stopped.

        ``units(loop)`` is a generator that trains one unit at a time and yields the number of
        units done after each (``start + 1``, ``start + 2``, ...), its counter already set. After
        each unit the run decides whether to stop (the module docstring: ``"completed"``,
        ``"interrupted"``, ``"time_budget"``; ``loop.stopped``, None while it goes on), saves a
        checkpoint when :meth:`RunLoop.save_due` or the loop stops and then calls
        ``saved(done, loop)`` once per checkpoint (a loop that trains no unit, e.g. a finished run
        rerun, saves its start only when it was not restored from it); then ``end(done, reason)``
        when given; after a signal the :class:`~eeg2image_tf.errors.TrainingInterrupted` naming
        the checkpoint is raised.
        ``bar_total``, ``bar_initial`` and ``bar_unit`` count the bar in other units than the loop
        (the classifier's bar counts steps, its loop epochs).

        On several workers every worker takes each of these steps after the same unit (the stop
        reason is agreed: :func:`~.distributed.agree_on_stop`).
        """
        with self._writer() as writer, SignalGuard() as guard:
            bar = loop_bar(self.deadline, total if bar_total is None else bar_total,
                           start if bar_initial is None else bar_initial, desc + self.label,
                           bar_unit or unit) if progress else SilentBar()
            loop = RunLoop(total, unit, save_every, self.deadline, guard, bar, writer, self)
            try:
                done = start
                for done in units(loop):
                    # The reason first, so that the last unit's save is the one ``saved`` sees
                    # with ``loop.stopped`` set.
                    loop.stopped = loop.stop_reason(done)
                    if loop.save_due(done) or loop.stopped is not None:
                        self.save(done)
                        saved(done, loop)
                        writer.flush()
                    if loop.stopped is not None:
                        break
                loop.stopped = loop.stopped or "completed"
                if self.last_saved != done:
                    self.save(done)
                    saved(done, loop)
                if end is not None:
                    end(done, loop.stopped)
            except COLLECTIVE_ERRORS as exc:
                if not self.role.distributed:
                    raise
                where = f"{bar_unit or unit} {getattr(bar, 'n', '?')}"
                raise worker_lost(exc, self.role, where, self.latest_checkpoint) from None
            finally:
                bar.close()
                writer.flush()
        if loop.stopped == "interrupted":
            raise loop.interrupted(f"{unit} {done}")
        if loop.stopped == "time_budget":
            self.log(f"time budget of {self.deadline.budget_s:g} s used up after {unit} {done} of "
                     f"{total}; rerun the same command to continue")
        return loop.stopped


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a loop starts (:meth:`TrainingRun.start`): ``unit``, the units done (0 for a new
    run), and ``metrics``, the run's ``metrics.json`` as it stands ({} for a new run)."""

    unit: int
    metrics: dict


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
