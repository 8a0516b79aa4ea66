"""The run directory contract: every file and folder name of a run, in one place.

Every command writes into a run directory. Its names are defined here and nowhere else, together
with what is needed to use them: creating a run (:func:`prepare_run_dir`, which refuses to mix two
configs in one run, and :func:`lock_run`, which lets one process at a time write it), reading its
config, finding its checkpoints and the step or epoch stored in one (:mod:`.checkpoints`), finding
the image folders a run names, and opening a run of each kind (:class:`EncoderRun`,
:class:`ClassifierRun`, :class:`GanRun`, :class:`PipelineRun`) as the paths of its parts.
Loading the models inside a run is :mod:`eeg2image_tf.checkpoints`' business.

Layouts (``<run>`` is a command's ``--run``)::

    every run          config.json, checkpoints/ (ckpt-<n>.index/.data-*, checkpoint,
                       model.json), tensorboard/train/, metrics.json, .lock (its writer)
    encoder run        best_checkpoint.json, select_config.json, tsne.png, tensorboard/projector/
    classifier run     classes.json
    GAN run            conditions.npz, samples/step_<NNNNNN>.png and latest.png, figures/
                       (generated_grid.png, loss_curves.png, tsne.png, nearest_training.png,
                       stimuli.png, conditional_curve.png), curve.json and curve_config.json
                       (curve_avg<k>.json, ... with --average k), tensorboard/curve/,
                       tensorboard/eval/
    averaged GAN run   config.json, checkpoints/, average.json
    generated images   <Class>/<Class>_<k>.jpg, manifest.csv, generate_config.json
    SavedModel         saved_model.pb, variables/, signature.json, README.txt
    pipeline run       config.json, pipeline.json, encoder/, image_classifier/, gan/, generated/,
                       saved_model/
    data root          eeg/<set>/data.pkl (or data.npz), images/train/<Class>/, images/test/<Class>/
                       (and images/val/<Class>/ for sets with a validation split)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator, Optional, TypeVar

from ..config import GanTrainConfig
from ..errors import ConfigError, Eeg2ImageError
from ..io_utils import FolderLock, atomic_write_json, check_unlocked, read_json
# The checkpoints of a run (checkpoints.py), part of the run-directory contract.
from .checkpoints import (BEST_CHECKPOINT_FILE, CHECKPOINT_DIR, CHECKPOINT_INDEX, CHECKPOINT_NAME,
                          EPOCH_COUNTER, STEP_COUNTER, TEMPORARY_SUFFIX,
                          _read_json_as_checkpoint_error, best_checkpoint, checkpoint_number,
                          checkpoint_prefix, checkpoint_step, is_checkpoint_dir, kept_checkpoints,
                          latest_checkpoint_in, newest_readable_checkpoint,
                          remove_temporary_checkpoints, settle_checkpoints, unreadable)

C = TypeVar("C")

# Every run
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"                      # its one writer's lock (lock_run)
MODEL_FILE = "model.json"                # architecture sizes beside a checkpoint
METRICS_FILE = "metrics.json"
TENSORBOARD_DIR = "tensorboard"
TRAIN_EVENTS = "train"                   # tensorboard/train/
# Encoder runs
SELECT_CONFIG_FILE = "select_config.json"
TSNE_FILE = "tsne.png"
PROJECTOR_DIR = Path(TENSORBOARD_DIR) / "projector"
PROJECTOR_METADATA = "metadata.tsv"
PROJECTOR_CONFIG = "projector_config.pbtxt"
PROJECTOR_CHECKPOINT = "embedding.ckpt"
# Image classifier runs
CLASSES_FILE = "classes.json"
# GAN runs
CONDITIONS_FILE = "conditions.npz"
SAMPLES_DIR = "samples"
LATEST_SAMPLE = "latest.png"
FIGURES_DIR = "figures"
GRID_FILE = "generated_grid.png"
STIMULI_FILE = "stimuli.png"             # generated images beside each trial's stimulus
LOSS_CURVES_FILE = "loss_curves.png"
NEAREST_TRAINING_FILE = "nearest_training.png"   # generated images beside their nearest training ones
CURVE_FILE = "curve.json"
CURVE_CONFIG_FILE = "curve_config.json"
CURVE_FIGURE = "conditional_curve.png"
CURVE_EVENTS = "curve"                   # tensorboard/curve/
EVAL_EVENTS = "eval"                     # tensorboard/eval/: evaluate's headline numbers
AVERAGE_FILE = "average.json"
# Generated image folders
MANIFEST_FILE = "manifest.csv"
GENERATE_CONFIG_FILE = "generate_config.json"
# SavedModel exports
SAVED_MODEL_FILE = "saved_model.pb"
SIGNATURE_FILE = "signature.json"
EXPORT_README = "README.txt"
# Everything an export folder holds: tf.saved_model.save's entries and ours.
EXPORT_ENTRIES = (SAVED_MODEL_FILE, "variables", "assets", "fingerprint.pb", SIGNATURE_FILE,
                  EXPORT_README)
# Pipeline runs: one sub-directory per stage
PIPELINE_STATE_FILE = "pipeline.json"
PIPELINE_ENCODER_DIR = "encoder"
PIPELINE_CLASSIFIER_DIR = "image_classifier"
PIPELINE_GAN_DIR = "gan"
PIPELINE_SELECTED_GAN_DIR = "gan_selected"     # the checkpoint the select_gan stage chose
PIPELINE_GENERATED_DIR = "generated"
PIPELINE_SAVED_MODEL_DIR = "saved_model"
# The data root
EEG_DIR = "eeg"
EEG_FILE = "data.pkl"
EEG_NPZ_FILE = "data.npz"                # the same set in our format (prepare_data --convert, --eegcvpr40)
IMAGES_DIR = "images"
TRAIN_SPLIT = "train"
TEST_SPLIT = "test"
VAL_SPLIT = "val"


# --------------------------------------------------------------------------------------------------
# Creating a run and reading its config
# --------------------------------------------------------------------------------------------------

def save_config(config: Any, run_dir: str | Path, filename: str = CONFIG_FILE) -> Path:
    return config.save(Path(run_dir) / filename)


def load_config(cls: type[C], run_dir: str | Path, filename: str = CONFIG_FILE) -> C:
    return cls.load(Path(run_dir) / filename)


def check_run_dir(config: Any, run_dir: str | Path, force: bool = False,
                  filename: str = CONFIG_FILE) -> Path:
    """Refuse, writing nothing, what :func:`prepare_run_dir` would refuse: a ``run_dir`` that is
    not a directory, or that holds another config (:meth:`~eeg2image_tf.config.Config.check_record`)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a directory; choose another "
                          f"{config.location_flag}")
    config.check_record(run_dir / filename, force)
    return run_dir


