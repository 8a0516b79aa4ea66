"""Small convolutions as matrix products (models.matmul_conv): values and gradients against
TensorFlow's own convolutions, the layers against their Keras parents, the GAN models and the GAN
iteration with the re-expressions on and off."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from eeg2image_tf.models import matmul_conv  # noqa: E402
from eeg2image_tf.models.gan import Discriminator, Generator  # noqa: E402
from eeg2image_tf.models.matmul_conv import (MatmulConv2D, MatmulConv2DTranspose,  # noqa: E402
                                             matmul_conv_transpose, narrow_conv3x3,
                                             winograd_conv3x3)


def _value_and_gradients(function, inputs, kernel, output_gradient):
    """``function(inputs, kernel)`` and the gradients of ``sum(output * output_gradient)``."""
    inputs, kernel = tf.constant(inputs), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([inputs, kernel])
        outputs = function(inputs, kernel)
        loss = tf.reduce_sum(outputs * output_gradient)
    d_inputs, d_kernel = tape.gradient(loss, [inputs, kernel])
    return outputs.numpy(), d_inputs.numpy(), d_kernel.numpy()


def _relative_error(found, expected) -> float:
    return float(np.abs(found - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("stride, size, in_channels, out_channels",
                         [(2, 4, 16, 8), (2, 5, 3, 7), (4, 1, 12, 6), (2, 8, 10, 4), (3, 3, 4, 5),
                          (2, 1, 4, 4)])
def test_matmul_conv_transpose_values_and_gradients_equal_tensorflow(stride, size, in_channels,
                                                                     out_channels):
    rng = np.random.default_rng(stride * 100 + size)
    inputs = rng.normal(size=(3, size, size, in_channels)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, out_channels, in_channels)).astype(np.float32)
    output_gradient = rng.normal(size=(3, size * stride, size * stride, out_channels)).astype(
        np.float32)

    def reference(x, k):
        return tf.nn.conv2d_transpose(x, k, (3, size * stride, size * stride, out_channels),
                                      stride, padding="SAME")

    expected = _value_and_gradients(reference, inputs, kernel, output_gradient)
    found = _value_and_gradients(lambda x, k: matmul_conv_transpose(x, k, stride), inputs, kernel,
                                 output_gradient)
    for name, f, e in zip(("output", "input gradient", "kernel gradient"), found, expected):
        assert f.shape == e.shape, name
        assert _relative_error(f, e) < 1e-5, name


def test_matmul_conv_transpose_with_a_dead_border():
    """``live=3`` on a 4x4 input whose last row and column are zero (what the generator's block 0
    leaves): same output and kernel gradient; the input gradient is the true one on the live part
    and zero on the dead border, which the forward pass ignores."""
    rng = np.random.default_rng(9)
    inputs = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    inputs[:, 3:, :, :] = 0.0
    inputs[:, :, 3:, :] = 0.0
    kernel = rng.normal(size=(3, 3, 5, 6)).astype(np.float32)
    output_gradient = rng.normal(size=(2, 8, 8, 5)).astype(np.float32)

    def reference(x, k):
        return tf.nn.conv2d_transpose(x, k, (2, 8, 8, 5), 2, padding="SAME")

    out, d_in, d_kernel = _value_and_gradients(reference, inputs, kernel, output_gradient)
    found = _value_and_gradients(lambda x, k: matmul_conv_transpose(x, k, 2, live=3), inputs,
                                 kernel, output_gradient)
    assert _relative_error(found[0], out) < 1e-5
    assert _relative_error(found[2], d_kernel) < 1e-5
    assert _relative_error(found[1][:, :3, :3], d_in[:, :3, :3]) < 1e-5
    assert np.all(found[1][:, 3:] == 0) and np.all(found[1][:, :, 3:] == 0)
    assert np.abs(out[:, 6]).max() > 0.1     # the border's taps reach row 6: they were kept


@pytest.mark.parametrize("height, width, in_channels, out_channels",
                         [(8, 8, 16, 8), (4, 6, 5, 7), (2, 2, 3, 4), (8, 8, 512, 1024)])
def test_winograd_values_and_gradients_equal_tensorflow(height, width, in_channels, out_channels):
    rng = np.random.default_rng(height * width + in_channels)
    inputs = rng.normal(size=(3, height, width, in_channels)).astype(np.float32)
    kernel = (rng.normal(size=(3, 3, in_channels, out_channels)) * 0.05).astype(np.float32)
    output_gradient = rng.normal(size=(3, height, width, out_channels)).astype(np.float32)
    expected = _value_and_gradients(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"), inputs, kernel,
                                    output_gradient)
    found = _value_and_gradients(winograd_conv3x3, inputs, kernel, output_gradient)
    # Winograd's transforms add a few ulps: measured 2.5e-6 at 512 -> 1024 channels.
    for name, f, e in zip(("output", "input gradient", "kernel gradient"), found, expected):
        assert f.shape == e.shape, name
        assert _relative_error(f, e) < 1e-5, name


def test_winograd_is_checked_against_float64_not_only_float32():
    """Winograd's float32 error is of the same order as the direct convolution's."""
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(2, 8, 8, 256))
    kernel = rng.normal(size=(3, 3, 256, 64)) * 0.05
    truth = tf.nn.conv2d(inputs, kernel, 1, "SAME").numpy()
    direct = tf.nn.conv2d(inputs.astype(np.float32), kernel.astype(np.float32), 1, "SAME").numpy()
    winograd = winograd_conv3x3(tf.constant(inputs, tf.float32),
                                tf.constant(kernel, tf.float32)).numpy()
    direct_error = np.abs(direct - truth).max()
    assert np.abs(winograd - truth).max() < 10 * direct_error + 1e-6


def _layer_pair(fast_class, plain_class, build_shape, **arguments):
    fast, plain = fast_class(**arguments), plain_class(**arguments)
    fast.build(build_shape)
    plain.build(build_shape)
    plain.set_weights(fast.get_weights())
    return fast, plain


@pytest.mark.parametrize("height, width, in_channels, out_channels",
                         [(8, 8, 32, 3), (5, 7, 4, 1), (6, 3, 3, 5), (1, 1, 2, 3)])
def test_narrow_conv3x3_values_and_gradients_equal_tensorflow(height, width, in_channels,
                                                              out_channels):
    rng = np.random.default_rng(height * 10 + width)
    inputs = rng.normal(size=(2, height, width, in_channels)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, in_channels, out_channels)).astype(np.float32)
    output_gradient = rng.normal(size=(2, height, width, out_channels)).astype(np.float32)
    expected = _value_and_gradients(lambda x, w: tf.nn.conv2d(x, w, 1, padding="SAME"),
                                    inputs, kernel, output_gradient)
    found = _value_and_gradients(narrow_conv3x3, inputs, kernel, output_gradient)
    for name, f, e in zip(("outputs", "d_inputs", "d_kernel"), found, expected):
        assert f.shape == e.shape, name
        assert _relative_error(f, e) < 1e-5, name
    # Every tap matters: the kernel with one tap moved changes the result.
    moved = np.roll(kernel, 1, axis=0)
    assert _relative_error(narrow_conv3x3(tf.constant(inputs), tf.constant(moved)).numpy(),
                           expected[0]) > 1e-2


@pytest.mark.parametrize("size, stride, live", [(1, 4, None), (4, 2, 3), (8, 2, None)])
def test_matmul_conv_transpose_layer_equals_keras(size, stride, live):
    fast, plain = _layer_pair(MatmulConv2DTranspose, keras.layers.Conv2DTranspose,
                              (None, size, size, 12), filters=6, kernel_size=3, strides=stride,
                              padding="same", use_bias=False)
    fast.live_input = live
    rng = np.random.default_rng(size)
    inputs = rng.normal(size=(2, size, size, 12)).astype(np.float32)
    if live is not None:
        inputs[:, live:] = 0.0
        inputs[:, :, live:] = 0.0
    assert fast._matmul_applies(tf.constant(inputs))
    for layer_inputs in (inputs,):
        with tf.GradientTape(persistent=True) as tape:
            outputs = [layer(layer_inputs) for layer in (fast, plain)]
            losses = [tf.reduce_sum(o * o) for o in outputs]
        np.testing.assert_allclose(outputs[0].numpy(), outputs[1].numpy(), rtol=1e-5, atol=1e-5)
        gradients = [tape.gradient(loss, layer.kernel) for loss, layer in zip(losses, (fast, plain))]
        assert _relative_error(gradients[0].numpy(), gradients[1].numpy()) < 1e-5


def test_matmul_layers_fall_back_where_the_re_expression_does_not_apply():
    large = MatmulConv2DTranspose(filters=4, kernel_size=3, strides=2, padding="same",
                                  use_bias=False)
    large.build((None, 16, 16, 3))
    assert not large._matmul_applies(tf.zeros((1, 16, 16, 3)))          # 256 pixels > 64
    biased = MatmulConv2DTranspose(filters=4, kernel_size=3, strides=2, padding="same")
    biased.build((None, 4, 4, 3))
    assert not biased._matmul_applies(tf.zeros((1, 4, 4, 3)))
    winograd = MatmulConv2D(filters=4, kernel_size=3, padding="same", use_bias=False)
    winograd.build((None, 8, 8, 3))
    assert winograd._winograd_applies(tf.zeros((1, 8, 8, 3)))
    assert not winograd._winograd_applies(tf.zeros((1, 7, 8, 3)))        # odd height
    assert not winograd._winograd_applies(tf.zeros((1, 8, 8, 3), tf.bfloat16))
    assert not winograd._winograd_applies(tf.zeros((1, 64, 64, 3)))      # above 32 x 32
    strided = MatmulConv2D(filters=4, kernel_size=3, strides=2, padding="same", use_bias=False)
    strided.build((None, 8, 8, 3))
    assert not strided._winograd_applies(tf.zeros((1, 8, 8, 3)))
    single = MatmulConv2D(filters=1, kernel_size=3, padding="same", use_bias=False)
    single.build((None, 8, 8, 3))
    assert not single._winograd_applies(tf.zeros((1, 8, 8, 3)))
    # The fallbacks are the parents' own calls: same numbers as plain Keras.
    plain = keras.layers.Conv2D(filters=4, kernel_size=3, strides=2, padding="same",
                                use_bias=False)
    plain.build((None, 8, 8, 3))
    plain.set_weights(strided.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(strided(x).numpy(), plain(x).numpy())


def test_matmul_layer_configs_round_trip():
    layer = MatmulConv2DTranspose(filters=3, kernel_size=3, strides=2, padding="same",
                                  use_bias=False, live_input=3, max_matmul_pixels=16)
    clone = MatmulConv2DTranspose.from_config(layer.get_config())
    assert (clone.live_input, clone.max_matmul_pixels, clone.filters) == (3, 16, 3)
    conv = MatmulConv2D(filters=5, kernel_size=3, padding="same", winograd_max_pixels=100)
    assert MatmulConv2D.from_config(conv.get_config()).winograd_max_pixels == 100


def _models(model_class, call):
    """The model with matmul convs, without, and a float64 twin without (the exact answer)."""
    fast, plain = (model_class(matmul_convs=flag) for flag in (True, False))
    for model in (fast, plain):
        call(model, False, np.float32)
    plain.set_weights(fast.get_weights())
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        exact = model_class(matmul_convs=False, fused_batch_norm=False)
        call(exact, False, np.float64)
    finally:
        keras.config.set_dtype_policy(previous)
    exact.set_weights([np.asarray(w, np.float64) for w in fast.get_weights()])
    return fast, plain, exact


def test_models_with_matmul_convs_are_the_same_functions(gradients_match_float64_twin):
    """Same outputs in both modes, gradients as close to the float64 truth as TensorFlow's own
    convolutions get, same BatchNorm and spectral-norm updates."""
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    inputs = rng.uniform(-1, 1, size=(3, 256))
    images = rng.uniform(-1, 1, size=(3, 128, 128, 3))
    condition = rng.uniform(-0.8, 0.8, size=(3, 128))
    cases = ((Generator, lambda m, t, d: m(inputs.astype(d), training=t)),
             (Discriminator, lambda m, t, d: m(images.astype(d), condition.astype(d), training=t)))
    for model_class, call in cases:
        fast, plain, exact = _models(model_class, call)
        assert fast.matmul_convs and not plain.matmul_convs
        np.testing.assert_allclose(np.asarray(call(fast, False, np.float32)),
                                   np.asarray(call(plain, False, np.float32)), rtol=1e-4, atol=1e-5)
        gradients_match_float64_twin(call, exact, plain, fast)
        for a, b in zip(fast.non_trainable_weights, plain.non_trainable_weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_generator_block_one_knows_its_dead_border():
    generator = Generator()
    convs = [sn.layer for sn in generator.upsampling_convs]
    assert all(isinstance(conv, MatmulConv2DTranspose) for conv in convs)
    assert [conv.live_input for conv in convs] == [None, 3, None, None, None, None]
    plain = Generator(matmul_convs=False)
    assert not any(isinstance(sn.layer, MatmulConv2DTranspose) for sn in plain.upsampling_convs)
    assert Generator.from_config(generator.get_config()).matmul_convs
    assert not Discriminator.from_config(Discriminator(matmul_convs=False).get_config()).matmul_convs


def _visible_gpu(monkeypatch, present: bool) -> None:
    from eeg2image_tf.models import matmul_conv, precision

    # Both homes of the name: the device query and the module that chooses by it.
    monkeypatch.setattr(precision, "gpu_present", lambda: present)
    monkeypatch.setattr(matmul_conv, "gpu_present", lambda: present)


@pytest.mark.parametrize("gpu", [False, True])
def test_matmul_convs_are_chosen_by_the_device_unless_asked(monkeypatch, gpu):
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.models import build_discriminator, build_generator
    from eeg2image_tf.training.gan_state import build_gan_state

    _visible_gpu(monkeypatch, gpu)
    assert matmul_conv.use_matmul_convs() is (not gpu)
    assert matmul_conv.use_matmul_convs(True) is True and matmul_conv.use_matmul_convs(False) is False
    small = dict(latent_dim=8, condition_dim=8)
    assert build_generator(**small).matmul_convs is (not gpu)
    assert build_generator(**small, matmul_convs=gpu).matmul_convs is gpu
    assert build_discriminator(condition_dim=8).matmul_convs is (not gpu)
    # A config that leaves the choice open (the default) gets the device's in both models.
    state = build_gan_state(GanTrainConfig(data="-", images="-", encoder="-", run="-", **small))
    assert state.generator.matmul_convs is state.discriminator.matmul_convs is (not gpu)


def test_generation_uses_tensorflows_kernels_where_a_gpu_is_visible(monkeypatch):
    """The fast forward keeps its BatchNorm folding on a GPU, without the CPU's products."""
    from eeg2image_tf.models import build_generator, inference

    def not_on_a_gpu(*args, **kwargs):
        raise AssertionError("a CPU re-expression chosen with a GPU visible")

    generator = build_generator(latent_dim=8, condition_dim=8)
    _visible_gpu(monkeypatch, True)
    monkeypatch.setattr(inference, "conv_transpose_as_matmul", not_on_a_gpu)
    monkeypatch.setattr(inference, "narrow_conv3x3", not_on_a_gpu)
    inputs = np.random.default_rng(4).uniform(-1, 1, (2, 16)).astype(np.float32)
    found = inference.fast_generator_call(generator)(inputs).numpy()
    expected = generator(inputs, training=False).numpy()
    assert np.abs(found - expected).max() <= 1e-4 * np.abs(expected).max()


