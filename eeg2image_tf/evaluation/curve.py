"""How the conditioning develops during GAN training: metrics of every kept checkpoint.

For each checkpoint of a GAN run (newest last), ``per_class`` images per class are generated in
memory from the same test conditions and the same latents, passed through JPEG like generated files,
and read by the image classifier: **conditional accuracy** (does the classifier name the class of
the conditioning EEG?) and **conditional separability** (k-means accuracy of the classifier's
features against that class; high once the classes look different, before they look right); and,
when the run's training images are there, **precision**, **recall** and the **diversity ratio** of
the images against them in the gradient-histogram space (:mod:`.realism`; do they look like real
letters, and as varied?), and the **manifold distances** (how far outside the real manifold the
images lie while precision is still 0).

Outputs in the GAN run: ``curve.json`` (settings and one point per checkpoint, rewritten atomically
after each point, so an interruption loses at most the point in progress), ``figures/
conditional_curve.png``, and TensorBoard scalars ``curve/conditional_accuracy``,
``curve/conditional_separability``, ``curve/precision``, ``curve/recall``,
``curve/diversity_ratio``, ``curve/precision_distance`` and ``curve/recall_distance`` under
``tensorboard/curve`` (logged once per new point).

With ``average`` k > 1 each point's generator is the weight average of the k kept checkpoints
ending at it (:func:`~eeg2image_tf.checkpoints.average_gan`); that curve goes to
``curve_avg<k>.json``, ``conditional_curve_avg<k>.png`` and ``tensorboard/curve_avg<k>``, beside the
plain one, so TensorBoard overlays the two.

With ``conditions="train"`` the images are conditioned on the training trials' features instead
(:func:`~eeg2image_tf.generation.with_training_conditions`), into ``curve_train.json``,
``conditional_curve_train.png`` and ``tensorboard/curve_train``: a curve that chooses a checkpoint
(its ``best_step``) without looking at the test set, whose curve then reports on the choice.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import tensorflow as tf

from ..checkpoints import generator_weights, load_gan, mean_weights
from ..config import CurveConfig
from ..errors import CheckpointError, ConfigError, DataError, Eeg2ImageError
from ..generation import (generator_of, load_generation_sources, prepare_forward,
                          with_training_conditions)
from ..io_utils import atomic_savefig, atomic_write_json, progress_bar, read_json
from ..runs import (GanRun, curve_config_name, curve_names, kept_checkpoints, lock_run,
                    save_config, summary_writer)
from .figures import new_figure
from .images import PassResult, generated_chunks, real_chunks, run_pass, training_folder
from .metrics import conditional_separability, per_class_accuracy
from .realism import HEADLINE_KEYS, K_NEAREST, SPACE_NAME, gradient_histograms, realism_scores
from .sections import align_classifier, load_classifier_or_reason

# The realism numbers a point records; those on a 0-1 scale share the figure's second panel, the
# distances (in radii) its third.
REALISM_KEYS = HEADLINE_KEYS
PLOTTED_REALISM_KEYS = ("precision", "recall", "diversity_ratio")
PLOTTED_DISTANCE_KEYS = ("precision_distance", "recall_distance")


def every_kth(checkpoints: Sequence[tuple[int, str]], every: int) -> list[tuple[int, str]]:
    """Every ``every``-th checkpoint counted from the oldest, plus the newest."""
    if every < 1:
        raise ConfigError(f"--every must be at least 1, got {every}")
    chosen = list(checkpoints[::every])
    if checkpoints and chosen[-1] != checkpoints[-1]:
        chosen.append(checkpoints[-1])
    return chosen


def checkpoint_metrics(sources, classifier, class_names: Sequence[str], per_class: int,
                       batch_size: int, seed: int, jpeg_quality: Optional[int],
                       precision: str, training: Optional[PassResult] = None,
                       forward=None, latent_range: float = 1.0) -> dict[str, Any]:
    """Conditional accuracy, separability and per-class accuracy of ``sources.generator``; with
    ``training`` (a pass over the training images with gradient histograms) also precision, recall,
    the diversity ratio and the manifold distances against them (None where the sets are too
    small). ``forward``: the
    generator's forward pass made already (:func:`~eeg2image_tf.generation.prepare_forward`);
    ``latent_range``: the latents' half-width (:class:`~eeg2image_tf.generation.LatentStreams`)."""
    chunks = generated_chunks(sources, per_class, batch_size, seed, jpeg_quality,
                              precision=precision, forward=forward, latent_range=latent_range)
    spaces = {SPACE_NAME: gradient_histograms} if training is not None else None
    result = run_pass(chunks, classifier=classifier, desc="curve", feature_spaces=spaces)
    labels = result.class_index
    predictions = result.classifier_probs.argmax(axis=1)
    metrics = {
        "conditional_accuracy": float(np.mean(predictions == labels)),
        "conditional_separability": conditional_separability(
            result.classifier_features, labels, n_clusters=len(class_names)),
        "per_class_accuracy": per_class_accuracy(predictions, labels, class_names),
        "images": int(result.count),
    }
    if training is not None:
        scores = realism_scores(training.features[SPACE_NAME], training.class_index,
                                result.features[SPACE_NAME], labels, class_names, K_NEAREST)
        metrics.update({key: scores.get(key) for key in REALISM_KEYS})
    return metrics


