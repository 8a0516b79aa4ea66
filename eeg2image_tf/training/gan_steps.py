"""One iteration of the conditional DCGAN: hinge losses, DiffAugment and mode-seeking
(docs/method.md section 4); the loop around it is :mod:`.gan`.

One iteration (both halves share ``z1``, ``z2`` and the batch's ``c``):

1. discriminator update: ``fake = G([z1, c], training=False)``; DiffAugment on the real batch and on
   ``fake``; ``D(real_aug, c, training=True)`` and ``D(fake_aug, c, training=True)`` as two calls (each
   normalises with its own batch statistics, so merging them would change the numbers); hinge loss;
   only D's variables change (its weights, Adam state, BatchNorm moving statistics).
2. generator update: ``f1 = G([z1, c])``, ``f2 = G([z2, c])``; DiffAugment each; ``D(f1_aug, c)``,
   ``D(f2_aug, c)``; loss ``hinge(D(f1)) + hinge(D(f2)) + w / (ms + 1e-5)``; only G's trainable
   variables change (and, with D in training mode, D's moving statistics, as in the original).

The modes of step 2 are options (``GanTrainConfig``). By default they are what the authors' code
ran: G with ``training=False`` (BatchNorm on its moving statistics, which stay 0 and 1; no
spectral-norm update, so the raw kernels are trained) and D with ``training=True`` (two calls, each
with its own batch statistics). The modes their calls name (docs/method.md section 7), G with
``training=True`` (batch statistics and the spectral-norm power iteration per call) and D with
``training=False`` (moving statistics, hence per-sample and merged into one batch of 2B with the
same numbers), are
``--generator-training --no-discriminator-training-in-g-step``. ``GanSteps`` itself defaults to
the named modes; ``train_gan`` passes the config's choice.

Distribution (``mirrored`` on one machine, ``multiworker`` over several: :mod:`.distributed`). N
replicas at global batch B compute what one process at batch B computes, up to float32 reduction
order. Replica ``r`` holds rows ``r * B/N ..`` of each global batch; the latents and DiffAugment
parameters are drawn for the whole batch and sliced alike; Keras sums the replicas' gradients. The
hinge terms are divided by the global batch on every replica, so the summed gradients are the
global-batch gradients. The mode-seeking term is a ratio of means: its two sums are all-reduced, so
every replica computes the global batch's term, and each divides it by N. BatchNorm is synchronised
(``models.layers.SynchronizedBatchNormalization``): every replica normalises with the global batch's
statistics, computed in two passes as one process does, so the moving statistics agree on all
replicas too. With one replica everything is the original's arithmetic.

Randomness. Everything random inside a step (``z1``, ``z2`` and the four DiffAugment draws) is
stateless, derived from ``(seed, step)`` for the whole global batch. A resumed run therefore draws
exactly what the uninterrupted run would have drawn: the checkpoint's ``step`` is the whole state of
the latent generator. The batch order of epoch ``e`` depends only on ``(seed, e)``; a resumed run rebuilds that
epoch's dataset and skips the batches already trained on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import tensorflow as tf

from ..errors import ConfigError
from .augment import diff_augment
from .distributed import on_replica_device, replica_rows, sum_over_replicas
from .losses import discriminator_hinge, generator_hinge, mode_seeking

__all__ = ["LOSS_NAMES", "StepRandomness", "step_randomness", "GanSteps"]

LOSS_NAMES = ("gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total")
# Seeds of the four DiffAugment draws of a step, by position in StepRandomness.augment_seeds.
AUGMENT_REAL, AUGMENT_FAKE, AUGMENT_F1, AUGMENT_F2 = range(4)


# --------------------------------------------------------------------------------------------------
# Randomness of one step
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepRandomness:
    """The random inputs of one iteration on one replica (its rows of the global batch's draws).

    ``z1``, ``z2``: float32 ``(B, latent_dim)`` in ``[-1, 1)``; ``augment_seeds``: int64 ``(4, 2)``
    stateless seeds of DiffAugment for the real batch and the fake batch of the discriminator update
    and for ``f1`` and ``f2`` of the generator update (rows ``AUGMENT_REAL`` .. ``AUGMENT_F2``).
    """

    z1: Any
    z2: Any
    augment_seeds: Any


def step_randomness(seed: int, step, replica_id, batch_size, latent_dim: int,
                    num_replicas=1) -> StepRandomness:
    """Draw the latents and augmentation seeds of ``step`` for replica ``replica_id``, statelessly.

    The latents are drawn for the global batch of ``num_replicas * batch_size`` rows; the replica
    gets rows ``replica_id * batch_size ..``, so N replicas together hold what one process at the
    global batch draws. The augmentation seeds are the global batch's (slice the augmentation's
    draws with ``diff_augment(..., rows=)``).

    Args:
        seed: the run's seed.
        step: int scalar (Python or tensor), the 0-based index of the iteration.
        replica_id: int scalar, the replica's place in the global batch.
        batch_size: the replica's batch size (int or scalar tensor).
        latent_dim: size of ``z``.
        num_replicas: replicas sharing the global batch.
    """
    base = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
    # Folding in 0 keeps the draws of runs recorded when each replica folded in its own id.
    base = tf.random.experimental.stateless_fold_in(base, tf.constant(0, tf.int64))
    seeds = tf.cast(tf.random.experimental.stateless_split(base, num=6), tf.int64)
    rows = tf.cast(batch_size, tf.int32)
    first = tf.cast(replica_id, tf.int32) * rows
    shape = tf.stack([rows * tf.cast(num_replicas, tf.int32), latent_dim])
    z1 = tf.random.stateless_uniform(shape, seed=seeds[0], minval=-1.0, maxval=1.0)
    z2 = tf.random.stateless_uniform(shape, seed=seeds[1], minval=-1.0, maxval=1.0)
    return StepRandomness(z1=z1[first:first + rows], z2=z2[first:first + rows],
                          augment_seeds=seeds[2:])


# --------------------------------------------------------------------------------------------------
# The two updates
# --------------------------------------------------------------------------------------------------

class GanSteps:
    """The discriminator update, the generator update, and one compiled distributed iteration.

    ``discriminator_update`` and ``generator_update`` run on one replica's batch and may be called
    eagerly (tests run them separately); ``make_train_step`` compiles the whole iteration.

    Args:
        generator, discriminator: built models (``G(inputs (B, latent + condition))``,
            ``D(images, condition)``).
        g_optimizer, d_optimizer: Keras optimizers built on the models' trainable variables.
        latent_dim: size of ``z``.
        policy: DiffAugment policy (``""`` for none).
        mode_seeking_weight: ``w`` of the generator loss.
        seed: the run's seed (see :func:`step_randomness`).
        global_batch_size: the batch over all replicas; with more than one replica the hinge terms
            are divided by it (see the module docstring). ``None``: plain batch means.
        num_replicas: the mode-seeking term is divided by it.
    """

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, *, latent_dim: int,
                 policy: str = "color,translation", mode_seeking_weight: float = 1.0, seed: int = 45,
                 global_batch_size: Optional[int] = None, num_replicas: int = 1,
                 generator_training: bool = True, discriminator_training_in_g_step: bool = False,
                 generator_spectral_norm: bool = False, ema_generator=None, ema_decay: float = 0.0):
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.latent_dim = int(latent_dim)
        self.policy = policy
        self.mode_seeking_weight = float(mode_seeking_weight)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        # False reproduces what the authors' code actually ran (see GanTrainConfig.generator_training):
        # G's BatchNorm on moving statistics and no spectral-norm update in the G step.
        self.generator_training = bool(generator_training)
        # Spectral normalisation in G's step without batch statistics (GanTrainConfig).
        self.generator_spectral_norm = bool(generator_spectral_norm) or self.generator_training
        # True is what the authors' code ran (GanTrainConfig): D on batch statistics in the G step
        # too, each of the two calls with its own, its moving statistics updated by both.
        self.discriminator_training_in_g_step = bool(discriminator_training_in_g_step)
        # One replica: the original's reduce_mean, to the last bit.
        self.global_batch_size = global_batch_size if self.num_replicas > 1 else None
        self.ema_generator = ema_generator
        self.ema_decay = float(ema_decay)

    def _augment(self, images, seed, rows):
        return diff_augment(images, self.policy, seed=seed, rows=rows)

    def discriminator_update(self, images, conditions, z1, augment_seeds, rows=None) -> dict:
        """Update D on one batch; return ``{"gan/d_hinge": scalar}`` (before the update).

        Args:
            images: real images ``(B, 128, 128, 3)`` in ``[-1, 1]``.
            conditions: ``(B, condition_dim)`` encoder features.
            z1: ``(B, latent_dim)``.
            augment_seeds: ``(4, 2)`` int64 (rows ``AUGMENT_REAL`` and ``AUGMENT_FAKE`` are used).
            rows: ``(first, global_batch)`` when the batch is one replica's rows of a global batch
                (``diff_augment``'s ``rows``); None: the batch is the whole batch.
        """
        # The original calls G with training=False here: no BatchNorm or spectral-norm update of G.
        fake = self.generator(tf.concat([z1, conditions], axis=-1), training=False)
        real_augmented = self._augment(images, augment_seeds[AUGMENT_REAL], rows)
        fake_augmented = self._augment(fake, augment_seeds[AUGMENT_FAKE], rows)
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            d_real = self.discriminator(real_augmented, conditions, training=True)
            d_fake = self.discriminator(fake_augmented, conditions, training=True)
            d_loss = discriminator_hinge(d_real, d_fake, global_batch_size=self.global_batch_size)
            # The loss itself unless the optimizer scales losses (mixed_float16: build_gan_state).
            scaled_loss = self.d_optimizer.scale_loss(d_loss)
        self.d_optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return {"gan/d_hinge": d_loss}

    def generator_update(self, conditions, z1, z2, augment_seeds, rows=None) -> dict:
        """Update G on one batch; return the generator's loss terms (before the update).

        ``rows``: as for :meth:`discriminator_update`.

        Returns ``gan/g_hinge`` (sum of the two hinge terms), ``gan/mode_seeking`` (``1 / (ms + 1e-5)``,
        unweighted) and ``gan/g_total`` (``g_hinge + w * mode_seeking``), scalars.
        """
        inputs_1 = tf.concat([z1, conditions], axis=-1)
        inputs_2 = tf.concat([z2, conditions], axis=-1)
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            f1 = self.generator(inputs_1, training=self.generator_training,
                                spectral_norm=self.generator_spectral_norm)
            f2 = self.generator(inputs_2, training=self.generator_training,
                                spectral_norm=self.generator_spectral_norm)
            augmented_1 = self._augment(f1, augment_seeds[AUGMENT_F1], rows)
            augmented_2 = self._augment(f2, augment_seeds[AUGMENT_F2], rows)
            if self.discriminator_training_in_g_step:
                # Batch statistics differ per call, so the two calls cannot be merged.
                d_f1 = self.discriminator(augmented_1, conditions, training=True)
                d_f2 = self.discriminator(augmented_2, conditions, training=True)
            else:
                # training=False uses moving statistics, so one 2B batch gives the two calls' numbers.
                scores = self.discriminator(tf.concat([augmented_1, augmented_2], axis=0),
                                            tf.concat([conditions, conditions], axis=0),
                                            training=False)
                d_f1, d_f2 = tf.split(scores, 2, axis=0)
            g_hinge = (generator_hinge(d_f1, global_batch_size=self.global_batch_size)
                       + generator_hinge(d_f2, global_batch_size=self.global_batch_size))
            ms_term = mode_seeking(f1, f2, inputs_1, inputs_2, num_replicas=self.num_replicas,
                                   sum_over_replicas=sum_over_replicas if self.distributed else None)
            g_total = g_hinge + self.mode_seeking_weight * ms_term
            scaled_loss = self.g_optimizer.scale_loss(g_total)
        self.g_optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return {"gan/g_hinge": g_hinge, "gan/mode_seeking": ms_term, "gan/g_total": g_total}

    @property
    def distributed(self) -> bool:
        """Whether the replicas share the global batch's losses and draws (more than one replica)."""
        return self.global_batch_size is not None

    def replica_step(self, step, images, conditions) -> dict:
        """One iteration on one replica's batch: draws, D update, G update (docs/method.md section 4)."""
        context = tf.distribute.get_replica_context()
        batch = tf.shape(conditions)[0]
        draws = step_randomness(self.seed, step, context.replica_id_in_sync_group, batch,
                                self.latent_dim, num_replicas=self.num_replicas)
        rows = replica_rows(self.global_batch_size) if self.distributed else None
        losses = self.discriminator_update(images, conditions, draws.z1, draws.augment_seeds, rows)
        losses.update(self.generator_update(conditions, draws.z1, draws.z2, draws.augment_seeds,
                                            rows))
        return losses

    def update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * G`` for G's trainable weights; copy the rest.

        Called in cross-replica context after the generator update: the generator's weights are the
        same on every replica then, and an assignment there updates every replica's copy.
        BatchNorm moving statistics and spectral-norm vectors are copied (an average of statistics
        is not the statistics of the averaged network; the vectors play no part at inference).
        """
        if self.ema_generator is None:
            return
        decay = self.ema_decay
        # Two models built alike list their weights alike; G says which of them it trains.
        for averaged, current in zip(self.ema_generator.weights, self.generator.weights):
            if current.trainable:
                averaged.assign(decay * averaged + (1.0 - decay) * current)
            else:
                averaged.assign(current)

    def make_train_step(self, strategy, jit: bool = False) -> Callable:
        """Compile ``train_step(step, batch) -> {name: scalar}`` for batches of ``gan_dataset``.

        ``batch`` is ``(conditions, labels, images)`` as one (distributed) element; the returned
        losses are summed over replicas, which gives the global values (see the module docstring).
        ``jit`` compiles the iteration with XLA; one replica only (XLA cannot reach the variables of
        the other replicas' devices from one cluster).
        """
        if jit and strategy.num_replicas_in_sync > 1:
            raise ConfigError(f"--jit needs a single replica, the strategy has "
                              f"{strategy.num_replicas_in_sync}: use --no-jit")

        def distributed_step(step, batch):
            conditions, _labels, images = batch
            per_replica = strategy.run(on_replica_device(self.replica_step),
                                       args=(step, images, conditions))
            losses = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                      for name, value in per_replica.items()}
            self.update_ema()
            return losses

        return tf.function(distributed_step, jit_compile=jit, autograph=False)
