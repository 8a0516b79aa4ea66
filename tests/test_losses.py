"""Tests for eeg2image_tf.training.losses: TFA parity of the triplet loss, and the GAN losses on
hand-worked inputs."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from eeg2image_tf.training.losses import (TripletSemiHardLoss, discriminator_hinge,
                                          generator_hinge, mode_seeking, pairwise_distances,
                                          triplet_semihard_loss)

TFA_FIXTURE = "tfa_triplet_semihard_reference.npz"
NO_POSITIVE_CASE = 7  # every label distinct: TFA returns NaN
ONE_CLASS_CASE = 4    # every label 0


@pytest.fixture(scope="module")
def tfa_cases(fixture_file):
    with np.load(fixture_file(TFA_FIXTURE)) as data:
        n_cases = int(data["n_cases"])
        return [{key: data[f"{key}_{j}"] for key in ("emb", "y", "loss_m1", "loss_m05")}
                for j in range(n_cases)]


def brute_force_triplet(labels, embeddings, margin):
    """Loop-by-loop float64 version of the definition, independent of the vectorised code."""
    labels = np.asarray(labels).reshape(-1)
    emb = np.asarray(embeddings, np.float64)
    dist = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))
    losses = []
    for a, p in itertools.permutations(range(len(labels)), 2):
        if labels[a] != labels[p]:
            continue
        negatives = [dist[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        farther = [d for d in negatives if d > dist[a, p]]
        if farther:
            d_an = min(farther)
        elif negatives:
            d_an = max(negatives)
        else:
            d_an = 0.0  # TFA's masked maximum of an empty set: the row minimum, d(a, a)
        losses.append(max(margin + dist[a, p] - d_an, 0.0))
    return float(np.mean(losses)) if losses else 0.0


# --------------------------------------------------------------------------------------------------
# Triplet loss
# --------------------------------------------------------------------------------------------------

def test_pairwise_distances_match_numpy_with_zero_diagonal():
    emb = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [-1.0, 0.0]], np.float32)
    got = pairwise_distances(emb).numpy()
    expected = np.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0, 1] == pytest.approx(5.0)
    assert np.all(np.diag(got) == 0.0)
    assert got[1, 2] == 0.0  # duplicates


def test_triplet_matches_tfa_on_every_fixture_case_and_both_margins(tfa_cases):
    assert len(tfa_cases) >= 8
    for j, case in enumerate(tfa_cases):
        for margin, key in ((1.0, "loss_m1"), (0.5, "loss_m05")):
            got = float(triplet_semihard_loss(case["y"], case["emb"], margin=margin))
            if j == NO_POSITIVE_CASE:
                assert np.isnan(case[key])
                assert got == 0.0
            else:
                assert got == pytest.approx(float(case[key]), abs=1e-5), f"case {j} margin {margin}"


def test_triplet_matches_brute_force_definition_on_random_batches():
    rng = np.random.default_rng(0)
    for batch, dim, classes in ((12, 3, 3), (20, 5, 4), (9, 2, 2)):
        emb = rng.normal(size=(batch, dim)).astype(np.float32)
        labels = rng.integers(0, classes, size=batch)
        got = float(triplet_semihard_loss(labels, emb, margin=1.0))
        assert got == pytest.approx(brute_force_triplet(labels, emb, 1.0), abs=1e-5)


def test_triplet_hand_worked_one_dimensional_batch():
    # Points 0, 1 (class 0) and 1.5, 4 (class 1). Pairs (a, p) -> negative used -> loss at margin 1:
    # (0,1): semi-hard 1.5 -> 0.5; (1,0): semi-hard 3 -> 0; (2,3): none farther than 2.5,
    # fallback farthest 1.5 -> 2; (3,2): semi-hard 3 -> 0.5. Mean 3/4.
    emb = np.array([[0.0], [1.0], [1.5], [4.0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    assert float(triplet_semihard_loss(labels, emb, margin=1.0)) == pytest.approx(0.75, abs=1e-6)
    # At margin 0.5 only (2,3) stays positive: 0.5 + 2.5 - 1.5 = 1.5, mean 0.375.
    assert float(triplet_semihard_loss(labels, emb, margin=0.5)) == pytest.approx(0.375, abs=1e-6)


def test_one_class_batch_costs_margin_plus_mean_positive_distance(tfa_cases):
    # Distances 1, 3, 2 between points 0, 1, 3: mean over the 6 ordered pairs is 2.
    emb = np.array([[0.0], [1.0], [3.0]], np.float32)
    assert float(triplet_semihard_loss([5, 5, 5], emb, margin=1.0)) == pytest.approx(3.0, abs=1e-6)
    assert float(triplet_semihard_loss([5, 5, 5], emb, margin=0.25)) == pytest.approx(2.25, abs=1e-6)

    case = tfa_cases[ONE_CLASS_CASE]
    assert np.all(case["y"] == case["y"][0])
    dist = np.sqrt(((case["emb"][:, None] - case["emb"][None]) ** 2).sum(-1).astype(np.float64))
    mean_positive = dist[~np.eye(len(dist), dtype=bool)].mean()
    assert float(case["loss_m1"]) == pytest.approx(1.0 + mean_positive, abs=1e-5)
    assert float(case["loss_m05"]) == pytest.approx(0.5 + mean_positive, abs=1e-5)


def test_no_anchor_positive_pair_gives_zero_and_zero_gradient(tfa_cases):
    case = tfa_cases[NO_POSITIVE_CASE]
    emb = tf.Variable(case["emb"])
    with tf.GradientTape() as tape:
        loss = triplet_semihard_loss(case["y"], emb)
    grad = tape.gradient(loss, emb)
    assert float(loss) == 0.0
    assert np.all(grad.numpy() == 0.0)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8, np.int16])
def test_labels_column_or_flat_and_any_int_dtype(tfa_cases, label_dtype):
    case = tfa_cases[2]
    flat = float(triplet_semihard_loss(case["y"].astype(label_dtype), case["emb"]))
    column = float(triplet_semihard_loss(case["y"].astype(label_dtype)[:, None], case["emb"]))
    assert flat == pytest.approx(float(case["loss_m1"]), abs=1e-5)
    assert column == flat


def test_gradient_descends_on_a_generic_batch():
    rng = np.random.default_rng(1)
    emb_values = rng.normal(size=(10, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=10)
    emb = tf.Variable(emb_values)
    with tf.GradientTape() as tape:
        loss = triplet_semihard_loss(labels, emb)
    grad = tape.gradient(loss, emb).numpy()
    assert np.all(np.isfinite(grad))
    stepped = float(triplet_semihard_loss(labels, emb_values - 1e-3 * grad))
    assert stepped < float(loss) - 1e-4


def test_gradient_is_finite_with_duplicate_embeddings():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(6, 4)).astype(np.float32)
    # Rows 6-8 duplicate rows 0-2 exactly: distance 0 to a positive (row 6) and to negatives (7, 8),
    # where sqrt's derivative is infinite. (Distance 0 is a kink of the loss, so no descent check.)
    emb_values = np.concatenate([base, base[:3]])
    labels = np.array([0, 1, 0, 1, 2, 2, 0, 0, 1])
    emb = tf.Variable(emb_values)
    with tf.GradientTape() as tape:
        loss = triplet_semihard_loss(labels, emb)
    grad = tape.gradient(loss, emb).numpy()
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert np.all(np.isfinite(grad))
    assert np.abs(grad).sum() > 0


def test_gradient_is_finite_for_identical_one_class_batch():
    emb = tf.Variable(np.ones((4, 3), np.float32))
    with tf.GradientTape() as tape:
        loss = triplet_semihard_loss(np.zeros(4, np.int32), emb)
    grad = tape.gradient(loss, emb)
    assert float(loss) == pytest.approx(1.0)  # margin + 0 distance
    assert np.all(np.isfinite(grad.numpy()))


def test_xla_compiled_loss_on_hand_worked_batch():
    compiled = tf.function(triplet_semihard_loss, jit_compile=True)
    emb = np.array([[0.0], [1.0], [1.5], [4.0]], np.float32)
    assert float(compiled(np.array([0, 0, 1, 1]), emb, 1.0)) == pytest.approx(0.75, abs=1e-6)


@pytest.mark.slow
def test_xla_compiled_loss_gives_the_same_values(tfa_cases):
    compiled = tf.function(triplet_semihard_loss, jit_compile=True)
    # One compilation per batch shape, so a few cases: mixed classes, one class, no positive pair.
    for j in (0, ONE_CLASS_CASE, 5, NO_POSITIVE_CASE):
        case = tfa_cases[j]
        for margin in (1.0, 0.5):
            eager = float(triplet_semihard_loss(case["y"], case["emb"], margin))
            xla = float(compiled(case["y"], case["emb"], tf.constant(margin)))
            assert xla == pytest.approx(eager, abs=1e-5), f"case {j} margin {margin}"


def test_graph_mode_with_dynamic_batch():
    traced = tf.function(triplet_semihard_loss, input_signature=[
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 2], tf.float32)])
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [4.0, 0.0]], np.float32)
    assert float(traced(np.array([0, 0, 1, 1], np.int32), emb)) == pytest.approx(0.75, abs=1e-6)
    assert float(traced(np.array([0, 1], np.int32), emb[:2])) == 0.0


def test_keras_loss_wrapper_matches_and_round_trips(tfa_cases):
    case = tfa_cases[0]
    loss = TripletSemiHardLoss(margin=0.5)
    assert float(loss(case["y"], case["emb"])) == pytest.approx(float(case["loss_m05"]), abs=1e-5)
    assert float(TripletSemiHardLoss()(case["y"][:, None], case["emb"])) == pytest.approx(
        float(case["loss_m1"]), abs=1e-5)

    config = loss.get_config()
    assert config["margin"] == 0.5
    assert TripletSemiHardLoss.from_config(config).margin == 0.5
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, TripletSemiHardLoss)
    assert restored.margin == 0.5


# --------------------------------------------------------------------------------------------------
# GAN losses
# --------------------------------------------------------------------------------------------------

D_REAL = np.array([[2.0], [0.5], [-1.0]], np.float32)   # relu(1 - d): 0, 0.5, 2 -> mean 5/6
D_FAKE = np.array([[-2.0], [0.0], [1.0]], np.float32)   # relu(1 + d): 0, 1, 2 -> mean 1


def test_discriminator_hinge_hand_worked():
    assert float(discriminator_hinge(D_REAL, D_FAKE)) == pytest.approx((5 / 6 + 1) / 2, abs=1e-6)
    # A confident discriminator (real > 1, fake < -1) has zero loss.
    assert float(discriminator_hinge([[3.0], [1.5]], [[-1.0], [-4.0]])) == 0.0


def test_generator_hinge_hand_worked():
    assert float(generator_hinge(D_FAKE)) == pytest.approx(1 / 3, abs=1e-6)  # -(-2 + 0 + 1) / 3


def test_hinge_losses_with_global_batch_add_up_over_replicas():
    d_real = np.array([[2.0], [0.5], [-1.0], [0.0]], np.float32)
    d_fake = np.array([[-2.0], [0.0], [1.0], [0.5]], np.float32)
    halves = (slice(0, 2), slice(2, 4))
    d_sum = sum(float(discriminator_hinge(d_real[h], d_fake[h], global_batch_size=4)) for h in halves)
    g_sum = sum(float(generator_hinge(d_fake[h], global_batch_size=4)) for h in halves)
    assert d_sum == pytest.approx(float(discriminator_hinge(d_real, d_fake)), abs=1e-6)
    assert g_sum == pytest.approx(float(generator_hinge(d_fake)), abs=1e-6)
    # relu(1 - d_real) = 0, .5, 2, 1 -> 3.5/4; relu(1 + d_fake) = 0, 1, 2, 1.5 -> 4.5/4
    assert d_sum == pytest.approx((3.5 / 4 + 4.5 / 4) / 2, abs=1e-6)


def test_mode_seeking_hand_worked():
    f1 = np.zeros((1, 2, 2, 1), np.float32)
    f2 = np.array([1.0, 2.0, 3.0, 6.0], np.float32).reshape(1, 2, 2, 1)      # mean|f2 - f1| = 3
    # z halves differ, condition halves identical and still counted: mean|in2 - in1| = 2/4.
    in1 = np.array([[0.0, 0.0, 0.7, -0.3]], np.float32)
    in2 = np.array([[2.0, 0.0, 0.7, -0.3]], np.float32)
    expected = 1.0 / (3.0 / 0.5 + 1e-5)
    assert float(mode_seeking(f1, f2, in1, in2)) == pytest.approx(expected, rel=1e-6)
    assert float(mode_seeking(f1, f2, in1, in2, num_replicas=2)) == pytest.approx(expected / 2, rel=1e-6)
    # Identical images: the term is 1 / epsilon.
    assert float(mode_seeking(f2, f2, in1, in2)) == pytest.approx(1e5, rel=1e-4)


def test_mode_seeking_gradient_pushes_images_apart():
    f1 = tf.Variable(np.zeros((2, 4, 4, 3), np.float32))
    f2 = tf.constant(np.full((2, 4, 4, 3), 0.5, np.float32))
    inputs = np.random.default_rng(0).uniform(-1, 1, size=(2, 2, 8)).astype(np.float32)
    with tf.GradientTape() as tape:
        term = mode_seeking(f1, f2, inputs[0], inputs[1])
    grad = tape.gradient(term, f1).numpy()
    # Moving f1 away from f2 (downwards) lowers 1/ms, so the gradient is positive everywhere.
    assert np.all(np.isfinite(grad))
    assert np.all(grad > 0)


def test_gan_losses_return_float32_for_half_precision_inputs():
    assert discriminator_hinge(D_REAL.astype(np.float16), D_FAKE.astype(np.float16)).dtype == tf.float32
    assert generator_hinge(D_FAKE.astype(np.float16)).dtype == tf.float32


def test_mode_seeking_with_replica_sums_is_the_global_batch_term():
    """Summing the two means' parts over replicas gives the term of the whole batch on each."""
    rng = np.random.default_rng(0)
    f1, f2 = (rng.normal(size=(4, 2, 2, 1)).astype(np.float32) for _ in range(2))
    in1, in2 = (rng.normal(size=(4, 6)).astype(np.float32) for _ in range(2))
    whole = float(mode_seeking(f1, f2, in1, in2))
    halves = [slice(0, 1), slice(1, 4)]          # unequal parts: a mean of means would be wrong

    def sum_of_parts(_local):
        # What an all-reduce over the two replicas returns, computed from both parts here.
        parts = [[np.abs(f2[h] - f1[h]).sum(), f1[h].size, np.abs(in2[h] - in1[h]).sum(), in1[h].size]
                 for h in halves]
        return [tf.constant(float(a + b), tf.float32) for a, b in zip(*parts)]

    shared = float(mode_seeking(f1[:1], f2[:1], in1[:1], in2[:1], num_replicas=2,
                                sum_over_replicas=sum_of_parts))
    assert shared == pytest.approx(whole / 2, rel=1e-6)
