"""Prepare EEG data: build the synthetic sets, or convert a ThoughtViz pickle to our safe ``.npz``.

    python -m eeg2image_tf.prepare_data --synthetic --set char --out data/
    python -m eeg2image_tf.prepare_data --convert data/eeg/char/data.pkl --out data/eeg/char/data.npz

The pickle is read with the restricted unpickler (numpy arrays and plain containers only); the
``.npz`` holds the same keys and is read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import PrepareDataConfig, command_parser
from .data import convert_to_npz, write_synthetic_set
from .errors import run_main

DESCRIPTION = "Write the synthetic ThoughtViz-like sets, or convert data.pkl to a safe .npz."


def build_parser() -> argparse.ArgumentParser:
    # The two modes share few flags, so they are spelled out here rather than derived from
    # PrepareDataConfig's fields; config_from_arguments maps them onto it.
    parser = command_parser("prepare_data", DESCRIPTION)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--synthetic", action="store_true",
                      help="write eeg/<set>/data.pkl and images/{train,test}/<Class>/*.png under --out")
    mode.add_argument("--convert", metavar="DATA_PKL",
                      help="read a ThoughtViz data.pkl safely and write it as .npz (--out)")
    parser.add_argument("--out", help="synthetic: data root (default: data); convert: the .npz to "
                                      "write (default: beside the pickle)")
    parser.add_argument("--set", dest="set_name", default="char",
                        help="synthetic set: digit or char (the objects set 'image' is real data only)")
    parser.add_argument("--seed", type=int, default=45)
    parser.add_argument("--n-train", type=int, default=2500, help="EEG training trials")
    parser.add_argument("--n-test", type=int, default=600, help="EEG test trials")
    parser.add_argument("--images-per-class", type=int, default=200, help="training images per class")
    parser.add_argument("--test-images-per-class", type=int, default=50, help="test images per class")
    return parser


def config_from_arguments(args: argparse.Namespace) -> PrepareDataConfig:
    if args.synthetic:
        return PrepareDataConfig(mode="synthetic", out=args.out or "data", set_name=args.set_name,
                                 seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                                 images_per_class=args.images_per_class,
                                 test_images_per_class=args.test_images_per_class)
    out = args.out or str(Path(args.convert).with_suffix(".npz"))
    return PrepareDataConfig(mode="convert", out=out, source=args.convert)


def main(argv: Optional[Sequence[str]] = None) -> int:
    config = config_from_arguments(build_parser().parse_args(argv)).validate()
    if config.mode == "synthetic":
        written = write_synthetic_set(config.out, set_name=config.set_name, seed=config.seed,
                                      n_train=config.n_train, n_test=config.n_test,
                                      images_per_class=config.images_per_class,
                                      test_images_per_class=config.test_images_per_class)
        print(f"wrote {written['eeg']}: x_train {written['x_train_shape']}, x_test "
              f"{written['x_test_shape']} (synthetic '{written['set']}', seed {written['seed']})")
        print(f"wrote {written['images_train']}: {written['num_train_images']} PNG images, "
              f"{len(written['class_names'])} classes ({', '.join(written['class_names'])})")
        print(f"wrote {written['images_test']}: {written['num_test_images']} PNG images")
    else:
        existed = Path(config.out).exists()
        splits = convert_to_npz(config.source, config.out)
        names = ", ".join(splits.class_names) if splits.class_names else "unknown"
        done = f"{config.out} holds this set already" if existed else f"wrote {config.out}"
        print(f"{done}: x_train {splits.x_train.shape}, x_test {splits.x_test.shape}, "
              f"{splits.num_classes} classes ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
