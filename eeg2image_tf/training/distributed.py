"""What the training loops need to run on several workers (``--strategy multiworker``).

All of it is built on ``tf.distribute``: ``MultiWorkerMirroredStrategy`` configured by
``TF_CONFIG``, its collectives (all-reduce, all-gather) and its cluster resolver. The rules the loops
follow with it:

- **One global batch.** ``--batch-size`` is the batch over all replicas. Every worker builds the same
  dataset of global batches a single process would (same shuffle seed, same pairing of trials to
  images) and keeps its own rows of each (:func:`distribute_global_batches`): replica ``r`` of ``N``
  holds rows ``r * B/N .. (r + 1) * B/N - 1``. Random draws of a step (latents, DiffAugment) are made
  for the whole global batch and sliced alike, so N workers see exactly the numbers one process would.
- **Global losses.** Where a loss is not a sum over samples (the semi-hard triplet loss mines the
  whole batch, the mode-seeking term is a ratio of means, BatchNorm normalises with batch statistics),
  the replicas exchange what the one-process loss needs (:func:`gather_rows`, :func:`sum_over_replicas`,
  synchronised BatchNorm). A gradient through a collective is the sum of every replica's upstream
  gradient (TensorFlow's definition), so a loss that every replica computes alike is divided by the
  number of replicas before differentiation (:func:`replica_share`).
- **One writer.** The chief (``task.type == "chief"``, or worker 0 when there is no chief) writes the
  run directory; the other workers save their checkpoint copies to a temporary folder (collectives may
  take part in saving, so every worker saves) that is removed when they finish.
- **One decision to stop.** A signal, the time budget or the end reaches the workers at different
  moments; they agree on the most urgent reason after every unit (:func:`agree_on_stop`), so all of them
  save at the same step and leave together.
- **A bounded wait.** Every collective waits at most ``collective_timeout_s`` for its peers, and
  TensorFlow's health check aborts collectives when a peer is gone; the loops turn either into
  :class:`WorkerLostError` (one line, the run's latest checkpoint, how to resume).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

import tensorflow as tf

from ..errors import ConfigError, Eeg2ImageError

__all__ = [
    "WorkerLostError",
    "WorkerRole",
    "worker_role",
    "on_replica_device",
    "replica_rows",
    "sum_over_replicas",
    "gather_rows",
    "replica_share",
    "distribute_global_batches",
    "agree_on_stop",
    "agree_on_start",
    "same_on_every_worker",
    "wait_for_workers",
    "COLLECTIVE_ERRORS",
]

# What a collective raises when a peer died or timed out (abort by the health check, deadline,
# cancelled by the runtime after another op failed).
COLLECTIVE_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                     tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError,
                     tf.errors.FailedPreconditionError)

# Stop reasons by urgency: the workers stop for the largest code any of them has.
STOP_CODES = {None: 0, "time_budget": 1, "completed": 2, "interrupted": 3}
_REASONS = {code: reason for reason, code in STOP_CODES.items()}


class WorkerLostError(Eeg2ImageError):
    """A peer of a multi-worker run stopped answering (killed, crashed, unreachable)."""


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster: ``task_type`` and ``task_id`` as in ``TF_CONFIG``.

    A process without a cluster is the single chief of a one-worker run.
    """

    task_type: str = "worker"
    task_id: int = 0
    num_workers: int = 1
    is_chief: bool = True

    @property
    def distributed(self) -> bool:
        return self.num_workers > 1

    @property
    def label(self) -> str:
        """``worker 1/2``: what progress bars and log lines name (empty for a single process)."""
        return f"{self.task_type} {self.task_id}/{self.num_workers}" if self.distributed else ""

    @property
    def prefix(self) -> str:
        """``worker 1/2: `` before a log line (empty for a single process)."""
        return f"{self.label}: " if self.distributed else ""


def worker_role(strategy) -> WorkerRole:
    """The :class:`WorkerRole` of ``strategy`` (a single chief unless it is multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return WorkerRole()
    cluster = resolver.cluster_spec().as_dict()
    num_workers = sum(len(tasks) for job, tasks in cluster.items() if job in ("chief", "worker"))
    task_type, task_id = resolver.task_type or "worker", int(resolver.task_id or 0)
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and "chief" not in cluster)
    return WorkerRole(task_type, task_id, max(num_workers, 1), is_chief)


def check_tf_config() -> None:
    """Refuse a missing or malformed ``TF_CONFIG`` with one line (before TensorFlow dials anyone)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("--strategy multiworker needs the TF_CONFIG environment variable "
                          "(README: More than one machine)")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        tasks = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(tasks):
            raise ValueError(f"task index {task['index']} outside the {len(tasks)} "
                             f"{task['type']} addresses")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not a cluster and task description ({exc})") from None
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ConfigError(f"TF_CONFIG: MultiWorkerMirroredStrategy runs 'chief' and 'worker' tasks "
                          f"only, not {', '.join(unknown)}")


# --------------------------------------------------------------------------------------------------
# Inside a replica
# --------------------------------------------------------------------------------------------------

def on_replica_device(function: Callable) -> Callable:
    """``function`` run under its replica's device scope.

    A multi-worker replica with one device places its ops without a device scope, and an all-reduce
    of a tensor without a device has no destination ("destinations can not be empty"); naming the
    replica's device gives every tensor of the step one.
    """
    def scoped(*args, **kwargs):
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync < 2:
            return function(*args, **kwargs)
        # The worker's own devices; a global replica id counts the workers' replicas in turn.
        local = tf.distribute.get_strategy().extended.worker_devices
        replica_id = tf.get_static_value(context.replica_id_in_sync_group)
        device = local[int(replica_id) % len(local)] if replica_id is not None else local[0]
        with tf.device(device):
            return function(*args, **kwargs)
    return scoped


