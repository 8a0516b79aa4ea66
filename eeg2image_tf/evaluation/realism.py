"""Realism and variety of generated images: improved precision and recall, and a diversity ratio.

Improved precision and recall (Kynkaenniemi et al., NeurIPS 2019; StyleGAN2-ADA's ``pr50k3``)
compare two sets of feature vectors through k-nearest-neighbour manifolds. The manifold of a set is
the union of balls around its points, each ball's radius the distance to that point's ``k``-th
nearest neighbour in the same set (``k = 3``). **Precision** is the fraction of generated samples
inside the real manifold (do the samples look like some real image?); **recall** the fraction of
real samples inside the generated manifold (does the generator cover what the real images show?).
Both are read overall and per class (the real and generated images of one class). The two numbers
depend on the set sizes, so compare them only at equal numbers of images.

Precision is a count of images inside the manifold, so it stays at 0 while every image is outside,
however near. The **manifold distances** say how far out: an image's distance to the real manifold
is the smallest, over the real points, of its distance to the point over that point's radius (1 on
the surface of the nearest ball, below 1 inside: precision is the fraction at 1 or less).
``precision_distance`` is its median over the generated images, ``recall_distance`` the same of the
real images against the generated manifold.

The **diversity ratio** of a class is the mean pairwise feature distance among its generated
images over that among its real images; it is averaged over the classes. 1 is the real images'
variety; a generator that draws one shape per class stays well below it.

The measures take features from any space. The Inception network's pool features (evaluation's
Inception backends) need a network the user provides; :func:`gradient_histograms` needs nothing and
is the space every evaluation reports: histograms of oriented gradients (Dalal and Triggs, 2005)
on an 8 x 8 grid of cells at the image's own resolution. It was chosen for what it sees in letters
and digits: where the strokes are and which way their edges run (the typeface: serif or sans, bold
or light, upright or italic), and how the edges are drawn. Anti-aliased curves give smoothly
varying orientations, pure black-and-white pixels a staircase of 0, 45 and 90 degree steps, a blur
weak gradients spread over neighbouring cells; so binarised or blurred letters leave the real
manifold while held-out real letters stay in it (``tests/test_realism.py``). Features at a reduced
resolution would lose the staircase: shrinking averages it back into grey edges.

Everything here is numpy: features ``(N, D)`` float, class labels ``(N,)`` int.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

K_NEAREST = 3
# Histograms of oriented gradients: 8 x 8 cells over the image, 9 unsigned orientation bins of
# 20 degrees, blocks of 2 x 2 cells (7 x 7 blocks, 1764 numbers), each block normalised then
# clipped at 0.2 and normalised again (Dalal and Triggs' "L2-Hys").
GRID_CELLS = 8
ORIENTATION_BINS = 9
BLOCK_CELLS = 2
BLOCK_CLIP = 0.2
# The blocks' normaliser is sqrt(|v|^2 + (STABILISER * cell side)^2): a black-to-white edge across
# a cell adds about its side (in px, gradients in units of the full range) to the cell's histogram,
# so a block with less than a tenth of such an edge (JPEG ringing on a white background, faint
# noise) keeps a small vector instead of being blown up to unit length.
STABILISER = 0.1
# Rows of distances computed at once: a block and its temporaries take about 3 x BLOCK_ROWS x N
# float64 (600 MB against 50,000 images).
BLOCK_ROWS = 512
SPACE_NAME = "gradient_histogram"


# --------------------------------------------------------------------------------------------------
# The no-download feature space
# --------------------------------------------------------------------------------------------------

def _cell_edges(size: int) -> np.ndarray:
    """``GRID_CELLS + 1`` pixel boundaries splitting ``size`` pixels into near-equal cells."""
    return np.linspace(0, size, GRID_CELLS + 1).round().astype(np.int64)


def gradient_histograms(images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Histograms of oriented gradients of ``images``: float32 ``(N, 1764)``, unit L2 norm.

    ``images``: uint8 ``(N, H, W, 3)`` RGB (or ``(N, H, W)`` grey), ``H, W >= 8``; every image is
    read at its own resolution. Per pixel the central-difference gradient of the colour channel with
    the largest one; each pixel votes its gradient magnitude into the two nearest of 9 orientation
    bins (0-180 degrees) of its cell; cells form an 8 x 8 grid; overlapping 2 x 2-cell blocks are
    normalised ("L2-Hys", :data:`STABILISER`); the concatenation is scaled to unit length (a blank
    image gives zeros).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or min(images.shape[1:3]) < GRID_CELLS:
        raise ValueError(f"gradient_histograms: expected (N, H, W, C) images with H, W >= "
                         f"{GRID_CELLS}, got shape {images.shape}")
    parts = [_histograms(images[start:start + batch_size])
             for start in range(0, images.shape[0], batch_size)]
    if not parts:
        return np.zeros((0, _feature_size()), np.float32)
    return np.concatenate(parts)


def _feature_size() -> int:
    blocks = GRID_CELLS - BLOCK_CELLS + 1
    return blocks * blocks * BLOCK_CELLS * BLOCK_CELLS * ORIENTATION_BINS


def _histograms(images: np.ndarray) -> np.ndarray:
    pixels = images.astype(np.float32) / np.float32(255.0)
    gx = np.zeros_like(pixels)
    gy = np.zeros_like(pixels)
    gx[:, :, 1:-1] = pixels[:, :, 2:] - pixels[:, :, :-2]
    gy[:, 1:-1] = pixels[:, 2:] - pixels[:, :-2]
    magnitude = np.hypot(gx, gy)
    strongest = magnitude.argmax(axis=-1)[..., None]
    magnitude = np.take_along_axis(magnitude, strongest, axis=-1)[..., 0]
    gx = np.take_along_axis(gx, strongest, axis=-1)[..., 0]
    gy = np.take_along_axis(gy, strongest, axis=-1)[..., 0]
    # Orientation as a position on the circle of bins (bin b is centred at (b + 0.5) * 20 degrees).
    position = np.mod(np.arctan2(gy, gx), np.pi) * (ORIENTATION_BINS / np.pi) - 0.5

    count, height, width = magnitude.shape
    rows, cols = _cell_edges(height), _cell_edges(width)
    cells = np.empty((count, GRID_CELLS, GRID_CELLS, ORIENTATION_BINS), np.float32)
    for b in range(ORIENTATION_BINS):
        gap = np.abs(position - b)
        gap = np.minimum(gap, ORIENTATION_BINS - gap)
        votes = magnitude * np.clip(1.0 - gap, 0.0, None)
        per_row = np.add.reduceat(votes, rows[:-1], axis=1)
        cells[..., b] = np.add.reduceat(per_row, cols[:-1], axis=2)

    blocks_per_side = GRID_CELLS - BLOCK_CELLS + 1
    blocks = np.concatenate([cells[:, i:i + blocks_per_side, j:j + blocks_per_side]
                             for i in range(BLOCK_CELLS) for j in range(BLOCK_CELLS)], axis=-1)
    stabiliser = np.float32((STABILISER * min(height, width) / GRID_CELLS) ** 2)
    blocks = blocks / np.sqrt(np.sum(blocks * blocks, axis=-1, keepdims=True) + stabiliser)
    blocks = np.minimum(blocks, np.float32(BLOCK_CLIP))
    blocks = blocks / np.sqrt(np.sum(blocks * blocks, axis=-1, keepdims=True) + stabiliser)
    features = blocks.reshape(count, -1)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, np.float32(1e-12))).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Distances and k-NN manifolds
# --------------------------------------------------------------------------------------------------

def _as_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: expected features (N, D), got shape {features.shape}")
    return features


def _distance_rows(queries: np.ndarray, reference: np.ndarray, reference_sq: np.ndarray
                   ) -> np.ndarray:
    """Euclidean distances ``(len(queries), len(reference))`` in float64 (never negative)."""
    squared = np.sum(queries * queries, axis=1)[:, None] + reference_sq[None, :] \
        - 2.0 * (queries @ reference.T)
    return np.sqrt(np.maximum(squared, 0.0))


def knn_radii(features: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """Distance of each point to its ``k``-th nearest *other* point of the set: float64 ``(N,)``.

    ``features`` ``(N, D)`` with ``N > k``. A point's own zero distance never counts; a duplicate of
    it does (two equal points are each other's nearest neighbour at distance 0).
    """
    features = _as_features(features, "knn_radii")
    count = features.shape[0]
    if k < 1 or count <= k:
        raise ValueError(f"knn_radii: {count} points cannot give the {k}-th nearest neighbour "
                         f"(need more than {k})")
    squared = np.sum(features * features, axis=1)
    radii = np.empty(count)
    for start in range(0, count, BLOCK_ROWS):
        rows = _distance_rows(features[start:start + BLOCK_ROWS], features, squared)
        own = np.arange(rows.shape[0])
        rows[own, start + own] = np.inf
        radii[start:start + rows.shape[0]] = np.partition(rows, k - 1, axis=1)[:, k - 1]
    return radii


def _balls(name: str, queries: np.ndarray, reference: np.ndarray, radii: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Both readings of a query set against balls around ``reference`` from one pass over their
    distances: bool ``(M,)``, inside some ball (a ball's surface counts), and float64 ``(M,)``,
    ``min_j |query - reference_j| / radii[j]``."""
    queries = _as_features(queries, f"{name} queries")
    reference = _as_features(reference, f"{name} reference")
    radii = np.asarray(radii, dtype=np.float64)
    if radii.shape != (reference.shape[0],) or queries.shape[1] != reference.shape[1]:
        raise ValueError(f"{name}: queries {queries.shape}, reference {reference.shape} "
                         f"and radii {radii.shape} do not match")
    squared = np.sum(reference * reference, axis=1)
    inside = np.zeros(queries.shape[0], dtype=bool)
    distances = np.empty(queries.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, queries.shape[0], BLOCK_ROWS):
            rows = _distance_rows(queries[start:start + BLOCK_ROWS], reference, squared)
            stop = start + rows.shape[0]
            inside[start:stop] = np.any(rows <= radii[None, :], axis=1)
            scaled = rows / radii[None, :]
            scaled[rows == 0.0] = 0.0           # on a zero-radius ball's centre, or any centre
            distances[start:stop] = np.min(scaled, axis=1)
    return inside, distances


def within_manifold(queries: np.ndarray, reference: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """bool ``(M,)``: is query ``i`` within ``radii[j]`` of some reference point ``j``?

    ``queries`` ``(M, D)``, ``reference`` ``(N, D)``, ``radii`` ``(N,)`` (from :func:`knn_radii`);
    a query exactly on a ball's surface is inside.
    """
    return _balls("within_manifold", queries, reference, radii)[0]


def manifold_distances(queries: np.ndarray, reference: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """float64 ``(M,)``: for each query, ``min_j |query - reference_j| / radii[j]``, its distance to
    the k-NN manifold in units of the balls' radii (at most 1 inside it, up to rounding on a ball's
    surface; a ball of radius 0 counts 0 for a query at its centre, else infinity).

    ``queries`` ``(M, D)``, ``reference`` ``(N, D)``, ``radii`` ``(N,)`` (from :func:`knn_radii`).
    """
    return _balls("manifold_distances", queries, reference, radii)[1]


def precision_recall(real: np.ndarray, generated: np.ndarray,
                     k: int = K_NEAREST) -> tuple[float, float]:
    """Improved ``(precision, recall)`` of ``generated`` ``(M, D)`` against ``real`` ``(N, D)``.

    Precision: the fraction of generated points within the real k-NN manifold; recall: the fraction
    of real points within the generated one. Both sets need more than ``k`` points.
    """
    scores = manifold_scores(real, generated, k)
    return scores["precision"], scores["recall"]


def manifold_scores(real: np.ndarray, generated: np.ndarray, k: int = K_NEAREST) -> dict[str, float]:
    """``precision`` and ``recall`` (:func:`precision_recall`) and ``precision_distance`` and
    ``recall_distance`` (the medians of :func:`manifold_distances`: generated points against the
    real manifold, real points against the generated one) of ``generated`` ``(M, D)`` against
    ``real`` ``(N, D)``: each set's radii and each direction's distances computed once. Both sets
    need more than ``k`` points."""
    real = _as_features(real, "real")
    generated = _as_features(generated, "generated")
    generated_inside, generated_out = _balls("precision", generated, real, knn_radii(real, k))
    real_inside, real_out = _balls("recall", real, generated, knn_radii(generated, k))
    return {"precision": float(np.mean(generated_inside)), "recall": float(np.mean(real_inside)),
            "precision_distance": float(np.median(generated_out)),
            "recall_distance": float(np.median(real_out))}


# The headline numbers of a realism evaluation, in the order reports list them: what
# manifold_scores gives and the diversity ratio.
HEADLINE_KEYS = ("precision", "recall", "diversity_ratio", "precision_distance", "recall_distance")


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the index int64 ``(M,)`` and distance float64 ``(M,)`` of its nearest
    reference point (``queries`` ``(M, D)``, ``reference`` ``(N, D)``, ``N >= 1``)."""
    queries = _as_features(queries, "nearest_neighbours queries")
    reference = _as_features(reference, "nearest_neighbours reference")
    if reference.shape[0] == 0:
        raise ValueError("nearest_neighbours: empty reference set")
    squared = np.sum(reference * reference, axis=1)
    index = np.empty(queries.shape[0], dtype=np.int64)
    distance = np.empty(queries.shape[0])
    for start in range(0, queries.shape[0], BLOCK_ROWS):
        rows = _distance_rows(queries[start:start + BLOCK_ROWS], reference, squared)
        nearest = np.argmin(rows, axis=1)
        index[start:start + rows.shape[0]] = nearest
        distance[start:start + rows.shape[0]] = rows[np.arange(rows.shape[0]), nearest]
    return index, distance


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance over the ``N (N - 1) / 2`` pairs of ``features`` ``(N >= 2, D)``."""
    features = _as_features(features, "mean_pairwise_distance")
    count = features.shape[0]
    if count < 2:
        raise ValueError(f"mean_pairwise_distance: {count} point(s) make no pair")
    squared = np.sum(features * features, axis=1)
    total = 0.0
    for start in range(0, count, BLOCK_ROWS):
        rows = _distance_rows(features[start:start + BLOCK_ROWS], features, squared)
        own = np.arange(rows.shape[0])
        rows[own, start + own] = 0.0
        total += float(rows.sum())
    return total / (count * (count - 1))


def diversity_ratio(real: np.ndarray, generated: np.ndarray) -> float:
    """:func:`mean_pairwise_distance` of ``generated`` over that of ``real`` (each ``(>= 2, D)``);
    ``inf`` when the real points all coincide and the generated ones do not."""
    real_spread = mean_pairwise_distance(real)
    generated_spread = mean_pairwise_distance(generated)
    if real_spread == 0.0:
        return 1.0 if generated_spread == 0.0 else float("inf")
    return generated_spread / real_spread


# --------------------------------------------------------------------------------------------------
# All measures of a generated set
# --------------------------------------------------------------------------------------------------

def _class_scores(real: np.ndarray, generated: np.ndarray, k: int) -> dict[str, Any]:
    scores: dict[str, Any] = {"real_count": int(real.shape[0]),
                              "generated_count": int(generated.shape[0])}
    if min(real.shape[0], generated.shape[0]) <= k:
        scores.update(available=False, reason=f"precision and recall need more than {k} real and "
                                               f"{k} generated images of the class")
    else:
        scores.update(available=True, **manifold_scores(real, generated, k))
    if min(real.shape[0], generated.shape[0]) >= 2:
        scores["diversity_ratio"] = diversity_ratio(real, generated)
    return scores


def _mean_of(per_class: dict[str, dict[str, Any]], key: str) -> Optional[float]:
    values = [scores[key] for scores in per_class.values() if key in scores]
    return float(np.mean(values)) if values else None


def realism_scores(real: np.ndarray, real_labels: np.ndarray, generated: np.ndarray,
                   generated_labels: np.ndarray, class_names: Sequence[str],
                   k: int = K_NEAREST) -> dict[str, Any]:
    """Precision, recall (overall and per class) and the diversity ratio of a generated set.

    ``real`` ``(N, D)`` with ``real_labels`` int ``(N,)``, ``generated`` ``(M, D)`` with
    ``generated_labels`` ``(M,)``; labels index ``class_names`` (other labels, e.g. -1 for a real
    folder of a class the run does not know, are left out). Returns ``precision``, ``recall``
    (all images), ``class_precision`` and ``class_recall`` (means over the classes where both
    exist), ``diversity_ratio`` (mean over classes with at least 2 images on each side),
    ``per_class`` ``{name: {...}}`` (each with its class's precision, recall, distances and
    diversity ratio), the counts and ``k``, and ``precision_distance`` and ``recall_distance``
    (all images: the medians of :func:`manifold_distances`, module docstring);
    ``available`` is False, with a ``reason``, when either whole set has ``k`` images or fewer.
    """
    real, generated = _as_features(real, "real"), _as_features(generated, "generated")
    real_labels = np.asarray(real_labels).reshape(-1)
    generated_labels = np.asarray(generated_labels).reshape(-1)
    if real_labels.shape[0] != real.shape[0] or generated_labels.shape[0] != generated.shape[0]:
        raise ValueError("realism_scores: features and labels differ in length")
    known = np.arange(len(class_names))
    real_kept = np.isin(real_labels, known)
    generated_kept = np.isin(generated_labels, known)
    real, real_labels = real[real_kept], real_labels[real_kept]
    generated, generated_labels = generated[generated_kept], generated_labels[generated_kept]
    result: dict[str, Any] = {"k": k, "real_count": int(real.shape[0]),
                              "generated_count": int(generated.shape[0])}
    if min(real.shape[0], generated.shape[0]) <= k:
        return {"available": False, **result,
                "reason": f"{real.shape[0]} real and {generated.shape[0]} generated images: "
                          f"precision and recall need more than {k} of each"}
    per_class = {name: _class_scores(real[real_labels == c], generated[generated_labels == c], k)
                 for c, name in enumerate(class_names)}
    return {"available": True, **result, **manifold_scores(real, generated, k),
            "class_precision": _mean_of(per_class, "precision"),
            "class_recall": _mean_of(per_class, "recall"),
            "diversity_ratio": _mean_of(per_class, "diversity_ratio"), "per_class": per_class}
