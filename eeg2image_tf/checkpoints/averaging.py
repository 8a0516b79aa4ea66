"""Weight averaging of a GAN run's generators (Polyak averaging; ``average_checkpoints``).

An addition, not in the original: the generator of the newest of some kept checkpoints gets the
mean of all their generators' weights; :func:`write_averaged_run` stores that as a run of its own,
which ``generate``, ``evaluate``, ``curve`` and ``export`` take like any GAN run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import AverageConfig, config_to_dict
from ..errors import CheckpointError, ConfigError
from ..io_utils import atomic_write_json
from ..runs import GanRun, kept_checkpoints, save_config
from .ours import LoadedGAN, load_gan, save_gan_weights


def generator_weights(path: str | Path, ema: bool = True) -> list:
    """The generator's weights (``generator.weights`` order, numpy) of one GAN checkpoint."""
    return [variable.numpy() for variable in load_gan(path, ema=ema).generator.weights]


def mean_weights(weight_lists) -> list:
    """Element-wise mean of equally shaped weight lists, accumulated in float64."""
    weight_lists = list(weight_lists)
    if not weight_lists:
        raise CheckpointError("averaging: no checkpoints given")
    first = weight_lists[0]
    for other in weight_lists[1:]:
        if len(other) != len(first) or any(a.shape != b.shape for a, b in zip(first, other)):
            raise CheckpointError("averaging: the checkpoints hold generators of different shapes")
    return [np.mean(np.stack([weights[k].astype(np.float64) for weights in weight_lists]), axis=0)
            .astype(first[k].dtype) for k in range(len(first))]


def average_gan(paths) -> LoadedGAN:
    """The newest of the GAN checkpoints ``paths`` with its generator's every weight replaced by
    the mean over all of them; its discriminator as saved.

    Averaging the iterates of GAN training (Polyak averaging) damps the oscillation of the
    two-player game: colours and textures that swing from one checkpoint to the next cancel,
    what all of them share stays. BatchNorm moving statistics are averaged like the kernels (an
    approximation: the statistics of the averaged network are not the mean of the statistics);
    the spectral-norm vectors play no part at inference.
    """
    paths = list(paths)
    if not paths:
        raise CheckpointError("averaging: no checkpoints given")
    newest = load_gan(paths[-1])
    newest.generator.set_weights(mean_weights(
        [generator_weights(path) for path in paths[:-1]]
        + [[variable.numpy() for variable in newest.generator.weights]]))
    return newest


def averaging_window(kept: list[tuple[int, str]], last: int,
                     step: Optional[int] = None) -> list[tuple[int, str]]:
    """The ``last`` entries of ``kept`` (``(step, prefix)``, oldest first) ending at ``step`` (None:
    the newest); a :class:`ConfigError` naming the kept steps when ``step`` is not one of them."""
    steps = [s for s, _ in kept]
    if step is None:
        return kept[-last:]
    if step not in steps:
        raise ConfigError(f"--step {step}: no kept checkpoint of that step (kept: "
                          f"{', '.join(map(str, steps)) or 'none'})")
    end = steps.index(step) + 1
    return kept[max(0, end - last):end]


def write_averaged_run(config: AverageConfig) -> dict[str, Any]:
    """A GAN run in ``config.out`` averaging the last ``config.last`` kept checkpoints of
    ``config.run`` that end at step ``config.step`` (None: the newest).

    ``config``: :class:`~eeg2image_tf.config.AverageConfig`. ``out`` gets the source run's
    ``config.json`` (with ``run`` pointing at ``out``), a weights-only checkpoint in ``checkpoints/``
    (the averaged generator, the newest discriminator) and ``average.json`` naming the checkpoints
    and this command's settings; ``generate``, ``evaluate``, ``curve`` and ``export`` take it as any
    run. An existing ``out`` is refused unless ``force``. Returns what ``average.json`` holds.
    """
    run, out, last, force = Path(config.validate().run), Path(config.out), config.last, config.force
    if out.resolve() == run.resolve():
        raise ConfigError(f"{out}: write the averaged run beside the source run, not into it")
    if GanRun(out).config_path.exists() and not force:
        raise ConfigError(f"{out}: holds a run already; pass --force to replace its checkpoint")
    source = GanRun.open(run)
    window = averaging_window(kept_checkpoints(source.checkpoints), last, config.step)
    generator, discriminator = average_gan([prefix for _, prefix in window])
    record = {"source_run": str(run), "steps": [step for step, _ in window],
              "checkpoints": [Path(prefix).name for _, prefix in window],
              "step": window[-1][0], "config": config_to_dict(source.config)}
    out.mkdir(parents=True, exist_ok=True)
    averaged = GanRun(out)
    prefix = save_gan_weights(generator, discriminator, averaged.checkpoints,
                              metadata={"averaged": record})
    save_config(dataclasses.replace(source.config, run=str(out)), out)
    record["checkpoint"] = prefix
    atomic_write_json(averaged.average_record, record)
    return record
