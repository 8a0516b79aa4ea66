"""Exceptions with one-line messages that name the file and what was wrong.

Entry points catch :class:`Eeg2ImageError`, print its message as a single line and exit non-zero,
so a user never has to read a traceback to learn that an input is bad.
"""


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
