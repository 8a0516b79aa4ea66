"""The end-to-end pipeline: every stage of the method in order (:mod:`.stages`), resumable, run by
:mod:`.pipeline`."""

from .pipeline import run_pipeline, summary_lines
from .stages import STAGES

__all__ = ["STAGES", "run_pipeline", "summary_lines"]
