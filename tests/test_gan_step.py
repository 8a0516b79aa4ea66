"""The GAN iteration of docs/method.md section 4, half by half, against a hand re-computation.

Full-size models (the architecture fixes 128 x 128) at batch 2. The module's models are shared by the
tests; every test starts from the same snapshot of all variables (models and optimizers).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from eeg2image_tf.training.augment import diff_augment  # noqa: E402
from eeg2image_tf.config import GanTrainConfig  # noqa: E402
from eeg2image_tf.training.gan_state import build_gan_state  # noqa: E402
from eeg2image_tf.training.gan_steps import (AUGMENT_F1, AUGMENT_F2, AUGMENT_FAKE,  # noqa: E402
                                             AUGMENT_REAL, LOSS_NAMES, GanSteps, step_randomness)

BATCH = 2
LATENT = 128
POLICY = "color,translation"


def _all_variables(state):
    return (list(state.generator.weights) + list(state.discriminator.weights)
            + list(state.g_optimizer.variables) + list(state.d_optimizer.variables))


@pytest.fixture(scope="module")
def gan():
    import keras

    keras.utils.set_random_seed(11)
    config = GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=BATCH)
    state = build_gan_state(config)
    rng = np.random.default_rng(5)
    batch = {
        "images": tf.constant(rng.uniform(-1, 1, (BATCH, 128, 128, 3)).astype(np.float32)),
        # LSTM features are tanh outputs: keep the conditions in that range.
        "conditions": tf.constant(rng.uniform(-0.8, 0.8, (BATCH, 128)).astype(np.float32)),
    }
    initial = [v.numpy().copy() for v in _all_variables(state)]
    return state, config, batch, initial


@pytest.fixture()
def fresh(gan):
    """The shared models and optimizers, reset to their initial values."""
    state, config, batch, initial = gan
    for variable, value in zip(_all_variables(state), initial):
        variable.assign(value)
    return state, config, batch


def _steps(state, config, **overrides) -> GanSteps:
    options = dict(latent_dim=config.latent_dim, policy=POLICY,
                   mode_seeking_weight=config.mode_seeking_weight, seed=config.seed)
    options.update(overrides)
    return GanSteps(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                    **options)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _is_moving_statistic(variable) -> bool:
    return "moving_mean" in variable.path or "moving_variance" in variable.path


def _restore(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def test_step_randomness_is_reproducible_and_distinct():
    a = step_randomness(45, 3, 0, BATCH, LATENT)
    b = step_randomness(45, 3, 0, BATCH, LATENT)
    np.testing.assert_array_equal(a.z1.numpy(), b.z1.numpy())
    np.testing.assert_array_equal(a.augment_seeds.numpy(), b.augment_seeds.numpy())
    assert a.z1.shape == (BATCH, LATENT) and a.augment_seeds.shape == (4, 2)
    for z in (a.z1.numpy(), a.z2.numpy()):
        assert z.min() >= -1.0 and z.max() < 1.0 and z.std() > 0.4   # U(-1, 1): std 0.577
    assert not np.allclose(a.z1.numpy(), a.z2.numpy())
    assert len({tuple(row) for row in a.augment_seeds.numpy().tolist()}) == 4
    other_step = step_randomness(45, 4, 0, BATCH, LATENT)
    other_replica = step_randomness(45, 3, 1, BATCH, LATENT, num_replicas=2)
    other_seed = step_randomness(46, 3, 0, BATCH, LATENT)
    for other in (other_step, other_replica, other_seed):
        assert not np.allclose(a.z1.numpy(), other.z1.numpy())


def test_replicas_hold_the_rows_of_the_one_process_draws():
    """N replicas of batch b hold exactly the draws of one process at batch N * b, in order."""
    whole = step_randomness(45, 3, 0, 2 * BATCH, LATENT)
    halves = [step_randomness(45, 3, replica, BATCH, LATENT, num_replicas=2) for replica in (0, 1)]
    for name in ("z1", "z2"):
        np.testing.assert_array_equal(
            np.concatenate([getattr(half, name).numpy() for half in halves]),
            getattr(whole, name).numpy())
    for half in halves:
        np.testing.assert_array_equal(half.augment_seeds.numpy(), whole.augment_seeds.numpy())


def test_discriminator_update_changes_only_d_and_matches_hand_computation(fresh):
    state, config, batch = fresh
    G, D = state.generator, state.discriminator
    images, conditions = batch["images"], batch["conditions"]
    draws = step_randomness(config.seed, 0, 0, BATCH, LATENT)
    g_before, d_before = _values(G.weights), _values(D.weights)
    g_iterations = int(state.g_optimizer.iterations.numpy())
    d_iterations = int(state.d_optimizer.iterations.numpy())

    losses = _steps(state, config).discriminator_update(images, conditions, draws.z1,
                                                        draws.augment_seeds)

    for before, variable in zip(g_before, G.weights):
        np.testing.assert_array_equal(before, variable.numpy(), err_msg=variable.path)
    for before, variable in zip(d_before, D.weights):
        # Every weight gets a gradient, and D's BatchNorm runs with training=True: all move.
        assert not np.array_equal(before, variable.numpy()), f"{variable.path} did not change"
    assert any(_is_moving_statistic(v) for v in D.weights)
    assert int(state.d_optimizer.iterations.numpy()) == d_iterations + 1
    assert int(state.g_optimizer.iterations.numpy()) == g_iterations

    # The same iteration by hand, from the same starting point.
    after = _values(D.weights)
    _restore(D.weights, d_before)
    fake = G(tf.concat([draws.z1, conditions], axis=-1), training=False)
    real_aug = diff_augment(images, POLICY, seed=draws.augment_seeds[AUGMENT_REAL])
    fake_aug = diff_augment(fake, POLICY, seed=draws.augment_seeds[AUGMENT_FAKE])
    d_real = D(real_aug, conditions, training=True).numpy()
    d_fake = D(fake_aug, conditions, training=True).numpy()
    expected = (np.mean(np.maximum(1.0 - d_real, 0.0)) + np.mean(np.maximum(1.0 + d_fake, 0.0))) / 2
    assert np.isfinite(float(losses["gan/d_hinge"]))
    np.testing.assert_allclose(float(losses["gan/d_hinge"]), expected, rtol=1e-6)

    # The test can tell these training flags from others: one merged call differs.
    merged = D(tf.concat([real_aug, fake_aug], 0), tf.concat([conditions, conditions], 0),
               training=True).numpy()
    merged_loss = (np.mean(np.maximum(1.0 - merged[:BATCH], 0.0))
                   + np.mean(np.maximum(1.0 + merged[BATCH:], 0.0))) / 2
    assert abs(merged_loss - expected) > 1e-4
    _restore(D.weights, after)


def test_generator_update_changes_only_g_and_matches_hand_computation(fresh):
    state, config, batch = fresh
    G, D = state.generator, state.discriminator
    conditions = batch["conditions"]
    draws = step_randomness(config.seed, 0, 0, BATCH, LATENT)
    g_before, d_before = _values(G.weights), _values(D.weights)
    d_iterations = int(state.d_optimizer.iterations.numpy())

    losses = _steps(state, config).generator_update(conditions, draws.z1, draws.z2,
                                                    draws.augment_seeds)

    for before, variable in zip(d_before, D.weights):
        # D runs with training=False in the G step: not even its moving statistics move.
        np.testing.assert_array_equal(before, variable.numpy(), err_msg=variable.path)
    for before, variable in zip(g_before, G.weights):
        # Kernels, BatchNorm parameters and statistics, spectral-norm vectors: all move.
        assert not np.array_equal(before, variable.numpy()), f"{variable.path} did not change"
    assert int(state.d_optimizer.iterations.numpy()) == d_iterations

    _restore(G.weights, g_before)
    inputs_1 = tf.concat([draws.z1, conditions], axis=-1)
    inputs_2 = tf.concat([draws.z2, conditions], axis=-1)
    f1 = G(inputs_1, training=True)        # same order as the step: each call updates G's SN state
    f2 = G(inputs_2, training=True)
    s1 = D(diff_augment(f1, POLICY, seed=draws.augment_seeds[AUGMENT_F1]), conditions,
           training=False).numpy()
    s2 = D(diff_augment(f2, POLICY, seed=draws.augment_seeds[AUGMENT_F2]), conditions,
           training=False).numpy()
    image_change = np.mean(np.abs(f2.numpy() - f1.numpy()))
    # The denominator spans all 256 inputs: the identical condition halves count as zeros.
    input_change = np.mean(np.abs(inputs_2.numpy() - inputs_1.numpy()))
    assert input_change == pytest.approx(np.mean(np.abs(draws.z2 - draws.z1)) / 2, rel=1e-6)
    expected_hinge = -np.mean(s1) - np.mean(s2)
    expected_ms = 1.0 / (image_change / input_change + 1e-5)
    expected_total = expected_hinge + config.mode_seeking_weight * expected_ms

    for name in ("gan/g_hinge", "gan/mode_seeking", "gan/g_total"):
        assert np.isfinite(float(losses[name])), name
    np.testing.assert_allclose(float(losses["gan/g_hinge"]), expected_hinge, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(losses["gan/mode_seeking"]), expected_ms, rtol=1e-5)
    np.testing.assert_allclose(float(losses["gan/g_total"]), expected_total, rtol=1e-5, atol=1e-6)


def test_generator_training_false_reproduces_the_originals_frozen_generator_state(fresh):
    """``generator_training=False``: the authors' code as run (GanTrainConfig.generator_training).

    Their checkpoints show G's moving statistics at exactly 0 and 1 and its ``sn_u`` untouched after
    training; with the option the G step trains the kernels and BatchNorm parameters only.
    """
    state, config, batch = fresh
    G = state.generator
    draws = step_randomness(config.seed, 0, 0, BATCH, LATENT)
    before = _values(G.weights)
    _steps(state, config, generator_training=False).generator_update(
        batch["conditions"], draws.z1, draws.z2, draws.augment_seeds)
    frozen = [v for v in G.weights if _is_moving_statistic(v) or not v.trainable]
    assert frozen and any("kernel" in v.path for v in G.trainable_weights)
    for value, variable in zip(before, G.weights):
        changed = not np.array_equal(value, variable.numpy())
        assert changed == variable.trainable, variable.path


def test_generator_spectral_norm_bounds_the_as_run_generators_kernels_and_keeps_its_statistics(fresh):
    """``generator_spectral_norm=True`` with the as-run generator: the G step divides every kernel by
    its power-iteration estimate of the largest singular value (so the stored kernels' norms are
    close to 1 before the optimizer's small update) while BatchNorm's moving statistics stay 0 and 1."""
    state, config, batch = fresh
    G = state.generator
    wrappers = [*G.upsampling_convs, G.to_rgb]
    for wrapper in wrappers:   # well above 1, as the as-run generator's kernels grow in training
        wrapper.layer.kernel.assign(wrapper.layer.kernel * 50.0)
    statistics = {v.path: v.numpy().copy() for v in G.weights if _is_moving_statistic(v)}
    draws = step_randomness(config.seed, 0, 0, BATCH, LATENT)
    for _ in range(3):   # power iterations converge from the stored u over successive steps
        _steps(state, config, generator_training=False, generator_spectral_norm=True,
               mode_seeking_weight=0.0).generator_update(
            batch["conditions"], draws.z1, draws.z2, draws.augment_seeds)
    for wrapper in wrappers:
        kernel = wrapper.layer.kernel.numpy()
        # The matrix the wrapper normalises: the kernel flattened over all axes but the last.
        sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        # 50x the initial norm before; after, within the power iteration's estimate plus one step
        assert 0.5 < sigma < 2.0, (wrapper.name, sigma)
    for variable in G.weights:
        if _is_moving_statistic(variable):
            np.testing.assert_array_equal(variable.numpy(), statistics[variable.path])


def test_discriminator_training_in_g_step_uses_batch_statistics_per_call_as_the_original_ran(fresh):
    """``discriminator_training_in_g_step=True``: the authors' code as run (their D's traced
    function has BatchNorm is_training=True in the G step too). Each of the two calls normalises by
    its own batch; D's moving statistics move, its weights do not; G's loss is the hinge of those
    scores."""
    from eeg2image_tf.training.losses import generator_hinge

    state, config, batch = fresh
    G, D = state.generator, state.discriminator
    draws = step_randomness(config.seed, 0, 0, BATCH, LATENT)
    conditions = batch["conditions"]
    f1 = G(tf.concat([draws.z1, conditions], -1), training=False)
    f2 = G(tf.concat([draws.z2, conditions], -1), training=False)
    before = _values(D.weights)
    expected = (generator_hinge(D(diff_augment(f1, POLICY, seed=draws.augment_seeds[AUGMENT_F1]),
                                  conditions, training=True))
                + generator_hinge(D(diff_augment(f2, POLICY, seed=draws.augment_seeds[AUGMENT_F2]),
                                    conditions, training=True)))
    _restore(D.weights, before)
    losses = _steps(state, config, generator_training=False,
                    discriminator_training_in_g_step=True).generator_update(
        conditions, draws.z1, draws.z2, draws.augment_seeds)
    np.testing.assert_allclose(float(losses["gan/g_hinge"]), float(expected), rtol=1e-5, atol=1e-6)
    # merged into one 2B batch the statistics (and so the scores) would differ
    merged = D(tf.concat([diff_augment(f1, POLICY, seed=draws.augment_seeds[AUGMENT_F1]),
                          diff_augment(f2, POLICY, seed=draws.augment_seeds[AUGMENT_F2])], 0),
               tf.concat([conditions, conditions], 0), training=True)
    assert abs(float(2 * generator_hinge(merged)) - float(expected)) > 1e-4
    for value, variable in zip(before, D.weights):
        changed = not np.array_equal(value, variable.numpy())
        assert changed == _is_moving_statistic(variable), variable.path


def test_replica_scaling_divides_hinge_by_global_batch_and_mode_seeking_by_replicas(fresh):
    """With N replicas each replica's terms are its share of the global loss (module docstring)."""
    state, config, batch = fresh
    draws = step_randomness(config.seed, 0, 0, BATCH, LATENT)
    start = [v.numpy().copy() for v in _all_variables(state)]
    single = _steps(state, config)
    plain = {**single.discriminator_update(batch["images"], batch["conditions"], draws.z1,
                                           draws.augment_seeds),
             **single.generator_update(batch["conditions"], draws.z1, draws.z2, draws.augment_seeds)}
    _restore(_all_variables(state), start)
    shared = _steps(state, config, global_batch_size=2 * BATCH, num_replicas=2)
    share = {**shared.discriminator_update(batch["images"], batch["conditions"], draws.z1,
                                           draws.augment_seeds),
             **shared.generator_update(batch["conditions"], draws.z1, draws.z2, draws.augment_seeds)}
    for name in LOSS_NAMES:
        # Not bit-exact: sum / global_batch rounds differently from a mean, and G meets the
        # D that this rounding updated.
        np.testing.assert_allclose(float(share[name]), float(plain[name]) / 2, rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@pytest.mark.slow
def test_compiled_iteration_equals_the_two_halves_in_order(fresh):
    """``make_train_step`` = D update then G update (G sees the updated D), draws from the step:
    the same losses at the real learning rate, the same gradients at a tiny one (``adam_support``)."""
    from adam_support import TINY_LEARNING_RATE, assert_same_first_step, first_step_record

    state, config, batch = fresh
    step = 7
    start = [v.numpy().copy() for v in _all_variables(state)]
    strategy = tf.distribute.get_strategy()
    element = (batch["conditions"], tf.zeros([BATCH], tf.int64), batch["images"])
    draws = step_randomness(config.seed, step, 0, BATCH, LATENT)
    records = {}
    for learning_rate in (config.learning_rate, TINY_LEARNING_RATE):
        _restore(_all_variables(state), start)
        state.g_optimizer.learning_rate = state.d_optimizer.learning_rate = learning_rate
        train_step = _steps(state, config).make_train_step(strategy, jit=False)
        compiled = {k: float(v) for k, v in train_step(tf.constant(step, tf.int64), element).items()}
        compiled_record = first_step_record(state)

        _restore(_all_variables(state), start)
        state.g_optimizer.learning_rate = state.d_optimizer.learning_rate = learning_rate
        halves = _steps(state, config)
        eager = {**halves.discriminator_update(batch["images"], batch["conditions"], draws.z1,
                                               draws.augment_seeds),
                 **halves.generator_update(batch["conditions"], draws.z1, draws.z2,
                                           draws.augment_seeds)}
        records[learning_rate] = (compiled, eager, compiled_record, first_step_record(state))
    _restore(_all_variables(state), start)

    # The losses at the real rate: g_hinge is computed after D's update, so a G step taken
    # before D's would show here; other draws (another step's) change every loss.
    compiled, eager, _, _ = records[config.learning_rate]
    assert set(compiled) == set(LOSS_NAMES)
    for name in LOSS_NAMES:
        np.testing.assert_allclose(compiled[name], float(eager[name]), rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    # The gradients at the tiny rate: graph and eager kernels round differently (the
    # matrix-product convolutions' products are reordered in graph mode); another step's draws
    # change them entirely.
    _, _, compiled_record, eager_record = records[TINY_LEARNING_RATE]
    assert_same_first_step(compiled_record, eager_record)


def test_discriminator_learning_rate_sets_only_the_discriminators_optimizer():
    from eeg2image_tf.errors import ConfigError

    base = GanTrainConfig(data="-", images="-", encoder="-", run="-", batch_size=BATCH)
    rates = {}
    for d_rate in (None, 1e-4):
        state = build_gan_state(dataclasses.replace(base, discriminator_learning_rate=d_rate))
        rates[d_rate] = (float(state.g_optimizer.learning_rate),
                         float(state.d_optimizer.learning_rate))
    assert rates[None] == pytest.approx((base.learning_rate, base.learning_rate))
    assert rates[1e-4] == pytest.approx((base.learning_rate, 1e-4))
    with pytest.raises(ConfigError, match="discriminator-learning-rate"):
        dataclasses.replace(base, discriminator_learning_rate=0.0).validate()
