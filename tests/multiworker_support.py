"""What the multi-worker tests share: two local worker processes on loopback ports (README's recipe),
one process to compare with, and checkpoint comparisons. (Not a test module: pytest collects
``test_*.py`` only.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.multiworker import finish, start_workers, worker_environment, write_tiny_set

__all__ = ["REPO_ROOT", "LEARNING_RATE", "WORKER_TIMEOUT_S", "write_tiny_set", "worker_environment",
           "start_workers", "finish_workers", "run_workers", "run_single", "checkpoint_weights",
           "weight_differences", "files_under", "wait_for_checkpoint", "gan_args"]

REPO_ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATE = 3e-4        # the GAN's and the encoder's default
WORKER_TIMEOUT_S = 600


def finish_workers(processes, timeout: float = WORKER_TIMEOUT_S) -> list[tuple[int, str, str]]:
    return finish(processes, timeout)


def run_workers(module: str, args: list[str], tmp: Path) -> list[tuple[int, str, str]]:
    results = finish_workers(start_workers(module, args, tmp))
    for index, (code, out, err) in enumerate(results):
        assert code == 0, f"worker {index} exited {code}:\n{out}\n{err[-3000:]}"
    return results


def run_single(module: str, args: list[str], tmp: Path) -> None:
    done = subprocess.run([sys.executable, "-m", f"eeg2image_tf.{module}", *args,
                           "--strategy", "default"], env=worker_environment(tmp, None), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def checkpoint_weights(prefix: Path) -> dict:
    """The checkpoint's model weights and statistics (not Adam's moments, nor counters)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    skip = ("_CHECKPOINTABLE", "optimizer/_variables", "save_counter", "iterations")
    return {key: np.asarray(reader.get_tensor(key)) for key in reader.get_variable_to_shape_map()
            if not any(part in key for part in skip)
            and np.asarray(reader.get_tensor(key)).dtype.kind == "f"}


def weight_differences(a: Path, b: Path) -> np.ndarray:
    first, second = checkpoint_weights(a), checkpoint_weights(b)
    assert first.keys() == second.keys()
    return np.concatenate([np.abs(first[key] - second[key]).ravel() for key in first])


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def wait_for_checkpoint(run: Path, step: int, processes) -> None:
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not (run / "checkpoints" / f"ckpt-{step}.index").exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.5)


def gan_args(tiny_set, run: Path, steps: int) -> list[str]:
    return ["--data", tiny_set["data"], "--images", tiny_set["images"], "--encoder",
            tiny_set["encoder"], "--run", str(run), "--batch-size", "4", "--max-steps", str(steps),
            "--checkpoint-every", "1", "--sample-every", "2"]