_SETTING_DEFAULTS = {"average": 1, "ema": True, "conditions": "test", "latent_range": 1.0}


def _settings(config, run_dir: Path, classifier_path: Optional[Path],
              reference: Optional[Path]) -> dict[str, Any]:
    """The fields a point's numbers depend on; points made otherwise are not reused (a curve stored
    before points had precision and recall has no ``realism_reference`` and is recomputed). The
    classifier and the training images are named relative to the run, so a run moved or copied
    together with them keeps its points."""

    def beside_run(path: Path) -> str:
        return os.path.relpath(path.resolve(), run_dir.resolve())

    return {"per_class": config.per_class, "seed": config.seed,
            "jpeg_quality": config.jpeg_quality, "precision": config.precision,
            "classifier": beside_run(classifier_path) if classifier_path else "<given>",
            "average": config.average, "ema": config.ema, "conditions": config.conditions,
            "latent_range": config.latent_range,
            "realism_reference": beside_run(reference) if reference else None}


class _WindowedGenerators:
    """One generator whose weights become each checkpoint's in turn, or the mean over a sliding
    window of them, so that its forward pass is built, checked and traced once for the whole curve
    (the fast forward reads the variables at every call: :func:`~eeg2image_tf.generation.
    prepare_forward`).

    Each checkpoint is read once: the weights of the last ``average`` checkpoints are kept.
    """

    def __init__(self, kept: Sequence[tuple[int, str]], average: int, ema: bool = True):
        self.kept = list(kept)
        self.ema = ema
        self.position = {step: k for k, (step, _) in enumerate(self.kept)}
        self.average = average
        self.cache: dict[int, list] = {}
        self.model = None

    def window(self, step: int) -> list[int]:
        end = self.position[step]
        return [s for s, _ in self.kept[max(0, end - self.average + 1): end + 1]]

    def _read(self, step: int) -> list:
        prefix = self.kept[self.position[step]][1]
        if self.model is not None:
            return generator_weights(prefix, ema=self.ema)
        self.model = generator_of(load_gan(prefix, ema=self.ema))
        if self.model is None:
            raise CheckpointError(f"{prefix}: no generator in this checkpoint")
        return [variable.numpy() for variable in self.model.weights]

    def generator(self, step: int):
        if self.average == 1:
            weights = self._read(step)
        else:
            window = self.window(step)
            for s in window:
                if s not in self.cache:
                    self.cache[s] = self._read(s)
            for s in list(self.cache):
                if s not in window:
                    del self.cache[s]
            weights = mean_weights([self.cache[s] for s in window])
        self.model.set_weights(weights)
        return self.model


def _previous_points(path: Path, settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
    if not path.exists():
        return {}
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("points"), list):
        raise DataError(f"{path}: expected an object with a 'points' list; move it away to redo")
    # Settings added after a curve was stored had, by rule, their default effect on it.
    if {**_SETTING_DEFAULTS, **(record.get("settings") or {})} != settings:
        return {}
    return {int(point["step"]): point for point in record["points"]}


