"""The authors' GAN training on shared inputs, run by THEIR stack (TF 2.15 + tensorflow-addons).

Not part of the package and never imported by it: ``benchmarks.training_vs_original`` runs this
file with the reference interpreter that ``../shared/reference/setup.sh`` builds, e.g.

    /tmp/eeg2image-ref/venv/bin/python benchmarks/reference_gan_training.py \
        --code /tmp/eeg2image-ref/code --shared work/shared_inputs.npz --out work/reference \
        --iterations 250 500 1000 --batch-size 16 --seed 45

It imports only TensorFlow, numpy and the authors' ``model.py`` (``DCGAN``, ``dist_train_step``)
from ``--code``, and trains as their ``train.py`` does: a ``MirroredStrategy`` on one device, the
TF 2.8 Adam (TF 2.15's legacy Adam) at 3e-4, beta_1 0.2, beta_2 0.5 for each network, latents drawn
inside ``dist_train_step``, ``tf.random.set_seed(45)`` (another with ``--seed``), batches from a
``tf.data`` shuffle with a buffer of twice the batch (their ``load_complete_data``; the last,
smaller batch of an epoch included). What differs from their script is only the input side: the conditions are the
features of OUR encoder and the images the same paired bank as ours (``--shared``), so both
trainings see the same data; their script computes features with its own TripleNet.

At each iteration of ``--iterations`` it writes ``images_<iteration>.npz`` (``images`` uint8
``(K, 128, 128, 3)``: their generator on the shared evaluation inputs, ``seconds``: training wall
time so far).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", required=True, help="the authors' code (model.py)")
    parser.add_argument("--shared", required=True, help="shared_inputs.npz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--iterations", type=int, nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=45, help="tf.random and numpy (their 45)")
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.abspath(args.code))
    import tensorflow as tf
    from model import DCGAN, dist_train_step     # the authors' code, as their train.py imports it

    tf.random.set_seed(args.seed)
    np.random.seed(args.seed)
    shared = np.load(args.shared)
    conditions = shared["conditions"].astype(np.float32)
    images = shared["images"][shared["image_index"]]          # one fixed image per trial
    if images.dtype != np.uint8:
        raise SystemExit(f"error: {args.shared}: images must be uint8 0-255 (as decoded from the "
                         f"files), got {images.dtype}")
    eval_inputs = shared["eval_inputs"].astype(np.float32)
    os.makedirs(args.out, exist_ok=True)

    def to_float(image):
        return (tf.cast(image, tf.float32) - 127.5) / 127.5   # their preprocess_data

    dataset = (tf.data.Dataset.from_tensor_slices((conditions, images))
               .map(lambda c, i: (c, to_float(i)))
               .shuffle(buffer_size=2 * args.batch_size)
               .batch(args.batch_size, drop_remainder=False)
               .prefetch(tf.data.experimental.AUTOTUNE))
    strategy = tf.distribute.MirroredStrategy(devices=["/CPU:0"])
    with strategy.scope():
        model = DCGAN()
        g_optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=3e-4, beta_1=0.2, beta_2=0.5)
        d_optimizer = tf.keras.optimizers.legacy.Adam(learning_rate=3e-4, beta_1=0.2, beta_2=0.5)

    milestones = sorted(set(args.iterations))
    step, trained_seconds = 0, 0.0
    while step < milestones[-1]:
        for condition, image in dataset:
            started = time.perf_counter()
            batch = int(image.shape[0])
            g_loss, d_loss = dist_train_step(strategy, model, g_optimizer, d_optimizer, image,
                                             condition, args.latent_dim, batch)
            float(d_loss)                                      # wait for the step
            trained_seconds += time.perf_counter() - started
            step += 1
            if step % 50 == 0:
                print(f"reference: step {step}, d_hinge {float(d_loss):.4f}, "
                      f"g_total {float(g_loss):.4f}, {1000 * trained_seconds / step:.0f} ms/step",
                      flush=True)
            if step in milestones:
                generated = np.concatenate([
                    model.gen(eval_inputs[k:k + 32]).numpy() for k in range(0, len(eval_inputs), 32)])
                # their save rule (train.py): uint8(clip((x * 0.5 + 0.5) * 255))
                as_uint8 = np.uint8(np.clip((generated * 0.5 + 0.5) * 255.0, 0, 255))
                np.savez(os.path.join(args.out, f"images_{step}.npz"), images=as_uint8,
                         seconds=np.float64(trained_seconds))
                print(f"reference: wrote images at step {step}", flush=True)
            if step >= milestones[-1]:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
