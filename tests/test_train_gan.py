"""``train_gan`` end to end on a tiny set: outputs, resume, divergence, signals, MirroredStrategy.

The set: 4 training trials of 2 classes (2 steps per epoch at batch 2), 2 images per class, and a
randomly initialised encoder saved in our checkpoint format.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from eeg2image_tf.config import GanTrainConfig
from eeg2image_tf.errors import DataError, TrainingDivergedError

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Alpha", "Beta")
GRID_HEIGHT, GRID_WIDTH = 612, 532       # 4 x (20 + 128) + 5 x 4, 4 x 128 + 5 x 4


def _write_images(root: Path, classes, per_class: int, rng) -> None:
    import cv2

    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            assert cv2.imwrite(str(folder / f"{name}_{index}.png"), image)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> dict:
    import keras

    from eeg2image_tf.checkpoints import save_encoder_weights
    from eeg2image_tf.data.thoughtviz import EEGSplits, save_npz
    from eeg2image_tf.models import build_encoder

    root = tmp_path_factory.mktemp("tiny_gan_set")
    rng = np.random.default_rng(3)
    # Raw Emotiv-like values (positive, ~4000-4600), as the original normalisation expects.
    splits = EEGSplits(
        x_train=rng.uniform(3900, 4600, (4, 14, 32, 1)).astype(np.float32),
        y_train=np.array([0, 1, 0, 1], dtype=np.int64),
        x_test=rng.uniform(3900, 4600, (2, 14, 32, 1)).astype(np.float32),
        y_test=np.array([0, 1], dtype=np.int64),
        class_names=CLASSES, source="test")
    save_npz(splits, root / "eeg" / "data.npz")
    _write_images(root / "images" / "train", CLASSES, 2, rng)
    _write_images(root / "images" / "test", CLASSES, 1, rng)
    keras.utils.set_random_seed(3)         # the same encoder, hence conditions, in every test process
    save_encoder_weights(build_encoder(), root / "encoder")
    return {"data": str(root / "eeg" / "data.npz"), "images": str(root / "images"),
            "encoder": str(root / "encoder")}


def _config(tiny_set, run: Path, **overrides) -> GanTrainConfig:
    values = dict(data=tiny_set["data"], images=tiny_set["images"], encoder=tiny_set["encoder"],
                  run=str(run), batch_size=2, checkpoint_every=1, sample_every=2, max_steps=3)
    values.update(overrides)
    return GanTrainConfig(**values)


def _checkpoint_values(prefix: str) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


# --------------------------------------------------------------------------------------------------
# Fast: data, samples, errors
# --------------------------------------------------------------------------------------------------

def test_sample_grid_layout_and_png(tmp_path):
    import cv2

    from eeg2image_tf.training.samples import BACKGROUND_RGB, grid_shape, sample_grid, write_png

    images = np.random.default_rng(0).uniform(-1, 1, (16, 128, 128, 3)).astype(np.float32)
    images[0] = 1.0                                  # a white first image, to find it in the grid
    titles = [f"class {i}" for i in range(16)]
    grid = sample_grid(images, titles, columns=4)
    assert grid.shape == (GRID_HEIGHT, GRID_WIDTH, 3) == grid_shape(16, 4, 128, 128) + (3,)
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[24:24 + 128, 4:4 + 128], 255)     # under its 20 px title
    title_strip = grid[4:24, 4:132]
    assert np.any(np.any(title_strip != BACKGROUND_RGB, axis=-1)), "no title drawn"
    write_png(grid, tmp_path / "grid.png")
    decoded = cv2.cvtColor(cv2.imread(str(tmp_path / "grid.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, grid)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_data_conditions_are_cached_and_invalidated(tiny_set, tmp_path):
    from eeg2image_tf.checkpoints import load_encoder
    from eeg2image_tf.data import preprocess
    from eeg2image_tf.data.thoughtviz import load_thoughtviz
    from eeg2image_tf.models import encoder_features
    from eeg2image_tf.training.gan_data import load_gan_data

    config = _config(tiny_set, tmp_path / "run")
    first = load_gan_data(config, tmp_path)
    assert not first.conditions_cached and (tmp_path / "conditions.npz").exists()
    assert first.conditions.shape == (4, 128) and first.class_names == CLASSES
    assert first.images.shape == (4, 128, 128, 3) and first.image_index.shape == (4,)
    # Each trial's image is of its own class (image bank order: Alpha_0, Alpha_1, Beta_0, Beta_1).
    np.testing.assert_array_equal(first.image_index // 2, first.labels)
    # The conditions are the encoder's features (not the unit-norm embeddings) of the trials.
    raw = load_thoughtviz(tiny_set["data"]).x_train
    expected = encoder_features(load_encoder(tiny_set["encoder"]), preprocess(raw))
    np.testing.assert_allclose(first.conditions, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.linalg.norm(first.conditions, axis=1), 1.0)

    second = load_gan_data(config, tmp_path)
    assert second.conditions_cached
    np.testing.assert_array_equal(second.conditions, first.conditions)

    changed = dataclasses.replace(config, normalisation="zscore")
    third = load_gan_data(changed, tmp_path)
    assert not third.conditions_cached
    assert not np.allclose(third.conditions, first.conditions)


def test_class_count_mismatch_is_a_data_error(tiny_set, tmp_path):
    from eeg2image_tf.training.gan import train_gan

    images = tmp_path / "images"
    _write_images(images / "train", CLASSES + ("Gamma",), 1, np.random.default_rng(0))
    with pytest.raises(DataError, match="3 image classes but the EEG set"):
        train_gan(_config(tiny_set, tmp_path / "run", images=str(images)))


def test_cli_reports_a_bad_data_path_in_one_line(tiny_set, tmp_path, capsys):
    from eeg2image_tf.errors import run_main
    from eeg2image_tf.train_gan import main

    missing = tmp_path / "nowhere.pkl"
    code = run_main(main, ["--data", str(missing), "--images", tiny_set["images"],
                           "--encoder", tiny_set["encoder"], "--run", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(missing) in err and "\n" not in err


def test_epoch_shuffle_seeds_differ_between_epochs_and_runs():
    from eeg2image_tf.training.gan_data import epoch_shuffle_seed

    seeds = {epoch_shuffle_seed(45, epoch) for epoch in range(100)}
    assert len(seeds) == 100 and epoch_shuffle_seed(45, 0) == epoch_shuffle_seed(45, 0)
    assert epoch_shuffle_seed(46, 0) != epoch_shuffle_seed(45, 0)
    assert all(0 <= seed < 2 ** 31 for seed in seeds)


# --------------------------------------------------------------------------------------------------
# Slow: real training runs
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_and_writes_outputs(tiny_set, tmp_path):
    """3 steps in one go == 1 step, then a resume to 3: step, weights, Adam state, latents, data order.

    At a learning rate too small to move the weights, so that rounding (TensorFlow's CPU kernels do
    not promise bit-equal runs) is not amplified by G's steps seeing D's updated weights, and Adam's
    moments show which inputs every step saw (``assert_same_inputs_seen``)."""
    from adam_support import TINY_LEARNING_RATE, assert_same_inputs_seen, assert_statistics_agree

    from eeg2image_tf.training.gan import train_gan

    def config(run: Path, **overrides) -> GanTrainConfig:
        return _config(tiny_set, run, learning_rate=TINY_LEARNING_RATE, **overrides)

    straight = train_gan(config(tmp_path / "straight"))
    assert straight["step"] == 3 and straight["stopped"] == "completed"
    assert not straight["conditions_cached"]
    for name in ("gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total"):
        assert np.isfinite(straight[name]), name
    assert straight["ms_per_step"] > 0

    first = train_gan(config(tmp_path / "resumed", max_steps=1))
    assert first["step"] == 1
    partial = _checkpoint_values(first["checkpoint"])
    assert partial["step/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    iterations = [key for key in partial if key.endswith("iterations/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(iterations) == 2 and all(partial[key] == 1 for key in iterations)
    # Adam's first and second moments of every trainable variable (G: 17, D: 20) were saved and have
    # moved. Only D's score bias may keep a zero gradient: when every real and fake score lies inside
    # the hinge margin its two terms cancel exactly (-1/2 + 1/2).
    slots = [key for key in partial if "optimizer/_variables/" in key]
    assert len(slots) == 2 * (17 + 20)
    still_zero = [key for key in slots if not np.any(partial[key] != 0)]
    assert len(still_zero) <= 2 and all(key.startswith("d_optimizer/") for key in still_zero), still_zero
    # Extending max_steps is allowed on an existing run; the second half starts mid-epoch (step 1 of 2).
    resumed = train_gan(config(tmp_path / "resumed", max_steps=3))
    assert resumed["step"] == 3 and resumed["conditions_cached"]

    expected = _checkpoint_values(straight["checkpoint"])
    found = _checkpoint_values(resumed["checkpoint"])
    assert expected.keys() == found.keys() and set(slots) <= set(found)
    # The counters exactly; the arithmetic to rounding. A resume that drew other latents or
    # batches, or lost Adam's moments, misses by whole gradients.
    for key, value in expected.items():
        if value.dtype.kind != "f":
            np.testing.assert_array_equal(found[key], value, err_msg=key)
        elif "optimizer/" not in key:       # BatchNorm statistics, power-iteration vectors
            assert_statistics_agree(found[key], value, key)
    assert_same_inputs_seen(Path(resumed["checkpoint"]), Path(straight["checkpoint"]), steps=2,
                            learning_rate=TINY_LEARNING_RATE,
                            optimizers=("g_optimizer", "d_optimizer"))
    for key in iterations:
        assert found[key] == 3
    assert not np.array_equal(partial["step/.ATTRIBUTES/VARIABLE_VALUE"],
                              found["step/.ATTRIBUTES/VARIABLE_VALUE"])

    run = tmp_path / "straight"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["steps_per_epoch"] == 2 and metrics["epoch"] == 1.5
    assert metrics["stopped"] == "completed" and metrics["steps_this_run"] == 3
    assert set(metrics["losses"]) == {"gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total"}
    assert metrics["ms_per_step"] > 0 and metrics["wall_time_s"] > 0
    # ms_per_step is wall time (checkpoints and samples included), compute_ms_per_step the step
    assert metrics["ms_per_step"] >= metrics["compute_ms_per_step"] > 0
    assert metrics["d_saturation"]["steps"] == 3
    assert 0.0 <= metrics["d_saturation"]["fraction"] <= 1.0
    import cv2

    for name in ("step_000002.png", "step_000003.png", "latest.png"):
        image = cv2.imread(str(run / "samples" / name))
        assert image is not None and image.shape == (GRID_HEIGHT, GRID_WIDTH, 3), name
    assert not (run / "samples" / "step_000001.png").exists()      # sample_every=2, and the end
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == \
        ["ckpt-1.index", "ckpt-2.index", "ckpt-3.index"]
    tags = _tensorboard_tags(run / "tensorboard" / "train")
    assert {"gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total", "gan/samples",
            "gan/d_saturated_fraction"} <= tags

    from eeg2image_tf.checkpoints import load_gan

    generator, _discriminator = load_gan(run)
    assert generator(np.zeros((1, 256), np.float32)).shape == (1, 128, 128, 3)


# Expected: Keras's spectral normalisation caps an inverse norm at 1/epsilon = 1e7, which is
# infinite in float16; numpy warns while the float16 graph is traced (README: float16 mode).
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.slow
def test_float32_run_resumes_in_mixed_float16_with_logged_loss_scales(tiny_set, tmp_path):
    """The precision may change on resume (RESUMABLE_FIELDS): a float16 continuation of a float32
    run starts its loss scales afresh, logs them and checkpoints them beside the usual objects."""
    from eeg2image_tf.training.gan import train_gan
    from eeg2image_tf.training.gan_state import LOSS_SCALE_OBJECTS

    run = tmp_path / "run"
    train_gan(_config(tiny_set, run, max_steps=1))
    with pytest.warns(RuntimeWarning, match="mixed_float16 is meant for GPUs"):
        result = train_gan(_config(tiny_set, run, max_steps=2, precision="mixed_float16"))
    assert result["step"] == 2 and np.isfinite(result["gan/g_total"])
    scales = json.loads((run / "metrics.json").read_text())["loss_scales"]
    assert set(scales) == {f"precision/{name}" for name in LOSS_SCALE_OBJECTS}
    # Keras's initial 2^15, halved once for each skipped (overflowing) step.
    assert all(value in (2.0 ** 15, 2.0 ** 14) for value in scales.values())
    assert set(scales) <= _tensorboard_tags(run / "tensorboard" / "train")
    stored = {key.split("/", 1)[0] for key in _checkpoint_values(result["checkpoint"])}
    assert {"g_optimizer", "d_optimizer", *LOSS_SCALE_OBJECTS} <= stored
    assert result["checkpoint"].endswith("ckpt-2")


def _tensorboard_tags(directory: Path) -> set:
    import tensorflow as tf

    tags = set()
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tiny_set, tmp_path,
                                                                          monkeypatch):
    import tensorflow as tf

    from eeg2image_tf.training import gan

    healthy = gan.GanSteps.replica_step

    def poisoned(self, step, images, conditions):
        losses = healthy(self, step, images, conditions)
        nan = tf.constant(float("nan"))
        losses["gan/g_total"] = tf.where(step >= 1, nan, losses["gan/g_total"])
        return losses

    monkeypatch.setattr(gan.GanSteps, "replica_step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"gan/g_total became nan at step 2.*ckpt-1"):
        gan.train_gan(_config(tiny_set, run))
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-1.index"]


def _subprocess_env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow
def test_sigterm_saves_a_loadable_checkpoint_and_exits_with_a_message(tiny_set, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "eeg2image_tf.train_gan", "--data", tiny_set["data"],
               "--images", tiny_set["images"], "--encoder", tiny_set["encoder"], "--run", str(run),
               "--batch-size", "2", "--max-steps", "100000", "--checkpoint-every", "1",
               "--sample-every", "100000"]
    process = subprocess.Popen(command, env=_subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "checkpoint").exists():
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "SIGTERM received at step" in err and "rerun the same command to resume" in err

    from eeg2image_tf.checkpoints import latest_checkpoint_in, load_gan

    prefix = latest_checkpoint_in(run / "checkpoints")
    step = int(_checkpoint_values(prefix)["step/.ATTRIBUTES/VARIABLE_VALUE"])
    assert step >= 1 and prefix.endswith(f"ckpt-{step}")
    generator, discriminator = load_gan(run)
    images = generator(np.zeros((2, 256), np.float32))
    assert discriminator(images, np.zeros((2, 128), np.float32)).shape == (2, 1)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "interrupted" and metrics["step"] == step


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf

    # Two logical CPUs must be configured before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.training import gan

    built = []
    build = gan.build_gan_state
    gan.build_gan_state = lambda *args, **kwargs: built.append(build(*args, **kwargs)) or built[-1]
    result = gan.train_gan(GanTrainConfig(**json.loads(sys.argv[1])))
    state = built[0]
    # Largest difference between the two replicas' copies of any model or optimizer variable.
    spread = 0.0
    for variable in (state.generator.weights + state.discriminator.weights
                     + state.g_optimizer.variables + state.d_optimizer.variables
                     + state.generator_ema.weights):
        copies = [copy.numpy() for copy in variable.value.values]
        assert len(copies) == 2, variable.path
        spread = max(spread, float(abs(copies[0] - copies[1]).max()))
    result["replica_spread"] = spread
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_two_steps_under_mirrored_strategy_on_two_logical_cpus(tiny_set, tmp_path):
    run = tmp_path / "run"
    # With the generator's moving average, updated in cross-replica context.
    config = dataclasses.asdict(_config(tiny_set, run, batch_size=4, max_steps=2, strategy="mirrored",
                                        checkpoint_every=2, sample_every=2, ema_decay=0.9))
    completed = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(config)],
                               env=_subprocess_env(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["step"] == 2
    # One set of weights, optimizer slots and BatchNorm statistics, not one per replica.
    assert result["replica_spread"] == 0.0
    for name in ("gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total"):
        assert np.isfinite(result[name]), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["step"] == 2
    values = _checkpoint_values(result["checkpoint"])
    assert values["step/.ATTRIBUTES/VARIABLE_VALUE"] == 2
    assert all(np.all(np.isfinite(v)) for v in values.values() if np.issubdtype(v.dtype, np.floating))


# --------------------------------------------------------------------------------------------------
# Exponential moving average of the generator (--ema-decay)
# --------------------------------------------------------------------------------------------------

def test_ema_decay_outside_zero_one_is_refused(tiny_set, tmp_path):
    from eeg2image_tf.errors import ConfigError
    from eeg2image_tf.training.gan import train_gan

    for decay in (1.0, -0.1):
        with pytest.raises(ConfigError, match="--ema-decay must be in"):
            train_gan(_config(tiny_set, tmp_path / f"run{decay}", ema_decay=decay))


def _assert_ema_recursion(run: Path, decay: float) -> int:
    """The average in ``run``'s ckpt-2 is ``decay x`` ckpt-1's average ``+ (1 - decay) x`` ckpt-2's
    trained weights (to float32 rounding of that one multiply-add), trainable weights only;
    BatchNorm statistics and spectral-norm vectors are copied. Returns how many trainable weights
    lag behind the trained ones."""
    from eeg2image_tf.checkpoints import load_gan

    prefixes = [str(run / "checkpoints" / f"ckpt-{k}") for k in (1, 2)]
    trained = load_gan(prefixes[1], ema=False).generator
    averaged = [load_gan(p).generator for p in prefixes]
    moved = 0
    for k, variable in enumerate(trained.weights):
        previous, current = averaged[0].weights[k].numpy(), variable.numpy()
        found = averaged[1].weights[k].numpy()
        if variable.trainable:
            np.testing.assert_allclose(found, decay * previous + (1 - decay) * current,
                                       rtol=1e-6, atol=1e-7, err_msg=f"{run.name} {variable.path}")
            moved += int(not np.array_equal(found, current))
        else:
            np.testing.assert_array_equal(found, current, err_msg=f"{run.name} {variable.path}")
    return moved


@pytest.mark.slow
def test_ema_follows_its_recursion_resumes_and_is_what_loaders_return(tiny_set, tmp_path):
    """A resume restores the average from the checkpoint. Its weights are not compared with the
    uninterrupted run's bit for bit: TensorFlow's CPU kernels may round a step's gradients
    differently from run to run, and the GAN's updates carry that into the weights. What a lost or
    re-initialised average would break is the recursion across the restart, which holds exactly."""
    from eeg2image_tf.checkpoints import checkpoint_has_ema
    from eeg2image_tf.training.gan import train_gan

    decay = 0.5
    straight = train_gan(_config(tiny_set, tmp_path / "straight", max_steps=2, ema_decay=decay))
    assert checkpoint_has_ema(straight["checkpoint"]) and straight["step"] == 2
    assert _assert_ema_recursion(tmp_path / "straight", decay) >= 7   # the seven kernels at least

    # 1 step, then 1 more in a second process-like call: the average of ckpt-1 carries over.
    train_gan(_config(tiny_set, tmp_path / "resumed", max_steps=1, ema_decay=decay))
    resumed = train_gan(_config(tiny_set, tmp_path / "resumed", max_steps=2, ema_decay=decay))
    assert resumed["step"] == 2
    assert _assert_ema_recursion(tmp_path / "resumed", decay) >= 7

    def averaged_keys(checkpoint: str) -> set[str]:
        return {key for key in _checkpoint_values(checkpoint) if key.startswith("generator_ema/")}

    assert averaged_keys(resumed["checkpoint"]) == averaged_keys(straight["checkpoint"]) != set()

    # A run without an average has none; loaders then give the trained generator either way.
    plain = train_gan(_config(tiny_set, tmp_path / "plain", max_steps=1))
    assert not checkpoint_has_ema(plain["checkpoint"])
    assert not any(key.startswith("generator_ema/") for key in _checkpoint_values(plain["checkpoint"]))


# --------------------------------------------------------------------------------------------------
# Choices by the device
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_devices_choice_of_matmul_convs_is_recorded_in_config_json(tiny_set, tmp_path,
                                                                      monkeypatch):
    from eeg2image_tf.models import matmul_conv
    from eeg2image_tf.training.gan import train_gan

    def recorded() -> bool:
        return json.loads((tmp_path / "run" / "config.json").read_text())["matmul_convs"]

    monkeypatch.setattr(matmul_conv, "gpu_present", lambda: True)
    assert train_gan(_config(tiny_set, tmp_path / "run", max_steps=1))["step"] == 1
    assert recorded() is False
    # The finished run rerun on a CPU: accepted, and recorded as this machine chose.
    monkeypatch.setattr(matmul_conv, "gpu_present", lambda: False)
    assert train_gan(_config(tiny_set, tmp_path / "run", max_steps=1))["step"] == 1
    assert recorded() is True
    # The flag wins over the device.
    train_gan(_config(tiny_set, tmp_path / "run", max_steps=1, matmul_convs=False))
    assert recorded() is False


def test_saturation_counter_counts_exact_zeros_over_the_run_and_a_window():
    from eeg2image_tf.training.gan import SaturationCounter

    counter = SaturationCounter(window=4)
    for value in (0.0, 0.5, 0.0, 0.0, 1e-9, 0.0):
        counter.add(value)
    recorded = counter.as_dict()
    assert recorded["saturated_steps"] == 4 and recorded["steps"] == 6
    assert recorded["fraction"] == pytest.approx(4 / 6)
    # the last four steps: 0.0, 0.0, 1e-9, 0.0 (a tiny loss is not saturation)
    assert recorded["recent_fraction"] == pytest.approx(0.75) and recorded["recent_steps"] == 4
    assert counter.summaries() == {"gan/d_saturated_fraction": pytest.approx(0.75)}
    # a resumed run carries the totals on
    resumed = SaturationCounter.from_metrics({"d_saturation": recorded})
    resumed.add(0.0)
    assert resumed.as_dict()["saturated_steps"] == 5 and resumed.as_dict()["steps"] == 7
    assert SaturationCounter().as_dict()["fraction"] is None
