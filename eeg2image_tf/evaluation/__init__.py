"""Evaluation: metrics (:mod:`.metrics`), realism and variety (:mod:`.realism`: precision, recall,
diversity), Inception backends (:mod:`.inception`), the images an evaluation reads
(:mod:`.images`), its sections (:mod:`.sections`) and run (:mod:`.run`), the printed table
(:mod:`.report`), figures (:mod:`.figures`) and the checkpoint curve (:mod:`.curve`).

Nothing here imports the training loops; they import :mod:`.metrics` and :mod:`.figures`.
"""

from .curve import evaluate_checkpoints, every_kth, format_curve
from .images import (ImageChunk, PassResult, folder_chunks, generated_chunks,
                     list_generated_folder, real_chunks, run_pass)
from .report import format_table
from .run import EVALUATION_KEY, evaluate_run, make_figures, write_evaluation
from .sections import align_classifier, find_classifier_run, load_classifier_or_reason, unavailable

__all__ = [
    "EVALUATION_KEY", "ImageChunk", "PassResult", "align_classifier", "evaluate_checkpoints",
    "evaluate_run", "every_kth", "find_classifier_run", "folder_chunks", "format_curve", "format_table",
    "generated_chunks", "list_generated_folder", "load_classifier_or_reason", "make_figures",
    "real_chunks", "run_pass", "unavailable", "write_evaluation",
]
