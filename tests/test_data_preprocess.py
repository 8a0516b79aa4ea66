"""EEG normalisation: parity with the authors' output, graph use, and the zero-centred EEG check."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from eeg2image_tf.data import PREPROCESS_METHODS, preprocess, preprocess_numpy
from eeg2image_tf.errors import DataError


@pytest.fixture(scope="module")
def reference(fixture_file):
    with np.load(fixture_file("original_encoder_reference.npz")) as archive:
        return archive["raw"], archive["preprocessed"]


def test_parity_with_the_original_preprocessing(reference):
    raw, expected = reference
    assert raw.shape == (32, 14, 32, 1) and expected.shape == (32, 32, 14)
    ours = preprocess(raw).numpy()
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 1e-6
    assert np.abs(preprocess_numpy(raw) - expected).max() < 1e-6


def test_three_dimensional_input_and_float64_give_the_same(reference):
    raw, expected = reference
    ours = preprocess(raw[..., 0].astype(np.float64)).numpy()
    assert ours.dtype == np.float32
    assert np.abs(ours - expected).max() < 1e-6


def test_formula_on_a_hand_made_trial():
    trial = np.arange(1.0, 7.0, dtype=np.float32).reshape(1, 2, 3)  # max 6 -> m = 3
    out = preprocess(trial).numpy()
    np.testing.assert_allclose(out[0], ((trial[0] - 3.0) / 3.0).T, rtol=0, atol=1e-7)
    assert out[0].max() == pytest.approx(1.0)  # the maximum always maps to 1


def test_inside_tf_function_with_unknown_batch(reference):
    raw, expected = reference
    spec = tf.TensorSpec([None, 14, 32, 1], tf.float32)
    normalise = tf.function(preprocess, input_signature=[spec])
    for batch in (raw[:5], raw):
        out = normalise(batch).numpy()
        assert out.shape == (len(batch), 32, 14)
        assert np.abs(out - expected[: len(batch)]).max() < 1e-6
    loose = tf.function(preprocess, input_signature=[tf.TensorSpec(None, tf.float32)])
    assert np.abs(loose(raw).numpy() - expected).max() < 1e-6


def test_inside_tf_data(reference):
    raw, expected = reference
    dataset = tf.data.Dataset.from_tensor_slices(raw).batch(10).map(preprocess)
    assert dataset.element_spec.shape.as_list() == [None, 32, 14]
    out = np.concatenate([batch.numpy() for batch in dataset])
    assert np.abs(out - expected).max() < 1e-6


def test_non_positive_half_max_names_the_trial_eagerly(reference):
    raw = reference[0].copy()
    raw[3] -= raw[3].mean()  # zero-centred trial: max/2 is small but positive
    raw[5] = -np.abs(raw[5])  # all negative: max/2 < 0
    with pytest.raises(DataError, match=r"trial 5 .*max/2 = -.*zscore"):
        preprocess(raw)
    with pytest.raises(DataError, match=r"trial 5 "):
        preprocess_numpy(raw)


def test_non_positive_half_max_fails_the_graph_assertion(reference):
    raw = reference[0].copy()
    raw[2] = 0.0
    normalise = tf.function(preprocess, input_signature=[tf.TensorSpec([None, 14, 32, 1], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"raw EEG trial 2 .*max/2 = 0"):
        normalise(raw)
    dataset = tf.data.Dataset.from_tensor_slices(raw).batch(8).map(preprocess)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"raw EEG trial 2 "):
        list(dataset)


def test_zscore_is_per_trial_per_channel(reference):
    raw = reference[0]
    out = preprocess(raw, method="zscore").numpy()
    assert out.shape == (32, 32, 14)
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(preprocess_numpy(raw, "zscore"), out, atol=1e-6)


def test_zscore_handles_zero_centred_and_flat_channels():
    rng = np.random.default_rng(0)
    raw = rng.normal(0.0, 1e-5, size=(4, 14, 32)).astype(np.float32)  # volts, zero-centred
    raw[1, 6] = 0.0
    out = preprocess(raw, method="zscore").numpy()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[1, :, 6], 0.0)
    np.testing.assert_allclose(out[0].std(axis=0), 1.0, atol=1e-4)


def test_bad_shape_and_method():
    with pytest.raises(DataError, match=r"\(2, 14, 32, 3\)"):
        preprocess(np.ones((2, 14, 32, 3), np.float32))
    with pytest.raises(DataError, match="expected"):
        preprocess_numpy(np.ones((14, 32), np.float32))
    with pytest.raises(ValueError, match="unknown EEG normalisation 'minmax'"):
        preprocess(np.ones((1, 14, 32), np.float32), method="minmax")
    assert PREPROCESS_METHODS == ("original", "zscore")
