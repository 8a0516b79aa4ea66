"""The optional bfloat16 mode: float32 variables and checkpoints, bfloat16 arithmetic, close images."""

import warnings

import numpy as np
import pytest

import keras
import tensorflow as tf

from eeg2image_tf.errors import ConfigError
from eeg2image_tf.models import Discriminator, Generator
from eeg2image_tf.models import precision
from eeg2image_tf.models.precision import check_precision, compute_dtype, uses_loss_scaling


def test_precision_names():
    assert compute_dtype("float32") == "float32"
    assert compute_dtype("mixed_bfloat16") == "bfloat16"
    assert compute_dtype("mixed_float16") == "float16"
    assert [uses_loss_scaling(p) for p in precision.PRECISIONS] == [False, False, True]
    with pytest.raises(ConfigError, match="--precision"):
        check_precision("float16")


def test_slow_precision_warnings_follow_the_hardware(monkeypatch):
    monkeypatch.setattr(precision, "gpu_present", lambda: False)
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: False)
    assert "emulated" in precision.slow_precision_warning("mixed_bfloat16")
    assert "meant for GPUs" in precision.slow_precision_warning("mixed_float16")
    assert precision.slow_precision_warning("float32") is None
    with pytest.warns(RuntimeWarning, match="mixed_float16 is meant for GPUs"):
        precision.warn_if_slow("mixed_float16")
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: True)
    assert precision.slow_precision_warning("mixed_bfloat16") is None
    monkeypatch.setattr(precision, "gpu_present", lambda: True)
    assert all(precision.slow_precision_warning(p) is None for p in precision.PRECISIONS)


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


def _generator_at_trained_scale(z: np.ndarray) -> Generator:
    """A random Generator whose BatchNorm moving statistics are set to ``z``'s own batch statistics.

    Freshly initialised, the moving statistics (mean 0, variance 1) do not renormalise the small
    initial kernels, so activations shrink layer by layer and the images end near 1e-4, where
    float16 is subnormal and relative rounding means nothing. Calibrated, every block's output has
    unit scale, as in a trained generator, and the images span most of [-1, 1].
    """
    keras.utils.set_random_seed(4)
    generator = Generator()
    generator(z, training=False)
    layers = generator.inference_layers()
    x = tf.reshape(z, (-1, 1, 1, layers.input_dim))
    for conv, norm in zip(layers.convs, layers.norms):
        x = conv(x, training=False)
        if norm is not None:
            mean, variance = tf.nn.moments(x, axes=(0, 1, 2))
            norm.moving_mean.assign(mean)
            norm.moving_variance.assign(variance)
            x = norm(x, training=False)
        x = tf.nn.leaky_relu(x, layers.negative_slope)
    return generator


# Unit roundoff of each compute type: 2^-(mantissa bits + 1).
UNIT_ROUNDOFF = {"mixed_bfloat16": 2.0 ** -8, "mixed_float16": 2.0 ** -11}
# Seven layers, each rounding its inputs, weights and products, and accumulations whose order (and
# precision: oneDNN sums bfloat16 products in float32, Eigen's float16 fallback in float16) depends
# on the CPU: a bound some tens of units of rounding wide. A wrong forward (a misfolded BatchNorm,
# a dropped offset) misses by a sizeable fraction of the images' own scale, far outside it.
ROUNDINGS_ALLOWED = 48


def test_reduced_precision_generation_matches_float32_to_its_rounding():
    from eeg2image_tf.models.inference import fast_generator_call
    from eeg2image_tf.generation import make_uint8_forward

    z = np.random.default_rng(1).uniform(-1, 1, size=(3, 256)).astype(np.float32)
    generator = _generator_at_trained_scale(z)
    exact = generator(z, training=False).numpy()
    scale = float(np.abs(exact).max())
    assert scale > 0.3   # the calibration worked: images at a trained generator's scale
    for name, unit in UNIT_ROUNDOFF.items():
        fast = tf.function(fast_generator_call(generator, name))(z).numpy()
        assert fast.dtype == np.float32
        difference = float(np.abs(fast - exact).max())
        # Above: the arithmetic really ran in the reduced type (every pre-tanh value of the
        # 147,456 is rounded to it). Below: no more than that type's rounding can explain.
        assert unit / 4 * scale < difference < ROUNDINGS_ALLOWED * unit * scale, (name, difference)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # float16 on a CPU: slow, not wrong
            pixels = make_uint8_forward(generator, 3, 256, precision=name)(z).numpy()
        assert pixels.dtype == np.uint8 and pixels.shape == (3, 128, 128, 3)


@pytest.mark.slow
def test_mixed_bfloat16_train_step_updates_float32_variables():
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training.gan_state import build_gan_state
    from eeg2image_tf.training.gan_steps import GanSteps

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


