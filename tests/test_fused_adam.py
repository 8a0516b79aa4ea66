"""FusedAdam: Keras 3's Adam through TensorFlow's fused kernel, number for number."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from eeg2image_tf.training.fused_adam import FusedAdam  # noqa: E402

SHAPES = [(3, 3, 8, 4), (17,), (5, 6)]


def _run(optimizer_class, steps: int = 4, compiled: bool = True, **options):
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
    gradients = [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
                 for _ in range(steps)]
    variables = [keras.Variable(value) for value in initial]
    optimizer = optimizer_class(3e-4, beta_1=0.2, beta_2=0.5, **options)
    optimizer.build(variables)

    def step(grads):
        optimizer.apply(grads, variables)

    step = tf.function(step) if compiled else step
    for grads in gradients:
        step(grads)
    return initial, variables, optimizer


@pytest.mark.parametrize("compiled", [True, False])
def test_fused_adam_equals_keras_adam(compiled):
    initial, plain, plain_optimizer = _run(keras.optimizers.Adam, compiled=compiled)
    _, fused, fused_optimizer = _run(FusedAdam, compiled=compiled)
    for a, b, start in zip(plain, fused, initial):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-9)
        assert np.abs(b.numpy() - start).max() > 1e-4      # it did move
    for a, b in zip(plain_optimizer.variables, fused_optimizer.variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-9)
    assert int(fused_optimizer.iterations.numpy()) == 4


def test_fused_adam_keeps_adams_names_and_config():
    optimizer = FusedAdam(1e-3, beta_1=0.2, beta_2=0.5)
    assert optimizer.name == "adam"
    clone = FusedAdam.from_config(optimizer.get_config())
    assert (clone.beta_1, clone.beta_2, clone.name) == (0.2, 0.5, "adam")


def test_fused_adam_falls_back_to_keras_for_amsgrad():
    _, plain, _ = _run(keras.optimizers.Adam, amsgrad=True)
    _, fused, _ = _run(FusedAdam, amsgrad=True)
    for a, b in zip(plain, fused):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-9)


def test_checkpoint_of_keras_adam_restores_into_fused_adam(tmp_path):
    _, variables, optimizer = _run(keras.optimizers.Adam)
    path = tf.train.Checkpoint(optimizer=optimizer, weights=variables).save(str(tmp_path / "c"))
    fresh = [keras.Variable(np.zeros(shape, np.float32)) for shape in SHAPES]
    fused = FusedAdam(3e-4, beta_1=0.2, beta_2=0.5)
    fused.build(fresh)
    tf.train.Checkpoint(optimizer=fused, weights=fresh).restore(path).assert_consumed()
    for a, b in zip(optimizer.variables, fused.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
