"""Configs (JSON round trip, run-directory guard, derived CLI flags) and atomic file output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import pytest

from eeg2image_tf.config import (PROFILES, EncoderTrainConfig, GanTrainConfig, PipelineConfig,
                                 add_config_arguments, config_from_args, config_from_dict,
                                 config_to_dict)
from eeg2image_tf.runs import (image_split_folder, load_config, prepare_run_dir, save_config,
                               training_image_folder)
from eeg2image_tf.errors import EXIT_BAD_INPUT, ConfigError, DataError, run_main
from eeg2image_tf.io_utils import atomic_path, atomic_write_json, read_json


def test_defaults_are_the_originals():
    enc = EncoderTrainConfig(data="d", run="r")
    assert (enc.learning_rate, enc.batch_size, enc.epochs, enc.seed, enc.checkpoint_every) == (
        3e-4, 256, 3000, 45, 10)
    gan = GanTrainConfig(data="d", images="i", encoder="e", run="r")
    assert (gan.latent_dim, gan.learning_rate, gan.beta_1, gan.beta_2, gan.batch_size, gan.epochs,
            gan.policy, gan.mode_seeking_weight, gan.seed) == (
        128, 3e-4, 0.2, 0.5, 128, 300, "color,translation", 1.0, 45)


def test_paper_profile_changes_no_training_hyper_parameter():
    assert PROFILES["paper"]["encoder"] == {} and PROFILES["paper"]["gan"] == {}
    for profile in PROFILES.values():
        # every override names a real field of the stage's config
        EncoderTrainConfig(data="d", run="r", **profile["encoder"])
        GanTrainConfig(data="d", images="i", encoder="e", run="r", **profile["gan"])


def test_json_round_trip(tmp_path):
    config = EncoderTrainConfig(data="d.pkl", run=str(tmp_path), epochs=7, max_to_keep=None)
    save_config(config, tmp_path)
    assert load_config(EncoderTrainConfig, tmp_path) == config
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_dict(EncoderTrainConfig, {**config_to_dict(config), "epohcs": 3})


def test_run_directory_refuses_another_config_unless_forced(tmp_path):
    first = EncoderTrainConfig(data="a.pkl", run=str(tmp_path))
    prepare_run_dir(first, tmp_path)
    # a resumable field may change: training can be extended
    prepare_run_dir(EncoderTrainConfig(data="a.pkl", run=str(tmp_path), epochs=5000), tmp_path)
    other = EncoderTrainConfig(data="b.pkl", run=str(tmp_path))
    with pytest.raises(ConfigError, match=r"data: 'a.pkl' -> 'b.pkl'"):
        prepare_run_dir(other, tmp_path)
    prepare_run_dir(other, tmp_path, force=True)
    assert read_json(tmp_path / "config.json")["data"] == "b.pkl"


def test_a_run_made_before_a_field_existed_still_resumes(tmp_path):
    """A config.json without a field that was added later counts as that field's default, or as
    the value the class records for runs made before it (``LEGACY_FIELD_VALUES``)."""
    # A config.json without the G-step mode fields records a run trained in the modes the authors'
    # calls name (docs/method.md section 7).
    config = GanTrainConfig(data="d", images="i", encoder="e", run=str(tmp_path),
                            generator_training=True, discriminator_training_in_g_step=False)
    recorded = config_to_dict(config)
    del recorded["ema_decay"], recorded["generator_training"]
    del recorded["discriminator_training_in_g_step"]
    atomic_write_json(tmp_path / "config.json", recorded)
    prepare_run_dir(config, tmp_path)                       # same behaviour: accepted
    assert read_json(tmp_path / "config.json")["ema_decay"] == 0.0
    loaded = load_config(GanTrainConfig, tmp_path)
    assert loaded.generator_training and not loaded.discriminator_training_in_g_step
    atomic_write_json(tmp_path / "config.json", recorded)
    with pytest.raises(ConfigError, match=r"discriminator_training_in_g_step: False -> True"):
        prepare_run_dir(GanTrainConfig(data="d", images="i", encoder="e", run=str(tmp_path)),
                        tmp_path)
    atomic_write_json(tmp_path / "config.json", recorded)
    with pytest.raises(ConfigError, match=r"ema_decay: 0.0 -> 0.999"):
        prepare_run_dir(GanTrainConfig(data="d", images="i", encoder="e", run=str(tmp_path),
                                       ema_decay=0.999), tmp_path)


def test_matmul_convs_left_to_the_device_unless_a_flag_forces_them(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, GanTrainConfig)
    required = ["--data", "d", "--images", "i", "--encoder", "e", "--run", "r"]
    for flags, expected in (([], None), (["--matmul-convs"], True), (["--no-matmul-convs"], False)):
        assert config_from_args(GanTrainConfig, parser.parse_args(required + flags)).matmul_convs \
            is expected
    # A run recorded before the field existed computed its convolutions as TensorFlow does; it
    # still loads, and resumes with the choice of the machine it resumes on (a resumable field).
    recorded = config_to_dict(GanTrainConfig(data="d", images="i", encoder="e", run=str(tmp_path)))
    del recorded["matmul_convs"]
    atomic_write_json(tmp_path / "config.json", recorded)
    assert load_config(GanTrainConfig, tmp_path).matmul_convs is False
    prepare_run_dir(GanTrainConfig(data="d", images="i", encoder="e", run=str(tmp_path),
                                   matmul_convs=True), tmp_path)
    assert read_json(tmp_path / "config.json")["matmul_convs"] is True


def test_flags_are_derived_from_fields():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, GanTrainConfig)
    args = parser.parse_args(["--data", "d", "--images", "i", "--encoder", "e", "--run", "r",
                              "--batch-size", "16", "--jit", "--max-steps", "none",
                              "--time-budget-s", "2.5"])
    config = config_from_args(GanTrainConfig, args)
    assert config.batch_size == 16 and config.jit is True and config.max_steps is None
    assert config.time_budget_s == 2.5 and config.beta_1 == 0.2
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d"])  # required flags missing


def test_every_precision_flag_lists_the_precisions():
    from eeg2image_tf.config import CurveConfig, EvaluateConfig, GenerateConfig
    from eeg2image_tf.models.precision import PRECISIONS

    for config_class in (GanTrainConfig, GenerateConfig, EvaluateConfig, CurveConfig, PipelineConfig):
        parser = argparse.ArgumentParser()
        add_config_arguments(parser, config_class)
        action = next(a for a in parser._actions if a.dest == "precision")
        assert all(name in action.help for name in PRECISIONS), config_class.__name__
        assert action.help.startswith(f"default: {action.default};")
    assert GanTrainConfig(data="d", images="i", encoder="e", run="r").precision == "float32"
    assert PipelineConfig(run="r").precision == "profile"


def test_pipeline_config_flags():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, PipelineConfig)
    config = config_from_args(PipelineConfig, parser.parse_args(["--run", "r", "--set", "digit"]))
    # Without --profile a set runs with its own profile, else demo.
    assert config.set == "digit" and config.profile is None and config.chosen_profile == "demo"
    assert dataclasses.replace(config, set="cvpr40-synthetic").chosen_profile == "cvpr40"
    assert dataclasses.replace(config, set="cvpr40-synthetic", profile="smoke").chosen_profile == \
        "smoke"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"good": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"partial": ')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"good": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary left behind


def test_run_main_turns_errors_into_one_line(capsys):
    def failing(argv):
        raise DataError("data.pkl: key 'x_train': expected 4 dimensions, found 2\nmore detail")

    assert run_main(failing, []) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == "error: data.pkl: key 'x_train': expected 4 dimensions, found 2\n"


def test_atomic_files_get_the_usual_mode(tmp_path):
    target = atomic_write_json(tmp_path / "m.json", {})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert (target.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_replace_bytes_swaps_whole_files_and_keeps_the_old_one_on_failure(tmp_path, monkeypatch):
    from eeg2image_tf import io_utils

    target = tmp_path / "a.jpg"
    io_utils.replace_bytes(target, b"first")
    io_utils.replace_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert (target.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(io_utils.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        io_utils.replace_bytes(target, b"partial")
    assert target.read_bytes() == b"second"
    assert sorted(os.listdir(tmp_path)) == ["a.jpg", "plain.txt"]   # no temporary left behind


def _image_tree(root):
    """``root/images/{train,test,other}/A/`` and a lone ``root/lone/A/``: ``other`` has no
    ``train/`` of its own but a sibling one."""
    for folder in ("images/train/A", "images/test/A", "images/other/A", "lone/A"):
        (root / folder).mkdir(parents=True)
    return root / "images"


def test_training_takes_the_folder_given_unless_it_holds_train(tmp_path):
    images = _image_tree(tmp_path)
    assert training_image_folder(images) == images / "train"
    assert training_image_folder(images / "train") == images / "train"
    # Not the sibling train/: --images names the folder to train on.
    assert training_image_folder(images / "other") == images / "other"
    assert training_image_folder(tmp_path / "lone") == tmp_path / "lone"


def test_generation_and_evaluation_find_a_split_beside_the_folder_a_run_names(tmp_path):
    images = _image_tree(tmp_path)
    assert image_split_folder(images, "test") == images / "test"
    assert image_split_folder(images / "train", "train") == images / "train"
    assert image_split_folder(images / "train", "test") == images / "test"
    assert image_split_folder(images / "other", "train") == images / "train"
    assert image_split_folder(images / "other", "test") == images / "test"
    assert image_split_folder(tmp_path / "lone", "test") is None
    assert image_split_folder(images / "other", "train", sibling=False) is None
