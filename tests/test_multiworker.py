"""``--strategy multiworker``: two local worker processes on loopback ports, as README's recipe runs
them, for the encoder, the GAN and the image classifier on a tiny set, and the pipeline's smoke
profile.

Checked: the chief alone writes the run and the other worker leaves no temporary folder; two workers
at global batch B end with the weights of one process at batch B (measured figures beside each
tolerance); killing one worker with SIGKILL makes the other stop with one clear line, and rerunning
both resumes from the chief's latest checkpoint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.multiworker import finish, start_workers, worker_environment, write_tiny_set

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATE = 3e-4        # the GAN's default
WORKER_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> dict:
    return write_tiny_set(tmp_path_factory.mktemp("multiworker_set"))


def _start_workers(module: str, args: list[str], tmp: Path, workers: int = 2) -> list:
    return start_workers(module, args, tmp, workers)


def _finish(processes, timeout: float = WORKER_TIMEOUT_S) -> list[tuple[int, str, str]]:
    return finish(processes, timeout)


def _run_workers(module: str, args: list[str], tmp: Path) -> list[tuple[int, str, str]]:
    results = _finish(_start_workers(module, args, tmp))
    for index, (code, out, err) in enumerate(results):
        assert code == 0, f"worker {index} exited {code}:\n{out}\n{err[-3000:]}"
    return results


def _run_single(module: str, args: list[str], tmp: Path) -> None:
    done = subprocess.run([sys.executable, "-m", f"eeg2image_tf.{module}", *args,
                           "--strategy", "default"], env=worker_environment(tmp, None), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def _weights(prefix: Path) -> dict:
    """The checkpoint's model weights and statistics (not Adam's moments, nor counters)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    skip = ("_CHECKPOINTABLE", "optimizer/_variables", "save_counter", "iterations")
    return {key: np.asarray(reader.get_tensor(key)) for key in reader.get_variable_to_shape_map()
            if not any(part in key for part in skip)
            and np.asarray(reader.get_tensor(key)).dtype.kind == "f"}


def _differences(a: Path, b: Path) -> np.ndarray:
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    return np.concatenate([np.abs(first[key] - second[key]).ravel() for key in first])


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def test_encoder_two_workers_write_one_run_equal_to_one_process(tiny_set, tmp_path):
    args = ["--data", tiny_set["data"], "--batch-size", "8", "--epochs", "3",
            "--checkpoint-every", "2", "--n-clusters", "2"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    results = _run_workers("train_encoder", [*args, "--run", str(tmp_path / "two")], scratch)
    _run_single("train_encoder", [*args, "--run", str(tmp_path / "one")], scratch)

    # One writer: the chief's run has what one process writes; the other worker left nothing.
    assert list(scratch.iterdir()) == []
    two, one = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert {name for name in two if "events" not in name} == \
        {name for name in one if "events" not in name}
    assert len([name for name in two if "events" in name]) == 1
    # Each worker's bar and lines name it.
    assert "encoder [worker 0/2]" in results[0][2] and "encoder [worker 1/2]" in results[1][2]
    assert "worker 1/2: epoch 2" in results[1][1]

    # Same weights: measured max 5e-6 after 3 epochs (6 steps), float32 reduction order.
    difference = _differences(tmp_path / "two" / "checkpoints" / "ckpt-3",
                              tmp_path / "one" / "checkpoints" / "ckpt-3")
    assert difference.max() < 1e-4, difference.max()
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("two", "one")]
    assert metrics[0]["encoder/train_triplet"] == pytest.approx(
        metrics[1]["encoder/train_triplet"], rel=1e-5)


def _wait_for_checkpoint(run: Path, step: int, processes) -> None:
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not (run / "checkpoints" / f"ckpt-{step}.index").exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.5)


def _gan_args(tiny_set, run: Path, steps: int) -> list[str]:
    return ["--data", tiny_set["data"], "--images", tiny_set["images"], "--encoder",
            tiny_set["encoder"], "--run", str(run), "--batch-size", "4", "--max-steps", str(steps),
            "--checkpoint-every", "1", "--sample-every", "2"]


