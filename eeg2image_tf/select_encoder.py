"""``python -m eeg2image_tf.select_encoder``: pick the encoder checkpoint with the best k-means accuracy.

    python -m eeg2image_tf.select_encoder --run runs/encoder_char

Scores every checkpoint of the run (test-set features -> KMeans(10, random_state=45) -> Hungarian
clustering accuracy), prints the table, and writes ``best_checkpoint.json``, ``tsne.png`` and the
TensorBoard projector files of the best checkpoint into the run.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import SelectEncoderConfig, command_parser, parse_config
from .errors import run_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("select_encoder", __doc__, SelectEncoderConfig)
    config, _ = parse_config(parser, SelectEncoderConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config)
    from .training.selection import select_encoder

    select_encoder(config)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
