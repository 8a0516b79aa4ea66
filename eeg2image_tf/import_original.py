"""Convert the authors' TF 2.8 checkpoints into our format (weights only, plus ``model.json``).

    python -m eeg2image_tf.import_original --encoder path/to/ckpt-2420 --out runs/imported/encoder
    python -m eeg2image_tf.import_original --gan path/to/gan_ckpt_dir --out runs/imported/gan

The source may be a checkpoint prefix or a directory holding a ``checkpoint`` file. The result loads
with :func:`eeg2image_tf.checkpoints.load_encoder` / ``load_gan`` and gives the same numbers as
loading the original directly: after writing, every converted variable is read back and compared.
``model.json`` records the architecture sizes and where the weights came from (source checkpoint
name, SHA-256 of its files, its stored ``step``); optimizer state is not converted. The library
side is :mod:`eeg2image_tf.checkpoints.convert`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import ImportOriginalConfig, command_parser, parse_config
from .errors import run_main
from .runs import MODEL_FILE

DESCRIPTION = "Convert the authors' encoder or GAN checkpoint into this project's format."


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("import_original", DESCRIPTION, ImportOriginalConfig)
    config, _ = parse_config(parser, ImportOriginalConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config)
    from .checkpoints import import_original

    prefix = import_original(config)
    print(f"wrote {prefix} (and {Path(config.out) / MODEL_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
