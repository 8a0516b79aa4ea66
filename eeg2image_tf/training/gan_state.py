"""What a GAN checkpoint holds: the two models, their optimizers (FusedAdam, within dynamic loss
scaling in mixed_float16 runs), the step counter and the optional weight average of the generator;
built inside the strategy's scope; a checkpoint of another precision resumes it (the loss scales
are optional objects of :func:`~.common.restore_latest`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from ..checkpoints import EMA_OBJECT
from ..config import GanTrainConfig
from ..models import build_discriminator, build_generator
from ..models import precision as precisions
from ..runs import STEP_COUNTER
from .fused_adam import FusedAdam

__all__ = ["LOSS_SCALE_OBJECTS", "GanState", "build_gan_state"]

# Checkpoint names of the dynamic loss scales of G's and D's optimizers (mixed_float16 runs only).
LOSS_SCALE_OBJECTS = ("g_loss_scale", "d_loss_scale")


@dataclasses.dataclass
class GanState:
    """What a GAN checkpoint holds; ``checkpoint`` uses the names the loaders rely on."""

    generator: Any
    discriminator: Any
    g_optimizer: Any                # what the steps apply: FusedAdam, or a LossScaleOptimizer around it
    d_optimizer: Any
    step: Any                       # tf.Variable int64: iterations done
    # tf.train.Checkpoint(step, generator, discriminator, g_/d_optimizer, [generator_ema],
    # [g_/d_loss_scale]); the optimizers under their Adam names whatever the precision
    checkpoint: Any
    generator_ema: Any = None       # the weight average (GanTrainConfig.ema_decay > 0), else None
    # mixed_float16 only: the checkpoint's LOSS_SCALE_OBJECTS (the dynamic loss scales), and the
    # checkpoint without them, for resuming from a checkpoint written in another precision.
    loss_scales: dict = dataclasses.field(default_factory=dict)
    checkpoint_without_loss_scales: Any = None

    @property
    def loss_scale_values(self) -> dict:
        """``{"precision/g_loss_scale": float, ...}``; empty without loss scaling."""
        return {f"precision/{name}": float(optimizer.dynamic_scale.numpy())
                for name, optimizer in self.loss_scales.items()}

    @property
    def resume_options(self) -> dict:
        """``optional`` and ``without_optional`` for :func:`~.common.restore_latest` (and
        :meth:`~.run.TrainingRun.start`): the loss scales, which a checkpoint written in another
        precision lacks; empty without loss scaling."""
        if not self.loss_scales:
            return {}
        return {"optional": tuple(self.loss_scales),
                "without_optional": self.checkpoint_without_loss_scales}


def build_gan_state(config: GanTrainConfig, strategy=None) -> GanState:
    """Create and build the models and optimizers (inside ``strategy.scope()``) and the checkpoint.

    Optimizers are built on the trainable variables here, before any tracing, so that their slots
    exist (and are restored) before the first step.
    """
    strategy = strategy or tf.distribute.get_strategy()
    policy = precisions.check_precision(config.precision)
    # Several replicas normalise with the global batch's statistics, as one process would.
    synchronized = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        generator = build_generator(latent_dim=config.latent_dim, condition_dim=config.condition_dim,
                                    fused_batch_norm=config.fused_batch_norm, dtype=policy,
                                    matmul_convs=config.matmul_convs,
                                    synchronized_batch_norm=synchronized)
        discriminator = build_discriminator(condition_dim=config.condition_dim,
                                            split_condition_conv=config.fast_discriminator,
                                            fused_batch_norm=config.fused_batch_norm, dtype=policy,
                                            matmul_convs=config.matmul_convs,
                                            synchronized_batch_norm=synchronized)
        # FusedAdam: Keras 3's Adam (same numbers, variables and checkpoints) in one kernel per
        # variable, as the original's TF 2.8 Adam ran it, and faster (docs/performance.md).
        g_optimizer = FusedAdam(config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
        d_learning_rate = (config.learning_rate if config.discriminator_learning_rate is None
                           else config.discriminator_learning_rate)
        d_optimizer = FusedAdam(d_learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
        g_optimizer.build(generator.trainable_variables)
        d_optimizer.build(discriminator.trainable_variables)
        loss_scales = {}
        if precisions.uses_loss_scaling(policy):
            # Keras's dynamic loss scaling (skips a step whose gradients overflow, halves the scale;
            # doubles it after 2000 good steps). The Adam optimizers stay checkpointed under their
            # usual names; the scales are extra objects, so runs can change precision on resume.
            loss_scales = {name: keras.optimizers.LossScaleOptimizer(optimizer)
                           for name, optimizer in zip(LOSS_SCALE_OBJECTS, (g_optimizer, d_optimizer))}
            for optimizer, model in zip(loss_scales.values(), (generator, discriminator)):
                optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name=STEP_COUNTER,
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        tracked = {}
        generator_ema = None
        if config.ema_decay > 0.0:
            # float32 like every checkpointed variable; it is only ever called for inference.
            generator_ema = build_generator(latent_dim=config.latent_dim,
                                            condition_dim=config.condition_dim,
                                            fused_batch_norm=config.fused_batch_norm,
                                            matmul_convs=config.matmul_convs)
            for averaged, current in zip(generator_ema.weights, generator.weights):
                averaged.assign(current)
            tracked[EMA_OBJECT] = generator_ema     # the name the loaders look for
        tracked.update(step=step, generator=generator, discriminator=discriminator,
                       g_optimizer=g_optimizer, d_optimizer=d_optimizer)
        checkpoint = tf.train.Checkpoint(**tracked, **loss_scales)
        without_loss_scales = tf.train.Checkpoint(**tracked) if loss_scales else None
    if loss_scales:
        g_optimizer, d_optimizer = (loss_scales[name] for name in LOSS_SCALE_OBJECTS)
    return GanState(generator=generator, discriminator=discriminator, g_optimizer=g_optimizer,
                    d_optimizer=d_optimizer, step=step, checkpoint=checkpoint,
                    generator_ema=generator_ema, loss_scales=loss_scales,
                    checkpoint_without_loss_scales=without_loss_scales)
