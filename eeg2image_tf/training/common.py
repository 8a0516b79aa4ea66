"""The pieces of the run skeleton (:mod:`.run`): seeds, strategies, checkpoints, signals, divergence,
the time budget.

Checkpoints are never half-written: ``tf.train.Checkpoint.save`` writes its shards under a temporary
name and renames them, and ``CheckpointManager`` replaces its ``checkpoint`` index file atomically, so a
``kill -9`` at any moment leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from ..config import COLLECTIVE_TIMEOUT_S
from ..errors import CheckpointError, Eeg2ImageError, TrainingDivergedError, TrainingInterrupted
from ..io_utils import progress_bar
from .distributed import check_tf_config


def set_seeds(seed: int) -> None:
    """Seed Python, numpy and TensorFlow (the original seeds numpy and TF with 45)."""
    keras.utils.set_random_seed(seed)


# The process's MultiWorkerMirroredStrategy and its timeout: TensorFlow configures a process's
# collectives once, so every training stage of one process (the pipeline's three) shares one.
_MULTI_WORKER: dict[str, object] = {}


def make_strategy(name: str = "auto", collective_timeout_s: float = COLLECTIVE_TIMEOUT_S):
    """Return a ``tf.distribute`` strategy.

    ``auto``: MirroredStrategy over the visible GPUs when there is any, else the
    default strategy; ``mirrored``: MirroredStrategy over all visible GPUs (or the logical CPU devices
    when there is no GPU); ``multiworker``: MultiWorkerMirroredStrategy configured by ``TF_CONFIG``
    (:mod:`.distributed`), each collective waiting at most ``collective_timeout_s`` for its peers;
    ``default``: no distribution.
    """
    name = name.lower()
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        cross_device = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device)
    if name == "multiworker":
        if _MULTI_WORKER:
            if _MULTI_WORKER["timeout"] != float(collective_timeout_s):
                raise Eeg2ImageError(f"--collective-timeout-s {collective_timeout_s}: this process's "
                                     f"workers already wait {_MULTI_WORKER['timeout']} s")
            return _MULTI_WORKER["strategy"]
        check_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=float(collective_timeout_s))
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except tf.errors.UnknownError as exc:    # the task's port is taken, or its host unknown
            raise Eeg2ImageError(f"TF_CONFIG: this task cannot serve its cluster address "
                                 f"({str(exc).strip().splitlines()[0]}): is its port in use?") from None
        _MULTI_WORKER.update(strategy=strategy, timeout=float(collective_timeout_s))
        return strategy
    if name == "default":
        return tf.distribute.get_strategy()
    raise Eeg2ImageError(f"unknown strategy {name!r}: use auto, mirrored, multiworker or default")


class SignalGuard:
    """Turn SIGINT/SIGTERM into a flag that the training loop polls between steps.

    The loop then saves a checkpoint and raises :class:`TrainingInterrupted`; a second signal while
    saving is ignored so the save cannot be cut in half by an impatient Ctrl-C.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.received is None:
            self.received = signum

    def __enter__(self) -> "SignalGuard":
        # Signal handlers can only be installed from the main thread (tests may run loops elsewhere).
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def triggered(self) -> bool:
        return self.received is not None

    def interrupted(self, where: str, checkpoint_path: Optional[str]) -> TrainingInterrupted:
        name = signal.Signals(self.received).name if self.received else "signal"
        saved = f"checkpoint saved to {checkpoint_path}" if checkpoint_path else "no checkpoint saved"
        return TrainingInterrupted(
            f"{name} received at {where}: {saved}; rerun the same command to resume",
            128 + int(self.received or signal.SIGINT))


def check_finite(losses: Mapping[str, float], where: str, last_checkpoint: Optional[str]) -> None:
    """Stop with a clear error when a loss is NaN or Inf (the last good checkpoint stays)."""
    for name, value in losses.items():
        if not math.isfinite(float(value)):
            kept = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint yet"
            raise TrainingDivergedError(f"{name} became {float(value)} at {where}; {kept}")


def make_checkpoint_manager(checkpoint, directory: str | Path, max_to_keep: Optional[int]):
    return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)


