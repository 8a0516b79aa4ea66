"""Reliability across processes: ``kill -9`` mid-training, then resume; two runs side by side.

Each test drives the real entry point in subprocesses on a tiny built-in set, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eeg2image_tf.data import write_synthetic_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_synthetic_set(root, set_name="char", seed=3, n_train=160, n_test=60, images_per_class=1,
                        test_images_per_class=1)
    return root / "eeg" / "char" / "data.pkl"


def _train_command(data: Path, run: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "eeg2image_tf.train_encoder", "--data", str(data),
            "--run", str(run), "--epochs", str(epochs), "--batch-size", "32",
            "--checkpoint-every", "1"]


def _checkpoint_epochs(run: Path) -> list[int]:
    """Epochs of the complete checkpoints in ``run`` (an index file is written last)."""
    if not (run / "checkpoints").is_dir():
        return []
    return sorted(int(p.name.split("-")[1].split(".")[0])
                  for p in (run / "checkpoints").glob("ckpt-*.index"))


def test_kill_9_mid_training_then_the_same_command_resumes(tiny_set, tmp_path):
    run = tmp_path / "run"
    command = _train_command(tiny_set, run, epochs=400)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)
    deadline = time.monotonic() + 240
    try:
        while len(_checkpoint_epochs(run)) < 2:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    # Whatever instant the kill hit, the checkpoint index names a complete checkpoint and no
    # temporary file stands in place of a good one.
    from eeg2image_tf.checkpoints import load_encoder

    load_encoder(str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics
    killed_at = max(_checkpoint_epochs(run))

    resumed = subprocess.run(_train_command(tiny_set, run, epochs=killed_at + 2),
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and f"at epoch {killed_at + 1}" in resumed.stderr
    assert max(_checkpoint_epochs(run)) == killed_at + 2


def test_two_runs_side_by_side_do_not_interfere(tiny_set, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = [tmp_path / "a", tmp_path / "b"]
    processes = [subprocess.Popen(_train_command(tiny_set, run, epochs=3) + ["--seed", str(seed)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for run, seed in zip(runs, (1, 2))]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-2000:]
    for run, seed in zip(runs, (1, 2)):
        assert json.loads((run / "config.json").read_text())["seed"] == seed
        assert _checkpoint_epochs(run) == [1, 2, 3]
    # Different seeds, separate directories: the two runs' results differ.
    a, b = (json.loads((run / "metrics.json").read_text()) for run in runs)
    assert a != b
