"""The end-to-end pipeline: every stage of the method in order, resumable (:mod:`.pipeline`)."""

from .pipeline import STAGES, run_pipeline, summary_lines

__all__ = ["STAGES", "run_pipeline", "summary_lines"]
