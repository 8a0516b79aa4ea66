"""``python -m eeg2image_tf.train_image_classifier``: the domain classifier that scores generated images.

    python -m eeg2image_tf.train_image_classifier --images data/images --run runs/image_classifier

Trains a small CNN on ``<images>/train/<Class>/*`` and tests it on ``<images>/test/<Class>/*``; the run
gets ``config.json``, ``classes.json``, ``checkpoints/``, ``tensorboard/`` and ``metrics.json`` (test
accuracy, overall and per class). Rerunning the same command resumes; a larger ``--epochs`` extends
a finished run. Ctrl-C (or SIGTERM) saves a checkpoint after the current epoch and exits.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import ImageClassifierConfig, add_force, command_parser, parse_config
from .errors import run_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("train_image_classifier", __doc__, ImageClassifierConfig)
    add_force(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (epoch lines are still printed)")
    config, args = parse_config(parser, ImageClassifierConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config, force=args.force)
    from .training.image_classifier import train_image_classifier

    # A signal stops training with TrainingInterrupted after a checkpoint; run_main reports it.
    result = train_image_classifier(config, force=args.force, progress=args.progress)
    worst = min(result["per_class_accuracy"].items(), key=lambda item: item[1])
    print(f"image classifier: epoch {result['epoch']}, test accuracy {result['test_accuracy']:.4f} "
          f"(lowest class {worst[0]}: {worst[1]:.4f}); checkpoint {result['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
