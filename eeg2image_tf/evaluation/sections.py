"""The sections of an evaluation: IS-style scores, Frechet distances, realism and variety
(precision, recall, diversity), the encoder's probes and the image classifier's conditional
accuracy; a metric whose network is missing is recorded as ``{"available": false, "reason": ...}``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy.linalg import LinAlgWarning

from ..checkpoints import load_image_classifier
from ..data import preprocess
from ..models import encoder_features
from ..runs import GanRun
from .images import PassResult
from .metrics import (classifier_score, conditional_separability, frechet_distance, kmeans_accuracy,
                      knn_accuracy, linear_probe_accuracy, per_class_accuracy)
from .realism import HEADLINE_KEYS, K_NEAREST, SPACE_NAME, realism_scores

INCEPTION_SPACE = "inception"
# What a section keeps of the held-out real images' own scores: the ceiling of each number.
_BASELINE_KEYS = ("available", *HEADLINE_KEYS, "class_precision", "class_recall", "real_count",
                  "generated_count", "reason")


def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def score_section(probs: np.ndarray, class_index: np.ndarray, class_names: Sequence[str],
                  splits: int, split_order: str, seed: int,
                  score: Callable[..., tuple[float, float]]) -> dict[str, Any]:
    """IS-style score (all classes, in both split orders, and per class) of ``probs`` ``(N, K)``.

    The rows are class-major, so ``class-sorted`` splits are the original's protocol. Per class, a
    class's images are split into ``min(splits, n_c)`` parts.
    """
    other_order = "class-sorted" if split_order == "mixed" else "mixed"
    if probs.shape[0] < splits:
        return unavailable(f"{probs.shape[0]} images are fewer than the {splits} splits")
    mean, std = score(probs, splits=splits, split_order=split_order, seed=seed)
    other_mean, other_std = score(probs, splits=splits, split_order=other_order, seed=seed)
    per_class: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        members = probs[class_index == c]
        if members.shape[0] == 0:
            per_class[name] = unavailable("no images of this class")
            continue
        class_mean, class_std = score(members, splits=min(splits, members.shape[0]),
                                      split_order=split_order, seed=seed)
        per_class[name] = {"available": True, "mean": class_mean, "std": class_std,
                           "count": int(members.shape[0])}
    return {"available": True, "mean": mean, "std": std, "splits": splits,
            "split_order": split_order, "count": int(probs.shape[0]),
            "other_split_order": {"split_order": other_order, "mean": other_mean, "std": other_std},
            "per_class": per_class}


def quiet_frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """:func:`metrics.frechet_distance` without scipy's singular-matrix warning.

    Sets smaller than the feature dimension give singular covariances; ``frechet_distance`` handles
    them and :func:`distance_section` notes it in the results, so the warning would only repeat it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=LinAlgWarning)
        return frechet_distance(features_a, features_b)


def distance_section(generated_features: np.ndarray, real_features: np.ndarray,
                     real_folder: Path) -> dict[str, Any]:
    """Frechet distance between generated and real features (``(N, D)`` each)."""
    if generated_features.shape[0] < 2 or real_features.shape[0] < 2:
        return unavailable("FID needs at least 2 generated and 2 real images")
    section = {"available": True,
               "value": quiet_frechet_distance(generated_features, real_features),
               "generated_count": int(generated_features.shape[0]),
               "real_count": int(real_features.shape[0]), "real_images": str(real_folder)}
    smallest = min(generated_features.shape[0], real_features.shape[0])
    if smallest <= generated_features.shape[1]:
        section["note"] = (f"{smallest} images for {generated_features.shape[1]}-d features: the "
                           "covariance is singular and the distance biased upwards; compare only "
                           "at equal set sizes")
    return section


def encoder_section(sources, num_classes: int, seed: int) -> dict[str, Any]:
    """k-means (Hungarian), kNN and linear-probe accuracy of the encoder's test features."""
    splits = sources.splits
    train_features = encoder_features(sources.encoder,
                                      preprocess(splits.x_train, method=sources.normalisation))
    test_features = sources.test_features
    kmeans, _ = kmeans_accuracy(test_features, splits.y_test, n_clusters=num_classes,
                                random_state=45)
    return {"kmeans_accuracy": kmeans,
            "knn_accuracy": knn_accuracy(train_features, splits.y_train, test_features,
                                         splits.y_test),
            "linear_probe_accuracy": linear_probe_accuracy(train_features, splits.y_train,
                                                           test_features, splits.y_test,
                                                           seed=seed),
            "train_trials": int(train_features.shape[0]),
            "test_trials": int(test_features.shape[0]),
            "chance": 1.0 / num_classes}


def find_classifier_run(config) -> tuple[Optional[Path], list[Path]]:
    """Where the image classifier of an evaluation of ``config.run`` is, and where it was looked for.

    In order: ``config.classifier``; the classifier an earlier ``evaluate`` or ``curve`` of this
    run recorded (:meth:`~eeg2image_tf.runs.GanRun.recorded_classifier_runs`);
    ``<run>/../image_classifier`` (the pipeline's layout).
    """
    if config.classifier:
        return Path(config.classifier), [Path(config.classifier)]
    looked = GanRun(Path(config.run)).recorded_classifier_runs() + \
        [GanRun(Path(config.run).resolve()).default_classifier()]
    for path in looked:
        if path.exists():
            return path, looked
    return None, looked


