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
