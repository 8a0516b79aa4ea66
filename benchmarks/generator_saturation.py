"""How far a trained generator drives its output layer into tanh's flat ends.

    python -m benchmarks.generator_saturation runs/demo/gan [runs/other/gan ...] [--per-class 10]
    python -m benchmarks.generator_saturation runs/demo/gan --gan runs/demo/gan/checkpoints/ckpt-300

Binary-looking images (pure black and white, no anti-aliased edge) come from pre-tanh values far
beyond +-3, where tanh is flat: the image is then insensitive to small changes of the weights, and
strokes cannot get soft edges. For each GAN run this draws ``--per-class`` images per class from test
conditions (the generator ``generate`` uses: the moving average when the run has one) and prints one
JSON line: quantiles of ``|pre-tanh|``, the fraction of values beyond 3 (``|tanh| > 0.995``), the
fraction of mid-tone pixels (``|value| < 0.9``) in the generated images and in the run's training
images (anti-aliased edges are mid-tones), and the largest singular value of every layer's stored
kernel (in the as-run mode the generator convolves with them as they are, spectral normalisation
never applied, so these grow freely).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np

SATURATED = 3.0          # tanh(3) = 0.995: within one 8-bit level of pure black or white
MID_TONE = 0.9           # |value| below this: neither background nor solid stroke


def pre_tanh(generator, inputs):
    """The generator's output before tanh, float32 ``(B, 128, 128, 3)`` (``Generator.call`` with
    ``training=False``, layer by layer)."""
    from keras import ops

    layers = generator.inference_layers()
    x = ops.reshape(ops.convert_to_tensor(inputs), (-1, 1, 1, layers.input_dim))
    for conv, norm in zip(generator.upsampling_convs, layers.norms):
        x = conv(x, training=False)
        if norm is not None:
            x = norm(x, training=False)
        x = generator.activation(x)
    return np.asarray(ops.cast(generator.to_rgb(x, training=False), "float32"))


def kernel_norms(generator) -> dict[str, float]:
    """Largest singular value of each stored kernel, reshaped to (taps * inputs, outputs)."""
    norms = {}
    for wrapper in [*generator.upsampling_convs, generator.to_rgb]:
        kernel = np.asarray(wrapper.layer.kernel)
        matrix = kernel.reshape(-1, kernel.shape[-1])
        norms[wrapper.name] = float(np.linalg.norm(matrix, ord=2))
    return norms


def mid_tone_fraction(images: np.ndarray) -> float:
    return float(np.mean(np.abs(images) < MID_TONE))


def measure(run: str, per_class: int, seed: int, ema: bool, gan: str | None = None) -> dict:
    from eeg2image_tf.data import list_image_folder, load_images
    from eeg2image_tf.generation.batches import LatentStreams
    from eeg2image_tf.generation.sources import load_generation_sources

    sources = load_generation_sources(run=run, gan=gan, ema=ema)
    streams = LatentStreams(seed, len(sources.features_by_class), sources.latent_dim)
    inputs = []
    for c, features in enumerate(sources.features_by_class):
        conditions = features[np.arange(per_class) % len(features)]
        inputs.append(np.concatenate([streams.draw(c, per_class), conditions], axis=1))
    values = pre_tanh(sources.generator, np.concatenate(inputs).astype(np.float32))
    magnitude = np.abs(values)
    record = {
        "run": run, "checkpoint": gan or "latest", "ema": ema, "images": int(values.shape[0]),
        "pre_tanh_abs_median": float(np.median(magnitude)),
        "pre_tanh_abs_p90": float(np.quantile(magnitude, 0.9)),
        "pre_tanh_abs_p99": float(np.quantile(magnitude, 0.99)),
        "pre_tanh_abs_max": float(magnitude.max()),
        "saturated_fraction": float(np.mean(magnitude > SATURATED)),
        "mid_tone_fraction": mid_tone_fraction(np.tanh(values)),
        "kernel_spectral_norms": kernel_norms(sources.generator),
    }
    if sources.images_root is not None:
        folder = list_image_folder(sources.images_root)
        rng = np.random.default_rng(seed)
        picked = [rng.choice(np.flatnonzero(folder.labels == c), size=per_class)
                  for c in range(len(folder.class_names))]
        real = load_images([folder.paths[i] for i in np.concatenate(picked)])
        record["real_mid_tone_fraction"] = mid_tone_fraction(real)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="GAN run directories")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=45)
    parser.add_argument("--no-ema", dest="ema", action="store_false",
                        help="the trained generator, not its moving average")
    parser.add_argument("--gan", help="one checkpoint of the (single) run instead of its latest")
    args = parser.parse_args(argv)
    if args.gan and len(args.runs) > 1:
        parser.error("--gan names a checkpoint of one run")
    for run in args.runs:
        print(json.dumps(measure(run, args.per_class, args.seed, args.ema, args.gan)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
