"""Our GAN training against the authors', on the same data, features, batch and iterations.

    python -m benchmarks.training_vs_original --data-root data --encoder runs/demo/encoder \
        --classifier runs/demo/image_classifier --out runs/vs_original \
        --iterations 250 500 1000 2000 --seeds 45 46

Both sides train from scratch in float32 on the same trials, paired images and encoder features
(OUR encoder's, written to ``<out>/shared_inputs.npz``), at the same batch size, with latents
``U(-1, 1)`` drawn per step. Ours runs once per mode in ``--modes``: ``as_run`` (the default: G in
inference mode, D in training mode in the G step, what the authors' code ran) and ``as_written``
(``--generator-training --no-discriminator-training-in-g-step``, the spec's text). The authors'
side (``benchmarks/reference_gan_training.py``) runs when their stack exists
(``$EEG2IMAGE_REF/venv/bin/python``, built by ``../shared/reference/setup.sh``); otherwise ours alone.

Each side trains once per seed of ``--seeds`` (``tf.random`` and numpy seeds, our
``GanTrainConfig.seed``), into ``<side>_seed<seed>/``: a single run cannot tell a gap of a few
hundredths from the noise between runs. ``--iterations`` are the milestones (up to
``MAX_ITERATIONS``; the authors' iteration takes about 2.3 s on a 2-core CPU, so 2000 of them
take about 80 minutes a seed).

At every milestone each side's generator draws the same evaluation inputs (``--per-class`` test
conditions and latents per class, from ``--seed``, whatever the training seed); images go through
JPEG quality 95 as ``curve``'s do. Our image classifier scores them (conditional accuracy and
separability), and :mod:`eeg2image_tf.evaluation.realism` compares them with the training image
bank in the gradient-histogram space: precision, recall (k = 3) and the within-class diversity
ratio, whether the images look like the real letters, cover their typefaces and vary as they do.
Writes ``results.json`` (every seed's numbers and their mean), ``table.md`` (the means, with the
half-range over seeds) and ``grid_<side>_seed<seed>_<iteration>.png`` (rows: classes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from functools import reduce
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

MODES = {"as_run": {"generator_training": False, "discriminator_training_in_g_step": True},
         "as_written": {"generator_training": True, "discriminator_training_in_g_step": False}}
GRID_PER_CLASS = 4
MAX_ITERATIONS = 2000
MEASURES = ("conditional_accuracy", "conditional_separability", "precision", "recall",
            "diversity_ratio")


def reference_python() -> Optional[Path]:
    root = Path(os.environ.get("EEG2IMAGE_REF", "/tmp/eeg2image-ref"))
    python = root / "venv" / "bin" / "python"
    return python if python.exists() and (root / "code" / "model.py").exists() else None


def write_shared_inputs(args, out: Path) -> Path:
    """Training conditions, the paired image bank and the evaluation inputs, as arrays."""
    from eeg2image_tf.checkpoints import load_encoder
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.data import list_image_folder, load_thoughtviz, preprocess
    from eeg2image_tf.models import encoder_features
    from eeg2image_tf.runs import training_image_folder
    from eeg2image_tf.training.gan_data import load_gan_data

    path = out / "shared_inputs.npz"
    if path.exists() and "image_labels" in np.load(path).files:
        return path
    data = Path(args.data_root) / "eeg" / args.set / "data.pkl"
    config = GanTrainConfig(data=str(data), images=str(Path(args.data_root) / "images" / "train"),
                            encoder=args.encoder, run=str(out / "shared"))
    (out / "shared").mkdir(parents=True, exist_ok=True)
    gan_data = load_gan_data(config, out / "shared")
    splits = load_thoughtviz(data)
    test_features = encoder_features(load_encoder(args.encoder), preprocess(splits.x_test))
    rng = np.random.default_rng(args.seed)
    inputs, labels = [], []
    for c in range(splits.num_classes):
        rows = np.flatnonzero(splits.y_test == c)
        chosen = rows[np.arange(args.per_class) % len(rows)]
        latent = rng.uniform(-1.0, 1.0, (args.per_class, config.latent_dim)).astype(np.float32)
        inputs.append(np.concatenate([latent, test_features[chosen]], axis=1))
        labels.append(np.full(args.per_class, c, np.int64))
    # uint8, as the files hold them: the authors' side maps them to [-1, 1] itself.
    bank = np.rint((gan_data.images + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    image_labels = list_image_folder(training_image_folder(config.images)).labels
    np.savez(path, conditions=gan_data.conditions, images=bank, image_labels=image_labels,
             image_index=gan_data.image_index, eval_inputs=np.concatenate(inputs),
             eval_labels=np.concatenate(labels), class_names=np.array(gan_data.class_names))
    return path


def train_ours(args, shared: Path, out: Path, mode: str,
               seed: int) -> dict[int, tuple[np.ndarray, float]]:
    """Train our GAN in ``mode`` from ``seed``; return ``{iteration: (uint8 images of the eval
    inputs, s)}``."""
    from eeg2image_tf.checkpoints import load_gan
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.generation import generator_of
    from eeg2image_tf.models.inference import to_uint8
    from eeg2image_tf.training.gan import train_gan

    milestones = sorted(set(args.iterations))
    every = reduce(math.gcd, milestones)
    run = out / f"ours_{mode}_seed{seed}"
    config = GanTrainConfig(
        data=str(Path(args.data_root) / "eeg" / args.set / "data.pkl"),
        images=str(Path(args.data_root) / "images" / "train"), encoder=args.encoder,
        run=str(run), batch_size=args.batch_size, max_steps=milestones[-1],
        checkpoint_every=every, sample_every=every, max_to_keep=len(range(every, milestones[-1] + 1,
                                                                         every)),
        precision="float32", seed=seed, **MODES[mode])
    started = time.monotonic()
    result = train_gan(config)
    seconds_per_step = float(result["compute_ms_per_step"] or 0.0) / 1000.0
    eval_inputs = np.load(shared)["eval_inputs"]
    found = {}
    for iteration in milestones:
        generator = generator_of(load_gan(run / "checkpoints" / f"ckpt-{iteration}"))
        images = np.concatenate([np.asarray(generator(eval_inputs[k:k + 32], training=False))
                                 for k in range(0, len(eval_inputs), 32)])
        found[iteration] = (to_uint8(images), seconds_per_step * iteration)
    print(f"ours ({mode}, seed {seed}): {milestones[-1]} iterations in "
          f"{time.monotonic() - started:.0f} s")
    return found


def train_reference(args, shared: Path, out: Path,
                    seed: int) -> Optional[dict[int, tuple[np.ndarray, float]]]:
    python = reference_python()
    if python is None:
        print("the authors' stack is not built (../shared/reference/setup.sh): ours only")
        return None
    target = out / f"authors_seed{seed}"
    command = [str(python), str(Path(__file__).with_name("reference_gan_training.py")),
               "--code", str(python.parent.parent.parent / "code"), "--shared", str(shared),
               "--out", str(target), "--batch-size", str(args.batch_size), "--seed", str(seed),
               "--iterations", *map(str, args.iterations)]
    if not all((target / f"images_{i}.npz").exists() for i in args.iterations):
        subprocess.run(command, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    found = {}
    for iteration in args.iterations:
        saved = np.load(target / f"images_{iteration}.npz")
        found[iteration] = (saved["images"], float(saved["seconds"]))
    return found


def score(images: np.ndarray, labels: np.ndarray, classifier, class_names,
          reference: tuple[np.ndarray, np.ndarray]) -> dict:
    """Conditional accuracy and separability (the classifier), precision, recall and diversity
    against ``reference`` (gradient histograms ``(M, D)`` of the training bank, its labels)."""
    from eeg2image_tf.evaluation import ImageChunk, run_pass
    from eeg2image_tf.generation import jpeg_round_trip
    from eeg2image_tf.evaluation.metrics import conditional_separability
    from eeg2image_tf.evaluation.realism import SPACE_NAME, gradient_histograms, realism_scores

    result = run_pass(iter([ImageChunk(images=jpeg_round_trip(images, 95), class_index=labels)]),
                      classifier=classifier, feature_spaces={SPACE_NAME: gradient_histograms})
    predictions = result.classifier_probs.argmax(axis=1)
    realism = realism_scores(reference[0], reference[1], result.features[SPACE_NAME], labels,
                             class_names)
    return {"conditional_accuracy": float(np.mean(predictions == labels)),
            "conditional_separability": float(conditional_separability(
                result.classifier_features, labels, n_clusters=len(class_names))),
            **{key: realism.get(key) for key in ("precision", "recall", "diversity_ratio")}}


def summarise(by_seed: dict[str, dict]) -> dict:
    """Per measure, the mean over seeds and the half-range (``(max - min) / 2``, 0 for one seed)."""
    summary = {}
    for key in MEASURES:
        values = [entry[key] for entry in by_seed.values() if entry.get(key) is not None]
        if values:
            summary[key] = {"mean": float(np.mean(values)),
                            "half_range": float((max(values) - min(values)) / 2.0)}
    return summary


def format_table(results: dict) -> str:
    """Markdown: a row per milestone, a column per side, cells of the mean over seeds (accuracy,
    precision, recall, diversity), with the half-range over seeds when there are several."""
    sides = list(results["sides"])
    several = len(results["seeds"]) > 1
    lines = ["| iteration | " + " | ".join(sides) + " |", "|---" * (len(sides) + 1) + "|"]
    iterations = sorted({int(i) for side in sides for i in results["sides"][side]})
    for iteration in iterations:
        cells = []
        for side in sides:
            summary = results["sides"][side].get(str(iteration), {}).get("summary", {})
            parts = []
            for key in ("conditional_accuracy", "precision", "recall", "diversity_ratio"):
                if key not in summary:
                    parts.append("n/a")
                    continue
                text = f"{summary[key]['mean']:.3f}"
                if several:
                    text += f" ±{summary[key]['half_range']:.3f}"
                parts.append(text)
            cells.append(" / ".join(parts))
        lines.append(f"| {iteration} | " + " | ".join(cells) + " |")
    seeds = ", ".join(map(str, results["seeds"]))
    spread = "; ± half the range over the seeds" if several else ""
    return ("\n".join(lines) + f"\n\n(conditional accuracy / precision / recall / diversity ratio, "
            f"mean over seeds {seeds}{spread}; chance accuracy {1.0 / results['classes']:.3f}; "
            "precision, recall (k = 3) and diversity in gradient histograms against the training "
            "images)\n")


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Refuse milestones beyond :data:`MAX_ITERATIONS` or below 1, and repeated seeds."""
    if min(args.iterations) < 1 or max(args.iterations) > MAX_ITERATIONS:
        parser.error(f"--iterations must lie in 1..{MAX_ITERATIONS}, got {args.iterations}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must differ, got {args.seeds}")


