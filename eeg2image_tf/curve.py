"""``python -m eeg2image_tf.curve``: conditional accuracy and separability of every kept checkpoint.

    python -m eeg2image_tf.curve --run runs/quality/gan
    python -m eeg2image_tf.curve --run runs/gan --every 5 --per-class 100

Each checkpoint's generator makes ``--per-class`` images per class in memory (same conditions and
latents for every checkpoint), read by the image classifier (``--classifier``, default
``<run>/../image_classifier``). Writes ``<run>/curve.json``, ``<run>/figures/conditional_curve.png``
and TensorBoard scalars under ``<run>/tensorboard/curve``; a rerun evaluates only new checkpoints.
Keep checkpoints for it: ``train_gan --max-to-keep`` (the quality profile keeps all).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .cli import quiet_tensorflow, run_main
from .config import CurveConfig, add_config_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eeg2image_tf.curve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, CurveConfig)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    config = config_from_args(CurveConfig, args)

    from .checkpoint_curve import curve_names, evaluate_checkpoints

    evaluate_checkpoints(config, show_progress=not args.quiet)
    print(f"\ncurve: {config.run}/{curve_names(config.average)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
