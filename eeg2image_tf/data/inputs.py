"""The paths a command's config names, checked before the command loads TensorFlow.

:func:`check_inputs` refuses, with the library call's own one-line error, an input that is not
there: the run the command reads (and its ``config.json``), the EEG file, the image folder, the
checkpoints, in the order the library call reads them; then a folder it would write that it may
not: not a directory or not writable, made with another config (``config.json``, unless
``force``), holding files the command did not write, or held by another process (its lock).
Commands call it between parsing and importing their library call, so that a wrong path costs
neither TensorFlow's start-up nor its C++ lines on stderr, and nothing is written before it passed.
It reads no EEG trials and no weights: what only those show (shapes, classes, a broken checkpoint)
stays the library call's to report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from ..config import (AverageConfig, CurveConfig, EncoderTrainConfig, EvaluateConfig, ExportConfig,
                      GanTrainConfig, GenerateConfig, ImageClassifierConfig, ImportOriginalConfig,
                      SelectEncoderConfig)
from ..io_utils import check_writable_dir
from ..runs import (CONFIG_FILE, GENERATE_CONFIG_FILE, TEST_SPLIT, TRAIN_SPLIT, GanRun, check_export_folder,
                    check_output_folder, check_run_dir, check_run_unlocked, checkpoint_prefix,
                    kept_checkpoints, load_config, training_image_folder)
from .images import list_image_folder, list_split_folders
from .thoughtviz import eeg_file


def _checkpoint(path: Optional[str], original: bool = False) -> None:
    """A checkpoint prefix, its index file or a directory (what is inside is the loader's)."""
    if path and not Path(path).is_dir():
        checkpoint_prefix(path, original)


def _gan_run_and_sources(config: Any, named_by_run: bool = False) -> None:
    """generate, evaluate, curve, export: the GAN run, then the EEG file and the checkpoints it
    names, each unless the config names its own."""
    if not config.run and not all(getattr(config, name, None) for name in ("gan", "encoder", "data")):
        return          # which flags are missing is the library call's to say
    gan_config = GanRun.open(config.run, named_by_run).config if config.run else None
    data = getattr(config, "data", None) or (gan_config.data if gan_config else None)
    if data:
        eeg_file(data)
    _checkpoint(getattr(config, "encoder", None) or (gan_config.encoder if gan_config else None))
    _checkpoint(getattr(config, "gan", None))


def _average(config: AverageConfig) -> None:
    kept_checkpoints(GanRun.open(config.run).checkpoints)


def _curve(config: CurveConfig) -> None:
    kept_checkpoints(GanRun(Path(config.run)).checkpoints)
    _gan_run_and_sources(config)


def _export(config: ExportConfig) -> None:
    originals = (config.original_encoder, config.original_gan)
    if config.run and not any(originals):
        _gan_run_and_sources(config, named_by_run=True)
    elif not config.run and all(originals):
        _checkpoint(config.original_encoder, original=True)
        _checkpoint(config.original_gan, original=True)
    # Otherwise the sources given do not fit together, which the library call reports.


def _train_gan(config: GanTrainConfig) -> None:
    eeg_file(config.data)
    list_image_folder(training_image_folder(config.images))
    _checkpoint(config.encoder)


# --------------------------------------------------------------------------------------------------
# Folders written
# --------------------------------------------------------------------------------------------------

def _run_written(config: Any, force: bool, filename: Optional[str] = CONFIG_FILE,
                 folder: str = "run") -> None:
    """The run (or output) folder ``config.<folder>``: writable, holding no other config (when the
    command records one in ``filename``), and not held by another process. On several workers
    only the chief writes, and it takes the lock itself (the others would find it held)."""
    path, flag = getattr(config, folder), f"--{folder}"
    check_writable_dir(path, flag)
    if filename is not None:
        check_run_dir(config, path, force, filename)
    if getattr(config, "strategy", None) != "multiworker":
        check_run_unlocked(path, flag)


def _generate_written(config: GenerateConfig, force: bool) -> None:
    check_output_folder(config.out, "--out", "generate", record=GENERATE_CONFIG_FILE)
    _run_written(config, force, GENERATE_CONFIG_FILE, folder="out")


def _average_written(config: AverageConfig, force: bool) -> None:
    check_writable_dir(config.out, "--out")
    check_output_folder(config.out, "--out", "average_checkpoints", record=CONFIG_FILE)


def _export_written(config: ExportConfig, force: bool) -> None:
    check_writable_dir(config.out, "--out")
    check_export_folder(config.out, config.run, config.force)


_WRITTEN: dict[type, Callable[[Any, bool], None]] = {
    EncoderTrainConfig: _run_written,
    GanTrainConfig: _run_written,
    ImageClassifierConfig: _run_written,
    SelectEncoderConfig: lambda config, force: _run_written(config, force, filename=None),
    GenerateConfig: _generate_written,
    EvaluateConfig: lambda config, force: _run_written(config, force, filename=None),
    CurveConfig: lambda config, force: _run_written(config, force, filename=None),
    AverageConfig: _average_written,
    ExportConfig: _export_written,
    ImportOriginalConfig: lambda config, force: check_writable_dir(config.out, "--out"),
}


_CHECKS: dict[type, Callable[[Any], None]] = {
    EncoderTrainConfig: lambda config: eeg_file(config.data),
    SelectEncoderConfig: lambda config: eeg_file(load_config(EncoderTrainConfig, config.run).data),
    ImageClassifierConfig: lambda config: list_split_folders(config.images, (TRAIN_SPLIT, TEST_SPLIT)),
    GanTrainConfig: _train_gan,
    GenerateConfig: _gan_run_and_sources,
    EvaluateConfig: _gan_run_and_sources,
    CurveConfig: _curve,
    AverageConfig: _average,
    ExportConfig: _export,
    ImportOriginalConfig: lambda config: _checkpoint(config.encoder or config.gan, original=True),
}


def check_inputs(config: Any, force: bool = False) -> None:
    """Raise the :class:`~eeg2image_tf.errors.Eeg2ImageError` of the first input of ``config`` (a
    command's config) that is missing, else of the first folder it writes that it may not
    (``force``: the command's ``--force``); nothing for a config that names no such path."""
    read = _CHECKS.get(type(config))
    if read is not None:
        read(config)
    written = _WRITTEN.get(type(config))
    if written is not None:
        written(config, force)
