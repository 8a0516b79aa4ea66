"""Evaluation of a GAN run: Inception Score and FID, realism and variety (precision, recall and
diversity against the training images), conditional accuracy, encoder probes, figures.

The images come from a folder written by ``generate`` (``--images-dir``), or are generated in memory
(``per_class`` per class, 100 by default so that evaluation takes minutes, not the hour that the
paper's 5000 per class take here; IS and FID from small sets are biased, so compare numbers only at
the same ``per_class``). In-memory images go through JPEG at the ``generate`` quality, so that they
are the pixels a folder would hold. Either way the images are processed chunk by chunk
(:mod:`.images`).

Precision, recall and diversity (:mod:`.realism`) compare the generated images with the images the
GAN trained on, in the gradient-histogram space always and in Inception's when a network is given;
the real test images scored the same way give each number's ceiling. They need one more pass, over
the training images.

Results go into ``<run>/metrics.json`` under the key ``evaluation`` (other keys are kept), the
figures into ``<run>/figures/`` and the headline numbers into TensorBoard (``eval/precision``, ...
under ``tensorboard/eval``, at the step of the run's newest checkpoint); a set that records
subjects and stimuli adds ``per_subject`` and ``figures/stimuli.png`` (:mod:`.trials`). A metric
whose network is missing is recorded as ``{"available": false, "reason": ...}`` instead of failing
the whole evaluation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from ..checkpoints import checkpoint_has_ema
from ..config import EvaluateConfig, config_to_dict
from ..errors import DataError, Eeg2ImageError
from ..generation import load_generation_sources
from ..runs import (EVAL_EVENTS, GRID_FILE, LOSS_CURVES_FILE, NEAREST_TRAINING_FILE, STIMULI_FILE,
                    TSNE_FILE, GanRun, checkpoint_step, latest_checkpoint_in, lock_run, read_metrics,
                    summary_writer, write_metrics)
from .figures import (copy_figure, save_generated_grid, save_loss_curves, save_nearest_training,
                      save_tsne)
from .images import (GRID_COLUMNS, PassResult, folder_chunks, generated_chunks, generated_trials,
                     list_generated_folder, real_chunks, real_image_folder, real_images_at,
                     run_pass, training_folder)
from .inception import load_backend
from .metrics import inception_score
from .realism import HEADLINE_KEYS, SPACE_NAME, gradient_histograms, nearest_neighbours
from .report import format_table
from .sections import (INCEPTION_SPACE, align_classifier, classifier_section, distance_section,
                       encoder_section, load_classifier_or_reason, realism_headline,
                       realism_section, score_section, unavailable)
from .trials import (IMAGES_PER_STIMULUS, stimulus_figure_or_note, stimulus_trials, subject_lines,
                     subject_section)

EVALUATION_KEY = "evaluation"
FEATURE_SPACES = {SPACE_NAME: gradient_histograms}
# Pairs per class in the nearest-training figure: 4 pairs are as wide as the 8-column grid.
NEAREST_PAIRS = GRID_COLUMNS // 2


def make_figures(config: EvaluateConfig, sources, grid: Sequence[np.ndarray],
                 kmeans: Optional[float],
                 training: Optional[tuple[PassResult, Path]] = None,
                 generated: Optional[PassResult] = None, trials: Sequence[int] = ()) -> dict[str, Any]:
    """Write the figures into ``<run>/figures/``; returns their paths and any reasons.

    ``training``: the pass over the training images and their folder, for the figure of generated
    images beside their nearest training images (not made without it). ``generated`` and
    ``trials``: the pass that kept the images of those test trials, for the figure of each beside
    its stimulus (made when the set records each trial's stimulus).
    """
    run = GanRun(Path(config.run), config=sources.gan_config)
    out = run.figures
    written: dict[str, Any] = {"dir": str(out)}
    notes: dict[str, str] = {}

    written["generated_grid"] = str(save_generated_grid(grid, sources.class_names,
                                                        out / GRID_FILE, columns=GRID_COLUMNS))
    if training is None:
        notes["nearest_training"] = "no training images to compare with"
    else:
        written["nearest_training"] = str(save_nearest_training_figure(
            grid, training[0], training[1], sources.class_names, out / NEAREST_TRAINING_FILE))
    if generated is not None:
        stimuli, reason = stimulus_figure_or_note(sources, generated, trials, out / STIMULI_FILE)
        if stimuli is not None:
            written["stimuli"] = str(stimuli)
        else:
            notes["stimuli"] = reason

    events = run.training_events()
    if events.is_dir():
        try:
            path, tags = save_loss_curves(events, out / LOSS_CURVES_FILE)
            written["loss_curves"] = str(path)
            written["loss_curve_tags"] = tags
        except DataError as exc:
            notes["loss_curves"] = str(exc)
    else:
        notes["loss_curves"] = f"{events}: no TensorBoard events"

    candidates = [Path(config.encoder_run)] if config.encoder_run else run.encoder_run_candidates()
    existing = next((d / TSNE_FILE for d in candidates if (d / TSNE_FILE).is_file()), None)
    if existing is not None:
        written["tsne"] = str(copy_figure(existing, out / TSNE_FILE))
        written["tsne_source"] = str(existing)
    else:
        title = "t-SNE of the EEG test features"
        if kmeans is not None:
            title += f" (k-means accuracy {kmeans:.3f})"
        written["tsne"] = str(save_tsne(sources.test_features, sources.splits.y_test,
                                                sources.class_names, out / TSNE_FILE, title=title))
        written["tsne_source"] = "computed (perplexity 40, 700 iterations)"
    if notes:
        written["notes"] = notes
    return written


def save_nearest_training_figure(grid: Sequence[np.ndarray], training: PassResult,
                                 folder: Path, class_names: Sequence[str], destination: Path) -> Path:
    """The first :data:`NEAREST_PAIRS` grid images of each class beside their nearest training
    images (any class) in the gradient-histogram space."""
    generated = [np.asarray(row)[:NEAREST_PAIRS] for row in grid]
    flat = [image for row in generated for image in row]
    if not flat:
        raise DataError(f"{destination}: no generated images to show")
    index, _ = nearest_neighbours(gradient_histograms(np.stack(flat)), training.features[SPACE_NAME])
    nearest = real_images_at(folder, index, size=flat[0].shape[0])
    rows, start = [], 0
    for row in generated:
        rows.append(nearest[start:start + len(row)])
        start += len(row)
    return save_nearest_training(generated, rows, class_names, destination)


def _headline_inception(inception: dict[str, Any], fid: dict[str, Any]) -> str:
    if not inception.get("available"):
        return f"unavailable: {inception.get('reason')}"
    text = (f"IS {inception['mean']:.3f} +- {inception['std']:.3f} "
            f"({inception['splits']} {inception['split_order']} splits)")
    if fid.get("available"):
        text += f", FID {fid['value']:.2f}"
    return text


def evaluate_run(config: EvaluateConfig, inception_backend: Any = None, classifier: Any = None,
                 show_progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate the GAN run of ``config`` (:class:`~eeg2image_tf.config.EvaluateConfig`).

    ``inception_backend`` and ``classifier`` override the ones the config names (objects with
    ``.compute`` / ``.features_and_probs``, e.g. test doubles). Returns the dict stored under
    ``evaluation`` in ``<run>/metrics.json``; its top-level scalars are the headline numbers
    (``conditional_accuracy``, ``conditional_separability``, ``kmeans_accuracy``, ``inception``
    as text...), the sections hold the details. Prints a table unless ``echo`` is None.
    """
    config.validate()
    started = time.monotonic()
    sources = load_generation_sources(run=config.run, ema=config.ema)
    # One writer of the run's metrics.json and figures at a time (released on an error too).
    lock = lock_run(config.run)
    class_names = sources.class_names
    num_classes = len(class_names)

    # Networks: a missing one disables its metrics with a reason; a given but broken one is an error.
    inception_reason = ""
    if inception_backend is None:
        inception_backend, inception_reason = load_backend(graph=config.inception_graph,
                                                           weights=config.inception_weights)
    classifier_reason, classifier_path = "", None
    if classifier is None:
        classifier, classifier_reason, classifier_path = load_classifier_or_reason(config)
    else:
        classifier_path = Path(config.classifier or "<given>")
    if classifier is not None:
        classifier, classifier_reason = align_classifier(classifier, class_names)

    trials = stimulus_trials(sources)
    if config.images_dir:
        paths, labels = list_generated_folder(config.images_dir, class_names)
        chunks = folder_chunks(paths, labels, trials=generated_trials(config.images_dir, paths))
        generated_info = {"source": str(config.images_dir), "count": len(paths)}
        total = len(paths)
    else:
        chunks = generated_chunks(sources, config.per_class, config.batch_size, config.seed,
                                  config.jpeg_quality, precision=config.precision,
                                  latent_range=config.latent_range)
        total = config.per_class * num_classes
        generated_info = {"source": "generated in memory", "per_class": config.per_class,
                          "count": total, "seed": config.seed, "jpeg_quality": config.jpeg_quality,
                          "latent_range": config.latent_range}
    generated = run_pass(chunks, inception_backend, classifier, grid_classes=num_classes,
                         total=total, desc="generated images", show_progress=show_progress,
                         feature_spaces=FEATURE_SPACES, keep_trials=trials,
                         per_trial=IMAGES_PER_STIMULUS)
    generated_info["count"] = generated.count
    generated_info["generator"] = _generator_kind(config)
    generated_info["per_class_counts"] = {name: int(np.sum(generated.class_index == c))
                                          for c, name in enumerate(class_names)}

    real = None
    real_folder, real_reason = real_image_folder(config, sources)
    if real_folder is not None:
        real = run_pass(real_chunks(real_folder, class_names), inception_backend, classifier,
                        desc="real images", show_progress=show_progress,
                        feature_spaces=FEATURE_SPACES)
    training = None
    training_images, training_reason = training_folder(sources)
    if training_images is not None:
        training = run_pass(real_chunks(training_images, class_names), inception_backend,
                            desc="training images", show_progress=show_progress,
                            feature_spaces=FEATURE_SPACES)
    realism = {SPACE_NAME: realism_section(generated, training, real, class_names, SPACE_NAME,
                                           training_images, training_reason)}
    realism[INCEPTION_SPACE] = unavailable(inception_reason) if inception_backend is None else \
        realism_section(generated, training, real, class_names, INCEPTION_SPACE, training_images,
                        training_reason)

    if inception_backend is None:
        inception = unavailable(inception_reason)
        fid = unavailable(inception_reason)
    else:
        inception = score_section(generated.inception_probs, generated.class_index, class_names,
                                  config.splits, config.split_order, config.seed, inception_score)
        inception["backend"] = getattr(inception_backend, "name", type(inception_backend).__name__)
        inception["paper_comparable"] = bool(getattr(inception_backend, "paper_comparable", False))
        fid = unavailable(real_reason) if real is None else \
            distance_section(generated.inception_features, real.inception_features, real_folder)

    if classifier is None:
        classifier_info = unavailable(classifier_reason)
    else:
        classifier_info = classifier_section(generated, real, class_names, config,
                                             classifier_path)

    encoder_info = encoder_section(sources, num_classes, config.seed)
    per_subject = subject_section(sources, generated,
                                  generated.classifier_probs if classifier is not None else None)
    figures_info = make_figures(config, sources, generated.grid, encoder_info["kmeans_accuracy"],
                                None if training is None else (training, training_images),
                                generated, trials) if config.figures else {}

    evaluation: dict[str, Any] = {
        "inception": _headline_inception(inception, fid),
        "inception_score_mean": inception.get("mean"),
        "inception_score_std": inception.get("std"),
        "fid": fid.get("value"),
        "conditional_accuracy": classifier_info.get("conditional_accuracy"),
        "conditional_separability": classifier_info.get("conditional_separability"),
        **realism_headline(realism),
        "kmeans_accuracy": encoder_info["kmeans_accuracy"],
        "knn_accuracy": encoder_info["knn_accuracy"],
        "linear_probe_accuracy": encoder_info["linear_probe_accuracy"],
        "class_names": list(class_names),
        "generated": generated_info,
        "inception_score": inception,
        "frechet_inception_distance": fid,
        "classifier": classifier_info,
        "realism": realism,
        "encoder": encoder_info,
        "per_subject": per_subject,
        "figures": figures_info,
        "seconds": round(time.monotonic() - started, 1),
        "config": config_to_dict(config),
    }
    write_evaluation(config.run, evaluation)
    log_headline(config.run, evaluation)
    lock.release()
    if echo is not None:
        echo(format_table(evaluation))
        if per_subject.get("available"):
            echo(subject_lines(per_subject))
    return evaluation


def _generator_kind(config) -> str:
    """``"ema"`` when the evaluated generator is the run's weight average, else ``"trained"``."""
    if config.images_dir:
        return "as generated"       # generate_config.json beside the images says which
    if not config.ema:
        return "trained"
    return "ema" if checkpoint_has_ema(config.run) else "trained"


EVAL_SCALARS = (*HEADLINE_KEYS, *(f"inception_{key}" for key in HEADLINE_KEYS),
                "conditional_accuracy", "conditional_separability", "fid")


def log_headline(run: str | Path, evaluation: dict[str, Any]) -> None:
    """The headline numbers as TensorBoard scalars ``eval/<name>`` under ``tensorboard/eval``, at the
    step of the run's newest checkpoint (0 when it has none, e.g. a run of original weights)."""
    try:
        step = checkpoint_step(latest_checkpoint_in(GanRun(Path(run)).checkpoints),
                               from_name=True) or 0
    except Eeg2ImageError:
        step = 0
    with summary_writer(run, EVAL_EVENTS):
        for name in EVAL_SCALARS:
            value = evaluation.get(name)
            if isinstance(value, (int, float)) and np.isfinite(value):
                tf.summary.scalar(f"eval/{name}", float(value), step=step)


def write_evaluation(run: str | Path, evaluation: dict[str, Any]) -> Path:
    """Merge ``evaluation`` into ``<run>/metrics.json`` under ``evaluation`` (other keys kept)."""
    metrics = read_metrics(run)
    if not isinstance(metrics, dict):
        raise DataError(f"{GanRun(Path(run)).metrics}: expected a JSON object at the top level")
    metrics[EVALUATION_KEY] = evaluation
    return write_metrics(run, metrics)
