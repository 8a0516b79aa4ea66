"""Prepare EEG data: build the synthetic sets, convert a ThoughtViz pickle to our safe ``.npz``, or
convert the EEGCVPR40 release.

    python -m eeg2image_tf.prepare_data --synthetic --set char --out data/
    python -m eeg2image_tf.prepare_data --synthetic --set cvpr40-synthetic --out data-cvpr40/
    python -m eeg2image_tf.prepare_data --convert data/eeg/char/data.pkl --out data/eeg/char/data.npz
    python -m eeg2image_tf.prepare_data --eegcvpr40 eeg_5_95_std.pth --splits block_splits_by_image_all.pth \
        --images imagenet/ --out data/ --set cvpr40

Pickles and ``.pth`` files are read with restricted unpicklers (arrays, tensors and plain containers
only); the ``.npz`` is read back with ``allow_pickle=False``. docs/datasets.md describes the format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import PrepareDataConfig, command_parser, flag_of
from .data import builtin_sizes, convert_eegcvpr40, convert_to_npz, write_builtin_set
from .errors import run_main

DESCRIPTION = ("Write the synthetic ThoughtViz-like sets, convert data.pkl to a safe .npz, or convert "
               "the EEGCVPR40 release (.pth) to a set with its stimulus images.")


def build_parser() -> argparse.ArgumentParser:
    # The two modes share few flags, so they are spelled out here rather than derived from
    # PrepareDataConfig's fields; config_from_arguments maps them onto it.
    parser = command_parser("prepare_data", DESCRIPTION)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--synthetic", action="store_true",
                      help="write a built-in set under --out: eeg/<set>/data.pkl (cvpr40-synthetic: "
                           "data.npz) and images/{train,test}/<Class>/*.png (and val/)")
    mode.add_argument("--convert", metavar="DATA_PKL",
                      help="read a ThoughtViz data.pkl safely and write it as .npz (--out)")
    mode.add_argument("--eegcvpr40", metavar="DATASET_PTH",
                      help="an EEGCVPR40 dataset file (eeg_5_95_std.pth, ...): write --out/eeg/<--set>/"
                           "data.npz and, with --images, --out/images/{train,val,test}/<wnid>/")
    parser.add_argument("--out", help="synthetic: data root (default: data); convert: the .npz to "
                                      "write (default: beside the pickle); eegcvpr40: data root")
    parser.add_argument("--set", dest="set_name", default=None,
                        help="synthetic set: digit, char (default; the objects set 'image' is real "
                             "data only) or cvpr40-synthetic (EEGCVPR40's shape); eegcvpr40: the new "
                             "set's name (required)")
    cvpr = parser.add_argument_group("--eegcvpr40 (semantics of the PerceiveLab loader)")
    cvpr.add_argument("--splits", metavar="SPLITS_PTH", help="block_splits_by_image_all.pth or _single.pth")
    cvpr.add_argument("--split-num", type=int, default=0, help="which split of the file (default 0)")
    cvpr.add_argument("--subject", type=int, default=0,
                      help="0 = every subject (default), 1-6 one subject; the split's indices then "
                           "count that subject's trials")
    cvpr.add_argument("--window", type=int, nargs=2, default=[20, 460], metavar=("START", "END"),
                      help="samples [START, END) of each trial (default 20 460: 440 samples)")
    cvpr.add_argument("--images", metavar="ROOT", help="ImageNet-style root holding <wnid>/<name>.JPEG")
    parser.add_argument("--seed", type=int, default=45)
    sizes = ", ".join(f"{name} {builtin_sizes(name)['n_train']}/{builtin_sizes(name)['n_test']}/"
                      f"{builtin_sizes(name)['images_per_class']}/"
                      f"{builtin_sizes(name)['test_images_per_class']}"
                      for name in ("char", "cvpr40-synthetic"))
    sized = parser.add_argument_group(f"--synthetic sizes (defaults, in this order: {sizes})")
    sized.add_argument("--n-train", type=int, help="EEG training trials")
    sized.add_argument("--n-test", type=int, help="EEG test trials (cvpr40-synthetic: validation too)")
    sized.add_argument("--images-per-class", type=int, help="training images per class")
    sized.add_argument("--test-images-per-class", type=int,
                       help="test images per class (cvpr40-synthetic: validation too)")
    return parser


def config_from_arguments(args: argparse.Namespace,
                          parser: Optional[argparse.ArgumentParser] = None) -> PrepareDataConfig:
    if args.eegcvpr40:
        missing = [flag for flag, value in (("--splits", args.splits), ("--out", args.out),
                                            ("--set", args.set_name)) if not value]
        if missing:
            (parser or build_parser()).error(f"--eegcvpr40 needs {', '.join(missing)}")
        return PrepareDataConfig(mode="eegcvpr40", out=args.out, set_name=args.set_name,
                                 source=args.eegcvpr40, splits_file=args.splits,
                                 split_num=args.split_num, subject=args.subject,
                                 window=tuple(args.window), images=args.images)
    if args.synthetic:
        set_name = args.set_name or "char"
        sizes = {key: getattr(args, key) if getattr(args, key) is not None else default
                 for key, default in builtin_sizes(set_name).items()}
        return PrepareDataConfig(mode="synthetic", out=args.out or "data", set_name=set_name,
                                 seed=args.seed, **sizes)
    out = args.out or str(Path(args.convert).with_suffix(".npz"))
    return PrepareDataConfig(mode="convert", out=out, source=args.convert)


# Fields whose flag is not named after them (a bad value's error line names the flag).
FIELD_FLAGS = {"set_name": "--set", "splits_file": "--splits"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    config = config_from_arguments(parser.parse_args(argv), parser).validate(
        label=lambda name: FIELD_FLAGS.get(name, flag_of(name)))
    if config.mode == "eegcvpr40":
        written = convert_eegcvpr40(config.source, config.splits_file, config.out, config.set_name,
                                    split_num=config.split_num, subject=config.subject,
                                    window=config.window, images=config.images)
        shapes = ", ".join(f"x_{part} {shape}" for part, shape in written["shapes"].items())
        print(f"wrote {written['eeg']}: {shapes}, {written['num_classes']} classes, subject(s) "
              f"{', '.join(map(str, written['subjects']))}")
        if written["images"]:
            counts = ", ".join(f"{part} {n}" for part, n in written["num_images"].items())
            print(f"stimuli in {config.out}/images/{{{','.join(written['images'])}}}: {counts} images "
                  f"({written['images_added']} added)")
    elif config.mode == "synthetic":
        written = write_builtin_set(config.out, set_name=config.set_name, seed=config.seed,
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
