"""Turn EEG trials into PNG images with an exported EEG2Image SavedModel.

    python examples/serve_client.py --model exports/eeg2image --data data/eeg/image/data.pkl \
        --trials 0 1 2 --seed 45 --out samples/

The model needs nothing from eeg2image-tf: ``tf.saved_model.load`` and its ``generate_seeded``
signature (raw trials ``[batch, C, T]`` + an int64 seed -> uint8 images) are all there is to it; the
normalisation the model was trained with runs inside it, so the trials go in as the set stores them.
The trial shape, normalisation and class names are in the export's ``signature.json``. The package is
used here only to read the set safely (``data.pkl``: a pickle can run code, ``load_thoughtviz``
refuses anything but arrays; or ``data.npz``). The same seed gives the same images on every machine,
because the noise is drawn inside the graph with a stateless generator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from eeg2image_tf.config import quiet_tensorflow
from eeg2image_tf.errors import DataError, Eeg2ImageError, run_main
from eeg2image_tf.io_utils import atomic_write_bytes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="export directory (holds saved_model.pb)")
    parser.add_argument("--data", required=True,
                        help="the EEG set: data.pkl, data.npz or its folder (eeg/<set>/)")
    parser.add_argument("--trials", type=int, nargs="+", default=[0, 1, 2],
                        help="trial indices in the split (default: 0 1 2)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--seed", type=int, default=45, help="noise seed (int64)")
    parser.add_argument("--out", required=True, help="directory for the PNG files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = parse_args(argv)
    import tensorflow as tf

    from eeg2image_tf.data import load_thoughtviz

    model_dir = Path(args.model)
    if not (model_dir / "saved_model.pb").is_file():
        raise Eeg2ImageError(f"{model_dir}: no saved_model.pb; --model must be an export directory")
    splits = load_thoughtviz(args.data)
    trials = splits.x_test if args.split == "test" else splits.x_train
    labels = splits.y_test if args.split == "test" else splits.y_train
    bad = [index for index in args.trials if not 0 <= index < len(trials)]
    if bad:
        raise DataError(f"{args.data}: the {args.split} split has {len(trials)} trials; "
                        f"no trial {', '.join(map(str, bad))}")

    exported = _signature(model_dir)
    model_info = exported.get("model", {})
    wanted = (model_info.get("num_channels"), model_info.get("num_samples"))
    if None not in wanted and wanted != (splits.num_channels, splits.num_samples):
        raise DataError(f"{args.data}: trials of {splits.num_channels} channels x "
                        f"{splits.num_samples} samples, but the model at {model_dir} takes "
                        f"{wanted[0]} x {wanted[1]}")

    model = tf.saved_model.load(str(model_dir))
    generate = model.signatures["generate_seeded"]
    # A set stores (N, C, T, 1); the signature takes the raw trials without the trailing axis.
    eeg = tf.constant(trials[args.trials][..., 0], tf.float32)
    outputs = generate(eeg=eeg, seed=tf.constant(args.seed, tf.int64))

    class_names = exported.get("class_names") or splits.class_names
    out_dir = Path(args.out)
    for index, image in zip(args.trials, outputs["images"]):
        label = int(labels[index])
        name = class_names[label] if class_names and label < len(class_names) else f"class{label}"
        path = out_dir / f"{args.split}_{index:05d}_{name}_seed{args.seed}.png"
        atomic_write_bytes(path, tf.io.encode_png(image).numpy())
        print(path)
    return 0


def _signature(model_dir: Path) -> dict:
    """The export's signature.json (shapes, normalisation, class names), or {} without one."""
    path = model_dir / "signature.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(run_main(main))