# Expected: Keras's spectral normalisation caps an inverse norm at 1/epsilon = 1e7, which is
# infinite in float16; numpy warns while the float16 graph is traced (README: float16 mode).
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.slow
def test_mixed_float16_scales_losses_and_skips_overflowing_steps(tmp_path):
    """Dynamic loss scaling: a finite step updates G and D in float32; a step whose scaled
    gradients overflow float16 changes no weight and halves the scale; the scales are checkpointed
    beside the usual objects, and a float32 checkpoint still resumes a float16 run."""
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training.common import make_checkpoint_manager, restore_latest
    from eeg2image_tf.training.gan_state import LOSS_SCALE_OBJECTS, build_gan_state
    from eeg2image_tf.training.gan_steps import GanSteps

    def config(name):
        return GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=2,
                              precision=name)

    def restore(state, manager):
        return restore_latest(state.checkpoint, manager, **state.resume_options)

    state = build_gan_state(config("mixed_float16"))
    assert set(state.loss_scales) == set(LOSS_SCALE_OBJECTS)
    assert state.generator.norms[0].compute_dtype == "float16"
    steps = GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                     latent_dim=128)
    train_step = steps.make_train_step(tf.distribute.get_strategy())
    rng = np.random.default_rng(2)
    batch = (tf.constant(rng.normal(size=(2, 128)).astype(np.float32)),
             tf.constant([0, 1], tf.int64),
             tf.constant(rng.uniform(-1, 1, size=(2, 128, 128, 3)).astype(np.float32)))
    models = (state.generator, state.discriminator)
    inner = [state.loss_scales[name].inner_optimizer for name in LOSS_SCALE_OBJECTS]

    def weights():
        return [[v.numpy().copy() for v in m.trainable_variables] for m in models]

    # Keras's initial 2^15 may overflow a random network's first gradients; 2^8 does not.
    for optimizer in state.loss_scales.values():
        optimizer.dynamic_scale.assign(2.0 ** 8)
    before = weights()
    losses = train_step(tf.constant(0, tf.int64), batch)
    assert all(np.isfinite(float(value)) for value in losses.values())
    assert all(v.dtype == "float32" for m in models for v in m.weights)
    for model_before, model in zip(before, models):
        assert any(not np.array_equal(b, v.numpy())
                   for b, v in zip(model_before, model.trainable_variables))
    assert [int(o.iterations.numpy()) for o in inner] == [1, 1]
    assert state.loss_scale_values == {"precision/g_loss_scale": 2.0 ** 8,
                                       "precision/d_loss_scale": 2.0 ** 8}

    # A scale of 2^60 makes every float16 gradient overflow: both updates are skipped. (G's
    # spectrally normalised kernels are rewritten by its training-mode forward pass, update or not.)
    for optimizer in state.loss_scales.values():
        optimizer.dynamic_scale.assign(2.0 ** 60)
    optimized_only = [v for v in state.generator.trainable_variables if "kernel" not in v.path]
    optimized_only += state.discriminator.trainable_variables
    assert len(optimized_only) > len(state.discriminator.trainable_variables)
    before = [v.numpy().copy() for v in optimized_only]
    losses = train_step(tf.constant(1, tf.int64), batch)
    assert all(np.isfinite(float(value)) for value in losses.values())   # the losses themselves
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, optimized_only))
    assert [int(o.iterations.numpy()) for o in inner] == [1, 1]
    assert set(state.loss_scale_values.values()) == {2.0 ** 59}

    # Checkpointed: the Adam states under their usual names, the scales beside them.
    manager = make_checkpoint_manager(state.checkpoint, tmp_path / "float16", 1)
    saved = manager.save(checkpoint_number=2)
    stored = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(saved)}
    assert {"g_optimizer", "d_optimizer", *LOSS_SCALE_OBJECTS} <= stored
    resumed = build_gan_state(config("mixed_float16"))
    assert restore(resumed, manager) == saved
    assert set(resumed.loss_scale_values.values()) == {2.0 ** 59}

    # A float32 checkpoint (no scales) resumes in float16 with fresh scales, and the reverse.
    float32_state = build_gan_state(config("float32"))
    float32_manager = make_checkpoint_manager(float32_state.checkpoint, tmp_path / "float32", 1)
    float32_manager.save(checkpoint_number=1)
    switched = build_gan_state(config("mixed_float16"))
    assert restore(switched, float32_manager) is not None
    assert set(switched.loss_scale_values.values()) == {2.0 ** 15}
    np.testing.assert_array_equal(switched.generator.weights[0].numpy(),
                                  float32_state.generator.weights[0].numpy())
    back = build_gan_state(config("float32"))
    assert restore(back, manager) == saved
    np.testing.assert_array_equal(back.generator.weights[0].numpy(),
                                  state.generator.weights[0].numpy())


def test_float32_never_looks_at_the_devices(monkeypatch):
    def no_device_query():
        raise AssertionError("float32 needs no device query")

    monkeypatch.setattr(precision, "gpu_present", no_device_query)
    assert precision.slow_precision_warning("float32") is None
