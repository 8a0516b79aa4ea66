"""The pipeline's stages (``python -m eeg2image_tf.pipeline`` documents them), run in order by
:mod:`.pipeline`.

Each stage builds its command's config from the pipeline config and the profile's overrides
(:data:`~eeg2image_tf.config.PROFILES`, and ``--set-stage``'s over them), calls that command's
library function, and returns its outputs (paths, headline numbers) for ``pipeline.json``. Where
each stage writes is :class:`~eeg2image_tf.runs.PipelineRun`.

Each stage imports its library call when it runs, not above: the run directory is checked first
(a pipeline config that differs from the run's is refused with one line on stderr and exit code 2)
and the data stage needs no TensorFlow, so nothing loads TensorFlow, and none of its C++ start-up
lines reach stderr, before the first stage that trains (with ``--strategy multiworker`` the strategy
comes first: it decides who writes the run directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import typing
from pathlib import Path
from typing import Any, Callable

from ..config import (PROFILES, AverageConfig, CurveConfig, EncoderTrainConfig, EvaluateConfig,
                      ExportConfig, GanTrainConfig, GenerateConfig, ImageClassifierConfig,
                      PipelineConfig, PrepareDataConfig, SelectEncoderConfig, unwrap_optional)
from ..data import (BUILTIN_SETS, builtin_class_names, builtin_sizes, check_builtin_set_root,
                    check_builtin_sizes, check_synthetic_images, write_builtin_set)
from ..errors import ConfigError, DataError
from ..runs import (MANIFEST_FILE, PIPELINE_STAGES, TEST_SPLIT, TRAIN_SPLIT, GanRun, PipelineRun,
                    curve_names)

# Stages whose config has a ``precision`` field.
PRECISION_STAGES = ("gan", "select_gan", "generate", "evaluate", "curve")


# The config class of each stage that takes settings, and the fields the pipeline itself sets
# (paths and the seed: one per pipeline). The data stage takes the built-in set's sizes.
_DATA_SETTINGS = {"n_train": int, "n_test": int, "images_per_class": int,
                  "test_images_per_class": int}
_PIPELINE_FIELDS = ("data", "images", "encoder", "run", "out", "seed", "classifier", "encoder_run",
                    "images_dir", "inception_graph", "inception_weights", "strategy",
                    "collective_timeout_s")
_STAGE_CONFIGS = {"encoder": EncoderTrainConfig, "select": SelectEncoderConfig,
                  "classifier": ImageClassifierConfig, "gan": GanTrainConfig,
                  "select_gan": CurveConfig, "generate": GenerateConfig,
                  "evaluate": EvaluateConfig, "curve": CurveConfig}
# Fields the pipeline sets in one stage only: select_gan chooses on the training trials.
_PIPELINE_STAGE_FIELDS = {"select_gan": ("conditions",)}


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
                              "encoder select classifier gan select_gan generate evaluate curve")
        if field in _PIPELINE_FIELDS or field in _PIPELINE_STAGE_FIELDS.get(stage, ()):
            raise ConfigError(f"--set-stage {setting}: the pipeline sets {stage}.{field} itself")
        if field not in types:
            raise ConfigError(f"--set-stage {setting}: {stage} has no setting {field!r}")
        settings.setdefault(stage, {})[field] = _convert_setting(text.strip(), types[field], setting)
    return settings


def check_stage_configs(config: PipelineConfig) -> None:
    """Refuse, before any stage runs, a stage whose settings (the profile's and ``--set-stage``'s)
    its config does not take (:meth:`~eeg2image_tf.config.Config.validate`); the paths the
    pipeline fills in are checked when their stage runs."""
    settings = stage_settings(config)
    for stage, cls in (("data", PrepareDataConfig), *_STAGE_CONFIGS.items()):
        own = settings.get(stage, {})
        values = {**PROFILES[config.chosen_profile].get(stage, {}), **own}
        if values.get("precision") == "auto":
            del values["precision"]         # made concrete when the stage runs
        # Stand-ins for the paths (and the data stage's mode) the pipeline fills in.
        stand_ins = {f.name: "-" for f in dataclasses.fields(cls)
                     if f.default is dataclasses.MISSING or f.name in ("run", "out")}
        if stage == "data":
            stand_ins["mode"] = "synthetic"

        def label(name: str, stage=stage, own=own) -> str:
            return (f"--set-stage {stage}.{name}" if name in own else
                    f"the {config.chosen_profile} profile's {stage}.{name}")
        cls(**{**stand_ins, **values}).validate(label)


def _stage_overrides(config: PipelineConfig, stage: str) -> dict[str, Any]:
    """The profile's settings of ``stage`` and ``--set-stage``'s over them, with ``precision`` made
    concrete.

    A profile may ask for ``precision="auto"``: bfloat16 where this CPU runs it natively, else
    float32; ``--precision`` other than ``profile`` overrides the profile in every such stage (a
    stage's own ``--set-stage STAGE.precision=...`` wins over both).
    """
    overrides = dict(PROFILES[config.chosen_profile].get(stage, {}))
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


def _distribution(config: PipelineConfig) -> dict[str, Any]:
    """A training stage's ``strategy`` and ``collective_timeout_s``: the pipeline's."""
    return {"strategy": config.strategy, "collective_timeout_s": config.collective_timeout_s}


# --------------------------------------------------------------------------------------------------
# Stages: each returns a dict of its outputs (paths, headline numbers) for pipeline.json
# --------------------------------------------------------------------------------------------------

def data_to_prepare(config: PipelineConfig, paths: PipelineRun) -> bool:
    """Whether the data stage writes the built-in set; writes nothing.

    False when the set is there (a built-in one checked to be the current renderer's, so that an
    older one is not trained on silently); True when the built-in set may be written. Else the
    stage's one-line refusal: a set without a built-in version is missing, the data root holds
    files the built-in set did not write (a user's ``data.pkl`` without its images: never replaced),
    or the profile's sizes break the set's rule.
    """
    have_eeg = paths.eeg_data.exists()
    have_images = (paths.images / TRAIN_SPLIT).is_dir() and (paths.images / TEST_SPLIT).is_dir()
    if have_eeg and have_images:
        if config.set in BUILTIN_SETS:
            for split in (TRAIN_SPLIT, TEST_SPLIT):
                check_synthetic_images(paths.images / split, builtin_class_names(config.set))
        return False
    if config.set not in BUILTIN_SETS:
        missing = paths.eeg_data if not have_eeg else paths.images
        raise DataError(f"{missing}: not found; the '{config.set}' set has no built-in version, "
                        "place its files there (ThoughtViz: data/README.md; EEGCVPR40: "
                        "prepare_data --eegcvpr40)")
    check_builtin_set_root(config.data_root, config.set, "--data-root")
    sizes = {name: value for name, value in _stage_overrides(config, "data").items()
             if name in builtin_sizes(config.set)}
    try:
        check_builtin_sizes(config.set, **sizes)
    except DataError as error:
        raise DataError(f"{error} (the {config.chosen_profile} profile's data "
                        "sizes; --set-stage data.FIELD=VALUE changes them)") from None
    return True


def stage_data(config: PipelineConfig, paths: PipelineRun,
               force: bool = False) -> dict[str, Any]:
    prepared = False
    if data_to_prepare(config, paths):
        # Pipelines sharing a data root: one writes the set, the others then find it there.
        with _exclusive_lock(Path(config.data_root) / ".prepare.lock"):
            if data_to_prepare(config, paths):
                print(f"[pipeline] preparing the built-in '{config.set}' set in {config.data_root}")
                write_builtin_set(config.data_root, set_name=config.set, seed=config.seed,
                                  flag="--data-root", **_stage_overrides(config, "data"))
                prepared = True
    return {"data": str(paths.eeg_data), "images": str(paths.images), "prepared": prepared}


def stage_encoder(config: PipelineConfig, paths: PipelineRun,
                  force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.encoder import train_encoder

    encoder_config = EncoderTrainConfig(data=str(paths.eeg_data), run=str(paths.encoder_run.dir),
                                        seed=config.seed, **_distribution(config),
                                        **_stage_overrides(config, "encoder"))
    result = train_encoder(encoder_config, force=force)
    return {"run": str(paths.encoder_run.dir), **_headline(result)}


def stage_select(config: PipelineConfig, paths: PipelineRun,
                 force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.selection import select_encoder

    select_config = SelectEncoderConfig(run=str(paths.encoder_run.dir),
                                        **_stage_overrides(config, "select"))
    result = select_encoder(select_config)
    return {"best_checkpoint": result.get("best_checkpoint"), "kmeans_accuracy": result.get("accuracy"),
            "tsne": str(paths.encoder_run.tsne)}


def stage_classifier(config: PipelineConfig, paths: PipelineRun,
                     force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.image_classifier import train_image_classifier

    classifier_config = ImageClassifierConfig(images=str(paths.images), run=str(paths.classifier_run.dir),
                                              seed=config.seed, **_distribution(config),
                                              **_stage_overrides(config, "classifier"))
    result = train_image_classifier(classifier_config, force=force)
    return {"run": str(paths.classifier_run.dir), **_headline(result)}


def stage_gan(config: PipelineConfig, paths: PipelineRun,
              force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..training.gan import train_gan

    gan_config = GanTrainConfig(data=str(paths.eeg_data), images=str(paths.images / TRAIN_SPLIT),
                                encoder=str(paths.encoder_run.dir), run=str(paths.gan_run.dir),
                                seed=config.seed, **_distribution(config),
                                **_stage_overrides(config, "gan"))
    result = train_gan(gan_config, force=force)
    return {"run": str(paths.gan_run.dir), "samples": str(paths.gan_run.latest_sample),
            "precision": gan_config.precision, **_headline(result)}


def _asks_for(config: PipelineConfig, stage: str) -> bool:
    """Whether the profile or ``--set-stage`` asks for an optional stage (``select_gan``,
    ``curve``)."""
    return stage in PROFILES[config.chosen_profile] or stage in stage_settings(config)


def served_gan_run(config: PipelineConfig, paths: PipelineRun) -> GanRun:
    """The GAN run that generate, evaluate and export use: the checkpoint ``select_gan`` chose
    where the pipeline asks for that stage, else the training run (its latest checkpoint)."""
    return paths.selected_gan_run if _asks_for(config, "select_gan") else paths.gan_run


def stage_select_gan(config: PipelineConfig, paths: PipelineRun,
                     force: bool = False) -> dict[str, Any]:
    """In profiles that ask for it: the GAN checkpoint with the best conditional accuracy on images
    conditioned on the training trials (``curve --conditions train``, so the test set plays no
    part in the choice), as a run of its own for the later stages (``average_checkpoints --step S
    --last 1``; with ``average`` k > 1, the window of k checkpoints the curve scored)."""
    if not _asks_for(config, "select_gan"):
        return {"skipped": f"the {config.chosen_profile} profile uses the latest checkpoint "
                           "(--set-stage select_gan.per_class=N chooses one)"}
    # Imported when the stage runs (module docstring).
    from ..checkpoints import write_averaged_run
    from ..evaluation import evaluate_checkpoints

    curve_config = CurveConfig(run=str(paths.gan_run.dir), classifier=str(paths.classifier_run.dir),
                               seed=config.seed, conditions="train",
                               **_stage_overrides(config, "select_gan"))
    curve = evaluate_checkpoints(curve_config)
    chosen = paths.selected_gan_run
    # The generator the curve scored at that point: one checkpoint, or its window's average.
    write_averaged_run(AverageConfig(run=str(paths.gan_run.dir), out=str(chosen.dir),
                                     last=curve_config.average, step=curve["best_step"],
                                     force=True))
    return {"run": str(chosen.dir), "step": curve["best_step"],
            "train_conditional_accuracy": curve["best_conditional_accuracy"],
            "last_step": curve["last_step"],
            "last_train_conditional_accuracy": curve["last_conditional_accuracy"],
            "curve": str(paths.gan_run.dir / curve_names(curve_config.average, "train")[0])}


def stage_generate(config: PipelineConfig, paths: PipelineRun,
                   force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..generation import generate_from_run

    generate_config = GenerateConfig(run=str(served_gan_run(config, paths).dir),
                                     out=str(paths.generated),
                                     seed=config.seed, **_stage_overrides(config, "generate"))
    generate_from_run(generate_config, force=force)
    return {"out": str(paths.generated), "manifest": str(paths.generated / MANIFEST_FILE)}


def stage_evaluate(config: PipelineConfig, paths: PipelineRun,
                   force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..evaluation import evaluate_run

    served = served_gan_run(config, paths)
    evaluate_config = EvaluateConfig(
        run=str(served.dir), images_dir=str(paths.generated),
        classifier=str(paths.classifier_run.dir), encoder_run=str(paths.encoder_run.dir),
        inception_graph=config.inception_graph, inception_weights=config.inception_weights,
        **_stage_overrides(config, "evaluate"))
    result = evaluate_run(evaluate_config)
    return {"metrics": str(served.metrics), "figures": str(served.figures), **_headline(result)}


def stage_curve(config: PipelineConfig, paths: PipelineRun,
                force: bool = False) -> dict[str, Any]:
    """The conditional-accuracy curve over the GAN's kept checkpoints, in profiles that ask for it."""
    if not _asks_for(config, "curve"):
        return {"skipped": f"the {config.chosen_profile} profile draws no curve "
                           "(python -m eeg2image_tf.curve does)"}
    # Imported when the stage runs (module docstring).
    from ..evaluation import evaluate_checkpoints

    curve_config = CurveConfig(run=str(paths.gan_run.dir), classifier=str(paths.classifier_run.dir),
                               seed=config.seed, **_stage_overrides(config, "curve"))
    result = evaluate_checkpoints(curve_config)
    return {"curve": str(paths.gan_run.dir / curve_names(curve_config.average,
                                                         curve_config.conditions)[0]),
            "figure": result["figure"], **_headline(result)}


def stage_export(config: PipelineConfig, paths: PipelineRun,
                 force: bool = False) -> dict[str, Any]:
    # Imported when the stage runs (module docstring).
    from ..serving.export import export_from_run

    export_from_run(ExportConfig(out=str(paths.saved_model),
                                 run=str(served_gan_run(config, paths).dir)))
    return {"saved_model": str(paths.saved_model)}


# Paired with runs.PIPELINE_STAGES, the names pipeline.json records.
STAGES: tuple[tuple[str, Callable[[PipelineConfig, PipelineRun, bool], dict[str, Any]]], ...] = tuple(zip(
    PIPELINE_STAGES, (stage_data, stage_encoder, stage_select, stage_classifier, stage_gan,
                      stage_select_gan, stage_generate, stage_evaluate, stage_curve,
                      stage_export)))


def _headline(result: Any) -> dict[str, Any]:
    """Keep the scalar numbers of a stage's result (the full metrics live in the stage's run)."""
    if not isinstance(result, dict):
        return {}
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            flat[key] = value
    return flat