def restore_latest(checkpoint, manager, optional: Sequence[str] = (),
                   without_optional=None) -> Optional[str]:
    """Restore the manager's latest checkpoint into ``checkpoint``; return its path or None.

    Every object written is expected back (``assert_existing_objects_matched``): a checkpoint of
    another architecture fails here instead of silently training from a half-restored state.
    ``optional`` names objects of ``checkpoint`` that a checkpoint written with other settings may
    lack (a mixed_float16 run's loss scales, resumed from a float32 checkpoint); when the latest
    lacks any of them it is restored into ``without_optional``, the same objects less those, which
    keep their initial values.
    """
    latest = manager.latest_checkpoint
    if not latest:
        return None
    if optional and without_optional is not None:
        stored = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(latest)}
        if not all(name in stored for name in optional):
            checkpoint = without_optional
    try:
        checkpoint.restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{latest}: cannot resume from this checkpoint ({first_line})") from None
    return latest


class Deadline:
    """A wall-clock budget; ``expired`` is False forever when the budget is None.

    ``clock`` gives seconds (``time.monotonic``; tests pass their own).
    """

    def __init__(self, budget_s: Optional[float], clock: Callable[[], float] = time.monotonic):
        self.budget_s = budget_s
        self._clock = clock
        self.start = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.start

    @property
    def expired(self) -> bool:
        return self.budget_s is not None and self.elapsed >= self.budget_s


def loop_bar(deadline: Deadline, total: int, initial: int, desc: str, unit: str):
    """The progress bar of a loop of ``total`` units that starts at unit ``initial``.

    Without a time budget it counts to ``total``. Under one, the budget is named after ``desc`` and
    the bar counts to what the budget leaves room for (:class:`BudgetBar`): a loop that the budget
    will stop long before ``total`` would otherwise show that total and an ETA far beyond the budget.
    """
    if deadline.budget_s is None:
        return progress_bar(total, initial=initial, desc=desc, unit=unit)
    budget = format(deadline.budget_s, ".0f" if deadline.budget_s >= 10 else "g")
    bar = progress_bar(total if initial >= total else None, initial=initial,
                       desc=f"{desc} (budget {budget} s)", unit=unit)
    return BudgetBar(bar, deadline, total)


class BudgetBar:
    """A loop's progress bar (tqdm) under a time budget; its total is re-estimated after each unit.

    The loop stops after the first unit that ends with the budget used up, so with ``t`` seconds
    per unit and ``r`` seconds left, ``ceil(r / t)`` units follow, never more than the loop's
    ``total``. ``t`` is measured from the end of this loop's first unit (which includes tracing) to
    the end of the latest, checkpoints and samples included; until it is known the bar has no total
    (and tqdm no ETA). A loop that the budget ends closes its bar full. Other attributes are the
    bar's.
    """

    def __init__(self, bar, deadline: Deadline, total: int):
        self.bar = bar
        self.deadline = deadline
        self.loop_total = total
        self._first: Optional[tuple[float, int]] = None     # (elapsed s, units) after one unit

    def estimate(self, done: int) -> Optional[int]:
        """The units the loop will have done when it stops, seen after ``done`` units; None after
        this loop's first unit while budget is left (no time per unit yet)."""
        elapsed = self.deadline.elapsed
        if self._first is None:
            self._first = (elapsed, done)
        if elapsed >= self.deadline.budget_s:
            return min(done, self.loop_total)
        first_elapsed, first_done = self._first
        if done == first_done:
            return None
        per_unit = (elapsed - first_elapsed) / (done - first_done)
        if per_unit <= 0:
            return self.loop_total
        left = self.deadline.budget_s - elapsed
        return min(self.loop_total, done + math.ceil(left / per_unit))

    def update(self, count: int = 1) -> None:
        estimate = self.estimate(self.bar.n + count)
        if estimate is not None:
            self.bar.total = estimate
        self.bar.update(count)

    def close(self) -> None:
        if self.deadline.expired:
            self.bar.total = self.bar.n
        self.bar.close()

    def __getattr__(self, name: str):
        return getattr(self.bar, name)

    def __str__(self) -> str:
        return str(self.bar)
