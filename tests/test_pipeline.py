"""The end-to-end pipeline on a tiny built-in set (the ``smoke`` profile)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eeg2image_tf import pipeline as pipeline_command
from eeg2image_tf.config import PROFILES, CurveConfig
from eeg2image_tf.errors import ConfigError, DataError
from eeg2image_tf.runs import PipelineRun
from eeg2image_tf.workflow import pipeline, stages


def test_profiles_cover_every_stage():
    stage_keys = {"encoder", "select", "classifier", "gan", "generate", "evaluate"}
    for name in ("paper", "demo", "quality", "smoke", "cvpr40"):
        assert stage_keys <= set(PROFILES[name]), name
        # every override names a real field of its stage's config
        if "curve" in PROFILES[name]:
            CurveConfig(run="r", **PROFILES[name]["curve"])


def test_curve_stage_is_skipped_where_the_profile_draws_none(tmp_path):
    config = pipeline.PipelineConfig(run=str(tmp_path), profile="demo")
    outputs = stages.stage_curve(config, PipelineRun.from_config(config))
    assert "skipped" in outputs and not (tmp_path / "gan").exists()


def test_the_latest_gan_checkpoint_serves_unless_the_pipeline_asks_for_a_choice(tmp_path):
    demo = pipeline.PipelineConfig(run=str(tmp_path), profile="demo")
    paths = PipelineRun.from_config(demo)
    assert "skipped" in stages.stage_select_gan(demo, paths)
    assert not (tmp_path / "gan_selected").exists()
    assert stages.served_gan_run(demo, paths).dir == tmp_path / "gan"
    asked = dataclasses.replace(demo, set_stage=("select_gan.per_class=10",))
    assert stages.served_gan_run(asked, paths).dir == tmp_path / "gan_selected"
    assert stages.served_gan_run(dataclasses.replace(demo, profile="quality"),
                                   paths).dir == tmp_path / "gan_selected"
    # The choice is made on the training trials, whatever --set-stage says.
    with pytest.raises(ConfigError, match="the pipeline sets select_gan.conditions itself"):
        stages.stage_settings(dataclasses.replace(demo,
                                                    set_stage=("select_gan.conditions=test",)))


def test_unknown_set_without_data_is_refused(tmp_path):
    config = pipeline.PipelineConfig(run=str(tmp_path / "run"), set="image",
                                     data_root=str(tmp_path / "data"), profile="smoke")
    with pytest.raises(DataError, match=r"data\.pkl: not found; the 'image' set has no built-in"):
        pipeline.run_pipeline(config, stages=["data"])


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile"):
        pipeline.run_pipeline(pipeline.PipelineConfig(run=str(tmp_path), profile="fastest"))


def evaluate_metrics_of(gan_run: Path) -> bool:
    return "evaluation" in json.loads((gan_run / "metrics.json").read_text())


# Expected: an untrained generator makes near-identical images, so k-means of their classifier
# features (conditional separability) finds fewer distinct clusters than classes.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage_then_skips_them(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--run", str(run), "--profile", "smoke", "--set", "char",
            "--data-root", str(tmp_path / "data")]
    assert pipeline_command.main(args) == 0
    out = capsys.readouterr().out
    state = json.loads((run / "pipeline.json").read_text())
    assert [name for name, _ in stages.STAGES] == list(state["stages"])
    assert all(stage["done"] for stage in state["stages"].values())
    assert (tmp_path / "data" / "eeg" / "char" / "data.pkl").exists()
    assert (run / "encoder" / "best_checkpoint.json").exists()
    assert (run / "gan" / "samples" / "latest.png").exists()
    assert (run / "generated" / "manifest.csv").exists()
    assert (run / "saved_model" / "saved_model.pb").exists()
    # The smoke profile asks for a checkpoint chosen on training conditions: the later stages use
    # it, as a run of its own holding that checkpoint's generator.
    selected = state["stages"]["select_gan"]
    chosen = json.loads((run / "gan" / "curve_train.json").read_text())
    assert selected["step"] == chosen["best_step"] in (1, 2) and selected["last_step"] == 2
    assert json.loads((run / "gan_selected" / "average.json").read_text())["steps"] == \
        [selected["step"]]
    assert json.loads((run / "generated" / "generate_config.json").read_text())["run"] == \
        str(run / "gan_selected")
    assert evaluate_metrics_of(run / "gan_selected")
    # Its loss curves are those of the training that made it, in the GAN run.
    evaluation = json.loads((run / "gan_selected" / "metrics.json").read_text())["evaluation"]
    assert (run / "gan_selected" / "figures" / "loss_curves.png").exists(), evaluation["figures"]
    assert f"checkpoint evaluated            : iteration {selected['step']} of 2" in out
    # The smoke profile asks for the curve: one point per kept GAN checkpoint (steps 1 and 2).
    curve = json.loads((run / "gan" / "curve.json").read_text())
    assert [point["step"] for point in curve["points"]] == [1, 2]
    assert state["stages"]["curve"]["last_step"] == 2
    assert (run / "gan" / "figures" / "conditional_curve.png").exists()
    assert "best conditional accuracy seen" in out
    # Precision and recall against the 8 training images a class, with the test images' ceiling.
    evaluate = state["stages"]["evaluate"]
    for key in ("precision", "recall", "real_test_precision", "real_test_recall"):
        assert 0.0 <= evaluate[key] <= 1.0, key
    assert f"precision / recall / diversity  : {evaluate['precision']:.3f}" in out
    accuracy = state["stages"]["select_encoder"]["kmeans_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    assert "EEG2Image pipeline summary" in out and f"tensorboard --logdir {run}" in out

    # A rerun skips every finished stage.
    assert pipeline_command.main(args) == 0
    rerun = capsys.readouterr().out
    assert rerun.count("done already, skipping") == len(stages.STAGES)

    # Another config into the same run is refused with one line and exit code 2.
    result = subprocess.run([sys.executable, "-m", "eeg2image_tf.pipeline", *args[:-2],
                             "--data-root", str(tmp_path / "other"), "--seed", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "another config" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_built_in_set_without_a_profile_runs_with_its_own(tmp_path, capsys):
    sizes = ["--set-stage", "data.n_train=80", "--set-stage", "data.n_test=40",
             "--set-stage", "data.images_per_class=2", "--set-stage", "data.test_images_per_class=1"]
    args = ["--run", str(tmp_path / "run"), "--set", "cvpr40-synthetic", "--data-root",
            str(tmp_path / "data"), "--stages", "data", *sizes]
    assert pipeline_command.main(args) == 0
    out = capsys.readouterr().out
    assert "[pipeline] profile cvpr40 (the 'cvpr40-synthetic' set's own; --profile chooses " \
           "another)" in out and "(cvpr40 profile, 'cvpr40-synthetic' set)" in out
    for record in ("pipeline.json", "config.json"):
        assert json.loads((tmp_path / "run" / record).read_text())["profile"] == "cvpr40", record
    # Naming the profile it chose is the same run; an explicit profile wins over the set's.
    assert pipeline_command.main(args + ["--profile", "cvpr40"]) == 0
    capsys.readouterr()
    args[1] = str(tmp_path / "other")
    assert pipeline_command.main(args + ["--profile", "demo"]) == 0
    assert "[pipeline] profile" not in capsys.readouterr().out
    assert json.loads((tmp_path / "other" / "pipeline.json").read_text())["profile"] == "demo"


def test_precision_resolves_per_stage(tmp_path, monkeypatch):
    import eeg2image_tf.models.precision as precision

    def overrides(stage, profile="demo", choice="profile"):
        config = pipeline.PipelineConfig(run=str(tmp_path), profile=profile, precision=choice)
        return stages._stage_overrides(config, stage)

    monkeypatch.setattr(precision, "bfloat16_supported", lambda: True)
    assert overrides("gan")["precision"] == "mixed_bfloat16"
    assert overrides("generate")["precision"] == "mixed_bfloat16"
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: False)
    assert overrides("gan")["precision"] == "float32"        # no native bfloat16: stay float32
    # The paper profile is float32 (the original's numbers); --precision overrides any profile.
    assert "precision" not in overrides("gan", profile="paper")
    assert overrides("gan", profile="paper", choice="mixed_bfloat16")["precision"] == \
        "mixed_bfloat16"
    assert overrides("generate", choice="float32")["precision"] == "float32"
    assert "precision" not in overrides("encoder", choice="float32")
    with pytest.raises(ConfigError, match="--precision"):
        overrides("gan", choice="float16")


def test_set_stage_overrides_one_stage_with_typed_values(tmp_path, monkeypatch):
    from eeg2image_tf.config import PipelineConfig

    monkeypatch.setattr("eeg2image_tf.models.precision.bfloat16_supported", lambda: False)
    config = PipelineConfig(run=str(tmp_path / "run"), profile="demo", set_stage=(
        "gan.batch_size=16", "gan.time-budget-s=90.5", "gan.max_steps=none", "gan.ema_decay=0.99",
        "gan.generator_training=true", "encoder.epochs=3", "data.n_train=40",
        "gan.precision=auto"))
    settings = stages.stage_settings(config)
    assert settings["gan"] == {"batch_size": 16, "time_budget_s": 90.5, "max_steps": None,
                               "ema_decay": 0.99, "generator_training": True, "precision": "auto"}
    assert settings["encoder"] == {"epochs": 3} and settings["data"] == {"n_train": 40}
    gan = stages._stage_overrides(config, "gan")
    # the profile's other settings stay; ours win; "auto" is made concrete
    assert gan["batch_size"] == 16 and gan["mode_seeking_weight"] == PROFILES["demo"]["gan"][
        "mode_seeking_weight"] and gan["precision"] == "float32" and gan["max_steps"] is None
    assert stages._stage_overrides(config, "encoder")["learning_rate"] == 1e-3
    assert stages._stage_overrides(config, "encoder")["epochs"] == 3


@pytest.mark.parametrize("setting, message", [
    ("gan.batch_size", "expected STAGE.FIELD=VALUE"),
    ("batch_size=16", "expected STAGE.FIELD=VALUE"),
    ("painting.batch_size=16", "unknown stage 'painting'"),
    ("gan.batchsize=16", "gan has no setting 'batchsize'"),
    ("gan.batch_size=sixteen", "'sixteen' is not a int"),
    ("gan.generator_training=maybe", "'maybe' is not a bool"),
    ("gan.run=elsewhere", "the pipeline sets gan.run itself"),
    ("data.seed=3", "the pipeline sets data.seed itself"),
])
def test_set_stage_refuses_what_it_cannot_apply(tmp_path, setting, message):
    from eeg2image_tf.config import PipelineConfig

    config = PipelineConfig(run=str(tmp_path / "run"), set_stage=(setting,))
    with pytest.raises(ConfigError, match=message):
        pipeline.run_pipeline(config)
    assert not (tmp_path / "run").exists()        # refused before any stage ran


@pytest.mark.parametrize("set_name, profile, setting, message", [
    # The smoke profile's 8 images per class need 320 trials of the 40-class set, it gives 200.
    ("cvpr40-synthetic", "smoke", None, r"cvpr40-synthetic: --n-train/--images-per-class 200/8; "
     r".* \(the smoke profile's data sizes; --set-stage data.FIELD=VALUE changes them\)"),
    ("char", "smoke", "data.n_train=5", r"synthetic char: n_train=5, n_test=100; expected "
     r"n_train >= 10"),
])
def test_built_in_set_sizes_its_rule_refuses_leave_nothing_behind(tmp_path, set_name, profile,
                                                                  setting, message):
    from eeg2image_tf.config import PipelineConfig

    config = PipelineConfig(run=str(tmp_path / "run"), data_root=str(tmp_path / "data"),
                            set=set_name, profile=profile,
                            set_stage=(setting,) if setting else ())
    with pytest.raises(DataError, match=message):
        pipeline.run_pipeline(config)
    assert list(tmp_path.iterdir()) == []           # neither the run nor the data root


def test_set_stage_flag_is_repeatable_and_round_trips_through_config_json(tmp_path):
    import argparse

    from eeg2image_tf.config import PipelineConfig, add_config_arguments, config_from_args
    from eeg2image_tf.runs import load_config, prepare_run_dir

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, PipelineConfig)
    plain = config_from_args(PipelineConfig, parser.parse_args(["--run", str(tmp_path)]))
    assert plain.set_stage == ()
    args = parser.parse_args(["--run", str(tmp_path), "--set-stage", "gan.batch_size=16",
                              "--set-stage", "curve.per_class=5"])
    config = config_from_args(PipelineConfig, args)
    assert config.set_stage == ("gan.batch_size=16", "curve.per_class=5")
    prepare_run_dir(config, tmp_path)
    assert load_config(PipelineConfig, tmp_path) == config
    prepare_run_dir(config, tmp_path)                # the same settings resume
    with pytest.raises(ConfigError, match="set_stage"):
        prepare_run_dir(plain, tmp_path)


# Expected: as above, the generator barely trained makes near-identical images.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning")
@pytest.mark.slow
def test_a_set_of_another_shape_runs_the_chain_with_what_it_records(tmp_path):
    """8 channels x 20 samples, 5 unnamed classes, zero-centred with ``zscore`` recorded, a stimulus
    and a subject per trial: every stage runs on what the set records, and the SavedModel says so."""
    from set_records_support import CLASSES, NUM_CHANNELS, NUM_SAMPLES, write_recorded_set

    data_root = tmp_path / "data"
    recorded = write_recorded_set(data_root, "mine")
    run = tmp_path / "run"
    config = pipeline.PipelineConfig(
        run=str(run), set="mine", data_root=str(data_root), profile="smoke",
        set_stage=("gan.pairing=stimulus", "encoder.batch_size=40"))
    state = pipeline.run_pipeline(config, stages=[name for name in pipeline.PIPELINE_STAGES
                                                  if name != "curve"])
    assert state["stages"]["data"]["data"] == recorded["data"]
    for stage in ("encoder", "gan"):
        recorded_config = json.loads((run / stage / "config.json").read_text())
        assert recorded_config["normalisation"] == "zscore", stage
    assert json.loads((run / "encoder" / "config.json").read_text())["n_clusters"] == len(CLASSES)
    assert json.loads((run / "gan" / "config.json").read_text())["pairing"] == "stimulus"

    # The smoke profile evaluates the checkpoint it chose, a run beside the GAN's.
    assert state["stages"]["evaluate"]["metrics"] == str(run / "gan_selected" / "metrics.json")
    evaluation = json.loads((run / "gan_selected" / "metrics.json").read_text())["evaluation"]
    assert set(evaluation["per_subject"]["subjects"]) == {"1", "2"}
    assert sum(s["generated_images"] for s in evaluation["per_subject"]["subjects"].values()) == \
        evaluation["generated"]["count"]
    assert (run / "gan_selected" / "figures" / "stimuli.png").is_file()

    signature = json.loads((run / "saved_model" / "signature.json").read_text())
    assert (signature["model"]["num_channels"], signature["model"]["num_samples"],
            signature["model"]["normalisation"]) == (NUM_CHANNELS, NUM_SAMPLES, "zscore")
    # The set names no classes: the GAN's image folders do.
    assert signature["class_names"] == list(CLASSES)
    eeg = signature["signatures"]["generate"]["inputs"]["eeg"]
    assert eeg["shape"] == [None, NUM_CHANNELS, NUM_SAMPLES]
    assert "Emotiv" not in json.dumps(signature) and "'zscore' normalisation" in eeg["range"]


@pytest.mark.parametrize("make_args, budget", [((), PROFILES["demo"]["gan"]["time_budget_s"]),
                                               (("GAN_BUDGET_S=1800",), 1800.0)])
def test_make_demo_runs_the_demo_profile_with_an_optional_gan_budget(make_args, budget):
    import shlex
    from pathlib import Path

    from eeg2image_tf.config import command_parser, parse_config

    repo = Path(__file__).resolve().parents[1]
    # -n prints the commands (the install's first, where it is due) without running any. Under
    # `make test` this make is a sub-make: without the parent's variables it prints no
    # "Entering/Leaving directory" lines.
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    printed = subprocess.run(["make", "-n", "--no-print-directory", "demo", "RUN=runs/x",
                              *make_args], cwd=repo, env=environment, capture_output=True,
                             text=True, check=True).stdout
    lines = [line for line in printed.replace("\\\n", " ").splitlines()
             if "eeg2image_tf.pipeline" in line]
    assert len(lines) == 1, printed
    command = shlex.split(lines[0])
    argv = command[command.index("eeg2image_tf.pipeline") + 1:]
    config, _ = parse_config(command_parser("pipeline", "", pipeline.PipelineConfig),
                             pipeline.PipelineConfig, argv)
    assert (config.profile, config.set, config.run) == ("demo", "char", "runs/x")
    assert stages._stage_overrides(config, "gan")["time_budget_s"] == budget
