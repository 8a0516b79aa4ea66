"""Shared test fixtures.

The authors' checkpoints and reference outputs live outside the repository, in ``../shared/fixtures``
(or wherever ``EEG2IMAGE_FIXTURES`` points). Locally a missing fixture skips its tests; in CI
(``CI=true``) it fails them, because there the parity tests must run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _fixtures_root() -> Path:
    configured = os.environ.get("EEG2IMAGE_FIXTURES")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "fixtures"


def _missing(message: str) -> None:
    """Fail in CI (the parity tests must run there), skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = _fixtures_root()
    if not root.is_dir():
        _missing(f"reference fixtures not found at {root} (set EEG2IMAGE_FIXTURES)")
    return root


@pytest.fixture(scope="session")
def fixture_file(fixtures_dir):
    """``fixture_file("name")`` -> path of a fixture, failing/skipping like ``fixtures_dir``."""

    def resolve(name: str) -> Path:
        path = fixtures_dir / name
        if not path.exists():
            _missing(f"fixture {path} is missing")
        return path

    return resolve


def _check_against_float64_twin(call, exact, plain, candidate) -> None:
    """``candidate``'s gradients are as close to the float64 ``exact`` twin's as ``plain``'s are.

    ``call(model, training, dtype)`` runs a model; the loss is ``mean(out^2)`` with ``training=True``.
    Float32 rounding of the plain form is the yardstick: within 3x of its error, plus 3e-5 of the
    gradient's norm (D's one-channel last BatchNorm amplifies rounding to ~1e-3 in some gradients).
    """
    import tensorflow as tf

    gradients = []
    for model, dtype in ((exact, np.float64), (plain, np.float32), (candidate, np.float32)):
        with tf.GradientTape() as tape:
            out = call(model, True, dtype)
            loss = tf.reduce_mean(out * out)
        gradients.append([np.asarray(g, np.float64)
                          for g in tape.gradient(loss, model.trainable_weights)])
    for truth, plain_gradient, ours, variable in zip(*gradients, candidate.trainable_weights):
        plain_error = np.linalg.norm(plain_gradient - truth)
        assert np.linalg.norm(ours - truth) <= 3.0 * plain_error + 3e-5 * np.linalg.norm(truth), \
            variable.path


@pytest.fixture(scope="session")
def gradients_match_float64_twin():
    """The check of :func:`_check_against_float64_twin`, for tests of exact re-expressions."""
    return _check_against_float64_twin
