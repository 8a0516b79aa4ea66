"""``python -m eeg2image_tf.export``: a self-contained SavedModel from raw EEG trials to images.

    python -m eeg2image_tf.export --run runs/gan --out runs/gan/saved_model
    python -m eeg2image_tf.export --original-encoder ckpt/ckpt-2420 --original-gan gan/ckpt-N --out DIR

The library side is :mod:`eeg2image_tf.serving.export` (sources, signature.json, README.txt, the
atomic swap into ``--out``); the signatures are :mod:`eeg2image_tf.serving.module`'s.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import ExportConfig, command_parser, parse_config
from .errors import run_main
from .runs import EXPORT_README

DESCRIPTION = ("Export a GAN run (--run) or the published checkpoints (--original-encoder, "
               "--original-gan) as a SavedModel: raw EEG trials in, uint8 images out.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    config, _ = parse_config(command_parser("export", DESCRIPTION, ExportConfig), ExportConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config)
    from .serving.export import export_from_run

    out_dir = export_from_run(config)
    print(f"SavedModel written to {out_dir} (see {out_dir / EXPORT_README})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
