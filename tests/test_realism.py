"""Precision, recall and diversity (evaluation.realism): the k-NN manifolds on point sets whose answer
is known exactly, the gradient histograms on images whose gradients are known, and the controls on
letters drawn by the built-in renderer: held-out real letters score high, one typeface per class
scores low recall and diversity, blurred or binarised letters score lower precision."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2image_tf.evaluation.realism import (
    ORIENTATION_BINS, diversity_ratio, gradient_histograms, knn_radii, manifold_distances,
    mean_pairwise_distance, nearest_neighbours, precision_recall, realism_scores, within_manifold)

LINE = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])


# --------------------------------------------------------------------------------------------------
# k-NN manifolds on hand-made point sets
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, expected", [(1, [1, 1, 2, 3, 4]), (2, [3, 2, 3, 4, 7]),
                                         (3, [6, 5, 3, 5, 9])])
def test_knn_radii_on_a_line(k, expected):
    # Distances from 3 to the others are 3, 2, 3, 7: its 2nd and 3rd neighbours are both at 3.
    np.testing.assert_array_equal(knn_radii(LINE, k), expected)


def test_knn_radii_count_duplicates_but_never_the_point_itself():
    points = np.array([[0.0, 0.0]] * 4 + [[3.0, 4.0]])
    np.testing.assert_array_equal(knn_radii(points, 3), [0, 0, 0, 0, 5])
    np.testing.assert_array_equal(knn_radii(np.array([[0.0], [2.0]]), 1), [2, 2])
    with pytest.raises(ValueError, match="need more than 3"):
        knn_radii(LINE[:3], 3)


def test_knn_radii_do_not_depend_on_the_blocks(monkeypatch):
    from eeg2image_tf.evaluation import realism

    points = np.random.default_rng(0).normal(size=(23, 4))
    whole = knn_radii(points, 3)
    monkeypatch.setattr(realism, "BLOCK_ROWS", 5)
    np.testing.assert_allclose(knn_radii(points, 3), whole, rtol=1e-12)
    brute = np.sort(np.linalg.norm(points[:, None] - points[None], axis=-1), axis=1)[:, 3]
    np.testing.assert_allclose(whole, brute, rtol=1e-9)


def test_a_ball_holds_the_points_on_its_surface():
    radii = knn_radii(LINE, 1)                             # 1, 1, 2, 3, 4
    queries = np.array([[14.0], [14.5], [8.0], [-1.0], [-1.5], [4.5]])
    np.testing.assert_array_equal(within_manifold(queries, LINE, radii),
                                  [True, False, True, True, False, True])


def test_manifold_distances_on_a_line():
    radii = knn_radii(LINE, 1)                             # 1, 1, 2, 3, 4
    queries = np.array([[14.0], [14.5], [8.0], [-1.0], [-1.5], [4.5], [0.0]])
    # 14: 4 from 10 (radius 4); 14.5: 4.5 / 4; 8: 2 / 4 from 10; -1: 1 / 1 from 0; -1.5: 1.5 / 1;
    # 4.5: 1.5 / 3 from 6; 0: a ball's centre.
    distances = manifold_distances(queries, LINE, radii)
    np.testing.assert_allclose(distances, [1.0, 1.125, 0.5, 1.0, 1.5, 0.5, 0.0], rtol=1e-12)
    np.testing.assert_array_equal(distances <= 1.0, within_manifold(queries, LINE, radii))


def test_manifold_distances_of_a_zero_radius_ball():
    reference = np.array([[0.0], [0.0], [5.0]])
    radii = knn_radii(reference, 1)                        # 0, 0, 5
    distances = manifold_distances(np.array([[0.0], [1.0], [20.0]]), reference, radii)
    np.testing.assert_allclose(distances, [0.0, 0.8, 3.0], rtol=1e-12)


def test_manifold_distances_agree_with_the_balls_and_do_not_depend_on_the_blocks(monkeypatch):
    from eeg2image_tf.evaluation import realism

    rng = np.random.default_rng(3)
    reference, queries = rng.normal(size=(40, 5)), rng.normal(size=(33, 5)) * 1.3
    radii = knn_radii(reference, 3)
    whole = manifold_distances(queries, reference, radii)
    brute = np.min(np.linalg.norm(queries[:, None] - reference[None], axis=-1) / radii, axis=1)
    np.testing.assert_allclose(whole, brute, rtol=1e-9)
    inside = within_manifold(queries, reference, radii)
    assert 0 < inside.sum() < len(queries)                 # both kinds are tested
    np.testing.assert_array_equal(whole <= 1.0, inside)
    monkeypatch.setattr(realism, "BLOCK_ROWS", 4)
    np.testing.assert_allclose(manifold_distances(queries, reference, radii), whole, rtol=1e-12)


def test_precision_and_recall_of_a_known_pair_of_sets():
    generated = np.array([[0.5], [20.0], [21.0], [22.0], [23.0]])
    # Real radii (k=3) 6, 5, 3, 5, 9: only 0.5 lies within one (10's ball ends at 19).
    # Generated radii 21.5, 3, 2, 2, 3: 0.5's ball reaches every real point.
    assert precision_recall(LINE, generated, 3) == (0.2, 1.0)
    assert precision_recall(generated, LINE, 3) == (1.0, 0.2)    # the roles swap


def test_a_set_against_itself_scores_one():
    points = np.random.default_rng(1).normal(size=(40, 6))
    assert precision_recall(points, points, 3) == (1.0, 1.0)
    assert diversity_ratio(points, points) == pytest.approx(1.0, rel=1e-12)


def test_mean_pairwise_distance_and_diversity_ratio():
    assert mean_pairwise_distance(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
    # Spread twice as far: twice the diversity of the first set.
    assert diversity_ratio(LINE, 2.0 * LINE) == pytest.approx(2.0)
    assert diversity_ratio(np.zeros((3, 2)), np.zeros((4, 2))) == 1.0
    with pytest.raises(ValueError, match="no pair"):
        mean_pairwise_distance(LINE[:1])


def test_nearest_neighbours():
    index, distance = nearest_neighbours(np.array([[2.2], [9.0], [-4.0]]), LINE)
    np.testing.assert_array_equal(index, [2, 4, 0])
    np.testing.assert_allclose(distance, [0.8, 1.0, 4.0])


def test_realism_scores_per_class_and_unknown_labels():
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(0.0, 1.0, (30, 3)), rng.normal(50.0, 1.0, (30, 3))])
    real_labels = np.repeat([0, 1], 30)
    # Class 0 generated as its real images are, class 1 far from them at a tenth of the spread.
    generated = np.concatenate([real[:30], rng.normal(-50.0, 0.1, (20, 3))])
    generated_labels = np.repeat([0, 1], [30, 20])
    scores = realism_scores(np.concatenate([real, np.ones((5, 3))]),
                            np.concatenate([real_labels, np.full(5, -1)]),
                            generated, generated_labels, ("a", "b"))
    assert scores["available"] and scores["real_count"] == 60 and scores["generated_count"] == 50
    assert (scores["precision"], scores["recall"]) == (30 / 50, 30 / 60)
    per_class = scores["per_class"]
    assert (per_class["a"]["precision"], per_class["a"]["recall"]) == (1.0, 1.0)
    assert (per_class["b"]["precision"], per_class["b"]["recall"]) == (0.0, 0.0)
    assert (scores["class_precision"], scores["class_recall"]) == (0.5, 0.5)
    # Class a's generated images are its real ones (each on a ball's centre); class b's lie about
    # 100 away from class a's real images (radii near 1) and 50 x sqrt(3) from class b's.
    assert per_class["a"]["precision_distance"] == 0.0 == per_class["a"]["recall_distance"]
    assert per_class["b"]["precision_distance"] > 50 and per_class["b"]["recall_distance"] > 50
    # Overall: 30 of the 50 generated images at 0, so the median is 0; 30 of the 60 real images at
    # 0 and 30 far, so the median (between the two halves) is far out.
    assert scores["precision_distance"] == 0.0 and scores["recall_distance"] > 10
    assert per_class["a"]["diversity_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert per_class["b"]["diversity_ratio"] == pytest.approx(0.1, rel=0.3)
    assert scores["diversity_ratio"] == pytest.approx(np.mean(
        [per_class[c]["diversity_ratio"] for c in "ab"]))

    few = realism_scores(real, real_labels, generated[:3], generated_labels[:3], ("a", "b"))
    assert few["available"] is False and "more than 3" in few["reason"]
    # Three generated images of class b: no k-NN radius for k = 3, but pairs for the diversity.
    thin = realism_scores(real, real_labels, generated[:33], generated_labels[:33], ("a", "b"))
    assert thin["available"] and thin["per_class"]["b"]["available"] is False
    assert thin["per_class"]["b"]["generated_count"] == 3 and "diversity_ratio" in thin["per_class"]["b"]
    assert thin["class_precision"] == thin["per_class"]["a"]["precision"]


# --------------------------------------------------------------------------------------------------
# The gradient histograms
# --------------------------------------------------------------------------------------------------

def _bins(features: np.ndarray) -> np.ndarray:
    """Total weight per orientation bin of one feature vector."""
    return features.reshape(-1, ORIENTATION_BINS).sum(axis=0)


def test_gradient_histograms_shape_norm_and_blank_images():
    images = np.random.default_rng(3).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    features = gradient_histograms(np.concatenate([images, np.full((1, 40, 48, 3), 255, np.uint8)]))
    assert features.shape == (4, 7 * 7 * 2 * 2 * ORIENTATION_BINS) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features[:3], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(features[3], 0.0)        # no gradient anywhere
    np.testing.assert_array_equal(gradient_histograms(images[..., :1].repeat(3, axis=-1))[0],
                                  gradient_histograms(images[0, ..., 0][None])[0])
    with pytest.raises(ValueError, match="H, W >= 8"):
        gradient_histograms(np.zeros((1, 4, 4, 3), np.uint8))


def test_gradient_histograms_see_which_way_an_edge_runs():
    image = np.full((1, 32, 32, 3), 255, np.uint8)
    horizontal_edge = image.copy()
    horizontal_edge[:, 16:] = 0                              # the gradient points down: 90 degrees
    vertical_edge = image.copy()
    vertical_edge[:, :, 16:] = 0                             # the gradient is horizontal: 0 degrees
    down, across = gradient_histograms(np.concatenate([horizontal_edge, vertical_edge]))
    # Bins are centred at 10, 30, ..., 170 degrees: 90 falls in bin 4 alone, 0 halfway between
    # bin 0 and bin 8.
    assert np.flatnonzero(_bins(down)).tolist() == [4]
    assert np.flatnonzero(_bins(across)).tolist() == [0, 8]
    assert _bins(across)[0] == pytest.approx(_bins(across)[8])
    # Colour edges count as grey ones: the channel with the strongest gradient decides.
    red = np.full((1, 32, 32, 3), 255, np.uint8)
    red[:, 16:, :, 1:] = 0
    np.testing.assert_allclose(gradient_histograms(red)[0], down, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# The controls: letters of the built-in renderer
# --------------------------------------------------------------------------------------------------

LETTERS = "ACHMS"
SIZE = 64


def _letters(per_class: int, rng: np.random.Generator, faces=None) -> tuple[np.ndarray, np.ndarray]:
    from eeg2image_tf.data.synthetic import font_paths, render_character

    fonts = font_paths()
    images = [render_character(letter, rng, size=SIZE,
                               font=None if faces is None else fonts[faces[c]])
              for c, letter in enumerate(LETTERS) for _ in range(per_class)]
    return np.stack(images), np.repeat(np.arange(len(LETTERS)), per_class)


@pytest.fixture(scope="module")
def controls():
    """Scores against 60 training letters per class (random typeface, size and position each)."""
    import cv2

    from eeg2image_tf.data.synthetic import FONT_FILES

    rng = np.random.default_rng(45)
    train, train_labels = _letters(60, rng)
    held_out, labels = _letters(30, rng)
    one_face, one_face_labels = _letters(30, rng, faces=rng.choice(len(FONT_FILES), len(LETTERS),
                                                                   replace=False))
    sets = {"held_out": (held_out, labels), "one_typeface": (one_face, one_face_labels),
            "blurred": (np.stack([cv2.GaussianBlur(image, (0, 0), 1.5) for image in held_out]),
                        labels),
            "binarised": (np.where(held_out > 127, 255, 0).astype(np.uint8), labels)}
    real = gradient_histograms(train)
    return {name: realism_scores(real, train_labels, gradient_histograms(images), classes,
                                 tuple(LETTERS))
            for name, (images, classes) in sets.items()}


def test_held_out_real_letters_are_realistic_and_varied(controls):
    held_out = controls["held_out"]
    assert held_out["precision"] >= 0.8 and held_out["recall"] >= 0.8
    assert held_out["class_precision"] >= 0.8 and held_out["class_recall"] >= 0.8
    assert 0.9 <= held_out["diversity_ratio"] <= 1.1
    # Most lie inside, so the medians are inside too.
    assert held_out["precision_distance"] <= 1.0 and held_out["recall_distance"] <= 1.0


def test_one_typeface_per_class_is_realistic_but_neither_covers_nor_varies(controls):
    one, held_out = controls["one_typeface"], controls["held_out"]
    assert one["precision"] >= 0.75                  # every image is a real letter ...
    assert one["recall"] <= 0.3 and one["recall"] <= held_out["recall"] - 0.5   # ... of one face
    assert one["diversity_ratio"] <= 0.8 and one["diversity_ratio"] <= held_out["diversity_ratio"] - 0.2


# Margins: precision, and the median distance in radii (held-out letters lie at about 0.76 of one).
@pytest.mark.parametrize("name, margin, distance_margin", [("blurred", 0.25, 0.15),
                                                          ("binarised", 0.4, 0.2)])
def test_blurred_or_binarised_letters_leave_the_real_manifold(controls, name, margin,
                                                              distance_margin):
    assert controls[name]["precision"] <= controls["held_out"]["precision"] - margin
    assert controls[name]["class_precision"] <= controls["held_out"]["class_precision"] - margin
    # ... and further from it: the distance sees the change, not only whether a ball is crossed.
    assert controls[name]["precision_distance"] >= \
        controls["held_out"]["precision_distance"] + distance_margin


def test_evaluation_section_without_training_images_says_why():
    from eeg2image_tf.evaluation.images import PassResult
    from eeg2image_tf.evaluation.sections import realism_headline, realism_section

    generated = PassResult(class_index=np.zeros(5, np.int64), count=5,
                           features={"gradient_histogram": np.eye(5)})
    section = realism_section(generated, None, None, ("A",), "gradient_histogram", None,
                              "the run names no image folder it trained on")
    assert section == {"available": False, "reason": "the run names no image folder it trained on"}
    headline = realism_headline({"gradient_histogram": section,
                                 "inception": {"available": False, "reason": "no network"}})
    assert set(headline.values()) == {None} and "inception_recall" in headline