def test_gan_two_workers_write_one_run_equal_to_one_process(tiny_set, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    _run_workers("train_gan", _gan_args(tiny_set, tmp_path / "two", 2), scratch)
    _run_single("train_gan", _gan_args(tiny_set, tmp_path / "one", 2), scratch)

    assert list(scratch.iterdir()) == []
    two, one = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert {name for name in two if "events" not in name} == \
        {name for name in one if "events" not in name}
    assert len([name for name in two if "events" in name]) == 1

    # After one iteration (15 M weights): measured 99.95 % within 1e-5; the weights at most
    # 6.0e-4 = 2 x lr apart: Adam's first step moves every weight by about lr whatever its
    # gradient's size, so a weight whose gradient is rounding noise (opposite signs in the two runs)
    # ends 2 x lr apart. BatchNorm's moving variances at most 1.4e-3 apart: one process with
    # Keras's unfused BatchNorm (the arithmetic the synchronised layer shares) is as far from the
    # fused kernel's (1.4e-3), and the two workers are 2.2e-4 from that unfused process.
    two, one = (_weights(tmp_path / run / "checkpoints" / "ckpt-1") for run in ("two", "one"))
    first = np.concatenate([np.abs(two[key] - one[key]).ravel() for key in one])
    assert np.mean(first > 1e-5) < 2e-3, np.mean(first > 1e-5)
    weights = max(float(np.abs(two[key] - one[key]).max()) for key in one if "moving" not in key)
    statistics = max(float(np.abs(two[key] - one[key]).max()) for key in one if "moving" in key)
    assert weights <= 2 * LEARNING_RATE + 1e-5, weights
    assert statistics < 5e-3, statistics
    # The losses of the second iteration: measured within 2e-5 relative.
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text())["losses"]
               for run in ("two", "one")]
    for name, value in metrics[1].items():
        assert metrics[0][name] == pytest.approx(value, rel=1e-3), name


def _workers_until(run: Path, step: int, args: list[str], scratch: Path, stop, timeout=300):
    """Start the workers, wait for checkpoint ``step``, call ``stop(processes)``; the results and
    the seconds from ``stop`` to the last exit."""
    processes = _start_workers("train_gan", args, scratch)
    try:
        _wait_for_checkpoint(run, step, processes)
        stopped = time.monotonic()
        alive = stop(processes)
        results = _finish(alive, timeout=timeout)
        return results, time.monotonic() - stopped
    finally:
        for process in processes:
            process.kill()


def test_gan_kill_9_stops_the_other_worker_sigterm_stops_both_a_rerun_resumes(tiny_set, tmp_path):
    """One run: a worker killed (the chief stops with one line), a restart resumed, SIGTERM on
    the chief (both save one checkpoint and stop), a rerun resumed again to the end."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = tmp_path / "run"
    args = _gan_args(tiny_set, run, 40)

    def kill_worker(processes):
        processes[1].send_signal(signal.SIGKILL)
        return processes[:1]

    [(code, _out, err)], waited = _workers_until(run, 2, args, scratch, kill_worker)
    assert code == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lost the other workers" in lines[0], err[-3000:]
    assert "rerun the same command on every worker" in lines[0]
    # TensorFlow's heartbeat and health check notice the dead peer (measured 8.5 and 14 s).
    print(f"the chief stopped {waited:.1f} s after its peer was killed")
    assert waited < 240, waited
    saved = max(int(path.stem.split("-")[1]) for path in (run / "checkpoints").glob("ckpt-*.index"))
    left_by_the_killed_worker = set(scratch.iterdir())     # SIGKILL leaves no time to clean up

    def terminate_chief(processes):
        processes[0].send_signal(signal.SIGTERM)
        return processes

    results, _ = _workers_until(run, saved + 1, args, scratch, terminate_chief)
    (chief_code, _, chief_err), (worker_code, _, worker_err) = results
    assert chief_code == 128 + signal.SIGTERM, chief_err[-3000:]
    assert worker_code == 130, worker_err[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    step = metrics["step"]
    assert saved < step < 40 and metrics["steps_this_run"] == step - saved      # it resumed
    assert f"SIGTERM received at step {step}" in chief_err
    assert f"worker 1/2: stopped at step {step} with the other workers" in worker_err
    assert (run / "checkpoints" / f"ckpt-{step}.index").exists()
    assert set(scratch.iterdir()) == left_by_the_killed_worker   # the stopped worker cleaned up

    _run_workers("train_gan", _gan_args(tiny_set, run, step + 2), scratch)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == step + 2 and metrics["steps_this_run"] == 2
    assert set(scratch.iterdir()) == left_by_the_killed_worker


def test_image_classifier_two_workers_write_one_run_equal_to_one_process(tiny_set, tmp_path):
    """Global-batch augmentation and dropout draws, synchronised BatchNorm, summed gradients: two
    workers take the steps one process takes (BatchNorm's moving statistics compared too)."""
    args = ["--images", tiny_set["images"], "--batch-size", "4", "--epochs", "2",
            "--image-size", "32"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    results = _run_workers("train_image_classifier", [*args, "--run", str(tmp_path / "two")],
                           scratch)
    _run_single("train_image_classifier", [*args, "--run", str(tmp_path / "one")], scratch)

    assert list(scratch.iterdir()) == []
    two, one = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert {name for name in two if "events" not in name} == \
        {name for name in one if "events" not in name}
    assert len([name for name in two if "events" in name]) == 1
    assert "classifier [worker 1/2]" in results[1][2] and "worker 1/2: epoch 2" in results[1][1]

    # 2 epochs of 2 steps (Adam, learning rate 2e-3): measured 0.06 % of the weights more than 1e-6
    # apart, the largest 7.9e-5 (conv_4's kernel: weights whose gradients are near rounding noise).
    # A replica drawing its own dropout mask instead ends 0.31 apart (99.9 % of the weights above
    # 1e-6); per-replica BatchNorm statistics leave 99.2 % of them more than 1e-5 apart.
    difference = _differences(tmp_path / "two" / "checkpoints" / "ckpt-2",
                              tmp_path / "one" / "checkpoints" / "ckpt-2")
    assert np.mean(difference > 1e-5) < 2e-3, np.mean(difference > 1e-5)
    assert difference.max() < 1e-3, difference.max()
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("two", "one")]
    assert metrics[0]["train_loss"] == pytest.approx(metrics[1]["train_loss"], rel=1e-5)
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]


