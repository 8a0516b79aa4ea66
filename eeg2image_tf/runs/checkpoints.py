"""The checkpoints of a run: their names, which ones exist and read, the step stored in one.

TensorFlow's ``checkpoint`` index file (``CheckpointManager``'s) is a convenience, not the truth:
which checkpoints a folder holds is read from their files (``ckpt-<n>.index`` with its data
shards), so a damaged or stale index never makes a run start again from step 0, and a checkpoint
whose data file was cut short is passed over for the newest one that reads
(:func:`newest_readable_checkpoint`, used both to resume training and to load a run's models).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import CheckpointError, Eeg2ImageError
from ..io_utils import atomic_write_text, read_json

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_INDEX = "checkpoint"          # CheckpointManager's index file inside CHECKPOINT_DIR
CHECKPOINT_NAME = "ckpt"                 # checkpoints are <dir>/ckpt-<n>
TEMPORARY_SUFFIX = "_temp"               # a save in progress: <dir>/ckpt-<n>_temp/
BEST_CHECKPOINT_FILE = "best_checkpoint.json"   # an encoder run's choice (select_encoder)
# Counters stored in our checkpoints: GAN runs count steps, encoder and classifier runs epochs.
STEP_COUNTER = "step"
EPOCH_COUNTER = "epoch"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def checkpoint_number(prefix: str | Path) -> int:
    """The number after the last ``-`` of a checkpoint prefix (``ckpt-12`` -> 12), else -1."""
    match = re.search(r"-(\d+)$", Path(prefix).name)
    return int(match.group(1)) if match else -1


def is_checkpoint_dir(directory: Path) -> bool:
    """True for a folder holding checkpoints itself (an index file or ``*.index`` files)."""
    return (directory / CHECKPOINT_INDEX).exists() or any(directory.glob("*.index"))


def checkpoint_prefix(path: str | Path, original: bool = False) -> str:
    """The prefix of the checkpoint that ``path`` names as a file: itself when ``<path>.index``
    exists (``.../ckpt-12``), else less its suffix when it is that index file (``.../ckpt-12.index``).

    Else a :class:`CheckpointError` worded for our loaders, which also take a run or checkpoint
    directory, or with ``original`` for the authors' checkpoints (a prefix or its directory).
    """
    path = Path(path)
    if Path(str(path) + ".index").exists():
        return str(path)
    if path.suffix == ".index" and path.exists():
        return str(path.with_suffix(""))
    if original:
        raise CheckpointError(f"{path}: no such checkpoint (expected a prefix with a .index file, "
                              "or a directory holding one)")
    raise CheckpointError(f"{path}: no such checkpoint, checkpoint directory or run directory")


def _complete_prefixes(directory: Path) -> list[Path]:
    """Prefixes of the checkpoints in ``directory`` whose ``.index`` and data files are both there
    (a crash between the two renames of a save leaves an index alone), oldest first: by the number
    in the name, then the name."""
    found = [index.with_suffix("") for index in directory.glob("*.index")]
    complete = [prefix for prefix in found if any(directory.glob(prefix.name + ".data-*"))]
    return sorted(complete, key=lambda prefix: (checkpoint_number(prefix), prefix.name))


def unreadable(prefix: str | Path) -> Optional[str]:
    """Why the checkpoint ``prefix`` does not read whole (every tensor), else None."""
    # Imported here, not above: this module is read by every command's --help, which must not wait
    # for TensorFlow.
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    # A file cut short raises IndexError ("Read less bytes than requested"), a damaged one an
    # OpError (DataLossError, ...).
    except (tf.errors.OpError, IndexError, ValueError, OSError) as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def newest_readable_checkpoint(directory: str | Path) -> Optional[str]:
    """The newest checkpoint in ``directory`` that reads whole; None when it holds none at all.

    Checkpoints are found by their files, not by TensorFlow's ``checkpoint`` index file, which a
    moved run may hold with stale absolute paths and a crash or an editor may have damaged. A newer
    checkpoint that does not read (a data file cut short) is passed over with one line on stderr
    naming it and the one used instead; a :class:`CheckpointError` when none reads.
    """
    directory = Path(directory)
    skipped: list[str] = []
    for prefix in reversed(_complete_prefixes(directory)):
        problem = unreadable(prefix)
        if problem is None:
            if skipped:
                print(f"warning: {'; '.join(skipped)}; using {prefix}, the newest checkpoint "
                      "that reads", file=sys.stderr)
            return str(prefix)
        skipped.append(f"{prefix} does not read ({problem})")
    if skipped:
        raise CheckpointError(f"{directory}: no checkpoint reads ({'; '.join(skipped)}); move "
                              "them away to start again")
    return None


def latest_checkpoint_in(directory: str | Path) -> str:
    """The newest checkpoint prefix in ``directory`` that reads (:func:`newest_readable_checkpoint`)."""
    latest = newest_readable_checkpoint(directory)
    if latest is None:
        raise CheckpointError(f"{directory}: no checkpoint in this directory")
    return latest


def remove_temporary_checkpoints(directory: str | Path) -> list[Path]:
    """Remove the folders a save cut short leaves behind (``ckpt-<n>_temp``: TensorFlow writes a
    checkpoint there, then renames it into place); return them."""
    removed = [path for path in Path(directory).glob(f"*{TEMPORARY_SUFFIX}*")
               if path.is_dir() and re.search(rf"-\d+{TEMPORARY_SUFFIX}", path.name)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def settle_checkpoints(directory: str | Path) -> Optional[str]:
    """Make ``directory`` ready for a training run to resume from and save into; return the
    checkpoint to resume from (None: none yet).

    Removes temporary folders of a save cut short, and rewrites TensorFlow's ``checkpoint`` index
    when it does not name the newest checkpoint that reads (damaged, stale after a move, or naming
    one cut short), listing the complete checkpoints up to that one: ``tf.train.CheckpointManager``
    then resumes from it and keeps counting ``max_to_keep`` over them, instead of starting again
    from step 0 over the old files.
    """
    # Imported here, not above: see unreadable.
    import tensorflow as tf

    directory = Path(directory)
    if not directory.is_dir():
        return None
    remove_temporary_checkpoints(directory)
    latest = newest_readable_checkpoint(directory)
    if latest is None:
        return None
    kept = [prefix for prefix in _complete_prefixes(directory)
            if (checkpoint_number(prefix), prefix.name) <= (checkpoint_number(latest),
                                                            Path(latest).name)]
    index = directory / CHECKPOINT_INDEX
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")        # a damaged index is reported below, in one line
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except (tf.errors.OpError, ValueError):
        state = None
    finally:
        logger.setLevel(level)
    if state is None and index.exists():
        print(f"warning: {index}: damaged; rewritten to name {Path(latest).name}, the newest "
              "checkpoint that reads", file=sys.stderr)
    listed = [Path(path) for path in state.all_model_checkpoint_paths] if state else []
    if state is None or Path(state.model_checkpoint_path) != Path(latest) or \
            listed != [Path(prefix) for prefix in kept]:
        # With their save times, which CheckpointManager needs to go on managing them (max_to_keep).
        lines = [f'model_checkpoint_path: "{Path(latest).name}"']
        lines += [f'all_model_checkpoint_paths: "{prefix.name}"' for prefix in kept]
        lines += [f"all_model_checkpoint_timestamps: {Path(f'{prefix}.index').stat().st_mtime}"
                  for prefix in kept]
        atomic_write_text(index, "\n".join(lines) + "\n")
    return latest


def kept_checkpoints(checkpoint_dir: str | Path) -> list[tuple[int, str]]:
    """``(step, prefix)`` of every complete checkpoint in ``checkpoint_dir``, by step.

    A checkpoint counts when both its ``.index`` and its data files exist (a crash between the two
    renames of a save leaves an index alone). The number after the last ``-`` is the step: our
    training loops save ``ckpt-<step>``.
    """
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no checkpoint directory")
    found = [(checkpoint_number(prefix), str(prefix)) for prefix in _complete_prefixes(directory)
             if checkpoint_number(prefix) >= 0]
    if not found:
        raise CheckpointError(f"{directory}: no complete checkpoints (ckpt-<step>.index + data)")
    return found


def checkpoint_step(prefix: str, counters: tuple[str, ...] = (STEP_COUNTER, EPOCH_COUNTER),
                    from_name: bool = False) -> Optional[int]:
    """The first of ``counters`` stored in the checkpoint ``prefix`` (our loops store ``step`` or
    ``epoch``); else, with ``from_name``, the number in its name; else None."""
    # Imported here, not above: see unreadable.
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    for counter in counters:
        if reader.has_tensor(counter + _VALUE_SUFFIX):
            return int(reader.get_tensor(counter + _VALUE_SUFFIX))
    if from_name:
        number = checkpoint_number(prefix)
        if number < 0:
            raise CheckpointError(f"{prefix}: no {' or '.join(counters)} variable and no number "
                                  "in its name")
        return number
    return None


def _read_json_as_checkpoint_error(path: Path) -> Any:
    try:
        return read_json(path)
    except Eeg2ImageError as exc:
        raise CheckpointError(str(exc)) from None


def best_checkpoint(run_dir: str | Path) -> str:
    """The prefix named by ``<run>/best_checkpoint.json``, found even if the run was moved."""
    run_dir = Path(run_dir)
    record_path = run_dir / BEST_CHECKPOINT_FILE
    record = _read_json_as_checkpoint_error(record_path)
    named = record.get("best_checkpoint") if isinstance(record, dict) else None
    if not isinstance(named, str) or not named:
        raise CheckpointError(f"{record_path}: no 'best_checkpoint' entry")
    named_path = Path(named)
    # select_encoder records a prefix inside this run's checkpoints/, as a path relative to where it
    # ran or absolute. Looking there by name first keeps a moved or copied run pointing at its own
    # checkpoint rather than at whatever now sits at the old path.
    candidates = [run_dir / CHECKPOINT_DIR / named_path.name, named_path]
    if not named_path.is_absolute():
        candidates.append(run_dir / named_path)
    for candidate in candidates:
        if Path(str(candidate) + ".index").exists():
            return str(candidate)
    raise CheckpointError(f"{record_path}: best checkpoint {named} does not exist")
