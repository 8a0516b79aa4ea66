"""The printed table of an evaluation: headline numbers, per-class scores and figure paths."""

from __future__ import annotations

from typing import Any


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def _score_text(section: dict[str, Any]) -> str:
    if not section.get("available"):
        return f"unavailable ({section.get('reason')})"
    return f"{section['mean']:.3f} +- {section['std']:.3f}"


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
    lines.append(f"  {'encoder k-means accuracy (test)':<34} {_number(encoder['kmeans_accuracy'])}")
    lines.append(f"  {'encoder kNN accuracy (test)':<34} {_number(encoder['knn_accuracy'])}")
    lines.append(f"  {'encoder linear probe (test)':<34} "
                 f"{_number(encoder['linear_probe_accuracy'])}")

    names = evaluation["class_names"]
    if inception.get("available") or classifier.get("available"):
        lines += ["", f"  {'class':<16} {'IS':>16} {'cond. accuracy':>15} {'classifier score':>18}"]
        for name in names:
            is_text = _score_text(inception["per_class"][name]) if inception.get("available") \
                else "n/a"
            accuracy = classifier.get("per_class_accuracy", {}).get(name) \
                if classifier.get("available") else None
            class_score = classifier["classifier_score"].get("per_class", {}).get(name, {}) \
                if classifier.get("available") and classifier["classifier_score"].get("available") \
                else {}
            lines.append(f"  {name:<16} {is_text:>16} {_number(accuracy):>15} "
                         f"{_score_text(class_score) if class_score else 'n/a':>18}")

    figures_info = evaluation.get("figures") or {}
    if figures_info:
        lines += ["", f"  figures in {figures_info['dir']}:"]
        for key in ("generated_grid", "loss_curves", "tsne"):
            if key in figures_info:
                lines.append(f"    {key:<15} {figures_info[key]}")
        for key, note in figures_info.get("notes", {}).items():
            lines.append(f"    {key:<15} not made: {note}")
    return "\n".join(lines)
