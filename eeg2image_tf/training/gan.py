"""Training of the conditional DCGAN: the loop around its iteration (:mod:`.gan_steps`, docs/method.md
section 4), run by the run skeleton :class:`~.run.TrainingRun` (resume, signals, budget, checkpoint
cadence).

Run directory (names in :mod:`eeg2image_tf.runs`): ``config.json``, ``conditions.npz`` (cached
encoder features, :mod:`.gan_data`), ``checkpoints/``, ``samples/step_NNNNNN.png`` and
``samples/latest.png``, ``tensorboard/train``, ``metrics.json``.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import tensorflow as tf

from ..config import GanTrainConfig
from ..data import gan_dataset
from ..errors import DataError
from ..runs import GanRun
from .common import check_finite
from .distributed import distribute_global_batches
from .gan_data import (SampleInputs, epoch_shuffle_seed, load_gan_data, settle_gan_config,
                       sample_inputs, save_conditions)
from .gan_state import build_gan_state
from .gan_steps import LOSS_NAMES, GanSteps
from .run import TrainingRun
from .samples import sample_grid, write_png

__all__ = ["SaturationCounter", "train_gan"]

SCALARS_EVERY_STEPS = 10
SATURATION_WINDOW = 200             # steps behind TensorBoard's gan/d_saturated_fraction
SAMPLE_COLUMNS = 4


# --------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------

def _write_samples(generator, samples: SampleInputs, run: GanRun, step: int) -> Path:
    images = generator(tf.constant(samples.generator_inputs), training=False)
    grid = sample_grid(np.asarray(images), samples.titles, columns=SAMPLE_COLUMNS)
    path = run.sample(step)
    write_png(grid, path)
    write_png(grid, run.latest_sample)
    tf.summary.image("gan/samples", grid[None], step=step)
    return path


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------

class SaturationCounter:
    """How often the discriminator's hinge loss is exactly 0 (every real score >= 1 and every fake
    one <= -1): D then gets no gradient and G follows a saturated critic.

    Counts over the whole run (carried across resumes through metrics.json) and over the last
    ``window`` steps (TensorBoard ``gan/d_saturated_fraction``, every logged step).
    """

    def __init__(self, saturated: int = 0, steps: int = 0, window: int = SATURATION_WINDOW):
        self.saturated = int(saturated)
        self.steps = int(steps)
        self.recent: collections.deque = collections.deque(maxlen=window)

    @classmethod
    def from_metrics(cls, metrics: dict) -> "SaturationCounter":
        recorded = metrics.get("d_saturation", {})
        return cls(recorded.get("saturated_steps", 0), recorded.get("steps", 0))

    def add(self, d_hinge: float) -> None:
        saturated = d_hinge == 0.0
        self.saturated += int(saturated)
        self.steps += 1
        self.recent.append(saturated)

    def recent_fraction(self) -> Optional[float]:
        return float(np.mean(self.recent)) if self.recent else None

    def summaries(self) -> dict:
        fraction = self.recent_fraction()
        return {} if fraction is None else {"gan/d_saturated_fraction": fraction}

    def as_dict(self) -> dict:
        return {"fraction": self.saturated / self.steps if self.steps else None,
                "saturated_steps": self.saturated, "steps": self.steps,
                "recent_fraction": self.recent_fraction(), "recent_steps": len(self.recent)}


def train_gan(config: GanTrainConfig, force: bool = False) -> dict:
    """Train (or resume) the conditional GAN of ``config``; return the run's headline numbers.

    Stops after ``config.max_steps`` iterations in total when given, else after ``config.epochs``
    epochs, or earlier when ``config.time_budget_s`` runs out (with a checkpoint). SIGINT/SIGTERM save
    a checkpoint and raise :class:`~eeg2image_tf.errors.TrainingInterrupted`; a NaN/Inf loss
    raises :class:`~eeg2image_tf.errors.TrainingDivergedError` and keeps the last good checkpoint.
    Every choice ``config`` leaves open (the matrix-product convolutions, the normalisation) is
    made first (:func:`~eeg2image_tf.training.gan_data.settle_gan_config`) and recorded in
    ``config.json`` as made.

    Returns:
        ``step``, ``epoch`` (float), ``stopped`` (``"completed"`` or ``"time_budget"``), the last
        losses (``gan/...``), ``ms_per_step``, ``wall_time_s``, ``checkpoint``, ``samples``,
        ``conditions_cached``.
    """
    wall_start = time.monotonic()
    # Every choice is made here, before the run directory is written; from here on the run reads
    # only the settled config (recorded in config.json as used).
    settled = settle_gan_config(config)
    config = settled.config
    # The budget covers start-up and tracing too.
    run = TrainingRun(config, force, budget_s=config.time_budget_s, strategy=config.strategy)
    if settled.note:
        run.log(settled.note)
    gan_run = GanRun(run.dir)
    strategy = run.strategy
    num_replicas = strategy.num_replicas_in_sync

    # Another worker reads the chief's cache when it sees the run directory, and writes none; the
    # chief writes it once the run is its own (track).
    data = load_gan_data(config, run.dir, write_cache=False, splits=settled.splits)
    steps_per_epoch = len(data.labels) // config.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{config.data}: {len(data.labels)} training trials, fewer than one batch "
                        f"of {config.batch_size}")
    total_steps = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch

    state = build_gan_state(config, strategy)
    steps = GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                     latent_dim=config.latent_dim, policy=config.policy,
                     mode_seeking_weight=config.mode_seeking_weight, seed=config.seed,
                     global_batch_size=config.batch_size, num_replicas=num_replicas,
                     generator_training=config.generator_training,
                     generator_spectral_norm=config.generator_spectral_norm,
                     discriminator_training_in_g_step=config.discriminator_training_in_g_step,
                     ema_generator=state.generator_ema, ema_decay=config.ema_decay)
    train_step = steps.make_train_step(strategy, jit=config.jit)
    # Samples show what generate and evaluate will use: the average when the run keeps one.
    sampler = state.generator_ema if state.generator_ema is not None else state.generator
    start = run.start(state.checkpoint, state.step, config.max_to_keep, **state.resume_options)
    if run.writes and not data.conditions_cached:
        save_conditions(data, run.dir)
    samples = sample_inputs(config, data)

    step = start_step = start.unit
    last_sample = step if gan_run.sample(step).exists() else None
    previous = start.metrics if start_step else {}
    earlier_wall_time = float(previous.get("total_wall_time_s", 0.0))
    losses: dict[str, float] = dict(previous.get("losses", {}))
    step_times: list[float] = []
    # Wall clock from the end of this run's first (tracing) step: steps plus checkpoints, samples
    # and summaries, i.e. what a step costs in the run's time.
    loop_clock: dict[str, float] = {}
    saturation = SaturationCounter.from_metrics(previous)

    def write_metrics(stopped: str) -> dict:
        timed = step_times[1:] or step_times      # the first step of a run includes tracing
        wall = time.monotonic() - wall_start
        looped = step - start_step - 1
        wall_per_step = ((time.monotonic() - loop_clock["start"]) / looped
                         if looped > 0 and "start" in loop_clock else None)
        metrics = {
            "step": step, "epoch": step / steps_per_epoch, "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps, "steps_this_run": step - start_step, "stopped": stopped,
            "losses": losses,
            # wall time per step (checkpoints, samples and summaries included) and the step alone
            "ms_per_step": 1000.0 * wall_per_step if wall_per_step is not None else
            (1000.0 * float(np.mean(timed)) if timed else None),
            "compute_ms_per_step": 1000.0 * float(np.mean(timed)) if timed else None,
            "d_saturation": saturation.as_dict(),
            "wall_time_s": wall, "total_wall_time_s": earlier_wall_time + wall,
            "batch_size": config.batch_size, "replicas": num_replicas,
            "checkpoint": run.latest_checkpoint,
            **({"loss_scales": state.loss_scale_values} if state.loss_scales else {}),
        }
        run.write_metrics(metrics)
        return metrics

    def write_scalars() -> None:
        for name, value in {**losses, **state.loss_scale_values, **saturation.summaries()}.items():
            tf.summary.scalar(name, value, step=step)

    def train_steps(loop) -> Iterator[int]:
        nonlocal step, losses, last_sample
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)

            def epoch_batches(epoch=epoch, position=position):
                return gan_dataset(data.conditions, data.labels, data.images, data.image_index,
                                   config.batch_size, shuffle=True,
                                   seed=epoch_shuffle_seed(config.seed, epoch)).skip(position)

            for batch in distribute_global_batches(strategy, epoch_batches, config.batch_size):
                started = time.perf_counter()
                values = train_step(tf.constant(step, tf.int64), batch)
                values = {name: float(values[name]) for name in LOSS_NAMES}
                step_times.append(time.perf_counter() - started)
                if len(step_times) == 1:
                    loop_clock["start"] = time.monotonic()
                saturation.add(values["gan/d_hinge"])
                # Weights that produced a NaN are never saved: the last checkpoint stays good.
                check_finite(values, f"step {step + 1}", run.latest_checkpoint)
                step += 1
                state.step.assign(step)
                losses = values
                loop.bar.update(1)
                loop.bar.set_postfix({"d_hinge": f"{values['gan/d_hinge']:.3f}",
                                      "g_hinge": f"{values['gan/g_hinge']:.3f}",
                                      "mode_seeking": f"{values['gan/mode_seeking']:.3f}"},
                                     refresh=False)
                if step % SCALARS_EVERY_STEPS == 0:
                    write_scalars()
                if step % config.sample_every == 0 and run.writes:
                    _write_samples(sampler, samples, gan_run, step)
                    last_sample = step
                yield step
                if step >= total_steps:
                    return

    metrics: dict[str, Any] = {}

    def saved(_step: int, loop) -> None:
        metrics.update(write_metrics(loop.stopped or "running"))

    def end(_step: int, reason: str) -> None:
        if step % SCALARS_EVERY_STEPS:
            write_scalars()
        # After a signal the run exits at once; the samples wait for the resumed run.
        if reason != "interrupted" and last_sample != step and run.writes:
            _write_samples(sampler, samples, gan_run, step)
        if metrics.get("stopped") != reason:        # no checkpoint this run (a finished run rerun)
            metrics.update(write_metrics(reason))

    stopped = run.drive(train_steps, total=total_steps, start=start_step,
                        save_every=config.checkpoint_every, saved=saved, end=end, desc="gan",
                        unit="step")

    return {"step": step, "epoch": metrics["epoch"], "stopped": stopped, **losses,
            "ms_per_step": metrics["ms_per_step"],
            "compute_ms_per_step": metrics["compute_ms_per_step"],
            "d_saturated_fraction": metrics["d_saturation"]["fraction"],
            "d_saturated_recent_fraction": metrics["d_saturation"]["recent_fraction"],
            "wall_time_s": metrics["wall_time_s"],
            "checkpoint": run.latest_checkpoint, "samples": str(gan_run.latest_sample),
            "conditions_cached": data.conditions_cached}
