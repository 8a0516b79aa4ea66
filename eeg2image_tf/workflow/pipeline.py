"""The pipeline's stages and driver (``python -m eeg2image_tf.pipeline``, which documents them).

Each stage builds its command's config from the pipeline config and the profile's overrides
(:data:`~eeg2image_tf.config.PROFILES`), calls that command's library function, and returns its
outputs (paths, headline numbers) for ``pipeline.json``; :func:`run_pipeline` runs the unfinished
ones in order. Where each stage writes is :class:`~eeg2image_tf.runs.PipelineRun`.

Each stage imports its library call when it runs, not above: the run directory is checked first
(a pipeline config that differs from the run's is refused with one line on stderr and exit code 2)
and the data stage needs no TensorFlow, so nothing loads TensorFlow, and none of its C++ start-up
lines reach stderr, before the first stage that trains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import time
import typing
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..config import (PROFILES, CurveConfig, EncoderTrainConfig, EvaluateConfig, ExportConfig,
                      GanTrainConfig, GenerateConfig, ImageClassifierConfig, PipelineConfig,
                      SelectEncoderConfig, unwrap_optional)
from ..data import CLASS_NAMES, check_synthetic_images, write_synthetic_set
from ..errors import ConfigError, DataError
from ..io_utils import atomic_write_json, read_json
from ..runs import (MANIFEST_FILE, PIPELINE_STAGES, TEST_SPLIT, TRAIN_SPLIT, PipelineRun,
                    curve_names, prepare_run_dir)

SYNTHETIC_SETS = ("char", "digit")


# Stages whose config has a ``precision`` field.
PRECISION_STAGES = ("gan", "generate", "evaluate", "curve")


# The config class of each stage that takes settings, and the fields the pipeline itself sets
# (paths and the seed: one per pipeline). The data stage takes the built-in set's sizes.
_DATA_SETTINGS = {"n_train": int, "n_test": int, "images_per_class": int,
                  "test_images_per_class": int}
_PIPELINE_FIELDS = ("data", "images", "encoder", "run", "out", "seed", "classifier", "encoder_run",
                    "images_dir", "inception_graph", "inception_weights")
_STAGE_CONFIGS = {"encoder": EncoderTrainConfig, "select": SelectEncoderConfig,
                  "classifier": ImageClassifierConfig, "gan": GanTrainConfig,
                  "generate": GenerateConfig, "evaluate": EvaluateConfig, "curve": CurveConfig}


def _convert_setting(text: str, tp: Any, setting: str) -> Any:
    base, optional = unwrap_optional(tp)
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
        elif (cls := _STAGE_CONFIGS.get(stage)) is not None:
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
    overrides = dict(PROFILES[config.profile].get(stage, {}))
    own = stage_settings(config).get(stage, {})
    if stage not in PRECISION_STAGES and "precision" not in own:
        overrides.update(own)
        return overrides
    # Imported here (module docstring): the models package loads TensorFlow.
    from ..models import precision as precisions

    if stage in PRECISION_STAGES and config.precision != "profile":
        overrides["precision"] = precisions.check_precision(config.precision)
    overrides.update(own)
    # One resolution of "auto", whoever asked for it (the profile or --set-stage).
    if overrides.get("precision") == "auto":
        overrides["precision"] = "mixed_bfloat16" if precisions.bfloat16_supported() else "float32"
    return overrides


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    """Serialise data preparation between two pipelines that share a data root."""
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

def stage_data(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    with _exclusive_lock(Path(config.data_root) / ".prepare.lock"):
        have_eeg = paths.data_pkl.exists()
        have_images = (paths.images / TRAIN_SPLIT).is_dir() and (paths.images / TEST_SPLIT).is_dir()
        if have_eeg and have_images:
            if config.set in SYNTHETIC_SETS:
                # A data root built by an older renderer must not be trained on silently.
                for split in (TRAIN_SPLIT, TEST_SPLIT):
                    check_synthetic_images(paths.images / split, CLASS_NAMES[config.set])
            return {"data": str(paths.data_pkl), "images": str(paths.images), "prepared": False}
        if config.set not in SYNTHETIC_SETS:
            missing = paths.data_pkl if not have_eeg else paths.images
            raise DataError(f"{missing}: not found; the '{config.set}' set has no built-in version, "
                            "place the ThoughtViz files there (see data/README.md)")
        print(f"[pipeline] preparing the built-in '{config.set}' set in {config.data_root}")
        write_synthetic_set(config.data_root, set_name=config.set, seed=config.seed,
                            **_stage_overrides(config, "data"))
    return {"data": str(paths.data_pkl), "images": str(paths.images), "prepared": True}


def stage_encoder(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.encoder import train_encoder

    encoder_config = EncoderTrainConfig(data=str(paths.data_pkl), run=str(paths.encoder_run.dir),
                                        seed=config.seed, **_stage_overrides(config, "encoder"))
    result = train_encoder(encoder_config)
    return {"run": str(paths.encoder_run.dir), **_headline(result)}


def stage_select(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.selection import select_encoder

    select_config = SelectEncoderConfig(run=str(paths.encoder_run.dir),
                                        **_stage_overrides(config, "select"))
    result = select_encoder(select_config)
    return {"best_checkpoint": result.get("best_checkpoint"), "kmeans_accuracy": result.get("accuracy"),
            "tsne": str(paths.encoder_run.tsne)}


def stage_classifier(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.image_classifier import train_image_classifier

    classifier_config = ImageClassifierConfig(images=str(paths.images), run=str(paths.classifier_run.dir),
                                              seed=config.seed,
                                              **_stage_overrides(config, "classifier"))
    result = train_image_classifier(classifier_config)
    return {"run": str(paths.classifier_run.dir), **_headline(result)}


def stage_gan(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.gan import train_gan

    gan_config = GanTrainConfig(data=str(paths.data_pkl), images=str(paths.images / TRAIN_SPLIT),
                                encoder=str(paths.encoder_run.dir), run=str(paths.gan_run.dir),
                                seed=config.seed, **_stage_overrides(config, "gan"))
    result = train_gan(gan_config)
    return {"run": str(paths.gan_run.dir), "samples": str(paths.gan_run.latest_sample),
            "precision": gan_config.precision, **_headline(result)}


def stage_generate(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..generation import generate_from_run

    generate_config = GenerateConfig(run=str(paths.gan_run.dir), out=str(paths.generated),
                                     seed=config.seed, **_stage_overrides(config, "generate"))
    generate_from_run(generate_config)
    return {"out": str(paths.generated), "manifest": str(paths.generated / MANIFEST_FILE)}


def stage_evaluate(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..evaluation import evaluate_run

    evaluate_config = EvaluateConfig(
        run=str(paths.gan_run.dir), images_dir=str(paths.generated),
        classifier=str(paths.classifier_run.dir), encoder_run=str(paths.encoder_run.dir),
        inception_graph=config.inception_graph, inception_weights=config.inception_weights,
        **_stage_overrides(config, "evaluate"))
    result = evaluate_run(evaluate_config)
    return {"metrics": str(paths.gan_run.metrics), "figures": str(paths.gan_run.figures),
            **_headline(result)}


def stage_curve(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    """The conditional-accuracy curve over the GAN's kept checkpoints, in profiles that ask for it."""
    if "curve" not in PROFILES[config.profile] and "curve" not in stage_settings(config):
        return {"skipped": f"the {config.profile} profile draws no curve "
                           "(python -m eeg2image_tf.curve does)"}
    # Imported when the stage runs (module docstring).
    from ..evaluation import evaluate_checkpoints

    curve_config = CurveConfig(run=str(paths.gan_run.dir), classifier=str(paths.classifier_run.dir),
                               seed=config.seed, **_stage_overrides(config, "curve"))
    result = evaluate_checkpoints(curve_config)
    return {"curve": str(paths.gan_run.dir / curve_names(curve_config.average)[0]),
            "figure": result["figure"], **_headline(result)}


