"""SavedModel export: signatures, reload parity in a fresh process, saved_model_cli, input checks.

Two real exports per test run (module-scoped fixtures, each taking many seconds), and the tests
that use them are marked slow:

- a GAN run we fabricate in the training checkpoint format, with trials of 6 channels x 20
  samples and a 16-d latent so that nothing can be hard-coded to ThoughtViz's 14 x 32 x 128; four
  clients (a fresh Python process, ``saved_model_cli show`` and ``run``, the example client) then
  run side by side on it;
- the authors' published checkpoints from the shared fixtures, checked against their reference
  images.

The fast tests use a tiny stand-in generator and never save a model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from eeg2image_tf.errors import run_main
from eeg2image_tf.config import EncoderTrainConfig, ExportConfig, GanTrainConfig
from eeg2image_tf.runs import save_config
from eeg2image_tf.errors import ConfigError, Eeg2ImageError

NUM_CHANNELS = 6
NUM_SAMPLES = 20
LATENT_DIM = 16
HIDDEN = 8
CLASS_NAMES = ("Apple", "Car", "Dog")
GAN_STEP = 5
ENCODER_EPOCH = 30
SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")
SUBPROCESS_TIMEOUT_S = 300
EXAMPLE_CLIENT = Path(__file__).resolve().parents[1] / "examples" / "serve_client.py"
CLIENT_TRIALS = (0, 4)
CLIENT_SEED = 3


def _quiet_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _raw_trials(rng: np.random.Generator, count: int) -> np.ndarray:
    """Raw Emotiv-like trials ``(count, C, T, 1)``: positive, about 3900-4600."""
    return rng.uniform(3900.0, 4600.0, (count, NUM_CHANNELS, NUM_SAMPLES, 1)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_data(tmp_path_factory):
    """A small EEG set ``(N, 6, 20, 1)`` with three named classes, as an ``.npz``."""
    from eeg2image_tf.data import EEGSplits, save_npz

    rng = np.random.default_rng(3)
    splits = EEGSplits(x_train=_raw_trials(rng, 12), y_train=np.tile(np.arange(3), 4).astype(np.int64),
                       x_test=_raw_trials(rng, 6), y_test=np.tile(np.arange(3), 2).astype(np.int64),
                       class_names=CLASS_NAMES, source="test")
    return save_npz(splits, tmp_path_factory.mktemp("data") / "eeg.npz")


@pytest.fixture(scope="module")
def gan_run(run_data, tmp_path_factory):
    """A GAN run in our training format (config.json + checkpoints/) and its encoder run."""
    import keras
    import tensorflow as tf

    from eeg2image_tf.models import build_discriminator, build_encoder, build_generator

    root = tmp_path_factory.mktemp("gan_run")
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(3)
    encoder = build_encoder(hidden=HIDDEN, num_channels=NUM_CHANNELS, num_samples=NUM_SAMPLES)
    generator = build_generator(latent_dim=LATENT_DIM)
    discriminator = build_discriminator()
    # Non-trivial BatchNorm statistics, so that training=False in the export is actually tested.
    for norm in generator.norms:
        norm.moving_mean.assign(rng.normal(0.0, 0.1, norm.moving_mean.shape).astype(np.float32))
        norm.moving_variance.assign(rng.uniform(0.5, 2.0, norm.moving_variance.shape).astype(np.float32))

    encoder_run = root / "encoder_run"
    save_config(EncoderTrainConfig(data=str(run_data), run=str(encoder_run), hidden=HIDDEN), encoder_run)
    tf.train.CheckpointManager(
        tf.train.Checkpoint(encoder=encoder, epoch=tf.Variable(ENCODER_EPOCH, dtype=tf.int64)),
        str(encoder_run / "checkpoints"), max_to_keep=None).save(checkpoint_number=ENCODER_EPOCH // 10)

    run = root / "gan"
    save_config(GanTrainConfig(data=str(run_data), images=str(root / "images"), encoder=str(encoder_run),
                               run=str(run), latent_dim=LATENT_DIM), run)
    tf.train.CheckpointManager(
        tf.train.Checkpoint(step=tf.Variable(GAN_STEP, dtype=tf.int64), generator=generator,
                            discriminator=discriminator),
        str(run / "checkpoints"), max_to_keep=3).save(checkpoint_number=GAN_STEP)
    return {"run": run, "data": run_data, "encoder": encoder, "generator": generator}


@pytest.fixture(scope="module")
def run_export(gan_run, tmp_path_factory):
    """The GAN run exported through the command line entry point."""
    from eeg2image_tf.export import main

    out = tmp_path_factory.mktemp("exports") / "model"
    assert main(["--run", str(gan_run["run"]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def inputs(gan_run):
    """Raw trials ``(4, C, T)``, noise ``(4, latent)`` and the in-memory models' outputs for them."""
    import tensorflow as tf

    from eeg2image_tf.data import preprocess
    from eeg2image_tf.models.inference import images_to_uint8

    rng = np.random.default_rng(11)
    eeg = _raw_trials(rng, 4)[..., 0]
    noise = rng.uniform(-1.0, 1.0, (4, LATENT_DIM)).astype(np.float32)
    embeddings, features = gan_run["encoder"](preprocess(eeg, method="original"), training=False)
    images_float = gan_run["generator"](tf.concat([noise, features], axis=-1), training=False)
    return {"eeg": eeg, "noise": noise, "features": features.numpy(), "embeddings": embeddings.numpy(),
            "images_float": images_float.numpy(), "images": images_to_uint8(images_float).numpy()}


RELOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    model_dir, inputs_path, outputs_path, errors_path = sys.argv[1:5]
    model = tf.saved_model.load(model_dir)
    given = np.load(inputs_path)
    results, errors = {}, {}

    def run(signature, prefix, **kwargs):
        for key, value in model.signatures[signature](**kwargs).items():
            results[prefix + "/" + key] = value.numpy()

    def refused(name, signature, **kwargs):
        try:
            model.signatures[signature](**kwargs)
            errors[name] = None
        except tf.errors.InvalidArgumentError as exc:
            errors[name] = exc.message

    eeg, noise = tf.constant(given["eeg"]), tf.constant(given["noise"])
    seed = tf.constant(7, tf.int64)
    run("serving_default", "serving_default", eeg=eeg, noise=noise)
    run("generate", "generate", eeg=eeg, noise=noise)
    run("generate_seeded", "seeded", eeg=eeg, seed=seed)
    run("generate_seeded", "seeded_again", eeg=eeg, seed=seed)
    run("embed", "embed", eeg=eeg)
    run("generate_from_features", "from_features", features=tf.constant(given["features"]), noise=noise)
    # The restored tf.function attribute is the same graph as the signature.
    results["attribute/images"] = model.generate(eeg, noise)["images"].numpy()
    refused("one_channel_short", "embed", eeg=eeg[:, 1:])
    refused("trailing_axis", "generate_seeded", eeg=eeg[..., None], seed=seed)
    refused("noise_width", "generate", eeg=eeg, noise=noise[:, 1:])
    refused("batch_mismatch", "generate", eeg=eeg, noise=noise[:2])
    np.savez(outputs_path, **results)
    with open(errors_path, "w") as handle:
        json.dump(errors, handle)
