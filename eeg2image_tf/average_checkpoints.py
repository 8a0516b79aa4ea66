"""``python -m eeg2image_tf.average_checkpoints``: a GAN run whose generator averages checkpoints.

    python -m eeg2image_tf.average_checkpoints --run runs/quality/gan --last 5 --out runs/quality/gan_avg5
    python -m eeg2image_tf.evaluate --run runs/quality/gan_avg5
    python -m eeg2image_tf.average_checkpoints --run runs/quality/gan --step 4200 --last 1 \
        --out runs/quality/gan_4200

The generator's weights are the mean over the last ``--last`` kept checkpoints of ``--run``
(Polyak averaging of the GAN iterates; an addition, not in the original), ending at the checkpoint
of step ``--step`` (default: the newest). ``--step S --last 1`` is checkpoint S alone: e.g. the
best step of ``curve --conditions train``, a checkpoint chosen without the test set. The new run
directory holds ``config.json``, ``checkpoints/`` and ``average.json``, and works with
``generate``, ``evaluate``, ``curve`` and ``export``. ``curve --average K`` shows what averaging
does over training.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import AverageConfig, command_parser, parse_config
from .errors import run_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    config, _ = parse_config(command_parser("average_checkpoints", __doc__, AverageConfig),
                             AverageConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config)
    from .checkpoints import write_averaged_run

    record = write_averaged_run(config)
    steps = record["steps"]
    what = (f"the generator of step {steps[0]}" if len(steps) == 1 else
            f"generator averaged over steps {', '.join(str(step) for step in steps)}")
    print(f"{config.out}: {what} of {config.run}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
