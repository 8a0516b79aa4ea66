"""``python -m eeg2image_tf <command> [options]``: the command menu (``eeg2image_tf.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
