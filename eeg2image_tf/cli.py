"""Shared plumbing of the ``python -m eeg2image_tf.<command>`` entry points."""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

from .errors import Eeg2ImageError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


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
    except Exception as exc:  # a training loop interrupted by a signal, after saving
        from .training.common import TrainingInterrupted

        if not isinstance(exc, TrainingInterrupted):
            raise
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or 0)


def parse_config(config_class, module: str, description: str | None,
                 argv: Sequence[str] | None, with_force: bool = True):
    """Parse ``argv`` into ``config_class`` (flags derived from its fields); return ``(config, args)``.

    ``with_force`` adds ``--force`` (accept a config that differs from the run's ``config.json``);
    extra arguments a command needs are on ``args``.
    """
    import argparse

    from .config import add_config_arguments, config_from_args

    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, config_class)
    if with_force:
        parser.add_argument("--force", action="store_true",
                            help="accept a config that differs from the run's config.json")
    args = parser.parse_args(argv)
    return config_from_args(config_class, args), args