def prepare_run_dir(config: Any, run_dir: str | Path, force: bool = False,
                    filename: str = CONFIG_FILE) -> Path:
    """Create ``run_dir`` and record ``config`` in it, refusing to mix two configs in one run.

    Paths in the config (``run`` itself) are compared as given; a changed resumable field
    (``RESUMABLE_FIELDS``) is accepted and the new value recorded.
    """
    run_dir = check_run_dir(config, run_dir, force, filename)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / filename)
    return run_dir


def check_output_folder(folder: str | Path, flag: str, command: str,
                        entries: Optional[tuple[str, ...]] = None,
                        record: Optional[str] = None) -> None:
    """Refuse an output folder holding what ``command`` did not write, which it would mix with its
    own files or replace: a file in its place; with ``entries``, any name outside them; with
    ``record`` (the file ``command`` leaves in every folder it writes), any content without it.
    Hidden names (locks, temporary files) are not counted."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a directory; choose another {flag}")
    names = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))
    foreign = [name for name in names if name not in entries] if entries is not None else \
        (names if names and record is not None and record not in names else [])
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"{folder}: holds files {command} did not write ({shown}); choose another "
                          f"{flag}")


def check_export_folder(out: str | Path, run: Optional[str | Path], force: bool = False) -> None:
    """Refuse an export folder (:func:`check_output_folder`), or, unless ``force``, one holding the
    export of another GAN run than ``run`` (None: the authors' checkpoints)."""
    out = Path(out)
    check_output_folder(out, "--out", "export", entries=EXPORT_ENTRIES)
    signature = out / SIGNATURE_FILE
    if force or not signature.is_file():
        return
    try:
        recorded = read_json(signature)["provenance"].get("run")
    except (Eeg2ImageError, KeyError, TypeError, AttributeError):
        recorded = "an unreadable signature.json"
    wanted = str(Path(run).resolve()) if run else None
    if recorded != wanted:
        raise ConfigError(f"{out}: holds the export of {recorded or 'the original checkpoints'}; "
                          "use another --out, or --force to replace it")


def lock_run(run_dir: str | Path, flag: str = "--run") -> FolderLock:
    """Hold ``run_dir`` for this process's writes (created when missing): a second process that
    would write it is refused with one line naming this one (:class:`~eeg2image_tf.io_utils.FolderLock`)."""
    return FolderLock(Path(run_dir) / LOCK_FILE, f"use another {flag}")


def check_run_unlocked(run_dir: str | Path, flag: str = "--run") -> None:
    """Refuse, as :func:`lock_run` would, a run another process holds; take nothing."""
    check_unlocked(Path(run_dir) / LOCK_FILE, f"use another {flag}")


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``<run>/metrics.json``, or an empty dict when the run has none yet."""
    path = Path(run_dir) / METRICS_FILE
    return read_json(path) if path.exists() else {}


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    return atomic_write_json(Path(run_dir) / METRICS_FILE, metrics)


@contextlib.contextmanager
def summary_writer(run_dir: str | Path, name: str = TRAIN_EVENTS) -> Iterator[object]:
    """A TensorBoard writer for ``<run>/tensorboard/<name>``, set as default inside the block."""
    # Imported here, not above: this module is read by every command's --help, which must not wait
    # for TensorFlow.
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(Path(run_dir) / TENSORBOARD_DIR / name))
    with writer.as_default():
        yield writer
    writer.flush()
    writer.close()


# --------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------

def image_split_folder(images: str | Path, split: str, sibling: bool = True) -> Optional[Path]:
    """The ``split`` folder (``train`` or ``test``) of the images a run names.

    Runs store either spelling: the images root (``data/images``: its ``<split>`` folder) or one
    split folder itself (``data/images/train``: itself for ``train``, and with ``sibling`` its
    sibling ``<split>`` folder). None when there is none.

    Generation and evaluation look beside the folder (``sibling``); training does not
    (:func:`training_image_folder`).
    """
    images = Path(images)
    candidates = (images / split, images.parent / split) if sibling else (images / split,)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if split == TRAIN_SPLIT and images.is_dir() and images.name == TRAIN_SPLIT:
        return images
    return None


def stimulus_roots(images: str | Path, split: str) -> tuple[Path, ...]:
    """Where the stimuli of a split's trials (a set's ``image_<split>``, relative paths) are looked
    for: the run's ``split`` image folder, then the images root itself."""
    images = Path(images)
    root = images.parent if images.name in (TRAIN_SPLIT, TEST_SPLIT, VAL_SPLIT) else images
    roots = [image_split_folder(images, split), root / split, root]
    unique: list[Path] = []
    for candidate in roots:
        if candidate is not None and candidate not in unique:
            unique.append(candidate)
    return tuple(unique)