def save_curve_figure(points: Sequence[dict[str, Any]], destination: str | Path,
                      chance: float, title: str = "") -> Path:
    """Conditional accuracy and separability against the training step, with the chance level;
    beside it precision, recall and the diversity ratio, and then the manifold distances (in k-NN
    radii, 1 on the balls' surface), when the points have them. One 6.4 x 3.6 inch panel each."""
    steps = [p["step"] for p in points]

    def present(keys: Sequence[str]) -> list[str]:
        return [key for key in keys if any(p.get(key) is not None for p in points)]

    realism, distances = present(PLOTTED_REALISM_KEYS), present(PLOTTED_DISTANCE_KEYS)
    panels = 1 + bool(realism) + bool(distances)
    figure = new_figure(6.4 * panels, 3.6)
    axes = figure.add_subplot(1, panels, 1)
    axes.plot(steps, [p["conditional_accuracy"] for p in points], "o-", label="conditional accuracy")
    axes.plot(steps, [p["conditional_separability"] for p in points], "s-",
              label="conditional separability")
    axes.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    axes.set_ylim(0.0, 1.0)
    extra = [(realism, "real images' diversity", "against the training images (gradient "
              "histograms, k=3)"),
             (distances, "the balls' surface", "distance to the other set's manifold (radii)")]
    for keys, line_label, panel_title in [entry for entry in extra if entry[0]]:
        panel = figure.add_subplot(1, panels, 1 + len(figure.axes))
        highest = 1.05
        for key, marker in zip(keys, "o^s"):
            # A distance is infinite where every ball has radius 0 (identical images): not drawn.
            known = [(p["step"], p[key]) for p in points
                     if p.get(key) is not None and np.isfinite(p[key])]
            panel.plot([s for s, _ in known], [v for _, v in known], marker + "-",
                       label=key.replace("_", " "))
            highest = max([highest] + [v for _, v in known])
        panel.axhline(1.0, color="grey", linestyle=":", label=line_label)
        panel.set_ylim(0.0, highest * 1.05)
        panel.set_title(panel_title, fontsize="medium")
    for panel in figure.axes:
        panel.set_xlabel("GAN iteration")
        panel.grid(alpha=0.3)
        panel.legend(loc="upper left" if panel is axes else "best", fontsize="small")
    if title and panels > 1:
        figure.suptitle(title, fontsize="medium")
    elif title:
        axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    return atomic_savefig(figure, destination, dpi=100)


