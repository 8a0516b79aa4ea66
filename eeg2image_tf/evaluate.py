"""``python -m eeg2image_tf.evaluate``: IS/FID, conditional accuracy, encoder probes and figures.

    python -m eeg2image_tf.evaluate --run runs/gan
    python -m eeg2image_tf.evaluate --run runs/gan --images-dir runs/gan/generated \\
        --inception-graph classify_image_graph_def.pb --split-order class-sorted

Without ``--images-dir``, ``--per-class`` images per class (default 100, for speed) are generated in
memory; the paper's protocol is 5000 per class written by ``generate``. IS and FID need a local
Inception network (``--inception-graph``: the 2015 graph, paper-comparable; or
``--inception-weights``: Keras InceptionV3); without one they are reported as unavailable with the
reason. Conditional accuracy uses the image classifier run (``--classifier``, default
``<run>/../image_classifier``). Writes ``<run>/metrics.json`` (key ``evaluation``) and
``<run>/figures/{generated_grid,loss_curves,tsne}.png``, and prints a table.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import EvaluateConfig, command_parser, parse_config
from .errors import run_main
from .runs import METRICS_FILE


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("evaluate", __doc__, EvaluateConfig)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    config, args = parse_config(parser, EvaluateConfig, argv)
    # Imported here, not above: --help loads neither the data package (NumPy, OpenCV) nor
    # TensorFlow, and a wrong path is refused before TensorFlow loads.
    from .data.inputs import check_inputs

    check_inputs(config)
    from .evaluation import evaluate_run

    evaluate_run(config, show_progress=not args.quiet)
    print(f"\nmetrics: {config.run}/{METRICS_FILE} (key 'evaluation')")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