""")


@pytest.fixture(scope="module")
def clients(run_export, gan_run, inputs, tmp_path_factory):
    """Four clients of the run export, run side by side (each mostly waits on importing TF).

    Returns the work directory and ``{name: CompletedProcess}`` for ``reload`` (RELOAD_SCRIPT),
    ``show`` and ``run`` (saved_model_cli) and ``client`` (examples/serve_client.py).
    """
    work = tmp_path_factory.mktemp("clients")
    (work / "reload.py").write_text(RELOAD_SCRIPT)
    np.savez(work / "inputs.npz", eeg=inputs["eeg"], noise=inputs["noise"], features=inputs["features"])
    np.save(work / "eeg.npy", inputs["eeg"])
    np.save(work / "noise.npy", inputs["noise"])
    commands = {
        "reload": [sys.executable, work / "reload.py", run_export, work / "inputs.npz",
                   work / "outputs.npz", work / "errors.json"],
        "show": [SAVED_MODEL_CLI, "show", "--dir", run_export, "--all"],
        "run": [SAVED_MODEL_CLI, "run", "--dir", run_export, "--tag_set", "serve", "--signature_def",
                "generate", "--inputs", f"eeg={work / 'eeg.npy'};noise={work / 'noise.npy'}",
                "--outdir", work / "cli_out"],
        "client": [sys.executable, EXAMPLE_CLIENT, "--model", run_export, "--data", gan_run["data"],
                   "--trials", *map(str, CLIENT_TRIALS), "--seed", str(CLIENT_SEED),
                   "--out", work / "pngs"],
    }
    started = {}
    try:
        for name, command in commands.items():
            # Files, not pipes: a client blocked on a full pipe would never finish.
            with open(work / f"{name}.out", "w") as stdout, open(work / f"{name}.err", "w") as stderr:
                started[name] = subprocess.Popen([str(part) for part in command], stdout=stdout,
                                                 stderr=stderr, env=_quiet_env())
        for process in started.values():
            process.wait(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return work, {name: subprocess.CompletedProcess(process.args, process.returncode,
                                                    (work / f"{name}.out").read_text(),
                                                    (work / f"{name}.err").read_text())
                  for name, process in started.items()}


def _succeeded(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def reloaded(clients):
    """Outputs and error messages of every signature, from the fresh process."""
    work, finished = clients
    _succeeded(finished["reload"])
    return dict(np.load(work / "outputs.npz")), json.loads((work / "errors.json").read_text())


@pytest.fixture(scope="module")
def original_export(fixture_file, tmp_path_factory):
    """The published encoder and the original-format GAN checkpoint, exported and reloaded."""
    import tensorflow as tf

    from eeg2image_tf.serving.export import export_from_run

    encoder = fixture_file("original_encoder_ckpt") / "ckpt-2420"
    gan = fixture_file("original_gan_ckpt") / "ckpt-1"
    out = tmp_path_factory.mktemp("original") / "model"
    export_from_run(ExportConfig(out=str(out), original_encoder=str(encoder), original_gan=str(gan),
                                 class_set="image"))
    return out, tf.saved_model.load(str(out))


# --------------------------------------------------------------------------------------------------
# Reload parity (fresh process)
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_reloaded_generator_matches_in_memory_models(reloaded, inputs):
    outputs, _ = reloaded
    np.testing.assert_allclose(outputs["from_features/images_float"], inputs["images_float"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(outputs["from_features/images"], inputs["images"])
    # The uint8 conversion in the graph is numpy's clip-then-astype of the float images.
    converted = np.clip((outputs["from_features/images_float"] * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(outputs["from_features/images"], converted)
    # Random weights must still give a picture, not a constant.
    assert outputs["from_features/images"].std() > 1.0


@pytest.mark.slow
def test_reloaded_generate_runs_preprocessing_and_encoder_in_the_graph(reloaded, inputs):
    outputs, _ = reloaded
    assert outputs["generate/images"].dtype == np.uint8
    assert outputs["generate/images"].shape == (4, 128, 128, 3)
    np.testing.assert_allclose(outputs["generate/features"], inputs["features"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(outputs["generate/images"], inputs["images"])
    np.testing.assert_array_equal(outputs["serving_default/images"], outputs["generate/images"])
    np.testing.assert_array_equal(outputs["attribute/images"], outputs["generate/images"])
    np.testing.assert_allclose(outputs["embed/features"], inputs["features"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs["embed/embeddings"], inputs["embeddings"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(outputs["embed/embeddings"], axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_generate_seeded_draws_documented_noise(reloaded, inputs, gan_run):
    import tensorflow as tf

    from eeg2image_tf.models.inference import images_to_uint8

    outputs, _ = reloaded
    expected_noise = tf.random.stateless_uniform([4, LATENT_DIM], seed=[7, 0], minval=-1.0, maxval=1.0)
    np.testing.assert_array_equal(outputs["seeded/noise"], expected_noise.numpy())
    assert outputs["seeded/noise"].min() >= -1.0 and outputs["seeded/noise"].max() < 1.0
    np.testing.assert_array_equal(outputs["seeded/images"], outputs["seeded_again/images"])
    images = gan_run["generator"](tf.concat([expected_noise, inputs["features"]], axis=-1), training=False)
    np.testing.assert_array_equal(outputs["seeded/images"], images_to_uint8(images).numpy())
    assert not np.array_equal(outputs["seeded/images"], outputs["generate/images"])


@pytest.mark.slow
def test_wrong_shapes_are_refused_with_the_documented_message(reloaded, run_export):
    _, errors = reloaded
    documented = json.loads((run_export / "signature.json").read_text())["errors"]["wrong eeg shape"]
    expected_prefix = documented.split("got]")[0] + "got]"
    assert expected_prefix.startswith(f"assertion failed: [eeg must have shape [batch, {NUM_CHANNELS}, "
                                      f"{NUM_SAMPLES}]")
    assert expected_prefix in errors["one_channel_short"]
    assert f"[4 {NUM_CHANNELS - 1} {NUM_SAMPLES}]" in errors["one_channel_short"]
    assert expected_prefix in errors["trailing_axis"]
    assert f"[4 {NUM_CHANNELS} {NUM_SAMPLES} 1]" in errors["trailing_axis"]
    assert f"noise must have shape [batch, {LATENT_DIM}]" in errors["noise_width"]
    assert "eeg and noise must have the same batch size" in errors["batch_mismatch"]


# --------------------------------------------------------------------------------------------------
# saved_model_cli
# --------------------------------------------------------------------------------------------------

_CLI_DTYPES = {"float32": "DT_FLOAT", "int64": "DT_INT64", "uint8": "DT_UINT8"}


def _parse_show_all(text: str) -> dict:
    """``{signature: {"inputs"|"outputs": {name: (dtype, shape)}}}`` from ``show --all``."""
    signatures = {}
    blocks = re.split(r"^signature_def\['([^']+)'\]:\s*$", text, flags=re.M)
    for name, body in zip(blocks[1::2], blocks[2::2]):
        body = body.split("Method name is")[0]
        inputs_part, _, outputs_part = body.partition("contains the following output(s):")
        entry = {}
        for kind, part in (("inputs", inputs_part), ("outputs", outputs_part)):
            entry[kind] = {m.group(1): (m.group(2), m.group(3).strip()) for m in re.finditer(
                rf"{kind}\['([^']+)'\] tensor_info:\s*dtype: (\w+)\s*shape: ([^\n]+)", part)}
        signatures[name] = entry
    return signatures


@pytest.mark.slow
def test_saved_model_cli_show_lists_the_documented_signatures(clients, run_export):
    shown = _parse_show_all(_succeeded(clients[1]["show"]).stdout)
    documented = json.loads((run_export / "signature.json").read_text())["signatures"]
    # TF adds an init op of its own to every SavedModel.
    assert set(shown) - {"__saved_model_init_op"} == {
        "serving_default", "generate", "generate_seeded", "embed", "generate_from_features"}
    assert set(documented) == set(shown) - {"__saved_model_init_op"}
    for name, signature in documented.items():
        assert set(shown[name]["inputs"]) == set(signature["inputs"]), name
        assert set(shown[name]["outputs"]) == set(signature["outputs"]), name
        for tensor_name, tensor in signature["inputs"].items():
            dtype, shape = shown[name]["inputs"][tensor_name]
            assert dtype == _CLI_DTYPES[tensor["dtype"]], (name, tensor_name)
            # Inputs are declared loose on purpose (checked in the graph); a scalar stays a scalar.
            assert shape == ("()" if tensor["shape"] == [] else "unknown_rank"), (name, tensor_name)
        for tensor_name, tensor in signature["outputs"].items():
            dtype, shape = shown[name]["outputs"][tensor_name]
            assert dtype == _CLI_DTYPES[tensor["dtype"]], (name, tensor_name)
            assert shape == "(" + ", ".join("-1" if d is None else str(d) for d in tensor["shape"]) + ")"
    assert documented["generate"]["inputs"]["eeg"]["shape"] == [None, NUM_CHANNELS, NUM_SAMPLES]
    assert documented["generate"]["inputs"]["noise"]["shape"] == [None, LATENT_DIM]
    assert documented["generate"]["outputs"]["images"]["shape"] == [None, 128, 128, 3]


@pytest.mark.slow
def test_saved_model_cli_run_writes_the_outputs(clients, inputs):
    # saved_model_cli run loads through a TF 1 session, as TF Serving does.
    work, finished = clients
    _succeeded(finished["run"])
    np.testing.assert_array_equal(np.load(work / "cli_out" / "images.npy"), inputs["images"])
    np.testing.assert_allclose(np.load(work / "cli_out" / "features.npy"), inputs["features"],
                               atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------
# Files beside the model
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_signature_json_and_readme_record_shapes_classes_and_provenance(run_export, gan_run):
    import eeg2image_tf

    metadata = json.loads((run_export / "signature.json").read_text())
    assert metadata["model"] == {"num_channels": NUM_CHANNELS, "num_samples": NUM_SAMPLES,
                                 "latent_dim": LATENT_DIM, "feature_dim": 128, "image_size": 128,
                                 "normalisation": "original", "noise": "uniform(-1, 1)"}
    assert metadata["class_names"] == list(CLASS_NAMES)
    provenance = metadata["provenance"]
    assert provenance["source"] == "run"
    assert provenance["run"] == str(gan_run["run"].resolve())
    assert provenance["checkpoint"].endswith(f"checkpoints/ckpt-{GAN_STEP}")
    assert provenance["step"] == GAN_STEP
    assert provenance["encoder"].endswith(f"encoder_run/checkpoints/ckpt-{ENCODER_EPOCH // 10}")
    assert provenance["encoder_step"] == ENCODER_EPOCH
    assert provenance["data"] == str(gan_run["data"])
    assert provenance["package_version"] == eeg2image_tf.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", provenance["export_time"])
    seeded = metadata["signatures"]["generate_seeded"]
    assert (seeded["inputs"]["seed"]["dtype"], seeded["inputs"]["seed"]["shape"]) == ("int64", [])
    assert set(seeded["outputs"]) == {"images", "features", "noise"}
    assert metadata["signatures"]["serving_default"]["alias_of"] == "generate"

    readme = (run_export / "README.txt").read_text()
    for expected in ("serving_default", "generate_seeded", "embed", "generate_from_features",
                     f"[batch, {NUM_CHANNELS}, {NUM_SAMPLES}]", "0: Apple, 1: Car, 2: Dog",
                     provenance["checkpoint"], f"step: {GAN_STEP}", provenance["export_time"]):
        assert expected in readme, expected
    assert (run_export / "saved_model.pb").is_file()
    # An export is meant to be copied to a server: not private to the exporting user.
    assert (run_export / "signature.json").stat().st_mode & 0o044
    assert run_export.stat().st_mode & 0o055


@pytest.mark.slow
def test_serve_client_writes_png_files(clients, gan_run):
    import tensorflow as tf

    from eeg2image_tf.data import load_thoughtviz, preprocess
    from eeg2image_tf.models.inference import images_to_uint8

    work, finished = clients
    _succeeded(finished["client"])
    files = sorted(path.name for path in (work / "pngs").iterdir())
    # Test trial 0 is of class 0 (Apple), trial 4 of class 1 (Car).
    assert files == [f"test_00000_Apple_seed{CLIENT_SEED}.png", f"test_00004_Car_seed{CLIENT_SEED}.png"]
    # PNG is lossless: each file holds exactly the generator's image for its trial and the seed.
    trials = load_thoughtviz(gan_run["data"]).x_test[list(CLIENT_TRIALS)]
    _, features = gan_run["encoder"](preprocess(trials), training=False)
    noise = tf.random.stateless_uniform([len(CLIENT_TRIALS), LATENT_DIM], seed=[CLIENT_SEED, 0],
                                        minval=-1.0, maxval=1.0)
    expected = images_to_uint8(gan_run["generator"](tf.concat([noise, features], -1), training=False))
    for name, image in zip(files, expected.numpy()):
        np.testing.assert_array_equal(tf.io.decode_png((work / "pngs" / name).read_bytes()).numpy(), image)


# --------------------------------------------------------------------------------------------------
# The published checkpoints
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_original_export_reproduces_the_reference_generator(original_export, fixture_file):
    _, model = original_export
    reference = np.load(fixture_file("original_gan_reference.npz"))
    z = reference["z"]
    outputs = model.signatures["generate_from_features"](features=z[:, 128:], noise=z[:, :128])
    np.testing.assert_allclose(outputs["images_float"].numpy(), reference["images"], atol=1e-4, rtol=0)
    converted = np.clip((reference["images"] * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
    # The uint8 images may differ by one level only where the float is within 1e-4 of a level.
    assert np.abs(outputs["images"].numpy().astype(int) - converted).max() <= 1


@pytest.mark.slow
def test_original_export_runs_the_published_encoder_on_raw_trials(original_export, fixture_file):
    from eeg2image_tf.data import preprocess
    from eeg2image_tf.checkpoints.original import load_original_encoder

    _, model = original_export
    reference = np.load(fixture_file("original_encoder_reference.npz"))
    outputs = model.signatures["embed"](eeg=reference["raw"][..., 0])
    # Our encoder itself is 1.7e-5 off the TF 2.8 reference (float32 sums over 32 LSTM steps);
    # the export must add nothing to that.
    np.testing.assert_allclose(outputs["features"].numpy(), reference["feature"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(outputs["embeddings"].numpy(), reference["embedding"], atol=1e-4, rtol=0)
    encoder = load_original_encoder(fixture_file("original_encoder_ckpt") / "ckpt-2420")
    _, features = encoder(preprocess(reference["raw"]), training=False)
    np.testing.assert_allclose(outputs["features"].numpy(), features.numpy(), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_original_export_refuses_wrong_channel_count_naming_the_shape(original_export, fixture_file):
    import tensorflow as tf

    out, model = original_export
    raw = np.load(fixture_file("original_encoder_reference.npz"))["raw"][:2, :13, :, 0]
    from eeg2image_tf.serving.module import EEG_SHAPE_HINT

    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            f"eeg must have shape [batch, 14, 32]{EEG_SHAPE_HINT}, got] [2 13 32]")):
        model.signatures["generate_seeded"](eeg=raw, seed=tf.constant(1, tf.int64))
    metadata = json.loads((out / "signature.json").read_text())
    assert "[batch, 14, 32]" in metadata["errors"]["wrong eeg shape"]
    assert metadata["model"]["latent_dim"] == 128
    assert metadata["class_names"][0] == "Apple" and len(metadata["class_names"]) == 10
    assert metadata["provenance"]["source"] == "original checkpoints"
    assert metadata["provenance"]["checkpoint"].endswith("original_gan_ckpt/ckpt-1")
    assert metadata["provenance"]["encoder"].endswith("original_encoder_ckpt/ckpt-2420")


# --------------------------------------------------------------------------------------------------
# Writing safely, and refusing bad requests (fast)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models():
    """A small encoder for 6 x 20 trials and a stand-in generator with the real input and output
    shapes ``(B, 16 + 128) -> (B, 128, 128, 3)`` in [-1, 1], cheap to trace."""
    import keras

    from eeg2image_tf.models import build_encoder

    keras.utils.set_random_seed(4)
    encoder = build_encoder(hidden=4, num_channels=NUM_CHANNELS, num_samples=NUM_SAMPLES)
    generator = keras.Sequential([
        keras.Input((LATENT_DIM + 128,)),
        keras.layers.Dense(3, activation="tanh"),
        keras.layers.Reshape((1, 1, 3)),
        keras.layers.UpSampling2D(128),
    ])
    return encoder, generator


def _fake_export(directory: Path, marker: bytes) -> None:
    directory.mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(marker)
    (directory / "signature.json").write_text("{}")


def _export_tiny(tiny_models, out: Path) -> None:
    from eeg2image_tf.serving.export import export_saved_model

    encoder, generator = tiny_models
    export_saved_model(encoder, generator, out, num_channels=NUM_CHANNELS, num_samples=NUM_SAMPLES,
                       latent_dim=LATENT_DIM, normalisation="original", class_names=CLASS_NAMES,
                       provenance={"source": "test"})


def test_failed_export_leaves_the_previous_export_in_place(tiny_models, tmp_path, monkeypatch):
    from eeg2image_tf.serving import export

    out = tmp_path / "model"
    _fake_export(out, b"good model")

    def save_half_then_fail(module, directory):
        (directory / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "_save_module", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _export_tiny(tiny_models, out)
    assert (out / "saved_model.pb").read_bytes() == b"good model"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_successful_export_replaces_the_previous_export(tiny_models, tmp_path, monkeypatch):
    from eeg2image_tf.serving import export

    out = tmp_path / "model"
    _fake_export(out, b"old model")
    monkeypatch.setattr(export, "_save_module",
                        lambda module, directory: (directory / "saved_model.pb").write_bytes(b"new"))
    _export_tiny(tiny_models, out)
    assert (out / "saved_model.pb").read_bytes() == b"new"
    metadata = json.loads((out / "signature.json").read_text())
    assert metadata["class_names"] == list(CLASS_NAMES)
    assert metadata["model"]["latent_dim"] == LATENT_DIM
    assert (out / "README.txt").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_export_refuses_to_replace_a_directory_that_is_not_an_export(tmp_path):
    from eeg2image_tf.serving.export import export_saved_model

    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(Eeg2ImageError, match="holds files export did not write"):
        export_saved_model(None, None, out, num_channels=14, num_samples=32, latent_dim=128,
                           normalisation="original", class_names=None, provenance={})
    assert (out / "thesis.tex").read_text() == "precious"


def test_export_names_a_model_that_does_not_fit_the_trials(tiny_models, tmp_path):
    from eeg2image_tf.errors import CheckpointError
    from eeg2image_tf.serving.export import export_saved_model

    encoder, generator = tiny_models
    with pytest.raises(CheckpointError, match="encoder: does not take trials of 14 channels"):
        export_saved_model(encoder, generator, tmp_path / "a", num_channels=14,
                           num_samples=NUM_SAMPLES, latent_dim=LATENT_DIM, normalisation="original",
                           class_names=None, provenance={})
    with pytest.raises(CheckpointError, match=r"generator: does not take inputs of width 256 = latent_dim 128"):
        export_saved_model(encoder, generator, tmp_path / "b", num_channels=NUM_CHANNELS,
                           num_samples=NUM_SAMPLES, latent_dim=128, normalisation="original",
                           class_names=None, provenance={})
    assert not list(tmp_path.iterdir())


def test_command_line_needs_one_source(tmp_path, capsys):
    from eeg2image_tf.export import main

    assert run_main(main, ["--out", str(tmp_path / "m")]) == 2
    assert "error: export: give --run DIR, or both --original-encoder PATH and --original-gan PATH" \
        in capsys.readouterr().err
    assert run_main(main, ["--out", str(tmp_path / "m"), "--run", "r", "--original-gan", "g"]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_run_values_are_checked_before_anything_is_loaded(run_data, tmp_path):
    from eeg2image_tf.errors import CheckpointError
    from eeg2image_tf.serving.export import export_from_run

    run = tmp_path / "run"
    save_config(GanTrainConfig(data=str(run_data), images="images", encoder="encoder", run=str(run),
                               latent_dim=LATENT_DIM), run)
    out = str(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"normalisation = 'original' but --normalisation 'zscore'"):
        export_from_run(ExportConfig(out=out, run=str(run), normalisation="zscore"))
    with pytest.raises(ConfigError, match=r"eeg.npz: gives num_channels = 6 but --num-channels 14"):
        export_from_run(ExportConfig(out=out, run=str(run), num_channels=14))
    with pytest.raises(ConfigError, match="not those of --class-set char"):
        export_from_run(ExportConfig(out=out, run=str(run), class_set="char"))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        export_from_run(ExportConfig(out=out, run=str(run)))
    with pytest.raises(ConfigError, match="config.json: not found"):
        export_from_run(ExportConfig(out=out, run=str(tmp_path)))
    assert not (tmp_path / "m").exists()


def test_images_to_uint8_truncates_like_numpy():
    import tensorflow as tf

    from eeg2image_tf.models.inference import images_to_uint8

    # Values around every level boundary, the clip limits and beyond them.
    levels = np.arange(256, dtype=np.float32)
    floats = np.concatenate([(levels + offset) / 255.0 * 2.0 - 1.0
                             for offset in (-1e-3, 0.0, 1e-3, 0.5, 0.999)]).astype(np.float32)
    floats = np.concatenate([floats, np.float32([-1.5, -1.0, 1.0, 1.5])]).reshape(1, -1, 1, 1)
    floats = np.repeat(floats, 3, axis=3)
    expected = np.clip((floats * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(images_to_uint8(tf.constant(floats)).numpy(), expected)
    assert expected.min() == 0 and expected.max() == 255


def test_serve_client_refuses_trials_of_another_shape_before_loading(run_data, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_client", EXAMPLE_CLIENT)
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    export = tmp_path / "export"
    export.mkdir()
    (export / "saved_model.pb").write_bytes(b"")       # never loaded: the check comes first
    (export / "signature.json").write_text(json.dumps({"model": {"num_channels": 128,
                                                                 "num_samples": 440}}))
    code = run_main(client.main, ["--model", str(export), "--data", str(run_data),
                                  "--out", str(tmp_path / "pngs")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert error == (f"error: {run_data}: trials of {NUM_CHANNELS} channels x {NUM_SAMPLES} samples, "
                     f"but the model at {export} takes 128 x 440")
    assert not (tmp_path / "pngs").exists()
