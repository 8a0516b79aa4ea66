"""``python -m eeg2image_tf.train_encoder``: train the EEG encoder with the semi-hard triplet loss.

    python -m eeg2image_tf.train_encoder --data data/eeg/char/data.pkl --run runs/encoder_char

Defaults are the original's (Adam 3e-4, batch 256, 3000 epochs, seed 45, a checkpoint every 10
epochs). Rerunning the same command resumes from the latest checkpoint; a larger ``--epochs`` extends
a finished run. Ctrl-C (or SIGTERM) saves a checkpoint after the current epoch and exits.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import EncoderTrainConfig, add_force, command_parser, parse_config
from .errors import run_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("train_encoder", __doc__, EncoderTrainConfig)
    add_force(parser)
    config, args = parse_config(parser, EncoderTrainConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config, force=args.force)
    from .training.encoder import train_encoder

    result = train_encoder(config, force=args.force)
    best = result.get("kmeans_acc_best")
    best_text = f"{best:.4f} (epoch {result.get('kmeans_acc_best_epoch')})" if best is not None else "n/a"
    print(f"encoder: epoch {result['epoch']} ({result['stopped']}), best test k-means accuracy "
          f"{best_text}; latest checkpoint {result['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