def replica_rows(global_batch) -> tuple:
    """``(first, global_batch)``: the rows of the global batch this replica holds (int32 scalars)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    replica_id = context.replica_id_in_sync_group if context is not None else 0
    total = tf.cast(global_batch, tf.int32)
    return tf.cast(replica_id, tf.int32) * (total // replicas), total


def _on_device(values):
    # A collective sends to its input's device: a step's input (from the dataset) may have none, a
    # copy made under on_replica_device's scope has the replica's.
    return tf.nest.map_structure(tf.identity, values)


def _replicas() -> tuple:
    context = tf.distribute.get_replica_context()
    return context, (context.num_replicas_in_sync if context is not None else 1)


def sum_over_replicas(values):
    """The sum of ``values`` (a tensor or a list) over the replicas; differentiable."""
    context, replicas = _replicas()
    if replicas < 2:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, _on_device(values))


def gather_rows(values):
    """Every replica's rows of ``values`` (a tensor or a list), in replica order: the global batch."""
    context, replicas = _replicas()
    if replicas < 2:
        return values
    return context.all_gather(_on_device(values), axis=0)


def replica_share(loss):
    """``loss / replicas`` for a loss every replica computes alike on the global batch.

    Its gradient through the collectives, summed over replicas by the optimizer, is then the
    gradient of ``loss`` (see the module docstring).
    """
    _, replicas = _replicas()
    return loss if replicas < 2 else loss / float(replicas)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

def distribute_global_batches(strategy, make_dataset: Callable[[], tf.data.Dataset],
                              global_batch: int):
    """A distributed dataset whose replica ``r`` gets rows ``r * b .. (r + 1) * b - 1`` of every
    global batch of ``make_dataset()`` (tuples of tensors with batch ``global_batch``, remainder
    dropped), ``b = global_batch / replicas``.

    Each worker builds the whole dataset (same seeds, hence the same batches as one process) and
    slices out its workers' rows; its local replicas then take consecutive per-replica batches.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ConfigError(f"batch size {global_batch} does not divide over the {replicas} replicas")
    if replicas == 1:
        return strategy.experimental_distribute_dataset(make_dataset())
    per_replica = global_batch // replicas

    def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        pipelines = context.num_input_pipelines
        local_replicas = replicas // pipelines
        rows = per_replica * local_replicas
        first = context.input_pipeline_id * rows
        dataset = make_dataset().map(lambda *batch: tuple(part[first:first + rows] for part in batch))
        if local_replicas > 1:
            dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
        return dataset

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(worker_dataset, options)


# --------------------------------------------------------------------------------------------------
# Agreement between workers
# --------------------------------------------------------------------------------------------------

class _MaxOverWorkers:
    """A compiled maximum of a few int64 values over the strategy's replicas (``ReduceOp`` has no
    MAX: every replica's values are gathered and the maximum taken on each)."""

    def __init__(self, strategy):
        self._strategy = strategy

        @tf.function(autograph=False)
        def reduce(values):
            def replica_max():
                gathered = tf.distribute.get_replica_context().all_gather(values[None], axis=0)
                return tf.reduce_max(gathered, axis=0)

            per_replica = strategy.run(on_replica_device(replica_max))
            return strategy.experimental_local_results(per_replica)[0]

        self._reduce = reduce

    def __call__(self, values: list[int]) -> list[int]:
        return [int(v) for v in self._reduce(tf.constant(values, tf.int64)).numpy()]


_REDUCERS: dict[int, _MaxOverWorkers] = {}


def _max_over_workers(strategy, values: list[int]) -> list[int]:
    reducer = _REDUCERS.get(id(strategy))
    if reducer is None or reducer._strategy is not strategy:
        reducer = _REDUCERS[id(strategy)] = _MaxOverWorkers(strategy)
    return reducer(values)


def agree_on_stop(strategy, role: WorkerRole, reason: Optional[str]) -> Optional[str]:
    """The most urgent of every worker's stop reason (``None``: go on), the same on all workers."""
    if not role.distributed:
        return reason
    return _REASONS[_max_over_workers(strategy, [STOP_CODES[reason]])[0]]


def agree_on_start(strategy, role: WorkerRole, unit: int, source: str) -> None:
    """Refuse a start where the workers restored different units (a worker that cannot see the
    chief's checkpoints would train another model and deadlock or diverge later)."""
    if not role.distributed:
        return
    largest, negated_smallest = _max_over_workers(strategy, [unit, -unit])
    if largest != -negated_smallest:
        raise ConfigError(
            f"{source}: the workers resume from different points ({-negated_smallest} to {largest}); "
            "every worker must see the chief's run directory at the same path (shared storage)")


def same_on_every_worker(strategy, role: WorkerRole, value: int) -> bool:
    """Whether every worker passed the same ``value`` (a collective: all must call it)."""
    if not role.distributed:
        return True
    largest, negated_smallest = _max_over_workers(strategy, [value, -value])
    return largest == -negated_smallest


def wait_for_workers(strategy, role: WorkerRole) -> None:
    """Return once every worker has called this (waiting at most the collective timeout)."""
    if role.distributed:
        _max_over_workers(strategy, [0])


def worker_lost(exc: Exception, role: WorkerRole, where: str,
                checkpoint: Optional[str]) -> WorkerLostError:
    """The one-line error for a collective that failed because a peer is gone."""
    first = str(getattr(exc, "message", exc)).strip().splitlines()
    detail = first[0] if first else type(exc).__name__
    saved = f"latest checkpoint {checkpoint}" if checkpoint else "no checkpoint yet"
    return WorkerLostError(f"{role.label}: lost the other workers at {where} ({detail[:160]}); "
                           f"{saved}; rerun the same command on every worker to resume")
