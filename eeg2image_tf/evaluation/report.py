"""The printed table of an evaluation: headline numbers, per-class scores and figure paths."""

from __future__ import annotations

from typing import Any


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def _score_text(section: dict[str, Any]) -> str:
    if not section.get("available"):
        return f"unavailable ({section.get('reason')})"
    return f"{section['mean']:.3f} +- {section['std']:.3f}"


# Short names of the feature spaces, for the table's first column.
SPACE_TITLES = {"gradient_histogram": "gradients", "inception": "Inception"}


def _realism_lines(realism: dict[str, Any], inception_reason: Any) -> list[str]:
    """Precision / recall and the diversity ratio of each feature space, with the real test
    images' scores (the ceiling) beside them."""
    lines = []
    for space, section in realism.items():
        title = SPACE_TITLES.get(space, space)
        if not section.get("available"):
            reason = section.get("reason")
            lines.append(f"  {'precision / recall (' + title + ')':<34} " +
                         ("unavailable (as above)" if reason == inception_reason else
                          f"unavailable: {reason}"))
            continue
        ceiling = section.get("real_test", {})
        lines.append(f"  {'precision / recall (' + title + ')':<34} "
                     f"{_number(section['precision'])} / {_number(section['recall'])}   "
                     f"(k={section['k']}, vs {section['real_count']} training images; real test "
                     f"images {_number(ceiling.get('precision'))} / "
                     f"{_number(ceiling.get('recall'))})")
        lines.append(f"  {'diversity ratio (' + title + ')':<34} "
                     f"{_number(section.get('diversity_ratio'))}   (real test images "
                     f"{_number(ceiling.get('diversity_ratio'))})")
        lines.append(f"  {'manifold distances (' + title + ')':<34} "
                     f"{_number(section.get('precision_distance'))} / "
                     f"{_number(section.get('recall_distance'))}   (medians in k-NN radii, 1 or "
                     f"less inside; real test images {_number(ceiling.get('precision_distance'))} "
                     f"/ {_number(ceiling.get('recall_distance'))})")
    return lines


def format_table(evaluation: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers, per-class scores and figure paths."""
    inception = evaluation["inception_score"]
    fid = evaluation["frechet_inception_distance"]
    classifier = evaluation["classifier"]
    encoder = evaluation["encoder"]
    generated = evaluation["generated"]
    lines = [f"Evaluation of {evaluation['config']['run']} "
             f"({generated['count']} images: {generated['source']})", ""]

    lines.append(f"  {'metric':<34} value")
    lines.append(f"  {'-' * 34} {'-' * 30}")
    if inception.get("available"):
        lines.append(f"  {'Inception Score (' + inception['split_order'] + ')':<34} "
                     f"{_score_text(inception)}   [{inception.get('backend')}]")
        other = inception["other_split_order"]
        lines.append(f"  {'Inception Score (' + other['split_order'] + ')':<34} "
                     f"{other['mean']:.3f} +- {other['std']:.3f}")
    else:
        lines.append(f"  {'Inception Score':<34} unavailable: {inception.get('reason')}")
    if fid.get("available"):
        fid_text = _number(fid.get("value"), 2)
    elif fid.get("reason") == inception.get("reason"):
        fid_text = "unavailable (as above)"
    else:
        fid_text = f"unavailable: {fid.get('reason')}"
    lines.append(f"  {'FID (pool_3, vs real test images)':<34} {fid_text}")
    if classifier.get("available"):
        lines.append(f"  {'conditional accuracy':<34} {_number(classifier['conditional_accuracy'])}"
                     f"   (chance {classifier['chance']:.3f})")
        lines.append(f"  {'conditional separability':<34} "
                     f"{_number(classifier['conditional_separability'])}")
        lines.append(f"  {'classifier score':<34} {_score_text(classifier['classifier_score'])}")
        if "classifier_fid" in classifier:
            lines.append(f"  {'classifier FID':<34} {_number(classifier['classifier_fid'], 2)}")
            lines.append(f"  {'classifier accuracy, real test':<34} "
                         f"{_number(classifier['real_accuracy'])}")
    else:
        lines.append(f"  {'conditional accuracy':<34} unavailable: {classifier.get('reason')}")
    realism = evaluation.get("realism", {})
    lines += _realism_lines(realism, inception.get("reason"))
    lines.append(f"  {'encoder k-means accuracy (test)':<34} {_number(encoder['kmeans_accuracy'])}")
    lines.append(f"  {'encoder kNN accuracy (test)':<34} {_number(encoder['knn_accuracy'])}")
    lines.append(f"  {'encoder linear probe (test)':<34} "
                 f"{_number(encoder['linear_probe_accuracy'])}")

    names = evaluation["class_names"]
    space = realism.get("gradient_histogram", {})
    if inception.get("available") or classifier.get("available") or space.get("available"):
        lines += ["", f"  {'class':<16} {'IS':>16} {'cond. accuracy':>15} {'classifier score':>18}"
                      f" {'precision':>9} {'recall':>7} {'diversity':>9} {'distance':>8}"]
        for name in names:
            scores = space.get("per_class", {}).get(name, {})
            is_text = _score_text(inception["per_class"][name]) if inception.get("available") \
                else "n/a"
            accuracy = classifier.get("per_class_accuracy", {}).get(name) \
                if classifier.get("available") else None
            class_score = classifier["classifier_score"].get("per_class", {}).get(name, {}) \
                if classifier.get("available") and classifier["classifier_score"].get("available") \
                else {}
            lines.append(f"  {name:<16} {is_text:>16} {_number(accuracy):>15} "
                         f"{_score_text(class_score) if class_score else 'n/a':>18} "
                         f"{_number(scores.get('precision')):>9} {_number(scores.get('recall')):>7} "
                         f"{_number(scores.get('diversity_ratio')):>9} "
                         f"{_number(scores.get('precision_distance')):>8}")
        lines.append("  (precision, recall, diversity, distance: gradient histograms, each class's "
                     "generated images against its training images, k=3; distance: their median "
                     "distance to the manifold, in k-NN radii)")

    figures_info = evaluation.get("figures") or {}
    if figures_info:
        lines += ["", f"  figures in {figures_info['dir']}:"]
        for key in ("generated_grid", "nearest_training", "loss_curves", "tsne"):
            if key in figures_info:
                lines.append(f"    {key:<16} {figures_info[key]}")
        for key, note in figures_info.get("notes", {}).items():
            lines.append(f"    {key:<16} not made: {note}")
    return "\n".join(lines)
