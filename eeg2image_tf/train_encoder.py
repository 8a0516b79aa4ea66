"""``python -m eeg2image_tf.train_encoder``: train the EEG encoder with the semi-hard triplet loss.

    python -m eeg2image_tf.train_encoder --data data/eeg/char/data.pkl --run runs/encoder_char

Defaults are the original's (Adam 3e-4, batch 256, 3000 epochs, seed 45, a checkpoint every 10
epochs). Rerunning the same command resumes from the latest checkpoint; a larger ``--epochs`` extends
a finished run. Ctrl-C (or SIGTERM) saves a checkpoint after the current epoch and exits.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .cli import quiet_tensorflow, run_main
from .config import EncoderTrainConfig, add_config_arguments, config_from_args
from .training.encoder import train_encoder

__all__ = ["main", "train_encoder"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m eeg2image_tf.train_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, EncoderTrainConfig)
    parser.add_argument("--force", action="store_true",
                        help="accept a config that differs from the run's config.json")
    args = parser.parse_args(argv)
    config = config_from_args(EncoderTrainConfig, args)
    result = train_encoder(config, force=args.force)
    best = result.get("kmeans_acc_best")
    best_text = f"{best:.4f} (epoch {result.get('kmeans_acc_best_epoch')})" if best is not None else "n/a"
    print(f"encoder: epoch {result['epoch']} ({result['stopped']}), best test k-means accuracy "
          f"{best_text}; latest checkpoint {result['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
