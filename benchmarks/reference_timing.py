"""The authors' hot paths, timed one call at a time on request, run by THEIR stack.

Not part of the package and never imported by it: :class:`benchmarks.reference.ReferenceProcess`
starts this file with the interpreter that ``../shared/reference/setup.sh`` builds
(TF 2.15 + tensorflow-addons 0.23), e.g.

    /tmp/eeg2image-ref/venv/bin/python benchmarks/reference_timing.py \
        --code /tmp/eeg2image-ref/code --benchmark gan_step --batch-size 16

It imports only the standard library, numpy, TensorFlow, OpenCV and the authors' modules from
``--code``, builds the chosen path, runs it once untimed (tracing), prints ``{"ready": ...}`` and then
answers every ``run`` line on stdin with ``{"seconds": s}``, the wall time of one call:

- ``encoder_step``: their ``lstm_kmean/model.py`` ``TripleNet`` and ``train_step`` (the semi-hard
  triplet loss of tensorflow-addons), one step at ``--batch-size`` on random preprocessed-range
  trials, TF 2.8's Adam (TF 2.15's legacy Adam) at 3e-4;
- ``gan_step``: their ``model.py`` ``DCGAN`` and ``dist_train_step`` (D update, then G update) under
  a one-device ``MirroredStrategy``, legacy Adam 3e-4 (0.2, 0.5) for each network, as their
  ``train.py`` builds them;
- ``generate``: ``--count`` images as their ``test_generation.py`` makes them: one generator call
  per image through the strategy, RGB -> BGR, ``uint8(clip((x * 0.5 + 0.5) * 255))``, one
  ``cv2.imwrite`` per JPEG, into a temporary folder.

An empty line or end of input ends the process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Callable, Optional, TextIO

BENCHMARKS = ("encoder_step", "gan_step", "generate")


def serve(run_once: Callable[[], object], stdin: Optional[TextIO] = None,
          stdout: Optional[TextIO] = None, ready: Optional[dict] = None) -> int:
    """Announce readiness, then time ``run_once`` once per ``run`` line until an empty line or EOF.

    Returns the number of timed calls.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stdout.write(json.dumps({"ready": ready or {}}) + "\n")
    stdout.flush()
    calls = 0
    for line in stdin:
        command = line.strip()
        if not command:
            break
        if command != "run":
            raise SystemExit(f"error: unknown request {command!r} (expected 'run')")
        started = time.perf_counter()
        run_once()
        stdout.write(json.dumps({"seconds": time.perf_counter() - started}) + "\n")
        stdout.flush()
        calls += 1
    return calls


def _encoder_step(batch_size: int):
    import numpy as np
    import tensorflow as tf
    from lstm_kmean.model import TripleNet, train_step     # the authors' encoder code

    rng = np.random.default_rng(0)
    # Preprocessed trials peak at 1 (docs/method.md section 2); 10 balanced classes.
    x = tf.constant(rng.uniform(0.7, 1.0, size=(batch_size, 32, 14)).astype(np.float32))
    y = tf.constant(rng.permutation(np.arange(batch_size) % 10).astype(np.int64))
    network = TripleNet(n_classes=10)
    optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=3e-4)
    return lambda: float(train_step(network, optimizer, x, y))


def _gan_step(batch_size: int, latent_dim: int):
    import numpy as np
    import tensorflow as tf
    from model import DCGAN, dist_train_step               # the authors' GAN code

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, size=(batch_size, 128, 128, 3)).astype(np.float32))
    conditions = tf.constant(rng.normal(size=(batch_size, 128)).astype(np.float32))
    strategy = tf.distribute.MirroredStrategy(devices=["/CPU:0"])
    with strategy.scope():
        gan = DCGAN()
        g_optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=3e-4, beta_1=0.2, beta_2=0.5)
        d_optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=3e-4, beta_1=0.2, beta_2=0.5)

    def one_iteration():
        _, d_loss = dist_train_step(strategy, gan, g_optimizer, d_optimizer, images, conditions,
                                    latent_dim, batch_size)
        float(d_loss)                                      # wait for the step to finish

    return one_iteration


def _generate(count: int, latent_dim: int, folder: str):
    import cv2
    import numpy as np
    import tensorflow as tf
    from model import DCGAN

    strategy = tf.distribute.MirroredStrategy(devices=["/CPU:0"])
    with strategy.scope():
        gan = DCGAN()
    rng = np.random.default_rng(1)
    conditions = rng.normal(size=(10, 128)).astype(np.float32)
    state = {"written": 0}

    def one_set():
        for k in range(count):
            noise = np.concatenate([rng.uniform(-1, 1, latent_dim).astype(np.float32),
                                    conditions[k % 10]])
            image = strategy.run(gan.gen, args=(tf.expand_dims(noise, axis=0),))
            image = cv2.cvtColor(tf.squeeze(image).numpy(), cv2.COLOR_RGB2BGR)
            image = np.uint8(np.clip((image * 0.5 + 0.5) * 255.0, 0, 255))
            cv2.imwrite(os.path.join(folder, f"{k % 10}_{state['written']}.jpg"), image)
            state["written"] += 1

    return one_set


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", required=True, help="the authors' code (model.py, lstm_kmean/)")
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--count", type=int, default=200, help="images per generate call")
    parser.add_argument("--latent-dim", type=int, default=128)
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.abspath(args.code))
    import tensorflow as tf

    tf.random.set_seed(45)
    with tempfile.TemporaryDirectory(prefix="eeg2image_reference_") as folder:
        if args.benchmark == "encoder_step":
            run_once = _encoder_step(args.batch_size)
        elif args.benchmark == "gan_step":
            run_once = _gan_step(args.batch_size, args.latent_dim)
        else:
            run_once = _generate(args.count, args.latent_dim, folder)
        run_once()                                         # trace outside the timing
        serve(run_once, ready={"benchmark": args.benchmark, "tensorflow": tf.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
