"""Shapes, ranges, initialisers, spectral-norm and BatchNorm update rules, and the exact split of the
discriminator's first convolution (docs/method.md sections 3-4)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from eeg2image_tf.models import (  # noqa: E402
    Discriminator, EEGEncoder, Generator, build_discriminator, build_encoder, build_generator,
    l2_normalize)
from eeg2image_tf.models.gan import same_padding_tap_mask  # noqa: E402


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(1)
    return build_generator()


@pytest.fixture(scope="module")
def discriminator():
    keras.utils.set_random_seed(2)
    return build_discriminator()


def _snapshot(model) -> list[np.ndarray]:
    return [weight.numpy().copy() for weight in model.weights]


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("time_steps,channels", [(32, 14), (7, 5)])
def test_encoder_shapes_and_unit_embedding(time_steps, channels):
    keras.utils.set_random_seed(3)
    encoder = EEGEncoder(feature_dim=16, hidden=8)
    x = np.random.default_rng(0).normal(size=(3, time_steps, channels)).astype(np.float32)
    embedding, feature = encoder(x, training=False)
    assert embedding.shape == (3, 16) and feature.shape == (3, 16)
    feature = np.asarray(feature)
    # LSTM outputs o * tanh(c): strictly inside (-1, 1), and not all zero for random inputs.
    assert np.all(np.abs(feature) < 1.0) and np.abs(feature).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(embedding, feature / np.linalg.norm(feature, axis=-1, keepdims=True),
                               atol=1e-6)
    assert encoder.sequence_lstm.cell.kernel.shape == (channels, 4 * 8)
    assert encoder.feature_lstm.cell.recurrent_kernel.shape == (16, 4 * 16)


def test_encoder_uses_keras_default_lstm_settings():
    encoder = build_encoder(feature_dim=8, hidden=4, num_channels=3, num_samples=5)
    for lstm in (encoder.sequence_lstm, encoder.feature_lstm):
        cell = lstm.cell
        assert cell.activation is keras.activations.tanh
        assert cell.recurrent_activation is keras.activations.sigmoid
        assert cell.unit_forget_bias and cell.dropout == 0 and cell.recurrent_dropout == 0
    bias = np.asarray(encoder.feature_lstm.cell.bias)
    # Gate order i, f, c, o: the forget block starts at one, the others at zero.
    np.testing.assert_array_equal(bias[8:16], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[8:16]), 0.0)


def test_l2_normalize_matches_tf_including_zero_vectors():
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    x[2] = 0.0
    x[3] = 1e-8
    ours = np.asarray(l2_normalize(x))
    np.testing.assert_allclose(ours, tf.math.l2_normalize(x, axis=-1).numpy(), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(ours[2], 0.0)


def test_encoder_config_round_trip():
    encoder = build_encoder(feature_dim=12, hidden=6, num_channels=4, num_samples=9)
    config = encoder.get_config()
    assert config["feature_dim"] == 12 and config["hidden"] == 6
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(encoder))
    assert isinstance(clone, EEGEncoder)
    assert (clone.feature_dim, clone.hidden) == (12, 6)


# --------------------------------------------------------------------------------------------------
# Generator and discriminator: structure
# --------------------------------------------------------------------------------------------------

def test_generator_output_shape_and_range(generator):
    inputs = np.random.default_rng(2).uniform(-1, 1, size=(2, 256)).astype(np.float32)
    images = np.asarray(generator(inputs, training=False))
    assert images.shape == (2, 128, 128, 3)
    assert np.all(np.abs(images) <= 1.0)
    # Untrained, the unnormalised kernels (std 0.02) give tiny images; they must still vary.
    assert images.std() > 1e-6, "the generator should not output a constant"
    assert np.abs(images[0] - images[1]).max() > 1e-6
    with pytest.raises(ValueError, match="expected latent_dim \\+ condition_dim = 256"):
        generator(np.zeros((4, 128), np.float32), training=False)


def test_generator_saturates_within_tanh_range(generator):
    # Huge inputs push the pre-activation far out: tanh keeps the images in [-1, 1].
    images = np.asarray(generator(np.full((1, 256), 1e4, np.float32), training=False))
    assert np.all(np.abs(images) <= 1.0) and np.abs(images).max() > 0.99


def test_generator_layers_as_specified(generator):
    convs = generator.upsampling_convs
    assert [c.layer.filters for c in convs] == [1024, 512, 256, 128, 64, 32]
    assert [c.layer.strides for c in convs] == [(4, 4)] + [(2, 2)] * 5
    assert all(c.power_iterations == 1 for c in convs + [generator.to_rgb])
    assert len(generator.norms) == 5 and generator.to_rgb.layer.filters == 3
    assert generator.activation.negative_slope == pytest.approx(0.3)
    for norm in generator.norms:
        assert norm.momentum == pytest.approx(0.99) and norm.epsilon == pytest.approx(1e-3)
    assert not any("bias" in weight.path for weight in generator.weights)
    # Trainable: six transposed kernels, the RGB kernel, gamma and beta of five BatchNorms.
    assert len(generator.trainable_weights) == 7 + 2 * 5


def test_discriminator_shape_and_biases(discriminator):
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, size=(3, 128, 128, 3)).astype(np.float32)
    condition = rng.normal(size=(3, 128)).astype(np.float32)
    scores = np.asarray(discriminator(images, condition, training=False))
    assert scores.shape == (3, 1) and np.all(np.isfinite(scores))
    assert [c.filters for c in discriminator.convs] == [64, 128, 256, 512, 1024, 1]
    assert discriminator.convs[0].kernel.shape == (3, 3, 131, 64)
    assert discriminator.activation.negative_slope == pytest.approx(0.2)
    biases = [weight.path for weight in discriminator.weights if "bias" in weight.path]
    assert biases == [discriminator.score.bias.path]
    # The condition matters: another condition changes the score.
    other = np.asarray(discriminator(images, condition[::-1].copy(), training=False))
    assert np.abs(other - scores).max() > 1e-7


def test_kernels_use_truncated_normal_002(generator, discriminator):
    kernels = ([c.layer.kernel for c in generator.upsampling_convs] +
               [conv.kernel for conv in discriminator.convs[:5]])
    for kernel in kernels:
        values = np.asarray(kernel)
        assert values.std() == pytest.approx(0.0176, rel=0.1)   # 0.02 truncated at 2 sigma
        assert np.abs(values).max() <= 0.04 + 1e-6
        assert abs(values.mean()) < 1e-3


# --------------------------------------------------------------------------------------------------
# Update rules: spectral norm and BatchNorm change state only when training
# --------------------------------------------------------------------------------------------------

def _l2n(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-6)


def test_spectral_norm_and_batch_norm_update_only_when_training():
    keras.utils.set_random_seed(4)
    generator = build_generator(latent_dim=8, condition_dim=8)
    inputs = np.random.default_rng(4).uniform(-1, 1, size=(2, 16)).astype(np.float32)
    before = _snapshot(generator)
    first = np.asarray(generator(inputs, training=False))
    second = np.asarray(generator(inputs, training=False))
    np.testing.assert_array_equal(first, second)
    for old, new in zip(before, _snapshot(generator)):
        np.testing.assert_array_equal(old, new)

    wrapper = generator.to_rgb
    kernel = np.asarray(wrapper.layer.kernel, dtype=np.float64)
    u = np.asarray(wrapper.vector_u, dtype=np.float64)
    matrix = kernel.reshape(-1, kernel.shape[-1])
    v = _l2n(u @ matrix.T)
    u_new = _l2n(v @ matrix)
    sigma = (v @ matrix @ u_new.T).item()

    generator(inputs, training=True)
    # One power iteration from the stored u, then kernel <- kernel / sigma and u <- new estimate.
    np.testing.assert_allclose(np.asarray(wrapper.vector_u), u_new, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(wrapper.layer.kernel), kernel / sigma, rtol=1e-4,
                               atol=1e-7)
    moving_mean = np.asarray(generator.norms[0].moving_mean)
    assert np.abs(moving_mean).max() > 0, "BatchNorm moving mean must move when training"
    changed = [not np.array_equal(old, new) for old, new in zip(before, _snapshot(generator))]
    assert sum(changed) == 7 + 7 + 2 * 5   # every kernel, every u, every moving mean and variance


# --------------------------------------------------------------------------------------------------
# Discriminator: exact split of the first convolution
# --------------------------------------------------------------------------------------------------

def test_same_padding_tap_mask():
    mask = same_padding_tap_mask(128, 3, 2)
    assert mask.shape == (64, 3)
    expected = np.ones((64, 3), np.float32)
    expected[63, 2] = 0.0        # at stride 2 on 128 only the last output loses its last tap
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(same_padding_tap_mask(5, 3, 1),
                                  [[0, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(same_padding_tap_mask(7, 3, 2)[[0, -1]], [[0, 1, 1], [1, 1, 0]])


def _twin_discriminators(size: int, condition_dim: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, size=(3, size, size, 3)).astype(np.float32)
    condition = (2.0 * rng.normal(size=(3, condition_dim))).astype(np.float32)
    keras.utils.set_random_seed(seed)
    plain = Discriminator(condition_dim=condition_dim)
    split = Discriminator(condition_dim=condition_dim, split_condition_conv=True)
    plain(images, condition, training=False)
    split(images, condition, training=False)
    assert [w.shape for w in plain.weights] == [w.shape for w in split.weights]
    split.set_weights(plain.get_weights())
    return plain, split, images, condition


@pytest.mark.parametrize("size", [pytest.param(128, marks=pytest.mark.slow), 33])
def test_split_condition_conv_equals_plain_in_both_modes(size):
    # 33 pixels: odd sizes put padding before the image too, so the first row loses a tap as well.
    plain, split, images, condition = _twin_discriminators(size, 16 if size < 128 else 128, seed=5)
    first_plain = np.asarray(plain._first_conv(images, condition))
    first_split = np.asarray(split._first_conv(images, condition))
    assert np.abs(first_plain).max() > 0.1
    np.testing.assert_allclose(first_split, first_plain, atol=1e-5)
    for training in (False, True):
        np.testing.assert_allclose(np.asarray(split(images, condition, training=training)),
                                   np.asarray(plain(images, condition, training=training)),
                                   atol=1e-5)
    # Training mode updated the BatchNorm statistics identically.
    np.testing.assert_allclose(np.asarray(split.norms[0].moving_mean),
                               np.asarray(plain.norms[0].moving_mean), atol=1e-6)


@pytest.mark.slow
def test_split_condition_conv_has_the_same_gradients():
    plain, split, images, condition = _twin_discriminators(17, 8, seed=6)
    gradients = []
    for model in (plain, split):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(images, condition, training=True))
        gradients.append(tape.gradient(loss, model.trainable_weights))
    for ours, reference in zip(*gradients):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), atol=1e-5)
    assert np.abs(np.asarray(gradients[0][0])[:, :, 3:]).max() > 0   # condition kernel is trained


def test_gan_config_round_trip():
    for model, expected in ((Generator(latent_dim=4, condition_dim=6),
                             {"latent_dim": 4, "condition_dim": 6}),
                            (Discriminator(condition_dim=6, split_condition_conv=True),
                             {"condition_dim": 6, "split_condition_conv": True})):
        clone = type(model).from_config(model.get_config())
        assert {key: clone.get_config()[key] for key in expected} == expected


def _float64_twin(model_class, source, build):
    """A float64 copy of ``source`` (plain Keras BatchNorm): the exact answer float32 approximates."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        twin = model_class(fused_batch_norm=False)
        build(twin)
    finally:
        keras.config.set_dtype_policy(previous)
    assert twin.norms[0].moving_mean.dtype == "float64"
    twin.set_weights([np.asarray(w, np.float64) for w in source.get_weights()])
    return twin


