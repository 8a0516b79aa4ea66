"""What values a config field may take: one rule per field name, shared by every command.

A field means the same in every config that has it (``batch_size`` is a batch size in
``train_gan`` and in ``generate``), so its rule is stated once, in :data:`FIELD_RULES`; a class
whose field of that name takes other values says so in its ``RULES``. Beside the rule, every value
must be of its field's type (``int`` not ``bool``, a finite ``float``), and ``None`` is a value only
of ``Optional`` fields. The names a field may hold (precisions, normalisations, strategies,
DiffAugment policies, split orders) are listed here too, so that a config is checked before
TensorFlow loads; the modules that act on the names import them from here.

No rule reads a file: what a path names is checked by :mod:`eeg2image_tf.data.inputs`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, Callable, Optional

# --------------------------------------------------------------------------------------------------
# The names fields hold
# --------------------------------------------------------------------------------------------------

# Arithmetic of the GAN and of generation (eeg2image_tf.models.precision acts on them).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# EEG normalisations (eeg2image_tf.data.preprocess).
PREPROCESS_METHODS = ("original", "zscore")
# tf.distribute strategies (eeg2image_tf.training.common.make_strategy).
STRATEGIES = ("auto", "mirrored", "multiworker", "default")
# DiffAugment policies (eeg2image_tf.training.augment.AUGMENTATIONS); a policy string names some of
# them, comma separated ("" for none).
AUGMENT_POLICIES = ("color", "translation", "cutout")
# What image each training trial is paired with in the GAN (eeg2image_tf.training.gan_data):
# the original's fixed random image of its class, or the stimulus the set records for it.
PAIRINGS = ("class", "stimulus")
# Which split's EEG trials condition the images a curve generates (eeg2image_tf.evaluation.curve):
# the test trials, or the training trials (to choose a checkpoint without the test set).
CURVE_CONDITIONS = ("test", "train")
# How the Inception Score splits its images (eeg2image_tf.evaluation.metrics).
SPLIT_ORDERS = ("mixed", "class-sorted")
# The image classifier's input side: its five 2x2 poolings leave one pixel of a 32 x 32 image
# (eeg2image_tf.models.classifier).
MIN_CLASSIFIER_IMAGE_SIZE = 32
# keras.utils.set_random_seed and NumPy take seeds in [0, 2**32).
MAX_SEED = 2 ** 32 - 1


# --------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Rule:
    """``holds(value)`` is True for a good value; ``says`` completes "must be ..." otherwise."""

    holds: Callable[[Any], bool]
    says: str

    def problem(self, value: Any) -> Optional[str]:
        return None if self.holds(value) else f"must be {self.says}"


def at_least(low: float) -> Rule:
    return Rule(lambda value: value >= low, f"at least {low}")


def within(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Rule:
    """``low <= value <= high``, each end excluded when open (``(0, 1]`` ...)."""
    def holds(value: float) -> bool:
        return (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
    return Rule(holds, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


POSITIVE = Rule(lambda value: value > 0, "greater than 0")


def one_of(names: tuple[str, ...]) -> Rule:
    return Rule(lambda value: value in names, f"one of {', '.join(names)}")


def names_from(names: tuple[str, ...]) -> Rule:
    """A comma-separated list of some of ``names`` (empty: none)."""
    def holds(value: str) -> bool:
        return all(name.strip() in names for name in value.split(",") if name.strip())
    return Rule(holds, f"comma-separated names from {', '.join(names)} (or empty)")


NOT_EMPTY = Rule(lambda value: bool(value.strip()), "a path (not empty)")
_COUNT = at_least(1)
_SEED = within(0, MAX_SEED)
_FRACTION = within(0, 1, high_open=True)

# Every field of every config that takes fewer values than its type allows, by name.
FIELD_RULES: dict[str, Rule] = {
    **{name: _COUNT for name in (
        "epochs", "batch_size", "checkpoint_every", "sample_every", "max_to_keep", "max_steps",
        "feature_dim", "hidden", "latent_dim", "condition_dim", "per_class", "writer_threads",
        "splits", "every", "average", "last", "n_train", "n_test", "images_per_class",
        "test_images_per_class", "num_channels", "num_samples", "step")},
    **{name: _SEED for name in ("seed", "random_state", "kmeans_random_state")},
    **{name: POSITIVE for name in (
        "learning_rate", "discriminator_learning_rate", "collective_timeout_s", "tsne_perplexity")},
    # A budget of 0 stops after the first unit.
    **{name: at_least(0) for name in (
        "margin", "mode_seeking_weight", "time_budget_s", "latent_range")},
    **{name: _FRACTION for name in ("beta_1", "beta_2", "ema_decay")},
    **{name: NOT_EMPTY for name in (
        "data", "images", "encoder", "run", "out", "source", "gan", "original_encoder",
        "original_gan", "classifier", "encoder_run", "images_dir", "real_images",
        "inception_graph", "inception_weights", "data_root")},
    "n_clusters": at_least(2),
    # scikit-learn's t-SNE runs at least 250 iterations.
    "tsne_iterations": at_least(250),
    "image_size": at_least(MIN_CLASSIFIER_IMAGE_SIZE),
    "jpeg_quality": within(1, 100),
    "precision": one_of(PRECISIONS),
    "normalisation": one_of(PREPROCESS_METHODS),
    "strategy": one_of(STRATEGIES),
    "pairing": one_of(PAIRINGS),
    "conditions": one_of(CURVE_CONDITIONS),
    "policy": names_from(AUGMENT_POLICIES),
    "split_order": one_of(SPLIT_ORDERS),
}


# --------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------

def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for a field type ``Optional[T]`` (``T | None``), else ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def type_problem(tp: Any, value: Any) -> Optional[str]:
    """What is wrong with ``value`` as a value of the field type ``tp``, else None."""
    base, optional = unwrap_optional(tp)
    if value is None:
        return None if optional else "must be given"
    if base is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if base is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else \
            "must be a whole number"
    if base is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if base is str:
        return None if isinstance(value, str) else "must be a text"
    if typing.get_origin(base) is tuple:
        # tuple[str, ...] (any number of texts) or a fixed tuple[int, int] and the like.
        args = typing.get_args(base)
        if not isinstance(value, tuple):
            return "must be a list"
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            return f"must be a list of {len(kinds)} values"
        for position, (kind, item) in enumerate(zip(kinds, value)):
            problem = type_problem(kind, item)
            if problem is not None:
                return f"must be a list; its value {position + 1} {problem}"
        return None
    return None


def field_problem(name: str, tp: Any, value: Any,
                  own_rules: Optional[dict[str, Rule]] = None) -> Optional[str]:
    """What is wrong with ``value`` for the field ``name`` of type ``tp``, else None."""
    problem = type_problem(tp, value)
    if problem is not None or value is None:
        return problem
    rule = (own_rules or {}).get(name, FIELD_RULES.get(name))
    return rule.problem(value) if rule is not None else None
