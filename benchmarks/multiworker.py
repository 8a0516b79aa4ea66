"""``python -m benchmarks.multiworker [--steps N] [--batch-size B] [--workers N]``: the cost of
``--strategy multiworker`` on this machine.

Trains the GAN for ``--steps`` iterations at global batch ``--batch-size`` on a small random set, once
as one process (``--strategy default``) and once as ``--workers`` local worker processes on loopback
ports (the README recipe), and prints one JSON line with the wall time per iteration of each (the
run's ``ms_per_step``: from the end of the first, tracing, iteration to the end) and their ratio.
On a machine with 2 cores the workers share the cores one process already uses, so this measures
the overhead of the collectives (gradients, synchronised BatchNorm, the agreement on stopping), not
a speed-up; a speed-up needs one machine (or one set of cores) per worker.

The helpers (a small set in the real formats, free ports, launching workers) are shared with
the multi-worker tests (``tests/multiworker_support.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .common import machine_line

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Alpha", "Beta")


def write_tiny_set(root: Path, trials: int = 16, images_per_class: int = 4) -> dict:
    """A 2-class ThoughtViz-format set: raw EEG ``(trials, 14, 32, 1)``, random 24x24 images per
    class (train and test), and a randomly initialised encoder in our checkpoint format."""
    import cv2
    import keras

    from eeg2image_tf.checkpoints import save_encoder_weights
    from eeg2image_tf.data.thoughtviz import EEGSplits, save_npz
    from eeg2image_tf.models import build_encoder

    rng = np.random.default_rng(3)
    # Raw Emotiv-like values (positive, ~4000-4600), as the original normalisation expects.
    splits = EEGSplits(
        x_train=rng.uniform(3900, 4600, (trials, 14, 32, 1)).astype(np.float32),
        y_train=np.arange(trials, dtype=np.int64) % 2,
        x_test=rng.uniform(3900, 4600, (4, 14, 32, 1)).astype(np.float32),
        y_test=np.array([0, 1, 0, 1], dtype=np.int64), class_names=CLASSES, source="test")
    save_npz(splits, root / "eeg" / "data.npz")
    for split, count in (("train", images_per_class), ("test", 2)):
        for name in CLASSES:
            folder = root / "images" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
                if not cv2.imwrite(str(folder / f"{name}_{index}.png"), image):
                    raise OSError(f"{folder}: cannot write images")
    keras.utils.set_random_seed(3)
    save_encoder_weights(build_encoder(), root / "encoder")
    return {"data": str(root / "eeg" / "data.npz"), "images": str(root / "images"),
            "encoder": str(root / "encoder")}


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free now (bound and released; another program may take one)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def worker_environment(tmp: Path, tf_config: Optional[dict]) -> dict:
    """The environment of a worker: its TF_CONFIG (none: one process), ``TMPDIR`` (where a
    non-chief worker keeps its checkpoint copies), TensorFlow's C++ log quiet."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmp),
           "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def start_workers(module: str, args: Sequence[str], tmp: Path, workers: int = 2) -> list:
    """Start ``python -m eeg2image_tf.<module> ARGS --strategy multiworker`` as ``workers`` local
    processes (worker 0 is the chief); stdout and stderr are pipes."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(workers)]}
    processes = []
    for index in range(workers):
        env = worker_environment(tmp, {"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", f"eeg2image_tf.{module}", *args, "--strategy", "multiworker"],
            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes, timeout: float) -> list[tuple[int, str, str]]:
    """Wait for every process; ``(returncode, stdout, stderr)`` each (all killed on a timeout)."""
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append((process.returncode, out, err))
    return results


def _check(results, what: str) -> None:
    for index, (code, out, err) in enumerate(results):
        if code != 0:
            raise RuntimeError(f"{what}, process {index}, exited {code}:\n{out}\n{err[-3000:]}")


def run(steps: int = 12, batch_size: int = 8, workers: int = 2, timeout: float = 1800) -> dict:
    with tempfile.TemporaryDirectory(prefix="multiworker-bench-") as scratch:
        root = Path(scratch)
        data = write_tiny_set(root / "set", trials=4 * batch_size)
        common = ["--data", data["data"], "--images", data["images"], "--encoder", data["encoder"],
                  "--batch-size", str(batch_size), "--max-steps", str(steps),
                  "--checkpoint-every", str(steps), "--sample-every", str(steps)]
        started = time.monotonic()
        single = subprocess.run(
            [sys.executable, "-m", "eeg2image_tf.train_gan", *common, "--run", str(root / "one"),
             "--strategy", "default"], env=worker_environment(root, None), cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=timeout)
        _check([(single.returncode, single.stdout, single.stderr)], "one process")
        single_s = time.monotonic() - started
        started = time.monotonic()
        _check(finish(start_workers("train_gan", [*common, "--run", str(root / "many")], root,
                                    workers), timeout), f"{workers} workers")
        many_s = time.monotonic() - started
        one = json.loads((root / "one" / "metrics.json").read_text())
        many = json.loads((root / "many" / "metrics.json").read_text())
    return {"benchmark": "multiworker_gan", "batch_size": batch_size, "steps": steps,
            "workers": workers,
            "one_process_ms_per_step": one["ms_per_step"],
            "workers_ms_per_step": many["ms_per_step"],
            "one_process_steps_per_s": 1000.0 / one["ms_per_step"],
            "workers_steps_per_s": 1000.0 / many["ms_per_step"],
            "slowdown": many["ms_per_step"] / one["ms_per_step"],
            "one_process_command_s": round(single_s, 1), "workers_command_s": round(many_s, 1)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multiworker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(machine_line())
    print(json.dumps(run(args.steps, args.batch_size, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
