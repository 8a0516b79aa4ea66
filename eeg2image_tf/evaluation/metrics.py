"""Evaluation metrics: clustering accuracy, Inception Score, FID, KID, encoder probes, and the
conditional metrics computed with our own image classifier.

Everything here is numpy / scipy / scikit-learn on arrays, so it can be tested without TensorFlow;
the functions that apply a classifier only call its ``predict_proba`` / ``features`` methods.
Statistics are computed in float64 whatever the input precision.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import linalg
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..config import SPLIT_ORDERS
from ..errors import DataError

# Probabilities of exactly 0 appear with one-hot or saturated softmax outputs; 0 * log 0 is taken as 0
# (its limit), so logarithms only ever see values >= this floor.
_LOG_FLOOR = 1e-30


# --------------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------------

def clustering_accuracy(y_true: Sequence[int] | np.ndarray,
                        y_pred: Sequence[int] | np.ndarray) -> float:
    """Accuracy of a clustering under the best one-to-one matching of clusters to labels.

    ``y_true`` and ``y_pred`` are ``(N,)`` integer arrays whose values may be any ids: the number
    and range of cluster ids need not match those of the labels. The matching maximises the number
    of agreements (Hungarian algorithm on the ``clusters x labels`` confusion matrix); clusters or
    labels left without a partner count as errors. Returns a fraction in [0, 1].
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"clustering_accuracy: {y_true.shape[0]} labels but {y_pred.shape[0]} "
                         "cluster ids")
    if y_true.size == 0:
        raise ValueError("clustering_accuracy: no samples")
    _, label_index = np.unique(y_true, return_inverse=True)
    _, cluster_index = np.unique(y_pred, return_inverse=True)
    confusion = np.zeros((cluster_index.max() + 1, label_index.max() + 1), dtype=np.int64)
    np.add.at(confusion, (cluster_index, label_index), 1)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / y_true.size)


def kmeans_accuracy(features: np.ndarray, labels: np.ndarray, n_clusters: int = 10,
                    random_state: int = 45) -> tuple[float, np.ndarray]:
    """k-means on ``features`` ``(N, D)``, scored with :func:`clustering_accuracy` against ``labels``.

    This is the original's checkpoint-selection metric (docs/method.md section 3):
    ``KMeans(n_clusters=10, random_state=45)``. ``n_init=10`` is set explicitly because that was the
    default of the scikit-learn the original ran (2022); newer versions default to ``"auto"``, which
    means a single initialisation for k-means++. The features are passed in their own dtype (float32
    features are clustered in float32, as in the original). Returns ``(accuracy, cluster_ids (N,))``.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"kmeans_accuracy: features must be (N, D), got shape {features.shape}")
    if n_clusters > len(features):
        raise DataError(f"k-means: --n-clusters {n_clusters} is more than the {len(features)} "
                        "test trials")
    kmeans = KMeans(n_clusters=n_clusters, random_state=random_state, n_init=10)
    cluster_ids = kmeans.fit_predict(features)
    return clustering_accuracy(labels, cluster_ids), cluster_ids


# --------------------------------------------------------------------------------------------------
# Inception Score
# --------------------------------------------------------------------------------------------------

def _entropy_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) for ``p`` (N, K) and ``q`` (K,), with 0 log 0 = 0."""
    p_log_p = np.where(p > 0, p * np.log(np.maximum(p, _LOG_FLOOR)), 0.0)
    p_log_q = np.where(p > 0, p * np.log(np.maximum(q, _LOG_FLOOR))[None, :], 0.0)
    return (p_log_p - p_log_q).sum(axis=1)