def evaluate_checkpoints(config: CurveConfig, classifier: Any = None, show_progress: bool = True,
                         echo: Optional[Callable[[str], None]] = print) -> dict[str, Any]:
    """Compute the curve of ``config`` (:class:`~eeg2image_tf.config.CurveConfig`); return the record.

    ``classifier``: an object with ``.features_and_probs`` (a test double); by default the image
    classifier run that ``config.classifier`` names, else ``<run>/../image_classifier``.
    """
    config.validate()
    run_dir = Path(config.run)
    run = GanRun(run_dir)
    kept = kept_checkpoints(run.checkpoints)
    chosen = every_kth(kept, config.every)
    generators = _WindowedGenerators(kept, config.average, ema=config.ema)
    curve_file, figure_file, tensorboard_name = curve_names(config.average, config.conditions)
    classifier_path = None
    if classifier is None:
        classifier, reason, classifier_path = load_classifier_or_reason(config)
        if classifier is None:
            raise Eeg2ImageError(f"curve: {reason}")
    sources = load_generation_sources(run=str(run_dir), ema=config.ema)
    if config.conditions == "train":
        sources = with_training_conditions(sources)
    class_names = sources.class_names
    classifier, reason = align_classifier(classifier, class_names)
    if classifier is None:
        raise Eeg2ImageError(f"curve: {reason}")
    # One writer of the run's curve files at a time (released on an error too).
    lock = lock_run(run_dir)
    save_config(config, run_dir, filename=curve_config_name(config.average, config.conditions))
    reference, _ = training_folder(sources)
    settings = _settings(config, run_dir, classifier_path, reference)
    curve_path = run_dir / curve_file
    done = _previous_points(curve_path, settings)
    chosen_steps = {step for step, _ in chosen}
    # A point stored before the manifold distances existed is scored again.
    points = {step: point for step, point in done.items() if step in chosen_steps and
              (reference is None or "precision_distance" in point)}
    todo = [(step, prefix) for step, prefix in chosen if step not in points]
    # The training images' features, once for every new point (none needed when all are stored).
    training = None if reference is None or not todo else run_pass(
        real_chunks(reference, class_names), desc="training images",
        feature_spaces={SPACE_NAME: gradient_histograms})
    bar = progress_bar(len(chosen), initial=len(chosen) - len(todo), desc="curve",
                       unit="ckpt") if show_progress else None
    forward = None
    with summary_writer(run_dir, tensorboard_name):
        for step, prefix in todo:
            started = time.monotonic()
            generator = generators.generator(step)
            if forward is None:
                forward = prepare_forward(generator, sources.features_by_class, config.per_class,
                                          config.batch_size, sources.latent_dim, config.precision)
            metrics = checkpoint_metrics(dataclasses.replace(sources, generator=generator),
                                         classifier, class_names, config.per_class,
                                         config.batch_size, config.seed, config.jpeg_quality,
                                         config.precision, training, forward,
                                         config.latent_range)
            points[step] = {"step": step, "checkpoint": Path(prefix).name, **metrics,
                            "seconds": round(time.monotonic() - started, 1)}
            if config.average > 1:
                points[step]["averaged_steps"] = generators.window(step)
            tf.summary.scalar("curve/conditional_accuracy", metrics["conditional_accuracy"], step)
            tf.summary.scalar("curve/conditional_separability",
                              metrics["conditional_separability"], step)
            for key in REALISM_KEYS:
                if metrics.get(key) is not None:
                    tf.summary.scalar(f"curve/{key}", metrics[key], step)
            ordered = [points[s] for s in sorted(points)]
            atomic_write_json(curve_path, {"settings": settings, "points": ordered})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(step=step, acc=f"{metrics['conditional_accuracy']:.3f}",
                                sep=f"{metrics['conditional_separability']:.3f}")
    if bar is not None:
        bar.close()

    ordered = [points[s] for s in sorted(points)]
    chance = 1.0 / len(class_names)
    best = max(ordered, key=lambda p: p["conditional_accuracy"])
    record = {"settings": settings, "points": ordered, "chance": chance,
              "best_step": best["step"], "best_conditional_accuracy": best["conditional_accuracy"],
              "last_step": ordered[-1]["step"],
              "last_conditional_accuracy": ordered[-1]["conditional_accuracy"],
              "last_conditional_separability": ordered[-1]["conditional_separability"],
              **{f"last_{key}": ordered[-1].get(key) for key in REALISM_KEYS}}
    averaged = f", generator averaged over {config.average} checkpoints" \
        if config.average > 1 else ""
    figure = save_curve_figure(ordered, run.figures / figure_file, chance,
                               title=f"{run_dir}: {config.per_class} images per class from "
                                     f"{config.conditions} trials{averaged}")
    record["figure"] = str(figure)
    atomic_write_json(curve_path, record)
    lock.release()
    if echo is not None:
        echo(format_curve(record))
    return record


def format_curve(record: dict[str, Any]) -> str:
    """One line per point: step, conditional accuracy, separability, precision, recall, diversity
    and the precision distance (the generated images' median distance to the real manifold)."""
    lines = [f"  {'step':>7} {'cond. accuracy':>15} {'separability':>13} {'precision':>9} "
             f"{'recall':>7} {'diversity':>9} {'distance':>8}",
             f"  {'-' * 7} {'-' * 15} {'-' * 13} {'-' * 9} {'-' * 7} {'-' * 9} {'-' * 8}"]

    def number(value: Any, width: int) -> str:
        return f"{value:>{width}.3f}" if isinstance(value, (int, float)) else f"{'n/a':>{width}}"

    for point in record["points"]:
        lines.append(f"  {point['step']:>7} {point['conditional_accuracy']:>15.3f} "
                     f"{point['conditional_separability']:>13.3f} "
                     f"{number(point.get('precision'), 9)} {number(point.get('recall'), 7)} "
                     f"{number(point.get('diversity_ratio'), 9)} "
                     f"{number(point.get('precision_distance'), 8)}")
    lines.append(f"  chance {record['chance']:.3f}; distance: the generated images' median "
                 f"distance to the training images' manifold, in k-NN radii (1 or less inside); "
                 f"figure: {record['figure']}")
    return "\n".join(lines)
