"""The optional bfloat16 mode: float32 variables and checkpoints, bfloat16 arithmetic, close images."""

import numpy as np
import pytest

import keras
import tensorflow as tf

from eeg2image_tf.errors import ConfigError
from eeg2image_tf.models import Discriminator, Generator
from eeg2image_tf.precision import check_precision, compute_dtype


def test_precision_names():
    assert compute_dtype("float32") == "float32"
    assert compute_dtype("mixed_bfloat16") == "bfloat16"
    with pytest.raises(ConfigError, match="--precision"):
        check_precision("float16")


def _twins(model_class, build):
    keras.utils.set_random_seed(3)
    exact = model_class()
    build(exact)
    fast = model_class(dtype="mixed_bfloat16")
    build(fast)
    fast.set_weights(exact.get_weights())
    return exact, fast


def test_mixed_bfloat16_models_keep_float32_variables_and_outputs():
    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, size=(2, 256)).astype(np.float32)
    images = rng.uniform(-1, 1, size=(2, 128, 128, 3)).astype(np.float32)
    condition = rng.normal(size=(2, 128)).astype(np.float32)
    generator, generator_bf16 = _twins(Generator, lambda m: m(z, training=False))
    discriminator, discriminator_bf16 = _twins(
        Discriminator, lambda m: m(images, condition, training=False))
    for model in (generator_bf16, discriminator_bf16):
        assert all(v.dtype == "float32" for v in model.weights)           # same checkpoints
        assert model.norms[-1].compute_dtype == "bfloat16"
    exact = generator(z, training=False).numpy()
    fast = generator_bf16(z, training=False)
    assert fast.dtype == tf.float32
    difference = np.abs(fast.numpy() - exact)
    # bfloat16 rounding, not another model: close, but not bit-identical.
    assert 0 < difference.max() < 0.1 and difference.mean() < 0.01
    scores = discriminator_bf16(images, condition, training=False)
    assert scores.dtype == tf.float32
    np.testing.assert_allclose(scores.numpy(), discriminator(images, condition, training=False),
                               atol=0.1 * float(np.abs(scores.numpy()).max()) + 0.05)


def test_bfloat16_generation_matches_float32_to_bfloat16_rounding():
    from eeg2image_tf.generation import fast_generator_call, make_uint8_forward

    keras.utils.set_random_seed(4)
    generator = Generator()
    z = np.random.default_rng(1).uniform(-1, 1, size=(3, 256)).astype(np.float32)
    generator(z, training=False)
    exact = generator(z, training=False).numpy()
    fast = tf.function(fast_generator_call(generator, "mixed_bfloat16"))(z).numpy()
    assert fast.dtype == np.float32
    assert 0 < np.abs(fast - exact).max() < 0.1
    pixels = make_uint8_forward(generator, 3, 256, precision="mixed_bfloat16")(z).numpy()
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 128, 128, 3)


@pytest.mark.slow
def test_mixed_bfloat16_train_step_updates_float32_variables():
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training.gan import GanSteps, build_gan_state

    config = GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=2,
                            precision="mixed_bfloat16")
    state = build_gan_state(config)
    steps = GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                     latent_dim=config.latent_dim)
    train_step = steps.make_train_step(tf.distribute.get_strategy())
    rng = np.random.default_rng(2)
    batch = (tf.constant(rng.normal(size=(2, 128)).astype(np.float32)),
             tf.constant([0, 1], tf.int64),
             tf.constant(rng.uniform(-1, 1, size=(2, 128, 128, 3)).astype(np.float32)))
    before = [v.numpy().copy() for v in state.generator.trainable_variables]
    losses = train_step(tf.constant(0, tf.int64), batch)
    assert all(np.isfinite(float(value)) for value in losses.values())
    after = state.generator.trainable_variables
    assert all(v.dtype == "float32" for v in after)
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after))