def test_pipeline_two_workers_train_together_and_the_chief_finishes(tmp_path):
    """The smoke pipeline on two workers: the training stages together (their GAN ends where one
    process's ends), the selection, generation, evaluation and export on the chief alone; a rerun
    skips every stage on both."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    common = ["--profile", "smoke", "--set", "char", "--data-root", str(tmp_path / "data")]
    run = tmp_path / "two"
    results = _run_workers("pipeline", [*common, "--run", str(run)], scratch)
    (_, chief_out, _), (_, worker_out, worker_err) = results
    assert list(scratch.iterdir()) == []
    state = json.loads((run / "pipeline.json").read_text())
    assert all(stage["done"] for stage in state["stages"].values()) and len(state["stages"]) == 9
    assert "EEG2Image pipeline summary" in chief_out
    assert "[pipeline] worker 1/2: select_encoder: the chief runs it; waiting" in worker_out
    assert "[pipeline] worker 1/2: training stages done; the chief runs generate, evaluate, curve, " \
        "export and writes the run" in worker_out
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
        return _differences(run / stage / prefix, tmp_path / "one" / stage / prefix)

    # Measured: the encoder's weights 1.2e-7 apart; the GAN's (2 iterations at batch 2) 3.7 % of
    # them more than 1e-5, the largest 1.2e-3 = 4 x lr (two Adam steps on rounding-noise
    # gradients). The classifier on letter images is chaotic at float32 rounding: one process fed
    # the same batch with its rows reordered already computes gradients up to 4 % apart (max-pool
    # near-ties route them to other pixels), so its stage is checked by its numbers.
    assert difference("encoder", 2).max() < 1e-5
    gan = difference("gan", 2)
    assert np.mean(gan > 1e-5) < 0.1 and gan.max() < 5 * LEARNING_RATE, (np.mean(gan > 1e-5),
                                                                          gan.max())
    metrics = [json.loads((root / "image_classifier" / "metrics.json").read_text())
               for root in (run, tmp_path / "one")]
    assert metrics[0]["train_loss"] == pytest.approx(metrics[1]["train_loss"], rel=1e-2)
    assert abs(metrics[0]["test_accuracy"] - metrics[1]["test_accuracy"]) <= 0.1

    results = _run_workers("pipeline", [*common, "--run", str(run)], scratch)
    assert all(out.count("done already, skipping") == 9 for _, out, _ in results)
