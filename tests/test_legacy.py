"""The authors' checkpoints load by key and reproduce the original code's numbers (docs/method.md
sections 3-4); broken ones fail with a CheckpointError naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from eeg2image_tf.errors import CheckpointError  # noqa: E402
from eeg2image_tf.checkpoints.original import (  # noqa: E402
    VALUE_SUFFIX, OriginalGAN, load_original_encoder, load_original_gan,
    resolve_original_checkpoint)

PARITY_TOLERANCE = 1e-4


def preprocess_trials(raw: np.ndarray) -> np.ndarray:
    """docs/method.md section 2, through the data package (computed inline when it cannot be
    imported)."""
    try:
        from eeg2image_tf.data import preprocess
    except ImportError:
        preprocess = None
    if callable(preprocess):
        return np.asarray(preprocess(raw))
    x = raw[..., 0].astype(np.float32)
    half_max = x.max(axis=(1, 2), keepdims=True) / np.float32(2.0)
    return np.transpose((x - half_max) / half_max, (0, 2, 1))


def write_checkpoint_with_keys(prefix: Path, tensors: dict[str, np.ndarray]) -> str:
    """Write a TF object checkpoint whose variable keys are exactly ``<key>/.ATTRIBUTES/...``."""
    root = tf.Module()
    for key, value in tensors.items():
        node = root
        *parents, leaf = key.split("/")
        for part in parents:
            child = getattr(node, part, None)
            if child is None:
                child = tf.Module()
                setattr(node, part, child)
            node = child
        setattr(node, leaf, tf.Variable(value))
    top_level = {name: value for name, value in vars(root).items() if not name.startswith("_")}
    return tf.train.Checkpoint(**top_level).write(str(prefix))


def model_tensors(prefix: str, start: str) -> dict[str, np.ndarray]:
    """The model variables of a checkpoint whose keys start with ``start`` (no optimizer slots)."""
    reader = tf.train.load_checkpoint(prefix)
    return {key[:-len(VALUE_SUFFIX)]: reader.get_tensor(key)
            for key, _ in tf.train.list_variables(prefix)
            if key.startswith(start) and key.endswith(VALUE_SUFFIX) and "OPTIMIZER_SLOT" not in key}


@pytest.fixture(scope="module")
def encoder_reference(fixture_file):
    return dict(np.load(fixture_file("original_encoder_reference.npz")))


@pytest.fixture(scope="module")
def original_encoder(fixture_file):
    return load_original_encoder(fixture_file("original_encoder_ckpt"))


@pytest.fixture(scope="module")
def original_gan(fixture_file):
    return load_original_gan(fixture_file("original_gan_ckpt"))


@pytest.fixture(scope="module")
def gan_reference(fixture_file):
    return dict(np.load(fixture_file("original_gan_reference.npz")))


# --------------------------------------------------------------------------------------------------
# Parity with the original code
# --------------------------------------------------------------------------------------------------

def test_encoder_parity_with_original(original_encoder, encoder_reference):
    x = preprocess_trials(encoder_reference["raw"])
    np.testing.assert_allclose(x, encoder_reference["preprocessed"], atol=1e-6)
    embedding, feature = original_encoder(x, training=False)
    feature_error = np.abs(np.asarray(feature) - encoder_reference["feature"]).max()
    embedding_error = np.abs(np.asarray(embedding) - encoder_reference["embedding"]).max()
    assert feature_error < PARITY_TOLERANCE, feature_error
    assert embedding_error < PARITY_TOLERANCE, embedding_error
    assert (original_encoder.feature_dim, original_encoder.hidden) == (128, 32)


def test_encoder_loads_from_prefix_and_directory_alike(fixture_file, original_encoder):
    directory = fixture_file("original_encoder_ckpt")
    prefix = resolve_original_checkpoint(directory)
    assert prefix.endswith("ckpt-2420")
    again = load_original_encoder(prefix)
    for ours, theirs in zip(original_encoder.weights, again.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.slow
def test_generator_parity_with_original(original_gan, gan_reference):
    assert isinstance(original_gan, OriginalGAN)
    images = np.asarray(original_gan.generator(gan_reference["z"], training=False))
    error = np.abs(images - gan_reference["images"]).max()
    assert error < PARITY_TOLERANCE, error
    # The reference images are far from flat, so the bound above is a real constraint.
    assert np.abs(gan_reference["images"]).max() > 100 * PARITY_TOLERANCE


@pytest.mark.slow
def test_discriminator_parity_with_original(original_gan, gan_reference, fixture_file):
    scores = original_gan.discriminator(gan_reference["disc_x"], gan_reference["disc_c"],
                                        training=False)
    error = np.abs(np.asarray(scores) - gan_reference["disc_out"]).max()
    assert error < PARITY_TOLERANCE, error
    split = load_original_gan(fixture_file("original_gan_ckpt"), split_condition_conv=True)
    split_scores = split.discriminator(gan_reference["disc_x"], gan_reference["disc_c"],
                                       training=False)
    assert np.abs(np.asarray(split_scores) - gan_reference["disc_out"]).max() < PARITY_TOLERANCE


@pytest.mark.slow
def test_gan_variables_come_from_the_right_keys(original_gan, fixture_file):
    prefix = resolve_original_checkpoint(fixture_file("original_gan_ckpt"))
    stored = model_tensors(prefix, "model/")
    generator, discriminator = original_gan.generator, original_gan.discriminator
    np.testing.assert_array_equal(generator.upsampling_convs[2].vector_u.numpy(),
                                  stored["model/gen/conv/2/sn_u"])
    np.testing.assert_array_equal(generator.upsampling_convs[0].layer.kernel.numpy(),
                                  stored["model/gen/conv/0/w"])
    np.testing.assert_array_equal(generator.norms[0].gamma.numpy(), stored["model/gen/bnorm/1/gamma"])
    np.testing.assert_array_equal(discriminator.norms[5].moving_variance.numpy(),
                                  stored["model/disc/cnn_bnorm/5/moving_variance"])
    np.testing.assert_array_equal(discriminator.score.bias.numpy(), stored["model/disc/disc_out/bias"])
    assert len(stored) == len(generator.weights) + len(discriminator.weights)


# --------------------------------------------------------------------------------------------------
# Broken checkpoints
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder_tensors(fixture_file):
    prefix = resolve_original_checkpoint(fixture_file("original_encoder_ckpt"))
    return model_tensors(prefix, "model/encoder/")


def test_encoder_missing_key_is_named(tmp_path, encoder_tensors):
    tensors = dict(encoder_tensors)
    del tensors["model/encoder/1/cell/bias"]
    prefix = write_checkpoint_with_keys(tmp_path / "ckpt-1", tensors)
    with pytest.raises(CheckpointError) as error:
        load_original_encoder(tmp_path)
    message = str(error.value)
    assert prefix in message and "missing key 'model/encoder/1/cell/bias'" in message
    assert "\n" not in message


def test_encoder_wrong_shape_is_named(tmp_path, encoder_tensors):
    tensors = dict(encoder_tensors)
    tensors["model/encoder/1/cell/recurrent_kernel"] = np.zeros((128, 256), np.float32)
    prefix = write_checkpoint_with_keys(tmp_path / "ckpt-7", tensors)
    with pytest.raises(CheckpointError) as error:
        load_original_encoder(prefix)
    message = str(error.value)
    assert prefix in message and "'model/encoder/1/cell/recurrent_kernel'" in message
    assert "(128, 256)" in message and "(128, 512)" in message


def test_gan_missing_key_is_named(tmp_path):
    # Only the first kernels: the loader sizes the models, then finds the rest missing.
    tensors = {"model/gen/conv/0/w": np.zeros((3, 3, 1024, 256), np.float32),
               "model/disc/cnn_conv/0/kernel": np.zeros((3, 3, 131, 64), np.float32)}
    prefix = write_checkpoint_with_keys(tmp_path / "ckpt-1", tensors)
    with pytest.raises(CheckpointError, match=r"missing key 'model/gen/conv/0/sn_u'") as error:
        load_original_gan(prefix)
    assert prefix in str(error.value)


def test_gan_inconsistent_sizes_are_refused(tmp_path):
    tensors = {"model/gen/conv/0/w": np.zeros((3, 3, 1024, 100), np.float32),
               "model/disc/cnn_conv/0/kernel": np.zeros((3, 3, 131, 64), np.float32)}
    prefix = write_checkpoint_with_keys(tmp_path / "ckpt-1", tensors)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_original_gan(prefix)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_original_encoder(tmp_path / "nothing-here")
    with pytest.raises(CheckpointError, match="no checkpoint in this directory"):
        load_original_gan(tmp_path)


def test_an_encoder_checkpoint_is_not_a_gan(fixture_file):
    with pytest.raises(CheckpointError, match="missing key 'model/gen/conv/0/w'"):
        load_original_gan(fixture_file("original_encoder_ckpt"))