def test_module_thresholds_cover_the_gan_layers():
    # The generator's 1x1, 4x4 and 8x8 inputs and the discriminator's 8x8 stride-1 layer.
    assert matmul_conv.MATMUL_CONV_TRANSPOSE_MAX_PIXELS >= 8 * 8
    assert matmul_conv.WINOGRAD_MAX_PIXELS >= 8 * 8


@pytest.mark.slow
def test_gan_iteration_with_matmul_convs_on_and_off():
    """One compiled iteration from the same variables: the same losses and gradients, to rounding
    (at a tiny learning rate, as ``adam_support`` explains)."""
    from adam_support import TINY_LEARNING_RATE, assert_same_first_step, first_step_record

    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training.gan_state import build_gan_state
    from eeg2image_tf.training.gan_steps import GanSteps

    rng = np.random.default_rng(2)
    batch = (tf.constant(rng.uniform(-0.8, 0.8, (2, 128)).astype(np.float32)),
             tf.zeros([2], tf.int64),
             tf.constant(rng.uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)))
    runs = []
    initial = None
    for flag in (False, True):
        config = GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=2,
                                matmul_convs=flag, learning_rate=TINY_LEARNING_RATE)
        state = build_gan_state(config)
        weights = list(state.generator.weights) + list(state.discriminator.weights)
        if initial is None:
            initial = [v.numpy().copy() for v in weights]
        else:
            for variable, value in zip(weights, initial):
                variable.assign(value)
        steps = GanSteps(state.generator, state.discriminator, state.g_optimizer,
                         state.d_optimizer, latent_dim=config.latent_dim, policy=config.policy,
                         mode_seeking_weight=config.mode_seeking_weight, seed=config.seed)
        train_step = steps.make_train_step(tf.distribute.get_strategy())
        losses = {k: float(v) for k, v in train_step(tf.constant(3, tf.int64), batch).items()}
        runs.append((losses, first_step_record(state)))
    (plain_losses, plain), (fast_losses, fast) = runs
    for name, value in plain_losses.items():
        np.testing.assert_allclose(fast_losses[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    # Batch-of-2 BatchNorm divides by a two-sample variance, which magnifies rounding: the measured
    # differences reach a few 1e-3 of a gradient's norm; a wrong convolution is off by its whole norm.
    assert_same_first_step(fast, plain)


@pytest.mark.parametrize("size, live, stride, kernel_size",
                         [(1, 1, 4, 3), (4, 3, 2, 3), (4, 2, 2, 3), (3, 3, 3, 2), (5, 2, 2, 5),
                          (3, 3, 2, 3)])
def test_live_after_conv_transpose_is_where_tensorflow_leaves_zeros(size, live, stride, kernel_size):
    from eeg2image_tf.models.matmul_conv import live_after_conv_transpose

    rng = np.random.default_rng(size * 10 + live)
    x = np.zeros((1, size, size, 2), np.float32)
    x[:, :live, :live] = rng.uniform(0.5, 1.0, size=(1, live, live, 2))
    kernel = rng.uniform(0.5, 1.0, size=(kernel_size, kernel_size, 3, 2)).astype(np.float32)
    out = tf.nn.conv2d_transpose(x, kernel, (1, size * stride, size * stride, 3), stride,
                                 padding="SAME").numpy()
    found = live_after_conv_transpose(live, stride, kernel_size, size * stride)
    # Positive inputs and kernel: a row is zero exactly when no live input reaches it.
    nonzero_rows = np.flatnonzero(np.abs(out[0]).sum(axis=(1, 2)) > 0)
    assert nonzero_rows.max() + 1 == found
    assert np.all(out[0, found:] == 0) and np.all(out[0, :, found:] == 0)
