"""Tests for eeg2image_tf.training.augment (DiffAugment): ranges, geometry, seeding, gradients,
graph/distribution."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from eeg2image_tf.training.augment import (AUGMENTATIONS, diff_augment, random_brightness,
                                           random_contrast, random_cutout, random_saturation,
                                           random_translation)

SIZE = 16          # translation up to round(16 / 8) = 2 pixels, cutout 8 x 8
MAX_SHIFT = 2
CUT = 8


def random_images(batch=4, height=SIZE, width=SIZE, channels=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(batch, height, width, channels)).astype(dtype)


# --------------------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------------------

def test_brightness_adds_one_offset_per_image_within_half():
    constant = np.full((64, 4, 4, 3), 0.25, np.float32)
    offsets = random_brightness(constant, seed=1).numpy() - 0.25
    per_image = offsets[:, 0, 0, 0]
    np.testing.assert_allclose(offsets, per_image[:, None, None, None] * np.ones_like(offsets), atol=1e-6)
    assert np.all(per_image >= -0.5) and np.all(per_image < 0.5)
    assert per_image.min() < -0.3 and per_image.max() > 0.3  # spread over the range, not a constant
    assert len(np.unique(per_image)) == 64


def test_color_policy_on_constant_image_is_only_a_brightness_shift():
    # Saturation leaves a gray image and contrast a constant image unchanged, so only c + b remains.
    constant = np.full((16, 5, 5, 3), -0.4, np.float32)
    out = diff_augment(constant, "color", seed=3).numpy()
    shift = out - (-0.4)
    assert np.all(np.abs(shift - shift[:, :1, :1, :1]) < 1e-5)
    assert np.all(np.abs(shift[:, 0, 0, 0]) <= 0.5)


def test_saturation_leaves_gray_images_unchanged_and_scales_colour_by_0_to_2():
    gray = np.repeat(random_images(8, channels=1), 3, axis=-1)
    np.testing.assert_allclose(random_saturation(gray, seed=2).numpy(), gray, atol=1e-6)

    # Every pixel (1, -1, 0) has channel mean 0, so the output is s * (1, -1, 0).
    colour = np.tile(np.array([1.0, -1.0, 0.0], np.float32), (64, 3, 3, 1))
    out = random_saturation(colour, seed=2).numpy()
    factors = out[:, 0, 0, 0]
    np.testing.assert_allclose(out, factors[:, None, None, None] * colour, atol=1e-6)
    assert np.all(factors >= 0.0) and np.all(factors < 2.0)
    assert factors.min() < 0.3 and factors.max() > 1.7


def test_contrast_leaves_constant_images_unchanged_and_scales_by_half_to_one_and_half():
    constant = np.full((8, 4, 4, 3), 0.7, np.float32)
    np.testing.assert_allclose(random_contrast(constant, seed=4).numpy(), constant, atol=1e-6)

    # Image mean 0 (a +1/-1 checkerboard), so the output is k * image.
    board = np.where((np.arange(4)[:, None] + np.arange(4)[None, :]) % 2 == 0, 1.0, -1.0)
    images = np.tile(board[None, :, :, None], (64, 1, 1, 3)).astype(np.float32)
    out = random_contrast(images, seed=4).numpy()
    factors = out[:, 0, 0, 0]
    np.testing.assert_allclose(out, factors[:, None, None, None] * images, atol=1e-6)
    assert np.all(factors >= 0.5) and np.all(factors < 1.5)
    assert factors.min() < 0.65 and factors.max() > 1.35


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------

def test_translation_moves_a_single_pixel_by_an_integer_within_an_eighth():
    batch = 256
    images = np.zeros((batch, SIZE, SIZE, 1), np.float32)
    images[:, 8, 8, 0] = 1.0
    out = diff_augment(images, "translation", seed=5).numpy()
    shifts = []
    for image in out[..., 0]:
        lit = np.argwhere(image != 0)
        assert lit.shape == (1, 2)                      # exactly one pixel, everything else zero
        assert image[tuple(lit[0])] == 1.0              # moved, not interpolated
        shifts.append(lit[0] - 8)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= MAX_SHIFT
    # Each axis takes every integer of [-2, 2] and is drawn independently of the other.
    assert set(shifts[:, 0]) == set(shifts[:, 1]) == set(range(-MAX_SHIFT, MAX_SHIFT + 1))
    assert np.any(shifts[:, 0] != shifts[:, 1])


def test_translation_fills_uncovered_pixels_with_zero():
    ones = np.ones((32, SIZE, SIZE, 2), np.float32)
    out = random_translation(ones, seed=6).numpy()
    assert set(np.unique(out)) <= {0.0, 1.0}
    for image in out[..., 0]:
        rows = np.flatnonzero(image.any(axis=1))
        cols = np.flatnonzero(image.any(axis=0))
        # The ones stay one rectangle touching two borders; what was uncovered is zero.
        assert image.sum() == len(rows) * len(cols)
        assert len(rows) >= SIZE - MAX_SHIFT and len(cols) >= SIZE - MAX_SHIFT
        assert rows[0] == 0 or rows[-1] == SIZE - 1
        assert cols[0] == 0 or cols[-1] == SIZE - 1
    assert np.any(out == 0.0)


def test_translation_of_non_square_images_uses_each_side():
    images = np.zeros((128, 8, 32, 1), np.float32)
    images[:, 4, 16, 0] = 1.0
    out = random_translation(images, seed=7).numpy()[..., 0]
    positions = np.array([np.argwhere(image)[0] for image in out]) - [4, 16]
    assert np.abs(positions[:, 0]).max() == 1     # round(8 / 8)
    assert np.abs(positions[:, 1]).max() == 4     # round(32 / 8)


def test_cutout_zeros_a_half_size_square_clipped_at_borders():
    ones = np.ones((64, SIZE, SIZE, 3), np.float32)
    out = diff_augment(ones, "cutout", seed=8).numpy()
    full_squares = 0
    for image in out:
        assert np.all(image == image[..., :1])          # same mask for every channel
        zero = image[..., 0] == 0
        rows = np.flatnonzero(zero.any(axis=1))
        cols = np.flatnonzero(zero.any(axis=0))
        assert zero.sum() == len(rows) * len(cols)     # one solid rectangle
        for span, first, last in ((len(rows), rows[0], rows[-1]), (len(cols), cols[0], cols[-1])):
            assert CUT // 2 <= span <= CUT
            if span < CUT:                             # only a square clipped by a border is smaller
                assert first == 0 or last == SIZE - 1
        full_squares += len(rows) == CUT and len(cols) == CUT
    assert full_squares > 10


# --------------------------------------------------------------------------------------------------
# Policies, shapes, dtypes, randomness
# --------------------------------------------------------------------------------------------------

def test_registry_and_policy_parsing():
    assert AUGMENTATIONS["color"] == [random_brightness, random_saturation, random_contrast]
    assert AUGMENTATIONS["translation"] == [random_translation]
    assert AUGMENTATIONS["cutout"] == [random_cutout]
    images = random_images()
    assert diff_augment(images, "") is images
    with pytest.raises(ValueError, match="valid policies: color, cutout, translation") as info:
        diff_augment(images, "color,flip")
    assert "'flip'" in str(info.value)
    spaced = diff_augment(images, " color , translation ", seed=1).numpy()
    np.testing.assert_array_equal(spaced, diff_augment(images, "color,translation", seed=1).numpy())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_shape_and_dtype_preserved(dtype):
    images = random_images(3, 12, 20, 3, dtype=dtype)
    out = diff_augment(images, "color,translation,cutout", seed=0)
    assert out.shape == images.shape
    assert out.dtype == tf.as_dtype(dtype)
    assert np.all(np.isfinite(out.numpy()))


def test_rejects_integer_images_and_bad_seeds():
    with pytest.raises(TypeError, match="float"):
        diff_augment(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        diff_augment(random_images(), seed=tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match="int"):
        diff_augment(random_images(), seed=tf.constant([1.0, 2.0]))


def test_seeded_calls_reproduce_and_different_seeds_differ():
    images = random_images(4)
    policy = "color,translation,cutout"
    first = diff_augment(images, policy, seed=11).numpy()
    np.testing.assert_array_equal(first, diff_augment(images, policy, seed=11).numpy())
    np.testing.assert_array_equal(first, diff_augment(images, policy, seed=tf.constant([11, 0])).numpy())
    assert not np.allclose(first, diff_augment(images, policy, seed=12).numpy())
    assert not np.allclose(first, diff_augment(images, policy, seed=tf.constant([11, 1])).numpy())


def test_unseeded_calls_draw_new_parameters():
    constant = np.zeros((4, 2, 2, 1), np.float32)
    assert not np.allclose(random_brightness(constant).numpy(), random_brightness(constant).numpy())


def test_operations_of_one_pipeline_get_different_sub_seeds():
    # If brightness and contrast shared a seed their per-image uniforms would be the same draws.
    board = np.where(np.arange(4)[:, None] % 2 == 0, 1.0, -1.0) * np.ones((1, 4))
    images = np.tile(board[None, :, :, None], (8, 1, 1, 3)).astype(np.float32)
    out = diff_augment(images, "color", seed=21).numpy()
    brightness = out.mean(axis=(1, 2, 3))                 # contrast keeps the mean: b
    contrast = out[:, 0, 0, 0] - brightness              # gray image: saturation is a no-op; k * 1
    # A shared seed would give b + 0.5 == k - 0.5 (the same unit draw) for every image.
    assert not np.allclose(brightness + 0.5, contrast - 0.5, atol=1e-3)
    assert np.all((contrast >= 0.5) & (contrast < 1.5))


# --------------------------------------------------------------------------------------------------
# Gradients, graphs, XLA, distribution
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_gradients_flow_through_every_policy(policy):
    images = tf.Variable(random_images(2, 8, 8, 3, seed=1))
    weights = tf.constant(random_images(2, 8, 8, 3, seed=2))
    with tf.GradientTape() as tape:
        objective = tf.reduce_sum(diff_augment(images, policy, seed=9) * weights)
    grad = tape.gradient(objective, images)
    assert grad is not None
    grad = tf.convert_to_tensor(grad).numpy()
    assert np.all(np.isfinite(grad))
    assert np.count_nonzero(grad) > grad.size // 4


def test_brightness_and_translation_gradients_are_exact():
    images = tf.Variable(random_images(2, 8, 8, 1, seed=1))
    weights = random_images(2, 8, 8, 1, seed=2)
    with tf.GradientTape(persistent=True) as tape:
        brightened = tf.reduce_sum(random_brightness(images, seed=3) * weights)
        moved = random_translation(images, seed=4)
        translated = tf.reduce_sum(moved * weights)
    np.testing.assert_allclose(tape.gradient(brightened, images).numpy(), weights, atol=1e-6)
    # Translation is a 0/1 linear map: the gradient is the weights moved back, zero where nothing came.
    grad = tf.convert_to_tensor(tape.gradient(translated, images)).numpy()
    ones_moved = random_translation(np.ones_like(weights), seed=4).numpy()
    np.testing.assert_allclose(np.sum(grad * images.numpy()), np.sum(moved.numpy() * weights), rtol=1e-5)
    assert np.count_nonzero(grad) == np.count_nonzero(ones_moved)


def test_works_in_tf_function_with_dynamic_shapes():
    traced = tf.function(lambda x: diff_augment(x, "color,translation,cutout"),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    for shape in ((2, 8, 8, 3), (5, 16, 12, 3)):
        out = traced(tf.zeros(shape))
        assert tuple(out.shape) == shape


def test_seeded_augmentation_is_identical_under_xla():
    images = random_images(3, 8, 8, 3)
    policy = "color,translation,cutout"
    compiled = tf.function(lambda x, s: diff_augment(x, policy, seed=s), jit_compile=True)
    # Negative and > 32-bit seed words: XLA reads those differently unless they are canonicalised.
    seed = tf.constant([-7, 123456789012], tf.int64)
    np.testing.assert_allclose(compiled(images, seed).numpy(),
                               diff_augment(images, policy, seed=seed).numpy(), atol=1e-5)


def test_runs_in_a_distribution_replica_context():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    images = random_images(2, 8, 8, 3)

    @tf.function
    def step(x):
        def replica_fn(local):
            assert tf.distribute.in_cross_replica_context() is False
            seeded = diff_augment(local, seed=tf.constant([3, 4]))
            return seeded, diff_augment(local)
        return strategy.run(replica_fn, args=(x,))

    seeded, unseeded = step(tf.constant(images))
    seeded = strategy.experimental_local_results(seeded)[0].numpy()
    unseeded = strategy.experimental_local_results(unseeded)[0].numpy()
    np.testing.assert_allclose(seeded, diff_augment(images, seed=tf.constant([3, 4])).numpy(), atol=1e-6)
    assert unseeded.shape == images.shape and np.all(np.isfinite(unseeded))


@pytest.mark.parametrize("policy", ["color,translation", "color,translation,cutout"])
def test_rows_give_each_slice_the_draws_of_the_whole_batch(policy):
    """Replicas holding slices of a batch augment it as one call on the whole batch would."""
    images = tf.random.stateless_uniform((6, 16, 16, 3), seed=[1, 2], minval=-1.0, maxval=1.0)
    whole = diff_augment(images, policy, seed=7).numpy()
    parts = [diff_augment(images[first:first + 3], policy, seed=7, rows=(first, 6)).numpy()
             for first in (0, 3)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-6)
    # Without rows each slice would draw as a batch of its own: different images.
    assert not np.allclose(diff_augment(images[3:], policy, seed=7).numpy(), whole[3:])