def load_classifier_or_reason(config) -> tuple[Any, str, Optional[Path]]:
    """The image classifier that :func:`find_classifier_run` finds; else None and a reason."""
    path, looked = find_classifier_run(config)
    if path is None or not path.exists():
        if config.classifier:
            return None, f"no image classifier run at {config.classifier}", Path(config.classifier)
        recorded = [str(place) for place in looked[:-1]]
        also = f"; the run's records name {', '.join(recorded)}, which are gone" if recorded else \
            " and none recorded by an earlier evaluate or curve of this run"
        return None, (f"no image classifier run at {looked[-1]} (default location){also}; pass "
                      "--classifier RUN"), looked[-1]
    return load_image_classifier(str(path)), "", path


class ReorderedClassifier:
    """A classifier whose probability columns are put into the run's class order."""

    def __init__(self, classifier, columns: np.ndarray):
        self.classifier = classifier
        self.columns = columns

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, probs = self.classifier.features_and_probs(images)
        return features, np.asarray(probs)[:, self.columns]


def align_classifier(classifier, class_names: Sequence[str]) -> tuple[Any, str]:
    """Match the classifier's classes to the run's by name: ``(classifier or None, reason)``."""
    names = getattr(classifier, "class_names", None)
    if names is None or tuple(names) == tuple(class_names):
        return classifier, ""
    if sorted(names) != sorted(class_names):
        return None, (f"the image classifier knows classes {', '.join(names)}, the run "
                      f"{', '.join(class_names)}")
    columns = np.array([list(names).index(name) for name in class_names])
    return ReorderedClassifier(classifier, columns), ""


def classifier_section(result: PassResult, real: Optional[PassResult], class_names: Sequence[str],
                       config, path: Path) -> dict[str, Any]:
    """Conditional accuracy and separability, and the classifier's IS/FID analogues."""
    labels = result.class_index
    predictions = result.classifier_probs.argmax(axis=1)
    section: dict[str, Any] = {
        "available": True, "run": str(path),
        "conditional_accuracy": float(np.mean(predictions == labels)),
        "per_class_accuracy": per_class_accuracy(predictions, labels, class_names),
        "conditional_separability": conditional_separability(
            result.classifier_features, labels, n_clusters=len(class_names)),
        "classifier_score": score_section(result.classifier_probs, labels, class_names,
                                          config.splits, config.split_order, config.seed,
                                          classifier_score),
        "chance": 1.0 / len(class_names),
    }
    if real is not None and real.count >= 2:
        known = real.class_index >= 0
        section["real_accuracy"] = float(np.mean(
            real.classifier_probs[known].argmax(axis=1) == real.class_index[known]))
        section["classifier_fid"] = quiet_frechet_distance(result.classifier_features,
                                                           real.classifier_features)
    return section


def space_features(result: PassResult, space: str) -> Optional[np.ndarray]:
    """The features ``(N, D)`` one pass collected in ``space`` (``"inception"`` or a feature space
    of :func:`~.images.run_pass`), or None."""
    if space == INCEPTION_SPACE:
        return result.inception_features
    return result.features.get(space)


def realism_section(generated: PassResult, training: Optional[PassResult],
                    held_out: Optional[PassResult], class_names: Sequence[str], space: str,
                    reference: Optional[Path], reason: str = "") -> dict[str, Any]:
    """Precision, recall and diversity of the generated images against the training images, in the
    feature ``space``; ``held_out`` (the real test images) scored the same way is the ceiling.

    Unavailable, with ``reason``, when there are no training images to compare with.
    """
    if training is None:
        return unavailable(reason or "no training images to compare with")
    real = space_features(training, space)
    section = realism_scores(real, training.class_index, space_features(generated, space),
                             generated.class_index, class_names, K_NEAREST)
    section.update(space=space, feature_dim=int(real.shape[1]), reference=str(reference))
    if held_out is not None and space_features(held_out, space) is not None:
        ceiling = realism_scores(real, training.class_index, space_features(held_out, space),
                                 held_out.class_index, class_names, K_NEAREST)
        section["real_test"] = {key: ceiling[key] for key in _BASELINE_KEYS if key in ceiling}
    return section


def realism_headline(sections: dict[str, dict[str, Any]]) -> dict[str, Optional[float]]:
    """The headline numbers of the realism sections: ``precision``, ``recall``, ``diversity_ratio``,
    ``precision_distance``, ``recall_distance`` in the gradient-histogram space (and
    ``real_test_...``, the held-out real images' scores), and ``inception_precision``, ... in
    Inception's; None where unavailable."""
    headline: dict[str, Optional[float]] = {}
    for space, prefix in ((SPACE_NAME, ""), (INCEPTION_SPACE, "inception_")):
        section = sections.get(space, {})
        ceiling = section.get("real_test", {})
        for key in HEADLINE_KEYS:
            headline[prefix + key] = section.get(key)
            if not prefix:
                headline["real_test_" + key] = ceiling.get(key)
    return headline
