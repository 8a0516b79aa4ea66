"""Shared test fixtures.

The authors' checkpoints and reference outputs live outside the repository, in ``../shared/fixtures``
(or wherever ``EEG2IMAGE_FIXTURES`` points). Locally a missing fixture skips its tests; in CI
(``CI=true``) it fails them, because there the parity tests must run.
"""

from __future__ import annotations

import os
from pathlib import Path

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
