"""The command menu: ``python -m eeg2image_tf <command> [options]`` and the console script
``eeg2image <command> [options]``.

Twelve commands, each a module of its own (``python -m eeg2image_tf.<command>``). Every command has
the same shape: :func:`~eeg2image_tf.config.command_parser` builds its parser (flags derived from
its config dataclass in :mod:`eeg2image_tf.config`), :func:`~eeg2image_tf.config.parse_config`
turns the arguments into the typed config, one library call does the work, and
:func:`~eeg2image_tf.errors.run_main` turns our errors into one line on stderr and exit code 2.

Importing this module, or a command's, loads no TensorFlow: the menu imports the command it runs
by name, and a command imports its library call only after its arguments are parsed, so ``--help``
answers at once.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from .errors import EXIT_BAD_INPUT, run_main

# The menu, in the order of the method: (command, what it does).
COMMANDS = (
    ("prepare_data", "write the built-in synthetic dataset, or convert data.pkl to .npz"),
    ("train_encoder", "train the EEG encoder with the semi-hard triplet loss"),
    ("select_encoder", "pick the encoder checkpoint with the best k-means accuracy"),
    ("train_image_classifier", "train the image classifier that scores generated images"),
    ("train_gan", "train the EEG-conditioned GAN"),
    ("generate", "write per-class images of a GAN run"),
    ("evaluate", "IS/FID, conditional accuracy, encoder probes and figures of a GAN run"),
    ("curve", "conditional accuracy of every kept checkpoint of a GAN run"),
    ("average_checkpoints", "a GAN run whose generator averages kept checkpoints"),
    ("export", "a SavedModel from raw EEG to images"),
    ("import_original", "convert the authors' TF 2.8 checkpoints to ours"),
    ("pipeline", "all of the above, end to end"),
)


def _menu_text() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    lines = ["usage: eeg2image <command> [options]   (or python -m eeg2image_tf <command>)", "",
             "EEG2Image in TensorFlow 2 / Keras 3. Commands:", ""]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS]
    lines += ["", "eeg2image <command> --help lists the command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``eeg2image <command> [options]``: run one of :data:`COMMANDS` with the options after it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_menu_text())
        return 0 if argv else EXIT_BAD_INPUT
    command, rest = argv[0], argv[1:]
    if command not in dict(COMMANDS):
        print(f"error: unknown command {command!r}; one of: {', '.join(n for n, _ in COMMANDS)}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    # By name: the menu loads only the command it runs.
    module = importlib.import_module(f"eeg2image_tf.{command}")
    return run_main(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
