"""Our checkpoint format: save -> load round trips, every accepted path form, architecture errors, the
``import_original`` converter and the shipped converted encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from eeg2image_tf import import_original  # noqa: E402
from eeg2image_tf.checkpoints import (  # noqa: E402
    LoadedGAN, latest_checkpoint_in, load_encoder, load_gan, resolve_checkpoint,
    save_encoder_weights, save_gan_weights)
from eeg2image_tf.errors import run_main  # noqa: E402
from eeg2image_tf.errors import CheckpointError  # noqa: E402
from eeg2image_tf.checkpoints.original import load_original_encoder  # noqa: E402
from eeg2image_tf.models import build_discriminator, build_encoder, build_generator  # noqa: E402
from eeg2image_tf.runs import MODEL_FILE  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ENCODER = REPO_ROOT / "checkpoints" / "thoughtviz_object_encoder"
PARITY_TOLERANCE = 1e-4


def _eeg(batch: int = 4, time_steps: int = 6, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, time_steps, channels)).astype(np.float32)


def _features(encoder, x) -> np.ndarray:
    return np.asarray(encoder(x, training=False)[1])


def _small_encoder(seed: int, feature_dim: int = 6, hidden: int = 5, channels: int = 3):
    keras.utils.set_random_seed(seed)
    return build_encoder(feature_dim=feature_dim, hidden=hidden, num_channels=channels, num_samples=6)


def _stored_model_keys(prefix: str) -> list[str]:
    return [key for key, _ in tf.train.list_variables(prefix)
            if key.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and not key.startswith("save_counter")]


def _write_encoder_run(run: Path, encoders, config: dict) -> list[str]:
    """An encoder run as train_encoder writes it: <run>/config.json, <run>/checkpoints/ckpt-<epoch>."""
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    epoch = tf.Variable(0, dtype=tf.int64)
    prefixes = []
    for number, encoder in encoders:
        optimizer = keras.optimizers.Adam(3e-4)
        optimizer.build(encoder.trainable_weights)
        checkpoint = tf.train.Checkpoint(encoder=encoder, optimizer=optimizer, epoch=epoch)
        manager = tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=None)
        epoch.assign(number)
        prefixes.append(manager.save(checkpoint_number=number))
    return prefixes


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------

def test_encoder_weights_round_trip(tmp_path):
    encoder = _small_encoder(seed=1)
    prefix = save_encoder_weights(encoder, tmp_path / "enc", metadata={"note": "unit test"})
    record = json.loads((tmp_path / "enc" / MODEL_FILE).read_text())
    assert record["kind"] == "encoder" and record["checkpoint"] == Path(prefix).name
    assert record["architecture"] == {"feature_dim": 6, "hidden": 5, "num_channels": 3}
    assert record["provenance"] == {"note": "unit test"}
    # Every variable is in the file (Keras 3 would silently skip layers kept in a Python list).
    assert len(_stored_model_keys(prefix)) == len(encoder.weights)
    x = _eeg()
    expected = _features(encoder, x)
    for path in (tmp_path / "enc", prefix, prefix + ".index"):
        loaded = load_encoder(path)
        assert (loaded.feature_dim, loaded.hidden) == (6, 5)
        np.testing.assert_array_equal(_features(loaded, x), expected)


def test_encoder_run_prefers_best_checkpoint(tmp_path):
    first, second = _small_encoder(seed=2), _small_encoder(seed=3)
    run = tmp_path / "run"
    prefixes = _write_encoder_run(run, [(10, first), (20, second)],
                                  {"data": "x", "run": str(run), "feature_dim": 6, "hidden": 5})
    x = _eeg()
    assert not np.allclose(_features(first, x), _features(second, x))
    # Without a selection: the latest checkpoint, from the run or from its checkpoints/ folder.
    np.testing.assert_array_equal(_features(load_encoder(run), x), _features(second, x))
    np.testing.assert_array_equal(_features(load_encoder(run / "checkpoints"), x),
                                  _features(second, x))
    # The training checkpoint's prefix itself, sizes from the run's config.json.
    np.testing.assert_array_equal(_features(load_encoder(prefixes[0]), x), _features(first, x))
    (run / "best_checkpoint.json").write_text(json.dumps({"best_checkpoint": prefixes[0],
                                                          "accuracy": 0.5}))
    np.testing.assert_array_equal(_features(load_encoder(run), x), _features(first, x))


def test_moved_run_finds_its_best_checkpoint(tmp_path):
    first, second = _small_encoder(seed=4), _small_encoder(seed=5)
    run = tmp_path / "old_place"
    _write_encoder_run(run, [(10, first), (20, second)], {"feature_dim": 6, "hidden": 5})
    (run / "best_checkpoint.json").write_text(
        json.dumps({"best_checkpoint": str(run / "checkpoints" / "ckpt-10")}))
    moved = run.rename(tmp_path / "new_place")
    # Another run now lives at the old place, with other weights under the same checkpoint name.
    _write_encoder_run(run, [(10, second)], {"feature_dim": 6, "hidden": 5})
    x = _eeg()
    np.testing.assert_array_equal(_features(load_encoder(moved), x), _features(first, x))
    # The index file still names the old absolute paths: the newest *.index file is used instead.
    assert latest_checkpoint_in(moved / "checkpoints").endswith("new_place/checkpoints/ckpt-20")


def test_encoder_of_another_architecture_is_refused(tmp_path):
    encoder = _small_encoder(seed=6, hidden=5)
    run = tmp_path / "run"
    prefixes = _write_encoder_run(run, [(10, encoder)], {"feature_dim": 6, "hidden": 9})
    with pytest.raises(CheckpointError) as error:
        load_encoder(run)
    message = str(error.value)
    assert prefixes[0] in message and "an encoder checkpoint of another architecture" in message
    assert "'encoder/sequence_lstm/cell/kernel' has shape (3, 20), expected (3, 36)" \
        in message
    assert "\n" not in message


def test_sizes_default_to_the_papers(tmp_path):
    keras.utils.set_random_seed(7)
    encoder = build_encoder(num_channels=2, num_samples=3)
    prefix = tf.train.Checkpoint(encoder=encoder).write(str(tmp_path / "bare" / "ckpt-1"))
    assert resolve_checkpoint(tmp_path / "bare").architecture == {}
    loaded = load_encoder(prefix)
    assert (loaded.feature_dim, loaded.hidden) == (128, 32)
    x = _eeg(channels=2)
    np.testing.assert_array_equal(_features(loaded, x), _features(encoder, x))


def test_unusable_paths_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a run directory"):
        load_encoder(tmp_path / "empty")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "best_checkpoint.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no 'best_checkpoint' entry"):
        load_encoder(tmp_path / "run")


def test_a_gan_checkpoint_is_not_an_encoder(tmp_path):
    keras.utils.set_random_seed(8)
    # Encoder weights, but stored under a GAN run's name: nothing answers to "encoder".
    misplaced = build_encoder(feature_dim=4, hidden=3, num_channels=2, num_samples=2)
    prefix = tf.train.Checkpoint(generator=misplaced).write(str(tmp_path / "ckpt-1"))
    with pytest.raises(CheckpointError, match="not an encoder checkpoint of ours") as error:
        load_encoder(prefix)
    assert prefix in str(error.value)


def test_original_encoder_is_detected_by_its_keys(fixture_file):
    original_dir = fixture_file("original_encoder_ckpt")
    x = _eeg(channels=14)
    np.testing.assert_array_equal(_features(load_encoder(original_dir), x),
                                  _features(load_original_encoder(original_dir), x))


# --------------------------------------------------------------------------------------------------
# Converter and the shipped encoder
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder_reference(fixture_file):
    reference = dict(np.load(fixture_file("original_encoder_reference.npz")))
    return reference["preprocessed"], reference["feature"], reference["embedding"]


def _assert_reproduces_reference(encoder, reference):
    x, feature, embedding = reference
    ours_embedding, ours_feature = encoder(x, training=False)
    assert np.abs(np.asarray(ours_feature) - feature).max() < PARITY_TOLERANCE
    assert np.abs(np.asarray(ours_embedding) - embedding).max() < PARITY_TOLERANCE


def test_import_original_converts_the_published_encoder(tmp_path, fixture_file, encoder_reference,
                                                        capsys):
    out = tmp_path / "converted"
    source = fixture_file("original_encoder_ckpt")
    assert import_original.main(["--encoder", str(source), "--out", str(out)]) == 0
    assert "ckpt-1" in capsys.readouterr().out
    record = json.loads((out / MODEL_FILE).read_text())
    provenance = record["provenance"]
    assert provenance["source_checkpoint"] == "ckpt-2420"
    assert set(provenance["source_sha256"]) == {"ckpt-2420.index", "ckpt-2420.data-00000-of-00001"}
    assert str(source) not in json.dumps(record), "no local paths in the provenance"
    # Weights only: no optimizer slots were carried over.
    assert not any("optimizer" in key.lower() for key in _stored_model_keys(str(out / "ckpt-1")))
    _assert_reproduces_reference(load_encoder(out), encoder_reference)

    # A second conversion into the same folder is refused unless forced.
    argv = ["--encoder", str(source), "--out", str(out)]
    assert run_main(import_original.main, argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert import_original.main(argv + ["--force"]) == 0


def test_import_original_needs_exactly_one_source(tmp_path, capsys):
    assert run_main(import_original.main, ["--out", str(tmp_path / "x")]) == 2
    assert "exactly one of --encoder or --gan" in capsys.readouterr().err


def test_import_original_reports_a_bad_source(tmp_path, capsys):
    code = run_main(import_original.main, ["--encoder", str(tmp_path / "nope"),
                                           "--out", str(tmp_path / "out")])
    assert code == 2
    assert "nope: no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_encoder_reproduces_the_original(encoder_reference):
    record = json.loads((SHIPPED_ENCODER / MODEL_FILE).read_text())
    assert record["provenance"]["source_checkpoint"] == "ckpt-2420"
    _assert_reproduces_reference(load_encoder(SHIPPED_ENCODER), encoder_reference)
    size = sum(path.stat().st_size for path in SHIPPED_ENCODER.iterdir())
    assert size < 2_000_000


# --------------------------------------------------------------------------------------------------
# GAN
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gan_run_round_trip(tmp_path):
    keras.utils.set_random_seed(9)
    generator, discriminator = build_generator(), build_discriminator()
    rng = np.random.default_rng(9)
    inputs = rng.uniform(-1, 1, size=(2, 256)).astype(np.float32)
    condition = rng.normal(size=(2, 128)).astype(np.float32)
    images = np.asarray(generator(inputs, training=False))
    scores = np.asarray(discriminator(images, condition, training=False))

    # A GAN run as train_gan writes it (with step and optimizers), then a weights-only export of it.
    run = tmp_path / "gan_run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"latent_dim": 128, "condition_dim": 128}))
    checkpoint = tf.train.Checkpoint(step=tf.Variable(3, dtype=tf.int64), generator=generator,
                                     discriminator=discriminator,
                                     g_optimizer=keras.optimizers.Adam(), d_optimizer=keras.optimizers.Adam())
    prefix = tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=1).save()
    stored = _stored_model_keys(prefix)
    assert sum(key.startswith(("generator/", "discriminator/")) for key in stored) == \
        len(generator.weights) + len(discriminator.weights)

    loaded = load_gan(run, split_condition_conv=True)
    assert isinstance(loaded, LoadedGAN) and loaded.discriminator.split_condition_conv
    np.testing.assert_array_equal(np.asarray(loaded.generator(inputs, training=False)), images)
    np.testing.assert_allclose(np.asarray(loaded.discriminator(images, condition, training=False)),
                               scores, atol=1e-5)

    export = tmp_path / "export"
    save_gan_weights(loaded.generator, loaded.discriminator, export, metadata={"from": "test"})
    assert json.loads((export / MODEL_FILE).read_text())["architecture"] == \
        {"latent_dim": 128, "condition_dim": 128}
    generator_again, discriminator_again = load_gan(export)
    np.testing.assert_array_equal(np.asarray(generator_again(inputs, training=False)), images)
    np.testing.assert_array_equal(
        np.asarray(discriminator_again(images, condition, training=False)), scores)
    with pytest.raises(CheckpointError, match="describes a GAN checkpoint, not an encoder one"):
        load_encoder(export)