def training_image_folder(images: str | Path) -> Path:
    """The folder ``train_gan`` trains on: ``<images>/train`` when it exists, else ``images`` itself
    (the training folder, or any folder of class folders, given directly), never a sibling."""
    return image_split_folder(images, TRAIN_SPLIT, sibling=False) or Path(images)


# --------------------------------------------------------------------------------------------------
# Runs of each kind
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
    """The parts every run has."""

    dir: Path

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.dir / CHECKPOINT_DIR

    @property
    def metrics(self) -> Path:
        return self.dir / METRICS_FILE

    def events(self, name: str = TRAIN_EVENTS) -> Path:
        """TensorBoard events of ``name`` (``train``, ``curve``, ...)."""
        return self.dir / TENSORBOARD_DIR / name


@dataclasses.dataclass(frozen=True)
class EncoderRun(Run):
    @property
    def best_checkpoint_record(self) -> Path:
        return self.dir / BEST_CHECKPOINT_FILE

    @property
    def tsne(self) -> Path:
        return self.dir / TSNE_FILE

    @property
    def projector(self) -> Path:
        return self.dir / PROJECTOR_DIR


@dataclasses.dataclass(frozen=True)
class ClassifierRun(Run):
    @property
    def classes(self) -> Path:
        return self.dir / CLASSES_FILE


