"""Comparing two training computations by what they computed rather than where Adam left the
weights. (Not a test module: pytest collects ``test_*.py`` only.)

Adam's first step moves every weight by about the learning rate whatever its gradient's size, so a
weight whose gradient is rounding noise moves by +-lr in opposite directions in two runs that differ
only in rounding; and G's step sees D's updated weights, so at a real learning rate G's gradients
then differ by percents for a reason that has nothing to do with what is compared. At a tiny
learning rate D's update is negligible, and the gradients themselves are read from Adam's first
moments, ``(1 - beta_1) * gradient`` after one step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_LEARNING_RATE = 1e-9


def first_step_record(state) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """After one iteration of ``state`` (a GanState): the gradients of G's then D's trainable
    variables, and the other variables (BatchNorm's moving statistics, spectral normalisation's
    power-iteration vectors), as arrays."""
    pairs = ((state.generator, state.g_optimizer), (state.discriminator, state.d_optimizer))
    gradients, others = [], []
    for model, optimizer in pairs:
        trainable = {id(variable) for variable in model.trainable_variables}
        gradients += [optimizer._momentums[optimizer._get_variable_index(variable)].numpy()
                      / (1.0 - optimizer.beta_1) for variable in model.trainable_variables]
        others += [variable.numpy().copy() for variable in model.weights
                   if id(variable) not in trainable]
    return gradients, others


def assert_same_first_step(found, expected, gradient_tolerance: float = 2e-2) -> None:
    """Two :func:`first_step_record` results agree: each gradient within ``gradient_tolerance`` of
    its norm, each other variable as :func:`assert_statistics_agree` holds it."""
    (found_gradients, found_others), (expected_gradients, expected_others) = found, expected
    assert len(found_gradients) == len(expected_gradients) > 0
    assert any(np.linalg.norm(gradient) > 0 for gradient in expected_gradients)
    for index, (got, want) in enumerate(zip(found_gradients, expected_gradients)):
        assert np.linalg.norm(got - want) <= gradient_tolerance * np.linalg.norm(want), index
    assert len(found_others) == len(expected_others)
    for index, (got, want) in enumerate(zip(found_others, expected_others)):
        assert_statistics_agree(got, want, index)


def assert_statistics_agree(found: np.ndarray, expected: np.ndarray, where) -> None:
    """Variables outside the optimizer (BatchNorm's moving statistics, power-iteration vectors)
    agree to rounding: within 1e-3 of their norm (+1e-6)."""
    assert np.linalg.norm(found - expected) <= 1e-3 * np.linalg.norm(expected) + 1e-6, where


def adam_slots(prefix: Path, optimizer: str = "optimizer"
               ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each trainable variable of ``optimizer`` in the checkpoint ``prefix`` with Adam's first and
    second moments of its gradient (running means of the gradient and of its square), in the
    optimizer's order. Keras's Adam tracks iterations and the learning rate first, then a momentum
    and a velocity per variable."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    names = reader.get_variable_to_shape_map()
    count = sum(1 for key in names if key.startswith(f"{optimizer}/_trainable_variables/"))
    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    return [(reader.get_tensor(f"{optimizer}/_trainable_variables/{index}{value}"),
             reader.get_tensor(f"{optimizer}/_variables/{2 + 2 * index}{value}"),
             reader.get_tensor(f"{optimizer}/_variables/{3 + 2 * index}{value}"))
            for index in range(count)]


def adam_first_moments(prefix: Path, optimizer: str = "optimizer"
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each trainable variable of ``optimizer`` in the checkpoint ``prefix`` with Adam's first
    moment of its gradient, as :func:`adam_slots`."""
    return [(weights, momentum) for weights, momentum, _ in adam_slots(prefix, optimizer)]


def assert_same_inputs_seen(found: Path, expected: Path, steps: int, learning_rate: float,
                            optimizers: tuple[str, ...] = ("optimizer",),
                            tolerance: float = 1e-3) -> None:
    """Two checkpoints of Adam training at a learning rate too small to move the weights (such as
    :data:`TINY_LEARNING_RATE`) from the same start fed every step the same inputs.

    With the weights held still, a step's gradients depend on its inputs (batch, latents, random
    draws) and the restored state only, so two such runs differ by kernel rounding alone (relative
    1e-5 at most seen) rather than by rounding that a GAN's alternating updates amplify. Adam's
    moments are decaying sums of every step's gradient and of its square: a step fed other inputs,
    or moments lost on the way, moves them by a whole gradient times ``1 - beta``, against which
    ``tolerance`` of each variable's moment norm is rounding. A gradient that is exactly zero in one
    run (hinge terms that cancel) may be rounding in the other: each comparison also has a floor of
    ``tolerance`` x 1e-3 of the optimizer's largest moment norm. The weights agree to
    ``2 x steps x lr`` (a weight whose gradient is rounding noise may move either way) and float32
    rounding of the start.
    """
    for optimizer in optimizers:
        found_slots, expected_slots = adam_slots(found, optimizer), adam_slots(expected, optimizer)
        assert len(found_slots) == len(expected_slots) > 0, optimizer
        for slot, name in ((1, "momentum"), (2, "velocity")):
            largest = max(float(np.linalg.norm(slots[slot])) for slots in expected_slots)
            assert largest > 0, f"{optimizer} {name}: no gradient at all"
            for index, (got, want) in enumerate(zip(found_slots, expected_slots)):
                miss = np.linalg.norm(got[slot] - want[slot])
                allowed = tolerance * max(float(np.linalg.norm(want[slot])), 1e-3 * largest)
                assert miss <= allowed, f"{optimizer} variable {index} {name}: {miss:.3g} > {allowed:.3g}"
        for index, (got, want) in enumerate(zip(found_slots, expected_slots)):
            apart = np.abs(got[0] - want[0])
            assert np.all(apart <= 2 * steps * learning_rate + 1e-6 * np.abs(want[0])), \
                f"{optimizer} variable {index} weights"


def assert_same_adam_training(found: Path, expected: Path, steps: int, learning_rate: float,
                              optimizers: tuple[str, ...] = ("optimizer",)) -> None:
    """Two checkpoints of Adam training from the same start took the same steps, to rounding.

    Per optimizer: Adam's first moments within 1 % of each variable's largest; the weights within
    1e-5 where the gradient stands clear of rounding noise (first moment at least 1 % of the
    variable's largest). A weight whose gradient is within rounding of zero may take the opposite
    sign in the two runs, and Adam moves it by about lr a step whatever the gradient's size, so
    every weight is held to ``2 x steps x lr`` only.
    """
    for optimizer in optimizers:
        pairs = zip(adam_first_moments(found, optimizer), adam_first_moments(expected, optimizer),
                    strict=True)
        for index, ((found_weights, found_moment), (weights, moment)) in enumerate(pairs):
            where = f"{optimizer} variable {index}"
            scale = np.abs(moment).max()
            assert np.abs(found_moment - moment).max() <= 1e-2 * scale, where
            apart = np.abs(found_weights - weights)
            assert apart[np.abs(moment) >= 1e-2 * scale].max(initial=0.0) <= 1e-5, where
            assert apart.max() <= 2 * steps * learning_rate + 1e-5, where