def stage_export(config: PipelineConfig, paths: PipelineRun) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..serving.export import export_from_run

    export_from_run(ExportConfig(out=str(paths.saved_model), run=str(paths.gan_run.dir)))
    return {"saved_model": str(paths.saved_model)}


# Paired with runs.PIPELINE_STAGES, the names pipeline.json records.
STAGES: tuple[tuple[str, Callable[[PipelineConfig, PipelineRun], dict[str, Any]]], ...] = tuple(zip(
    PIPELINE_STAGES, (stage_data, stage_encoder, stage_select, stage_classifier, stage_gan,
                      stage_generate, stage_evaluate, stage_curve, stage_export)))


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
    path = PipelineRun(Path(run_dir)).state
    return read_json(path) if path.exists() else {"stages": {}}


def run_pipeline(config: PipelineConfig, force: bool = False,
                 stages: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run every unfinished stage in order; return the pipeline state (also in ``pipeline.json``)."""
    if config.profile not in PROFILES:
        raise ConfigError(f"unknown profile {config.profile!r}: use {', '.join(PROFILES)}")
    stage_settings(config)          # a wrong --set-stage fails before any stage runs
    run_dir = prepare_run_dir(config, config.run, force=force)
    paths = PipelineRun.from_config(config)
    state = load_state(run_dir)
    state_path = paths.state
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
        atomic_write_json(state_path, state)
        print(f"[pipeline] {name}: finished in {seconds:.0f} s")
    state["last_run_seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(state_path, state)
    return state


def summary_lines(state: dict[str, Any], config: PipelineConfig) -> list[str]:
    stages = state.get("stages", {})
    paths = PipelineRun.from_config(config)

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
        f"  TensorBoard      : tensorboard --logdir {paths.dir}",
    ]
    total = sum(float(s.get("seconds", 0.0)) for s in stages.values())
    lines.append(f"  stage time total : {total:.0f} s")
    return lines