@dataclasses.dataclass(frozen=True)
class GanRun(Run):
    """A GAN run of ``train_gan`` (or ``average_checkpoints``); ``config`` is its GanTrainConfig."""

    config: Optional[GanTrainConfig] = None

    @classmethod
    def open(cls, run_dir: str | Path, named_by_run: bool = False) -> "GanRun":
        """The run at ``run_dir`` with its config read (a :class:`ConfigError` when it has none).

        ``named_by_run``: a missing ``config.json`` is reported as a ``--run`` that names no GAN run.
        """
        run_dir = Path(run_dir)
        if named_by_run and not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(f"{run_dir / CONFIG_FILE}: not found; --run must be a GAN run "
                              "directory of train_gan")
        return cls(dir=run_dir, config=load_config(GanTrainConfig, run_dir))

    @property
    def conditions(self) -> Path:
        return self.dir / CONDITIONS_FILE

    @property
    def samples(self) -> Path:
        return self.dir / SAMPLES_DIR

    def sample(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    @property
    def latest_sample(self) -> Path:
        return self.samples / LATEST_SAMPLE

    @property
    def figures(self) -> Path:
        return self.dir / FIGURES_DIR

    @property
    def average_record(self) -> Path:
        return self.dir / AVERAGE_FILE

    def training_events(self) -> Path:
        """The TensorBoard events of the training that made this run's generator: its own, or for
        a run of ``average_checkpoints`` (``average.json``) those of its source run where that is
        still there."""
        if self.average_record.exists():
            record = read_json(self.average_record)
            source = record.get("source_run") if isinstance(record, dict) else None
            if source and (Path(source) / TENSORBOARD_DIR / TRAIN_EVENTS).is_dir():
                return Path(source) / TENSORBOARD_DIR / TRAIN_EVENTS
        return self.events()

    @property
    def images(self) -> Optional[Path]:
        """The image folder the GAN was trained on, as its config names it."""
        return Path(self.config.images) if self.config is not None and self.config.images else None

    def default_classifier(self) -> Path:
        """Where a pipeline puts the image classifier beside this run: ``<run>/../image_classifier``."""
        return self.dir.parent / PIPELINE_CLASSIFIER_DIR

    def curve_records(self) -> list[Path]:
        """The run's curve files (``curve.json``, ``curve_avg<k>.json``), without their settings."""
        stem = Path(CURVE_FILE).stem
        config_stem = Path(CURVE_CONFIG_FILE).stem
        return [path for path in sorted(self.dir.glob(f"{stem}*.json"))
                if not path.name.startswith(config_stem)]

    def recorded_classifier_runs(self) -> list[Path]:
        """Classifier runs that earlier evaluations of this run used, newest record first.

        Read from the run's own records: ``metrics.json`` (``evaluation.classifier.run``, written
        by ``evaluate``) and the curves' ``curve*.json`` (``settings.classifier``, written by
        ``curve`` relative to the run's folder, or absolute in curves written before).
        """
        records: list[tuple[float, Path]] = []
        candidates = [(self.metrics, ("evaluation", "classifier", "run"), Path())]
        candidates += [(path, ("settings", "classifier"), self.dir) for path in self.curve_records()]
        for path, keys, base in candidates:
            if not path.is_file():
                continue
            try:
                value: Any = read_json(path)
            except Eeg2ImageError:
                continue        # an unreadable record is no provenance; evaluation reports the rest
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value not in ("", "<given>"):
                records.append((path.stat().st_mtime, Path(os.path.normpath(base / value))))
        ordered = [path for _, path in sorted(records, key=lambda item: -item[0])]
        return list(dict.fromkeys(ordered))

    def encoder_run_candidates(self) -> list[Path]:
        """Folders that may be the encoder's run: the config may name the run, its checkpoints/
        folder, or one checkpoint prefix."""
        encoder = self.config.encoder if self.config is not None else None
        if not encoder:
            return []
        path = Path(encoder)
        return [path, path.parent, path.parent.parent]


def _curve_suffix(average: int, conditions: str) -> str:
    return ("" if average == 1 else f"_avg{average}") + ("" if conditions == "test" else
                                                         f"_{conditions}")


def curve_names(average: int, conditions: str = "test") -> tuple[str, str, str]:
    """``(json file, figure file, TensorBoard sub-directory)`` of a curve averaging ``average``
    checkpoints, its images conditioned on the ``conditions`` split's trials."""
    suffix = _curve_suffix(average, conditions)
    return (f"{Path(CURVE_FILE).stem}{suffix}.json", f"{Path(CURVE_FIGURE).stem}{suffix}.png",
            f"{CURVE_EVENTS}{suffix}")


def curve_config_name(average: int, conditions: str = "test") -> str:
    """The settings file beside :func:`curve_names`' json file."""
    return f"{Path(CURVE_CONFIG_FILE).stem}{_curve_suffix(average, conditions)}.json"


# The stages of a pipeline run, in order: the keys of pipeline.json's "stages".
PIPELINE_STAGES = ("data", "encoder", "select_encoder", "image_classifier", "gan", "select_gan",
                   "generate", "evaluate", "curve", "export")


@dataclasses.dataclass(frozen=True)
class PipelineRun(Run):
    """A pipeline run: one sub-directory per stage, and the data root it reads."""

    data_root: Path = Path("data")
    set_name: str = "char"

    @classmethod
    def from_config(cls, config: Any) -> "PipelineRun":
        """The run of a :class:`~eeg2image_tf.config.PipelineConfig`."""
        return cls(dir=Path(config.run), data_root=Path(config.data_root), set_name=config.set)

    @property
    def state(self) -> Path:
        return self.dir / PIPELINE_STATE_FILE

    @property
    def data_pkl(self) -> Path:
        return self.data_root / EEG_DIR / self.set_name / EEG_FILE

    @property
    def eeg_data(self) -> Path:
        """The set's EEG file: its ``data.npz`` when it has one (converted sets, the EEGCVPR40-shaped
        built-in set), else ``data.pkl``."""
        npz = self.data_root / EEG_DIR / self.set_name / EEG_NPZ_FILE
        return npz if npz.exists() else self.data_pkl

    @property
    def images(self) -> Path:
        return self.data_root / IMAGES_DIR

    @property
    def encoder_run(self) -> EncoderRun:
        return EncoderRun(self.dir / PIPELINE_ENCODER_DIR)

    @property
    def classifier_run(self) -> ClassifierRun:
        return ClassifierRun(self.dir / PIPELINE_CLASSIFIER_DIR)

    @property
    def gan_run(self) -> GanRun:
        return GanRun(self.dir / PIPELINE_GAN_DIR)

    @property
    def selected_gan_run(self) -> GanRun:
        """The GAN checkpoint the ``select_gan`` stage chose, as a run of its own."""
        return GanRun(self.dir / PIPELINE_SELECTED_GAN_DIR)

    @property
    def generated(self) -> Path:
        return self.dir / PIPELINE_GENERATED_DIR

    @property
    def saved_model(self) -> Path:
        return self.dir / PIPELINE_SAVED_MODEL_DIR
