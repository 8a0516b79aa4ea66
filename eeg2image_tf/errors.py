"""Exceptions with one-line messages that name the file and what was wrong, and how a command
reports them.

Every command runs in :func:`run_main`, which catches :class:`Eeg2ImageError`, prints its message as
a single line and exits with :data:`EXIT_BAD_INPUT`, so a user never has to read a traceback to
learn that an input is bad. A file system that refuses a read or a write (``OSError``: a full
disk, a permission, a path that is a file) is reported the same way, naming the path.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class Eeg2ImageError(Exception):
    """Base class: the message is one line naming the file/key and expected vs found."""


class DataError(Eeg2ImageError, ValueError):
    """An input data file (pickle, npz, image folder, image) is missing, malformed or unsafe."""


class UnsafePickleError(DataError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


class CheckpointError(Eeg2ImageError):
    """A checkpoint is missing, incomplete, or of another architecture."""


class ConfigError(Eeg2ImageError):
    """A run directory holds a config that differs from the one requested (see ``--force``)."""


class TrainingDivergedError(Eeg2ImageError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


class TrainingInterrupted(Exception):
    """Raised after SIGINT/SIGTERM once a checkpoint has been saved; carries the exit code.

    Not an :class:`Eeg2ImageError`: nothing was wrong with the inputs, and the exit code is the
    signal's (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main`` and turn our errors into one line on stderr and a non-zero exit code."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "eeg2image_tf"
    try:
        code = main(argv)
    except Eeg2ImageError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingInterrupted as exc:   # a training loop stopped by a signal, after saving
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or 0)
