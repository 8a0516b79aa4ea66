"""The command menu, and what every command shares.

Twelve commands, each a module of its own: ``python -m eeg2image_tf.<command>``, or through this menu
as ``python -m eeg2image_tf <command>`` and the console script ``eeg2image <command>``. Every command
has the same shape: :func:`command_parser` builds its parser (flags derived from its config
dataclass in :mod:`eeg2image_tf.config`), :func:`parse_config` turns the arguments into the typed
config, one library call does the work, and :func:`run_main` turns our errors into one line on
stderr and exit code 2.

Importing this module, or a command's, loads no TensorFlow: a command imports its library call only
after its arguments are parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Optional, Sequence

from .config import add_config_arguments, config_from_args
from .errors import Eeg2ImageError, TrainingInterrupted

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

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


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn our errors into one line on stderr and a non-zero exit code."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "eeg2image_tf"
    try:
        code = main(argv)
    except Eeg2ImageError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingInterrupted as exc:   # a training loop stopped by a signal, after saving
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or 0)


def command_parser(command: str, description: Optional[str],
                   config_class: Optional[type] = None) -> argparse.ArgumentParser:
    """The parser of ``python -m eeg2image_tf.<command>``, with a flag for every field of
    ``config_class`` (``--no-field`` too for booleans); the command adds its own extras after.

    A multi-line ``description`` (a module docstring) is printed as written, a one-line one wrapped.
    """
    quiet_tensorflow()
    formatter = argparse.RawDescriptionHelpFormatter if description and "\n" in description \
        else argparse.HelpFormatter
    parser = argparse.ArgumentParser(prog=f"python -m eeg2image_tf.{command}",
                                     description=description, formatter_class=formatter)
    if config_class is not None:
        add_config_arguments(parser, config_class)
    return parser


def add_force(parser: argparse.ArgumentParser,
              help_text: str = "accept a config that differs from the run's config.json") -> None:
    parser.add_argument("--force", action="store_true", help=help_text)


def parse_config(parser: argparse.ArgumentParser, config_class: type,
                 argv: Sequence[str] | None):
    """Parse ``argv``; return ``(config, args)``, the extras a command added being on ``args``."""
    args = parser.parse_args(argv)
    return config_from_args(config_class, args), args


# --------------------------------------------------------------------------------------------------
# The menu: python -m eeg2image_tf <command> and the eeg2image console script
# --------------------------------------------------------------------------------------------------

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
    module = importlib.import_module(f"{__package__}.{command}")
    return run_main(module.main, rest)
