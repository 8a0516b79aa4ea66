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
           "weight_differences", "adam_first_moments", "assert_same_adam_training", "files_under",
           "wait_for_checkpoint", "gan_args"]

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


def adam_first_moments(prefix: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each trainable variable of the checkpoint with Adam's first moment of its gradient (the
    gradients' running mean), in the optimizer's order. Keras's Adam tracks iterations and the
    learning rate first, then a momentum and a velocity per variable."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    names = reader.get_variable_to_shape_map()
    count = sum(1 for key in names if key.startswith("optimizer/_trainable_variables/"))
    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    return [(reader.get_tensor(f"optimizer/_trainable_variables/{index}{value}"),
             reader.get_tensor(f"optimizer/_variables/{2 + 2 * index}{value}"))
            for index in range(count)]


def assert_same_adam_training(found: Path, expected: Path, steps: int, learning_rate: float) -> None:
    """Two checkpoints of Adam training from the same start took the same steps, to rounding.

    Adam's first moments (the gradients' running mean) within 1 % of each variable's largest; the
    weights within 1e-5 where the gradient stands clear of rounding noise (first moment at least 1 %
    of the variable's largest). A weight whose gradient is within rounding of zero may take the
    opposite sign in the two runs, and Adam moves it by about lr a step whatever the gradient's
    size, so every weight is held to ``2 x steps x lr`` only.
    """
    pairs = zip(adam_first_moments(found), adam_first_moments(expected), strict=True)
    for index, ((found_weights, found_moment), (weights, moment)) in enumerate(pairs):
        scale = np.abs(moment).max()
        assert np.abs(found_moment - moment).max() <= 1e-2 * scale, index
        apart = np.abs(found_weights - weights)
        assert apart[np.abs(moment) >= 1e-2 * scale].max(initial=0.0) <= 1e-5, index
        assert apart.max() <= 2 * steps * learning_rate + 1e-5, index


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
