"""Tests of eeg2image_tf.evaluation.metrics against closed forms and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy

from eeg2image_tf.evaluation import metrics


def _blobs(n_per_class=40, classes=4, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    points = centres[labels] + rng.normal(0, spread, size=(labels.size, dim))
    return points.astype(np.float32), labels


# --------------------------------------------------------------------------------------------------
# clustering accuracy
# --------------------------------------------------------------------------------------------------

def test_clustering_accuracy_relabelled_perfect_clustering_is_one():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([7, 7, 3, 3, 11, 11, 11])  # other ids, other range
    assert metrics.clustering_accuracy(labels, clusters) == 1.0


def test_clustering_accuracy_beats_greedy_matching():
    # Confusion matrix, clusters (rows) x labels (columns):
    #            label 0  label 1
    # cluster 10    3        2
    # cluster 20    2        0
    # Greedy takes the largest cell (10 -> 0, 3 matches) and is left with 20 -> 1 (0): 3 / 7.
    # The optimum is 10 -> 1 (2) and 20 -> 0 (2): 4 / 7.
    labels = np.array([0, 0, 0, 1, 1, 0, 0])
    clusters = np.array([10, 10, 10, 10, 10, 20, 20])
    assert metrics.clustering_accuracy(labels, clusters) == pytest.approx(4 / 7)


def test_clustering_accuracy_more_clusters_than_labels():
    # Confusion matrix, clusters x labels:
    #            0  1  2
    # cluster 5  3  1  0
    # cluster 7  1  2  0
    # cluster 9  0  0  2
    # cluster 3  0  0  1
    # Best: 5 -> 0 (3), 7 -> 1 (2), 9 -> 2 (2); cluster 3 gets no label: 7 / 10.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([5, 5, 5, 7, 7, 7, 5, 9, 9, 3])
    assert metrics.clustering_accuracy(labels, clusters) == pytest.approx(0.7)


def test_clustering_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="labels"):
        metrics.clustering_accuracy([0, 1, 2], [0, 1])


def test_kmeans_accuracy_on_separated_blobs():
    points, labels = _blobs(classes=4)
    accuracy, cluster_ids = metrics.kmeans_accuracy(points, labels, n_clusters=4, random_state=45)
    assert accuracy == 1.0
    assert cluster_ids.shape == labels.shape
    assert len(np.unique(cluster_ids)) == 4


def test_kmeans_accuracy_is_deterministic_for_a_random_state():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(120, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=120)
    first = metrics.kmeans_accuracy(points, labels, n_clusters=3, random_state=45)
    second = metrics.kmeans_accuracy(points, labels, n_clusters=3, random_state=45)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])


# --------------------------------------------------------------------------------------------------
# Inception Score
# --------------------------------------------------------------------------------------------------

def test_inception_score_of_uniform_predictions_is_one():
    probs = np.full((200, 10), 0.1)
    mean, std = metrics.inception_score(probs, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_balanced_confident_predictions_is_the_class_count():
    classes = 10
    probs = np.eye(classes)[np.repeat(np.arange(classes), 500)]  # class-sorted, 5000 rows
    # One split holds everything: exactly K.
    assert metrics.inception_score(probs, splits=1)[0] == pytest.approx(classes, rel=1e-12)
    # Mixed splits of 500: each part is nearly balanced, so nearly K (the deficit is ~(K-1)/(2n)).
    mean, std = metrics.inception_score(probs, splits=10, split_order="mixed")
    assert 9.85 < mean <= 10.0
    assert std < 0.1


def test_class_sorted_splits_score_one_per_split_for_one_hot_predictions():
    # The documented difference: with one class per part, p(y) equals p(y|x) in every part.
    classes = 10
    probs = np.eye(classes)[np.repeat(np.arange(classes), 30)]
    mean, std = metrics.inception_score(probs, splits=10, split_order="class-sorted")
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert metrics.inception_score(probs, splits=10, split_order="mixed")[0] > 8.0


def test_inception_score_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(5, 0.5), size=23)
    # Class-sorted parts: rows [0, 7), [7, 15), [15, 23) for n = 23 and 3 splits.
    expected = []
    for start, stop in ((0, 7), (7, 15), (15, 23)):
        part = probs[start:stop]
        marginal = part.mean(axis=0)
        expected.append(np.exp(np.mean([entropy(row, marginal) for row in part])))
    mean, std = metrics.inception_score(probs, splits=3, split_order="class-sorted")
    assert mean == pytest.approx(np.mean(expected), rel=1e-10)
    assert std == pytest.approx(np.std(expected), rel=1e-8)
    # "mixed" is the class-sorted computation on a seeded permutation.
    permuted = probs[np.random.default_rng(4).permutation(23)]
    assert metrics.inception_score(probs, splits=3, split_order="mixed", seed=4) == \
        pytest.approx(metrics.inception_score(permuted, splits=3, split_order="class-sorted"))


def test_inception_score_rejects_bad_input():
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(np.full((5, 3), 1 / 3), splits=10)
    with pytest.raises(ValueError, match="split_order"):
        metrics.inception_score(np.full((20, 3), 1 / 3), split_order="sorted")


def test_classifier_score_is_the_inception_formula():
    probs = np.eye(4)[np.tile(np.arange(4), 25)]
    assert metrics.classifier_score(probs, splits=1)[0] == pytest.approx(4.0)


# --------------------------------------------------------------------------------------------------
# FID and KID
# --------------------------------------------------------------------------------------------------

def test_frechet_distance_of_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 6))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt(a) - sqrt(b))^2 for diagonal S1, S2.
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert expected == pytest.approx(5.25 + 4.0 + 1.0)
    value = metrics.frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert value == pytest.approx(expected, rel=1e-10)

    rng = np.random.default_rng(2)
    a = mu_a + rng.normal(size=(20000, 3)) * np.sqrt(var_a)
    b = mu_b + rng.normal(size=(20000, 3)) * np.sqrt(var_b)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(10, 32))
    b = rng.normal(size=(10, 32)) + 2.0
    value = metrics.frechet_distance(a, b)
    assert np.isfinite(value)
    assert value > 32 * 2.0 ** 2 * 0.5  # dominated by the mean shift of 2 in 32 dimensions


def test_kernel_inception_distance_matches_brute_force_unbiased_mmd():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.5

    def kernel(x, y):
        return (x @ y / 3 + 1) ** 3

    m = 7
    within_a = sum(kernel(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_b = sum(kernel(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    across = sum(kernel(a[i], b[j]) for i in range(m) for j in range(m)) / m ** 2
    expected = within_a + within_b - 2 * across
    # A subset of the whole set is a permutation of it; the MMD does not depend on row order.
    mean, std = metrics.kernel_inception_distance(a, b, subsets=3, subset_size=100)
    assert mean == pytest.approx(expected, rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-10)


def test_kernel_inception_distance_is_near_zero_for_one_distribution_and_grows_with_shift():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same, _ = metrics.kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shifted, _ = metrics.kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05
    assert shifted > 1.0
    assert shifted > 20 * abs(same)


# --------------------------------------------------------------------------------------------------
# probes and conditional metrics
# --------------------------------------------------------------------------------------------------

def test_knn_and_linear_probe_on_separable_blobs():
    points, labels = _blobs(n_per_class=30, classes=3, seed=1)
    order = np.random.default_rng(0).permutation(labels.size)
    train, test = order[:60], order[60:]
    assert metrics.knn_accuracy(points[train], labels[train], points[test], labels[test]) == 1.0
    assert metrics.linear_probe_accuracy(points[train], labels[train],
                                         points[test], labels[test]) == 1.0


def test_probes_are_at_chance_on_random_labels():
    rng = np.random.default_rng(8)
    points = rng.normal(size=(400, 4))
    labels = rng.integers(0, 2, size=400)
    knn = metrics.knn_accuracy(points[:200], labels[:200], points[200:], labels[200:])
    probe = metrics.linear_probe_accuracy(points[:200], labels[:200], points[200:], labels[200:])
    assert 0.35 < knn < 0.65
    assert 0.35 < probe < 0.65


class _FixedClassifier:
    """Stands in for the image classifier: 'predicts' the class stored in the first pixel."""

    def predict_proba(self, images, batch_size=256):
        classes = images[:, 0, 0, 0].astype(int)
        return np.eye(3)[classes]


def test_conditional_accuracy_overall_and_per_class():
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    conditions = np.array([0, 0, 1, 2, 2, 2, 2, 1])
    images = np.zeros((8, 2, 2, 3))
    images[:, 0, 0, 0] = predicted
    overall, per_class = metrics.conditional_accuracy(_FixedClassifier(), images, conditions)
    assert overall == pytest.approx(6 / 8)
    assert per_class == {0: 1.0, 1: 0.5, 2: pytest.approx(3 / 4)}
    _, named = metrics.conditional_accuracy(_FixedClassifier(), images, conditions,
                                            class_names=("A", "C", "F"))
    assert named["C"] == 0.5


def test_conditional_separability_of_clustered_features():
    points, labels = _blobs(classes=5, seed=2)
    assert metrics.conditional_separability(points, labels) == 1.0
    rng = np.random.default_rng(9)
    noise = rng.normal(size=points.shape)
    assert metrics.conditional_separability(noise, labels) < 0.5
