"""``python -m eeg2image_tf.curve``: conditional accuracy and separability of every kept checkpoint.

    python -m eeg2image_tf.curve --run runs/quality/gan
    python -m eeg2image_tf.curve --run runs/gan --every 5 --per-class 100

Each checkpoint's generator makes ``--per-class`` images per class in memory (same conditions and
latents for every checkpoint), read by the image classifier (``--classifier``, default
``<run>/../image_classifier``). Writes ``<run>/curve.json``, ``<run>/figures/conditional_curve.png``
and TensorBoard scalars under ``<run>/tensorboard/curve``; a rerun evaluates only new checkpoints
(also after the run is moved or copied together with its classifier and training images).
Keep checkpoints for it: ``train_gan --max-to-keep`` (the quality profile keeps all).
``--conditions train`` conditions the images on the training trials instead of the test trials
(``<run>/curve_train.json``): its best step is a checkpoint chosen without the test set, which
``average_checkpoints --step`` turns into a run of its own.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import CurveConfig, command_parser, parse_config
from .errors import run_main
from .runs import curve_names


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("curve", __doc__, CurveConfig)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    config, args = parse_config(parser, CurveConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config)
    from .evaluation import evaluate_checkpoints

    evaluate_checkpoints(config, show_progress=not args.quiet)
    print(f"\ncurve: {config.run}/{curve_names(config.average, config.conditions)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
