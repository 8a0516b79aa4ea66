"""tf.data pipelines: shapes, dtypes, shuffling, remainders and the image look-up."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from eeg2image_tf.data import encoder_dataset, gan_dataset, preprocess_numpy
from eeg2image_tf.errors import DataError


def raw_trials(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(3900.0, 4600.0, size=(n, 14, 32, 1)).astype(np.float32)


def test_encoder_training_pipeline_shapes_and_shuffle():
    x = preprocess_numpy(raw_trials(50))
    y = np.arange(50) % 10
    dataset = encoder_dataset(x, y, batch_size=16, shuffle=True, seed=3)
    assert dataset.element_spec[0].shape.as_list() == [16, 32, 14]
    assert dataset.element_spec[0].dtype == tf.float32 and dataset.element_spec[1].dtype == tf.int64
    batches = list(dataset)
    assert len(batches) == 3  # 50 // 16: the partial batch is dropped
    seen = np.concatenate([b[1].numpy() for b in batches])
    firsts = np.concatenate([b[0].numpy()[:, 0, 0] for b in batches])
    # rows stay with their labels through the shuffle
    for value, label in zip(firsts, seen):
        assert y[np.flatnonzero(x[:, 0, 0] == value)[0]] == label
    order = [np.flatnonzero(x[:, 0, 0] == v)[0] for v in firsts]
    assert order != sorted(order)
    # the same seed replays the same first epoch
    again = np.concatenate([b[1].numpy() for b in encoder_dataset(x, y, 16, True, seed=3)])
    np.testing.assert_array_equal(seen, again)


def test_encoder_evaluation_pipeline_keeps_order_and_remainder():
    x = preprocess_numpy(raw_trials(21))
    y = np.eye(10)[np.arange(21) % 10]  # one-hot labels are accepted
    dataset = encoder_dataset(x, y, batch_size=8, shuffle=False)
    batches = list(dataset)
    assert [len(b[1]) for b in batches] == [8, 8, 5]
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), np.arange(21) % 10)


@pytest.mark.parametrize("method", ["original", "zscore"])
def test_encoder_pipeline_normalises_raw_trials(method):
    raw = raw_trials(12)
    dataset = encoder_dataset(raw, np.arange(12) % 3, batch_size=5, shuffle=False,
                              normalisation=method)
    out = np.concatenate([b[0].numpy() for b in dataset])
    assert out.shape == (12, 32, 14)
    np.testing.assert_allclose(out, preprocess_numpy(raw, method), atol=1e-6)


def test_four_dimensional_input_gets_the_original_normalisation():
    raw = raw_trials(6)
    out = np.concatenate([b[0].numpy() for b in encoder_dataset(raw, np.zeros(6), 4, shuffle=False)])
    np.testing.assert_allclose(out, preprocess_numpy(raw), atol=1e-6)


def test_gan_pipeline_gathers_the_paired_images():
    features = np.random.default_rng(0).normal(size=(10, 128)).astype(np.float32)
    labels = np.arange(10) % 2
    bank = np.stack([np.full((8, 8, 3), k / 10.0, np.float32) for k in range(5)])
    index = np.array([4, 0, 3, 1, 2, 4, 0, 0, 1, 3])
    evaluation = gan_dataset(features, labels, bank, index, batch_size=4, shuffle=False)
    spec = evaluation.element_spec
    assert [s.dtype for s in spec] == [tf.float32, tf.int64, tf.float32]
    assert spec[2].shape.as_list() == [None, 8, 8, 3]
    rows = [tuple(t.numpy() for t in batch) for batch in evaluation]
    assert [len(r[1]) for r in rows] == [4, 4, 2]
    images = np.concatenate([r[2] for r in rows])
    np.testing.assert_allclose(images[:, 0, 0, 0], index / 10.0, atol=1e-7)
    np.testing.assert_array_equal(np.concatenate([r[0] for r in rows]), features)

    training = gan_dataset(features, labels, bank, index, batch_size=4, shuffle=True, seed=1)
    assert training.element_spec[2].shape.as_list() == [4, 8, 8, 3]
    for eeg, label, image in training:
        rows_of = [int(np.flatnonzero((features == e).all(axis=1))[0]) for e in eeg.numpy()]
        np.testing.assert_allclose(image.numpy()[:, 0, 0, 0], index[rows_of] / 10.0, atol=1e-7)
        np.testing.assert_array_equal(label.numpy(), labels[rows_of])


def test_pipeline_input_errors():
    with pytest.raises(DataError, match="x 5, y 4"):
        encoder_dataset(np.zeros((5, 32, 14)), np.zeros(4), 2, shuffle=False)
    with pytest.raises(DataError, match="no full batch of 256"):
        encoder_dataset(np.zeros((40, 32, 14)), np.zeros(40), 256, shuffle=True)
    assert len(list(encoder_dataset(np.zeros((40, 32, 14)), np.zeros(40), 256, shuffle=True,
                                    drop_remainder=False))) == 1
    bank = np.zeros((3, 4, 4, 3), np.float32)
    with pytest.raises(DataError, match=r"image_index ranges over \[0, 3\]"):
        gan_dataset(np.zeros((2, 8)), [0, 1], bank, [0, 3], 1, shuffle=False)
    with pytest.raises(DataError, match=r"images have shape \(3, 4, 4\)"):
        gan_dataset(np.zeros((2, 8)), [0, 1], bank[..., 0], [0, 1], 1, shuffle=False)
