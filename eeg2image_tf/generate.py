"""``python -m eeg2image_tf.generate``: per-class evaluation images from a GAN run.

docs/method.md section 5.

    python -m eeg2image_tf.generate --run runs/gan --out runs/gan/generated
    python -m eeg2image_tf.generate --gan runs/original_gan \\
        --encoder checkpoints/thoughtviz_object_encoder --data data/eeg/image/data.pkl \\
        --images data/images --out generated --per-class 5000

Every test trial's encoder feature, cycled in trial order, conditions ``--per-class`` images of its
class, each with its own latent vector; the images depend only on ``--seed``. Writes
``<out>/<Class>/<Class>_<k>.jpg`` and ``<out>/manifest.csv`` (file, class, class_index, source_trial).
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import GenerateConfig, add_force, command_parser, parse_config
from .errors import run_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("generate", __doc__, GenerateConfig)
    add_force(parser, "write into an output folder made with another config")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    config, args = parse_config(parser, GenerateConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config, force=args.force)
    from .generation import generate_from_run

    manifest = generate_from_run(config, force=args.force, show_progress=not args.quiet)
    print(f"wrote {manifest.count} images ({len(manifest.class_names)} classes x "
          f"{config.per_class}) to {manifest.out_dir} in {manifest.seconds:.1f} s "
          f"({manifest.images_per_second:.0f} images/s; start-up {manifest.startup_seconds:.1f} s)")
    print(f"manifest: {manifest.path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
