"""``python -m eeg2image_tf.train_gan``: train the EEG-conditioned DCGAN (docs/method.md section 4).

    python -m eeg2image_tf.train_gan --data data/eeg/char/data.pkl --images data/images \\
        --encoder runs/encoder_char --run runs/gan_char

``--images`` is the image root (its ``train/`` folder is used) or the training folder itself.
``--encoder`` is an encoder run, checkpoint directory or prefix, ours or the authors' original; its
features of the training trials are computed once and cached in ``<run>/conditions.npz``.

Defaults are the original's: latent 128 ~ U(-1, 1), Adam 3e-4 (beta_1 0.2, beta_2 0.5), batch 128,
300 epochs, DiffAugment ``color,translation``, mode-seeking weight 1.0, seed 45. Rerunning the same
command resumes from the latest checkpoint (step, weights, optimizer state, position in the epoch);
a larger ``--epochs`` or ``--max-steps`` extends a finished run. Ctrl-C (or SIGTERM) saves a
checkpoint after the current step and exits.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import GanTrainConfig, add_force, command_parser, parse_config
from .errors import run_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("train_gan", __doc__, GanTrainConfig)
    add_force(parser)
    config, args = parse_config(parser, GanTrainConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config, force=args.force)
    from .training.gan import train_gan

    result = train_gan(config, force=args.force)
    ms_per_step = result.get("ms_per_step")
    speed = f"{ms_per_step:.0f} ms/step" if ms_per_step is not None else "no step run"
    print(f"gan: step {result['step']} (epoch {result['epoch']:.2f}, {result['stopped']}), "
          f"d_hinge {result.get('gan/d_hinge', float('nan')):.4f}, "
          f"g_total {result.get('gan/g_total', float('nan')):.4f}, {speed}; "
          f"checkpoint {result['checkpoint']}; samples {result['samples']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
