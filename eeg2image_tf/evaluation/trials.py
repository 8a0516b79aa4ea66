"""What a set that records each trial's stimulus and subject adds to an evaluation: generated images
set beside the image each trial was recorded with (``figures/stimuli.png``), and the metrics per
subject (``metrics.json``: ``evaluation.per_subject``).

Per subject: the encoder's kNN accuracy on that subject's test trials (the neighbours come from
every subject's training trials) and the classifier's conditional accuracy on the images generated
from that subject's trials. In block-design recordings such as EEGCVPR40 a classifier can learn the
recording block rather than the percept (Li et al., IEEE TPAMI 2021); a spread between subjects, or
numbers far above what the literature finds on interleaved designs, are the first signs of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..data import load_images, preprocess, stimulus_images
from ..errors import DataError
from ..models import encoder_features
from ..models.inference import to_uint8
from ..runs import TEST_SPLIT, stimulus_roots
from .figures import save_generated_grid
from .images import PassResult
from .metrics import knn_accuracy

# Rows of the stimulus figure (one test trial of as many classes, spread over the classes) and the
# generated images shown beside each stimulus.
STIMULUS_ROWS = 8
IMAGES_PER_STIMULUS = 3
STIMULUS_LABEL_WIDTH = 300     # pixels: "percent, trial 123 (subject 6)" at the grid's font size


def stimulus_trials(sources, rows: int = STIMULUS_ROWS) -> tuple[int, ...]:
    """The test trials of the stimulus figure: one of each of ``rows`` classes spread evenly over
    the classes, row ``r`` taking its class's ``r``-th trial (so that rows show several subjects);
    none when the set records no stimuli or the run names no images."""
    if sources.splits.image_test is None or sources.images_root is None:
        return ()
    num_classes = len(sources.trials_by_class)
    classes = np.unique(np.linspace(0, num_classes - 1, min(rows, num_classes)).round().astype(int))
    return tuple(int(sources.trials_by_class[c][row % len(sources.trials_by_class[c])])
                 for row, c in enumerate(classes))


def save_stimulus_figure(sources, generated: PassResult, trials: Sequence[int],
                         destination: Path) -> Path:
    """One row per trial: its stimulus, then the first images generated from it (from
    ``generated.by_trial``), labelled with the class, trial and subject."""
    splits = sources.splits
    paths, index = stimulus_images([splits.image_test[t] for t in trials],
                                   stimulus_roots(sources.images_root, TEST_SPLIT),
                                   source="image_test")
    stimuli = to_uint8(load_images(paths), rounding="nearest")
    rows, labels = [], []
    for row, trial in enumerate(trials):
        made = (generated.by_trial or {}).get(trial, [])
        rows.append(np.stack([stimuli[index[row]]] + list(made)))
        label = f"{sources.class_names[int(splits.y_test[trial])]}, trial {trial}"
        if splits.subject_test is not None:
            label += f" (subject {int(splits.subject_test[trial])})"
        labels.append(label)
    return save_generated_grid(rows, labels, destination, columns=1 + IMAGES_PER_STIMULUS,
                               label_width=STIMULUS_LABEL_WIDTH)


def subject_section(sources, generated: PassResult, classifier_probs: Optional[np.ndarray]
                    ) -> dict[str, Any]:
    """Per subject of the test split: ``test_trials``, ``knn_accuracy`` and, when the images'
    trials and the classifier are known, ``generated_images`` and ``conditional_accuracy``."""
    splits = sources.splits
    if splits.subject_test is None:
        return {"available": False, "reason": f"{splits.source} records no subject per trial"}
    train_features = encoder_features(sources.encoder,
                                      preprocess(splits.x_train, method=sources.normalisation))
    subjects = np.asarray(splits.subject_test, dtype=np.int64)
    image_subjects = None
    if generated.source_trial is not None and classifier_probs is not None:
        image_subjects = subjects[generated.source_trial]
        correct = classifier_probs.argmax(axis=1) == generated.class_index
    per_subject: dict[str, Any] = {}
    for subject in np.unique(subjects).tolist():
        mine = subjects == subject
        entry: dict[str, Any] = {
            "test_trials": int(mine.sum()),
            "knn_accuracy": knn_accuracy(train_features, splits.y_train,
                                         sources.test_features[mine], splits.y_test[mine])}
        if image_subjects is not None:
            theirs = image_subjects == subject
            entry["generated_images"] = int(theirs.sum())
            entry["conditional_accuracy"] = float(correct[theirs].mean()) if theirs.any() else None
        per_subject[str(subject)] = entry
    section: dict[str, Any] = {"available": True, "subjects": per_subject,
                               "chance": 1.0 / len(sources.class_names)}
    if image_subjects is None:
        section["note"] = ("conditional accuracy per subject needs the image classifier and the "
                           "images' trials (generated in memory, or a folder with manifest.csv)")
    return section


def subject_lines(section: dict[str, Any]) -> str:
    """The per-subject numbers of :func:`subject_section` as a small table."""
    lines = ["", "  per subject",
             f"  {'subject':>8}  {'test trials':>11}  {'kNN acc.':>8}  {'cond. accuracy':>14}"]
    for subject, entry in section["subjects"].items():
        conditional = entry.get("conditional_accuracy")
        lines.append(f"  {subject:>8}  {entry['test_trials']:>11}  {entry['knn_accuracy']:>8.3f}  "
                     f"{'n/a' if conditional is None else f'{conditional:.3f}':>14}")
    lines.append(f"  chance {section['chance']:.3f}")
    return "\n".join(lines)


def stimulus_figure_or_note(sources, generated: PassResult, trials: Sequence[int],
                            destination: Path) -> tuple[Optional[Path], Optional[str]]:
    """:func:`save_stimulus_figure`, or the reason there is none."""
    if not trials:
        if sources.splits.image_test is None:
            return None, f"{sources.splits.source} records no stimulus per trial"
        return None, "the run names no image folder to find the stimuli in"
    if generated.by_trial is None:
        return None, "the generated images' trials are unknown (a folder without manifest.csv)"
    try:
        return save_stimulus_figure(sources, generated, trials, destination), None
    except DataError as exc:
        return None, str(exc)
