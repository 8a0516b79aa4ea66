"""``python -m eeg2image_tf.pipeline``: the whole method, end to end, resumable stage by stage.

    python -m eeg2image_tf.pipeline --set char --profile demo --run runs/demo
    python -m eeg2image_tf.pipeline --set cvpr40-synthetic --data-root data-cvpr40 --run runs/cvpr40

Stages, each in its own sub-directory of the run: data preparation (a built-in set, digit, char or
cvpr40-synthetic, is written when missing; any other set is read from eeg/<set>/data.npz or
data.pkl and images/ under --data-root) -> ``encoder`` (train) -> selection of the best encoder
checkpoint -> ``image_classifier`` -> ``gan`` -> the GAN checkpoint best on images conditioned on
the training trials, as ``gan_selected`` (profiles that ask for it, e.g. quality; else the latest
checkpoint serves) -> ``generated`` images -> evaluation (``metrics.json``, figures) -> the
conditional-accuracy ``curve`` over the kept checkpoints (profiles that ask for it) ->
``saved_model``. ``pipeline.json`` records each finished stage with its outputs and wall time; a
rerun skips finished stages, and an interrupted stage resumes from its own checkpoints. Without
--profile a built-in set runs with its own profile (cvpr40-synthetic: cvpr40), any other with demo;
the profile used is printed and recorded in pipeline.json.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from .config import PipelineConfig, add_force, command_parser, parse_config
from .errors import run_main
from .runs import PIPELINE_STAGES


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = command_parser("pipeline", __doc__, PipelineConfig)
    add_force(parser, "reuse a run directory made with another config")
    parser.add_argument("--stages", nargs="+", choices=PIPELINE_STAGES,
                        help="run only these stages (default: all unfinished ones)")
    config, args = parse_config(parser, PipelineConfig, argv)
    # Imported after parsing, so that --help does not wait for TensorFlow.
    from .workflow import run_pipeline, summary_lines

    state = run_pipeline(config, force=args.force, stages=args.stages)
    print("\n".join(summary_lines(state, config)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