def write_grid(images: np.ndarray, labels: np.ndarray, class_names, path: Path) -> None:
    from eeg2image_tf.training.samples import sample_grid, write_png

    rows = [np.flatnonzero(labels == c)[:GRID_PER_CLASS] for c in range(len(class_names))]
    chosen = np.concatenate(rows)
    write_png(sample_grid(images[chosen], [class_names[labels[k]] for k in chosen],
                          columns=GRID_PER_CLASS), path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--set", default="char")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--iterations", type=int, nargs="+", default=[250, 500, 1000, 2000],
                        help=f"milestones, at most {MAX_ITERATIONS}")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["as_run", "as_written"])
    parser.add_argument("--no-reference", action="store_true", help="ours only")
    parser.add_argument("--seed", type=int, default=45, help="of the evaluation inputs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[45],
                        help="training seeds: each side trains once per seed")
    args = parser.parse_args(argv)
    check_arguments(parser, args)

    from eeg2image_tf.evaluation import align_classifier
    from eeg2image_tf.checkpoints import load_image_classifier

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = write_shared_inputs(args, out)
    arrays = np.load(shared)
    labels, class_names = arrays["eval_labels"], [str(n) for n in arrays["class_names"]]
    classifier, reason = align_classifier(load_image_classifier(args.classifier), class_names)
    if classifier is None:
        raise SystemExit(f"error: {args.classifier}: {reason}")

    from eeg2image_tf.evaluation.realism import gradient_histograms

    reference = (gradient_histograms(arrays["images"]), arrays["image_labels"])
    runs: dict[str, dict[int, dict[int, tuple[np.ndarray, float]]]] = {}
    for seed in args.seeds:
        if not args.no_reference:
            trained = train_reference(args, shared, out, seed)
            if trained is not None:
                runs.setdefault("authors", {})[seed] = trained
        for mode in args.modes:
            runs.setdefault(f"ours_{mode}", {})[seed] = train_ours(args, shared, out, mode, seed)

    results = {"batch_size": args.batch_size, "per_class": args.per_class, "seeds": args.seeds,
               "classes": len(class_names), "sides": {}}
    for side, by_seed in runs.items():
        results["sides"][side] = {}
        for iteration in sorted(set(args.iterations)):
            entries = {}
            for seed, by_iteration in by_seed.items():
                images, seconds = by_iteration[iteration]
                entries[str(seed)] = {**score(images, labels, classifier, class_names, reference),
                                      "train_seconds": round(seconds, 1)}
                write_grid(images, labels, class_names,
                           out / f"grid_{side}_seed{seed}_{iteration}.png")
            results["sides"][side][str(iteration)] = {"seeds": entries,
                                                      "summary": summarise(entries)}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = format_table(results)
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
