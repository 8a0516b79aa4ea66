"""``pipeline --strategy multiworker``: the smoke profile on two local workers against one process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from adam_support import assert_same_adam_training
from eeg2image_tf.runs import PIPELINE_STAGES
from multiworker_support import (LEARNING_RATE, REPO_ROOT, WORKER_TIMEOUT_S, run_workers,
                                 weight_differences, worker_environment)

pytestmark = pytest.mark.slow


def test_pipeline_two_workers_train_together_and_the_chief_finishes(tmp_path):
    """The smoke pipeline on two workers: the training stages together (their GAN ends where one
    process's ends), the selection, generation, evaluation and export on the chief alone; a rerun
    skips every stage on both."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    common = ["--profile", "smoke", "--set", "char", "--data-root", str(tmp_path / "data")]
    run = tmp_path / "two"
    results = run_workers("pipeline", [*common, "--run", str(run)], scratch)
    (_, chief_out, _), (_, worker_out, worker_err) = results
    assert list(scratch.iterdir()) == []
    state = json.loads((run / "pipeline.json").read_text())
    assert all(stage["done"] for stage in state["stages"].values())
    assert len(state["stages"]) == len(PIPELINE_STAGES)
    assert "EEG2Image pipeline summary" in chief_out
    assert "[pipeline] worker 1/2: select_encoder: the chief runs it; waiting" in worker_out
    assert "[pipeline] worker 1/2: training stages done; the chief runs select_gan, generate, " \
        "evaluate, curve, export and writes the run" in worker_out
    for stage in ("encoder", "image_classifier", "gan"):
        assert f"[pipeline] worker 1/2: {stage}: finished" in worker_out
        assert len(list((run / stage / "tensorboard" / "train").glob("events*"))) == 1, stage
    assert "gan [worker 1/2]" in worker_err

    # One process, training stages only: its GAN ends where the two workers' ended.
    done = subprocess.run([sys.executable, "-m", "eeg2image_tf.pipeline", *common,
                           "--run", str(tmp_path / "one"), "--strategy", "default", "--stages",
                           "data", "encoder", "select_encoder", "image_classifier", "gan"],
                          env=worker_environment(scratch, None), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    def difference(stage: str, step: int) -> np.ndarray:
        prefix = f"checkpoints/ckpt-{step}"
        return weight_differences(run / stage / prefix, tmp_path / "one" / stage / prefix)

    # Measured: the encoder's weights 1.2e-7 apart; the GAN's (2 iterations at batch 2) 3.7 % of
    # them more than 1e-5, the largest 1.2e-3 = 4 x lr (two Adam steps on rounding-noise
    # gradients). The classifier on letter images is chaotic at float32 rounding: one process fed
    # the same batch with its rows reordered already computes gradients up to 4 % apart (max-pool
    # near-ties route them to other pixels), so its stage is checked by its numbers.
    # The encoder: 2 epochs of at most 4 steps (200 trials at batch 64).
    assert_same_adam_training(run / "encoder" / "checkpoints" / "ckpt-2",
                              tmp_path / "one" / "encoder" / "checkpoints" / "ckpt-2", 2 * 4,
                              LEARNING_RATE)
    gan = difference("gan", 2)
    assert np.mean(gan > 1e-5) < 0.1 and gan.max() < 5 * LEARNING_RATE, (np.mean(gan > 1e-5),
                                                                          gan.max())
    metrics = [json.loads((root / "image_classifier" / "metrics.json").read_text())
               for root in (run, tmp_path / "one")]
    assert metrics[0]["train_loss"] == pytest.approx(metrics[1]["train_loss"], rel=1e-2)
    assert abs(metrics[0]["test_accuracy"] - metrics[1]["test_accuracy"]) <= 0.1

    results = run_workers("pipeline", [*common, "--run", str(run)], scratch)
    assert all(out.count("done already, skipping") == len(PIPELINE_STAGES)
               for _, out, _ in results)
