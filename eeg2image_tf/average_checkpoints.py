"""``python -m eeg2image_tf.average_checkpoints``: a GAN run whose generator averages checkpoints.

    python -m eeg2image_tf.average_checkpoints --run runs/quality/gan --last 5 --out runs/quality/gan_avg5
    python -m eeg2image_tf.evaluate --run runs/quality/gan_avg5

The generator's weights are the mean over the last ``--last`` kept checkpoints of ``--run``
(Polyak averaging of the GAN iterates; an addition, not in the original). The new run directory
holds ``config.json``, ``checkpoints/`` and ``average.json``, and works with ``generate``,
``evaluate``, ``curve`` and ``export``. ``curve --average K`` shows what averaging does over training.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .cli import quiet_tensorflow, run_main
from .config import AverageConfig, add_config_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eeg2image_tf.average_checkpoints",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, AverageConfig)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    config = config_from_args(AverageConfig, build_parser().parse_args(argv))

    from .checkpoints import write_averaged_run

    record = write_averaged_run(config)
    print(f"{config.out}: generator averaged over steps "
          f"{', '.join(str(step) for step in record['steps'])} of {config.run}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