def test_fused_batch_norm_models_match_plain_keras_batch_norm(gradients_match_float64_twin):
    # The fused kernel is a speed choice only: same outputs, gradients and BatchNorm statistics up
    # to float32 rounding. What rounding amounts to is measured against a float64 twin: D's
    # one-channel last BatchNorm amplifies it to ~1e-3 in some gradients, for both implementations.
    from eeg2image_tf.models.layers import FusedBatchNormalization

    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    inputs = rng.uniform(-1, 1, size=(3, 256))
    images = rng.uniform(-1, 1, size=(3, 128, 128, 3))
    condition = rng.normal(size=(3, 128))
    cases = ((Generator, lambda m, t, d: m(inputs.astype(d), training=t)),
             (Discriminator, lambda m, t, d: m(images.astype(d), condition.astype(d), training=t)))
    for model_class, call in cases:
        plain, fused = (model_class(fused_batch_norm=f) for f in (False, True))
        for model in (plain, fused):
            call(model, False, np.float32)
        fused.set_weights(plain.get_weights())
        exact = _float64_twin(model_class, plain, lambda m: call(m, False, np.float64))
        assert all(isinstance(norm, FusedBatchNormalization) for norm in fused.norms)
        assert not any(isinstance(norm, FusedBatchNormalization) for norm in plain.norms)
        np.testing.assert_allclose(np.asarray(call(fused, False, np.float32)),
                                   np.asarray(call(plain, False, np.float32)), atol=1e-5)
        gradients_match_float64_twin(call, exact, plain, fused)
        for a, b in zip(fused.non_trainable_weights, plain.non_trainable_weights):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_unrolled_encoder_is_the_same_function():
    from eeg2image_tf.training.losses import triplet_semihard_loss
    from eeg2image_tf.models import build_encoder

    looped = build_encoder(num_channels=5, num_samples=7)
    unrolled = build_encoder(num_channels=5, num_samples=7, unroll=True)
    unrolled.set_weights(looped.get_weights())
    assert unrolled.get_config()["unroll"] and not looped.get_config()["unroll"]
    rng = np.random.default_rng(2)
    x = tf.constant(rng.uniform(-1, 1, size=(6, 7, 5)).astype(np.float32))
    y = tf.constant([0, 0, 1, 1, 2, 2])
    results = []
    for model in (looped, unrolled):
        with tf.GradientTape() as tape:
            embedding, feature = model(x, training=True)
            loss = triplet_semihard_loss(y, embedding)
        results.append((feature.numpy(), tape.gradient(loss, model.trainable_weights)))
    np.testing.assert_allclose(results[1][0], results[0][0], atol=1e-6)
    assert np.abs(results[0][0]).max() > 1e-3
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
