"""``python -m eeg2image_tf.pipeline``: the whole method, end to end, resumable stage by stage.

    python -m eeg2image_tf.pipeline --set char --profile demo --run runs/demo

Stages, each in its own sub-directory of the run: data preparation (built-in synthetic set when the
set is missing) -> ``encoder`` (train) -> selection of the best encoder checkpoint ->
``image_classifier`` -> ``gan`` -> ``generated`` images -> evaluation (``metrics.json``, figures) ->
the conditional-accuracy ``curve`` over the kept checkpoints (profiles that ask for it) ->
``saved_model``. ``pipeline.json`` records each finished stage with its outputs and wall time; a rerun
skips finished stages, and an interrupted stage resumes from its own checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .cli import quiet_tensorflow, run_main
from .config import (PROFILES, PipelineConfig, add_config_arguments, config_from_args,
                     prepare_run_dir)
from .errors import ConfigError, DataError
from .io_utils import atomic_write_json, read_json

SYNTHETIC_SETS = ("char", "digit")
STATE_FILE = "pipeline.json"


@dataclasses.dataclass(frozen=True)
class PipelinePaths:
    """Where every stage reads and writes, derived from the pipeline config."""

    run: Path
    data_pkl: Path
    images: Path
    encoder_run: Path
    classifier_run: Path
    gan_run: Path
    generated: Path
    saved_model: Path

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "PipelinePaths":
        run = Path(config.run)
        root = Path(config.data_root)
        return cls(run=run, data_pkl=root / "eeg" / config.set / "data.pkl", images=root / "images",
                   encoder_run=run / "encoder", classifier_run=run / "image_classifier",
                   gan_run=run / "gan", generated=run / "generated", saved_model=run / "saved_model")


# Stages whose config has a ``precision`` field.
PRECISION_STAGES = ("gan", "generate", "evaluate", "curve")


# The config class of each stage that takes settings, and the fields the pipeline itself sets
# (paths and the seed: one per pipeline). The data stage takes the built-in set's sizes.
_DATA_SETTINGS = {"n_train": int, "n_test": int, "images_per_class": int,
                  "test_images_per_class": int}
_PIPELINE_FIELDS = ("data", "images", "encoder", "run", "out", "seed", "classifier", "encoder_run",
                    "images_dir", "inception_graph", "inception_weights")


def _stage_config_class(stage: str):
    from . import config as configs

    return {"encoder": configs.EncoderTrainConfig, "select": configs.SelectEncoderConfig,
            "classifier": configs.ImageClassifierConfig, "gan": configs.GanTrainConfig,
            "generate": configs.GenerateConfig, "evaluate": configs.EvaluateConfig,
            "curve": configs.CurveConfig}.get(stage)


def _convert_setting(text: str, tp: Any, setting: str) -> Any:
    import typing

    from .config import _unwrap_optional

    base, optional = _unwrap_optional(tp)
    if optional and text.lower() == "none":
        return None
    try:
        if base is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if base in (int, float, str):
            return base(text)
    except ValueError:
        raise ConfigError(f"--set-stage {setting}: {text!r} is not a {base.__name__}") from None
    raise ConfigError(f"--set-stage {setting}: a {typing.get_origin(base) or base} field cannot "
                      "be set here")


def stage_settings(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """``--set-stage`` as ``{stage: {field: value}}``, each value converted to its field's type.

    Refuses (ConfigError, one line) an unknown stage or field, a value of the wrong type, and the
    fields the pipeline sets itself.
    """
    import dataclasses
    import typing

    settings: dict[str, dict[str, Any]] = {}
    for setting in config.set_stage:
        key, equals, text = setting.partition("=")
        stage, dot, field = key.strip().partition(".")
        field = field.replace("-", "_")
        if not equals or not dot or not stage or not field:
            raise ConfigError(f"--set-stage {setting!r}: expected STAGE.FIELD=VALUE, e.g. "
                              "gan.batch_size=16")
        if stage == "data":
            types = _DATA_SETTINGS
        elif (cls := _stage_config_class(stage)) is not None:
            hints = typing.get_type_hints(cls)
            types = {f.name: hints[f.name] for f in dataclasses.fields(cls)
                     if f.name not in _PIPELINE_FIELDS}
        else:
            raise ConfigError(f"--set-stage {setting}: unknown stage {stage!r}; stages: data "
                              "encoder select classifier gan generate evaluate curve")
        if field in _PIPELINE_FIELDS:
            raise ConfigError(f"--set-stage {setting}: the pipeline sets {stage}.{field} itself")
        if field not in types:
            raise ConfigError(f"--set-stage {setting}: {stage} has no setting {field!r}")
        settings.setdefault(stage, {})[field] = _convert_setting(text.strip(), types[field], setting)
    return settings


def _stage_overrides(config: PipelineConfig, stage: str) -> dict[str, Any]:
    """The profile's settings of ``stage`` and ``--set-stage``'s over them, with ``precision`` made
    concrete.

    A profile may ask for ``precision="auto"``: bfloat16 where this CPU runs it natively, else
    float32; ``--precision`` other than ``profile`` overrides the profile in every such stage (a
    stage's own ``--set-stage STAGE.precision=...`` wins over both).
    """
    from .precision import bfloat16_supported, check_precision

    overrides = dict(PROFILES[config.profile].get(stage, {}))
    own = stage_settings(config).get(stage, {})
    if stage in PRECISION_STAGES:
        if config.precision != "profile":
            overrides["precision"] = check_precision(config.precision)
        elif overrides.get("precision") == "auto":
            overrides["precision"] = "mixed_bfloat16" if bfloat16_supported() else "float32"
    overrides.update(own)
    if overrides.get("precision") == "auto":
        overrides["precision"] = "mixed_bfloat16" if bfloat16_supported() else "float32"
    return overrides


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    """Serialise data preparation between two pipelines that share a data root."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------
# Stages: each returns a dict of its outputs (paths, headline numbers) for pipeline.json
# --------------------------------------------------------------------------------------------------

def stage_data(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    with _exclusive_lock(Path(config.data_root) / ".prepare.lock"):
        have_eeg = paths.data_pkl.exists()
        have_images = (paths.images / "train").is_dir() and (paths.images / "test").is_dir()
        if have_eeg and have_images:
            if config.set in SYNTHETIC_SETS:
                from .data.synthetic import check_synthetic_images
                from .data.thoughtviz import CLASS_NAMES

                # A data root built by an older renderer must not be trained on silently.
                for split in ("train", "test"):
                    check_synthetic_images(paths.images / split, CLASS_NAMES[config.set])
            return {"data": str(paths.data_pkl), "images": str(paths.images), "prepared": False}
        if config.set not in SYNTHETIC_SETS:
            missing = paths.data_pkl if not have_eeg else paths.images
            raise DataError(f"{missing}: not found; the '{config.set}' set has no built-in version, "
                            "place the ThoughtViz files there (see data/README.md)")
        from .data import write_synthetic_set

        print(f"[pipeline] preparing the built-in '{config.set}' set in {config.data_root}")
        write_synthetic_set(config.data_root, set_name=config.set, seed=config.seed,
                            **_stage_overrides(config, "data"))
    return {"data": str(paths.data_pkl), "images": str(paths.images), "prepared": True}


def stage_encoder(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import EncoderTrainConfig
    from .training.encoder import train_encoder

    encoder_config = EncoderTrainConfig(data=str(paths.data_pkl), run=str(paths.encoder_run),
                                        seed=config.seed, **_stage_overrides(config, "encoder"))
    result = train_encoder(encoder_config)
    return {"run": str(paths.encoder_run), **_headline(result)}


def stage_select(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import SelectEncoderConfig
    from .training.encoder import select_encoder

    select_config = SelectEncoderConfig(run=str(paths.encoder_run),
                                        **_stage_overrides(config, "select"))
    result = select_encoder(select_config)
    return {"best_checkpoint": result.get("best_checkpoint"), "kmeans_accuracy": result.get("accuracy"),
            "tsne": str(paths.encoder_run / "tsne.png")}


def stage_classifier(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import ImageClassifierConfig
    from .training.image_classifier import train_image_classifier

    classifier_config = ImageClassifierConfig(images=str(paths.images), run=str(paths.classifier_run),
                                              seed=config.seed,
                                              **_stage_overrides(config, "classifier"))
    result = train_image_classifier(classifier_config)
    return {"run": str(paths.classifier_run), **_headline(result)}


def stage_gan(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import GanTrainConfig
    from .training.gan import train_gan

    gan_config = GanTrainConfig(data=str(paths.data_pkl), images=str(paths.images / "train"),
                                encoder=str(paths.encoder_run), run=str(paths.gan_run),
                                seed=config.seed, **_stage_overrides(config, "gan"))
    result = train_gan(gan_config)
    return {"run": str(paths.gan_run), "samples": str(paths.gan_run / "samples" / "latest.png"),
            "precision": gan_config.precision, **_headline(result)}


def stage_generate(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import GenerateConfig
    from .generation import generate_from_run

    generate_config = GenerateConfig(run=str(paths.gan_run), out=str(paths.generated),
                                     seed=config.seed, **_stage_overrides(config, "generate"))
    generate_from_run(generate_config)
    return {"out": str(paths.generated), "manifest": str(paths.generated / "manifest.csv")}


def stage_evaluate(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import EvaluateConfig
    from .evaluation import evaluate_run

    evaluate_config = EvaluateConfig(
        run=str(paths.gan_run), images_dir=str(paths.generated),
        classifier=str(paths.classifier_run), encoder_run=str(paths.encoder_run),
        inception_graph=config.inception_graph, inception_weights=config.inception_weights,
        **_stage_overrides(config, "evaluate"))
    result = evaluate_run(evaluate_config)
    return {"metrics": str(paths.gan_run / "metrics.json"), "figures": str(paths.gan_run / "figures"),
            **_headline(result)}


def stage_curve(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    """The conditional-accuracy curve over the GAN's kept checkpoints, in profiles that ask for it."""
    if "curve" not in PROFILES[config.profile] and "curve" not in stage_settings(config):
        return {"skipped": f"the {config.profile} profile draws no curve "
                           "(python -m eeg2image_tf.curve does)"}
    from .checkpoint_curve import curve_names, evaluate_checkpoints
    from .config import CurveConfig

    curve_config = CurveConfig(run=str(paths.gan_run), classifier=str(paths.classifier_run),
                               seed=config.seed, **_stage_overrides(config, "curve"))
    result = evaluate_checkpoints(curve_config)
    return {"curve": str(paths.gan_run / curve_names(curve_config.average)[0]),
            "figure": result["figure"], **_headline(result)}


def stage_export(config: PipelineConfig, paths: PipelinePaths) -> dict[str, Any]:
    from .config import ExportConfig
    from .export import export_from_run

    export_from_run(ExportConfig(out=str(paths.saved_model), run=str(paths.gan_run)))
    return {"saved_model": str(paths.saved_model)}


STAGES: tuple[tuple[str, Callable[[PipelineConfig, PipelinePaths], dict[str, Any]]], ...] = (
    ("data", stage_data),
    ("encoder", stage_encoder),
    ("select_encoder", stage_select),
    ("image_classifier", stage_classifier),
    ("gan", stage_gan),
    ("generate", stage_generate),
    ("evaluate", stage_evaluate),
    ("curve", stage_curve),
    ("export", stage_export),
)


def _headline(result: Any) -> dict[str, Any]:
    """Keep the scalar numbers of a stage's result (the full metrics live in the stage's run)."""
    if not isinstance(result, dict):
        return {}
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            flat[key] = value
    return flat


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------

def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    return read_json(path) if path.exists() else {"stages": {}}


def run_pipeline(config: PipelineConfig, force: bool = False,
                 stages: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run every unfinished stage in order; return the pipeline state (also in ``pipeline.json``)."""
    if config.profile not in PROFILES:
        raise ConfigError(f"unknown profile {config.profile!r}: use {', '.join(PROFILES)}")
    stage_settings(config)          # a wrong --set-stage fails before any stage runs
    run_dir = prepare_run_dir(config, config.run, force=force)
    paths = PipelinePaths.from_config(config)
    state = load_state(run_dir)
    state.setdefault("stages", {})
    started = time.monotonic()
    for name, stage in STAGES:
        if stages is not None and name not in stages:
            continue
        if state["stages"].get(name, {}).get("done"):
            print(f"[pipeline] {name}: done already, skipping")
            continue
        print(f"[pipeline] {name}: starting")
        stage_start = time.monotonic()
        outputs = stage(config, paths)
        seconds = time.monotonic() - stage_start
        state["stages"][name] = {"done": True, "seconds": round(seconds, 1), **outputs}
        atomic_write_json(run_dir / STATE_FILE, state)
        print(f"[pipeline] {name}: finished in {seconds:.0f} s")
    state["last_run_seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(run_dir / STATE_FILE, state)
    return state


def summary_lines(state: dict[str, Any], config: PipelineConfig) -> list[str]:
    stages = state.get("stages", {})
    paths = PipelinePaths.from_config(config)

    def get(stage: str, key: str, default: Any = "n/a") -> Any:
        return stages.get(stage, {}).get(key, default)

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        "",
        f"EEG2Image pipeline summary ({config.profile} profile, '{config.set}' set)",
        f"  encoder k-means accuracy (test) : {fmt(get('select_encoder', 'kmeans_accuracy'))}",
        f"  image classifier test accuracy  : {fmt(get('image_classifier', 'test_accuracy'))}",
        f"  GAN iterations                  : {get('gan', 'step')} at "
        f"{fmt(get('gan', 'ms_per_step'))} ms ({get('gan', 'precision')})",
        f"  conditional accuracy            : {fmt(get('evaluate', 'conditional_accuracy'))}",
        f"  conditional separability        : {fmt(get('evaluate', 'conditional_separability'))}",
        f"  Inception Score / FID           : {get('evaluate', 'inception', 'unavailable')}",
    ]
    if "best_conditional_accuracy" in stages.get("curve", {}):
        lines.append(f"  best conditional accuracy seen  : "
                     f"{fmt(get('curve', 'best_conditional_accuracy'))} at iteration "
                     f"{get('curve', 'best_step')} (curve: {get('curve', 'figure')})")
    lines += [
        f"  sample grid      : {get('gan', 'samples')}",
        f"  t-SNE            : {get('select_encoder', 'tsne')}",
        f"  metrics.json     : {get('evaluate', 'metrics')}",
        f"  figures          : {get('evaluate', 'figures')}",
        f"  SavedModel       : {get('export', 'saved_model')}",
        f"  TensorBoard      : tensorboard --logdir {paths.run}",
    ]
    total = sum(float(s.get("seconds", 0.0)) for s in stages.values())
    lines.append(f"  stage time total : {total:.0f} s")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m eeg2image_tf.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, PipelineConfig)
    parser.add_argument("--force", action="store_true",
                        help="reuse a run directory made with another config")
    parser.add_argument("--stages", nargs="+", choices=[name for name, _ in STAGES],
                        help="run only these stages (default: all unfinished ones)")
    args = parser.parse_args(argv)
    config = config_from_args(PipelineConfig, args)
    state = run_pipeline(config, force=args.force, stages=args.stages)
    print("\n".join(summary_lines(state, config)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