def inception_score(probs: np.ndarray, splits: int = 10, split_order: str = "mixed",
                    seed: int = 0) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` per split; mean and std over the splits.

    ``probs`` is ``(N, K)``, one class distribution per image. Part ``k`` of the split is
    ``probs[k*N//splits : (k+1)*N//splits]`` and ``p(y)`` is the mean of that part, exactly as in
    the Improved-GAN reference code. ``split_order`` decides which images share a part:

    - ``"class-sorted"``: the rows in the order given. The original evaluates a list sorted by
      class, so each part holds about one class: ``p(y)`` of a part is then close to each image's
      ``p(y|x)`` and the score measures within-class diversity only (a perfect one-hot generator
      scores 1), and the spread over parts reflects differences between classes. Use this, with
      class-sorted input, to compare with the paper's numbers.
    - ``"mixed"`` (default, the usual protocol): the rows are permuted with ``seed`` first, so every
      part is a sample of all classes and the standard deviation is a sampling error.

    Returns ``(mean, std)`` as Python floats (std is numpy's population std, as in the reference).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"inception_score: probs must be (N, K), got shape {probs.shape}")
    if split_order not in SPLIT_ORDERS:
        raise ValueError(f"inception_score: split_order must be one of {SPLIT_ORDERS}, "
                         f"got {split_order!r}")
    n = probs.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score: need at least {splits} rows for {splits} splits, "
                         f"got {n}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("inception_score: probs must be finite and non-negative")
    if split_order == "mixed":
        probs = probs[np.random.default_rng(seed).permutation(n)]
    scores = []
    for k in range(splits):
        part = probs[k * n // splits:(k + 1) * n // splits]
        marginal = part.mean(axis=0)
        scores.append(np.exp(_entropy_terms(part, marginal).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def classifier_score(probs: np.ndarray, splits: int = 10, split_order: str = "mixed",
                     seed: int = 0) -> tuple[float, float]:
    """The Inception Score formula applied to our domain classifier's ``(N, K)`` probabilities.

    Unlike the Inception Score it needs no download and knows the dataset's own classes, so its
    ceiling is ``K`` (confident predictions spread evenly over the ``K`` classes).
    """
    return inception_score(probs, splits=splits, split_order=split_order, seed=seed)


# --------------------------------------------------------------------------------------------------
# Frechet and kernel distances
# --------------------------------------------------------------------------------------------------

def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``features`` ``(N, D)``, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics: need (N >= 2, D) features, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_from_stats(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray,
                                sigma_b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)``.

    ``||mu_a - mu_b||^2 + tr(sigma_a + sigma_b - 2 (sigma_a sigma_b)^(1/2))``. With fewer samples than
    dimensions the covariances are singular and the matrix square root may come out non-finite; then
    ``eps * I`` is added to both covariances and the root recomputed. Rounding leaves tiny imaginary
    parts in the root, which are dropped; a large one means the inputs are not covariances
    (a ``ValueError``).
    """
    mu_a = np.atleast_1d(np.asarray(mu_a, dtype=np.float64))
    mu_b = np.atleast_1d(np.asarray(mu_b, dtype=np.float64))
    sigma_a = np.atleast_2d(np.asarray(sigma_a, dtype=np.float64))
    sigma_b = np.atleast_2d(np.asarray(sigma_b, dtype=np.float64))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape \
            or sigma_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(f"frechet_distance: mismatched statistics: means {mu_a.shape} and "
                         f"{mu_b.shape}, covariances {sigma_a.shape} and {sigma_b.shape}")

    covmean = linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma_a.shape[0]) * eps
        covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        largest_imaginary = np.max(np.abs(covmean.imag))
        scale = max(1.0, np.max(np.abs(covmean.real)))
        if largest_imaginary > 1e-3 * scale:
            raise ValueError(f"frechet_distance: matrix square root has an imaginary part of "
                             f"{largest_imaginary:.3g}; are the covariances symmetric PSD?")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """FID-style distance between two feature sets ``(N_a, D)`` and ``(N_b, D)``.

    With Inception ``pool_3`` features this is the FID; with our classifier's features it is the
    domain analogue.
    """
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    return frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b, eps=eps)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float,
                       coef0: float) -> np.ndarray:
    return (gamma * (x @ y.T) + coef0) ** degree


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, degree: int = 3,
                              gamma: float | None = None, coef0: float = 1.0,
                              seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased MMD^2 between two feature sets with a polynomial kernel.

    ``k(x, y) = (gamma x.y + coef0)^degree``, by default ``(x.y / D + 1)^3`` (Binkowski et al. 2018).
    ``subsets`` random subsets of ``subset_size`` rows (without replacement, clipped to the smaller
    set) are drawn from each set; returns the mean and std of the per-subset estimates. The estimate
    is unbiased, so it can be slightly negative for identical distributions.
    """
    features_a = np.asarray(features_a, dtype=np.float64)
    features_b = np.asarray(features_b, dtype=np.float64)
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"kernel_inception_distance: feature shapes {features_a.shape} and "
                         f"{features_b.shape} are not (N, D) with the same D")
    m = min(subset_size, features_a.shape[0], features_b.shape[0])
    if m < 2:
        raise ValueError("kernel_inception_distance: need at least 2 rows in each set")
    if gamma is None:
        gamma = 1.0 / features_a.shape[1]
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for i in range(subsets):
        a = features_a[rng.choice(features_a.shape[0], m, replace=False)]
        b = features_b[rng.choice(features_b.shape[0], m, replace=False)]
        k_aa = _polynomial_kernel(a, a, degree, gamma, coef0)
        k_bb = _polynomial_kernel(b, b, degree, gamma, coef0)
        k_ab = _polynomial_kernel(a, b, degree, gamma, coef0)
        # The unbiased estimator leaves out the i == j terms of the within-set sums.
        within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
        within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        estimates[i] = within_a + within_b - 2.0 * k_ab.mean()
    return float(estimates.mean()), float(estimates.std())


# --------------------------------------------------------------------------------------------------
# Encoder probes
# --------------------------------------------------------------------------------------------------

def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, k: int = 5) -> float:
    """Test accuracy of a ``k``-nearest-neighbour (Euclidean) classifier fitted on the training set.

    ``train_x`` ``(N, D)``, ``train_y`` ``(N,)``; ``k`` is clipped to the training set size.
    """
    classifier = KNeighborsClassifier(n_neighbors=min(k, len(train_x)))
    classifier.fit(np.asarray(train_x), np.asarray(train_y))
    return float(classifier.score(np.asarray(test_x), np.asarray(test_y)))


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                          test_y: np.ndarray, seed: int = 0) -> float:
    """Test accuracy of a logistic regression on standardised features (the linear-probe protocol)."""
    probe = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=5000, random_state=seed))
    probe.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    return float(probe.score(np.asarray(test_x, dtype=np.float64), np.asarray(test_y)))


# --------------------------------------------------------------------------------------------------
# Conditional metrics with the domain classifier
# --------------------------------------------------------------------------------------------------

def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray,
                       class_names: Sequence[str] | None = None) -> dict[Any, float]:
    """Accuracy for each class present in ``labels`` ``(N,)``, keyed by class name or index."""
    predictions = np.asarray(predictions).ravel()
    labels = np.asarray(labels).ravel()
    result: dict[Any, float] = {}
    for label in np.unique(labels):
        key = class_names[int(label)] if class_names is not None else int(label)
        result[key] = float(np.mean(predictions[labels == label] == label))
    return result


def conditional_accuracy(classifier: Any, images: np.ndarray, condition_labels: np.ndarray,
                         class_names: Sequence[str] | None = None,
                         batch_size: int = 256) -> tuple[float, dict[Any, float]]:
    """How often the domain classifier recognises the class an image was generated for.

    ``classifier`` has ``predict_proba(images, batch_size=...) -> (N, K)`` (our
    :class:`~eeg2image_tf.models.classifier.ImageClassifier`); ``images`` is ``(N, H, W, 3)`` in
    [-1, 1]; ``condition_labels`` ``(N,)`` are the classes of the EEG trials that conditioned them.
    For real images with their true labels this is the classifier's test accuracy.
    Returns ``(overall, {class: accuracy})``.
    """
    probs = np.asarray(classifier.predict_proba(images, batch_size=batch_size))
    labels = np.asarray(condition_labels).ravel()
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(f"conditional_accuracy: {probs.shape[0]} images but {labels.shape[0]} "
                         "condition labels")
    predictions = probs.argmax(axis=1)
    return float(np.mean(predictions == labels)), per_class_accuracy(predictions, labels,
                                                                     class_names)


def conditional_separability(features: np.ndarray, condition_labels: np.ndarray,
                             n_clusters: int | None = None, random_state: int = 45) -> float:
    """k-means clustering accuracy of image features ``(N, D)`` against their conditioning classes.

    High when images generated for different classes fall into different clusters of the
    classifier's feature space, whether or not the classifier names them correctly.
    ``n_clusters`` defaults to the number of distinct condition labels.
    """
    labels = np.asarray(condition_labels).ravel()
    if n_clusters is None:
        n_clusters = int(np.unique(labels).size)
    accuracy, _ = kmeans_accuracy(features, labels, n_clusters=n_clusters,
                                  random_state=random_state)
    return accuracy

