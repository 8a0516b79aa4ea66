"""Tests of eeg2image_tf.evaluation.inception on a miniature graph with the 2015 graph's tensor names."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from eeg2image_tf.evaluation import inception
from eeg2image_tf.errors import DataError

POOL_WIDTH = 8     # the real graph's 2048, shrunk: the backend reads the width from the graph
NUM_CLASSES = 5


def _miniature_graph_def():
    """A GraphDef shaped like ``classify_image_graph_def.pb``, exported for a batch of one.

    ``Cast`` (H, W, 3) -> ``ExpandDims`` (1, H, W, 3) -> resize -> normalise -> conv -> ``pool_3``
    (1, 1, 1, POOL_WIDTH) -> ``pool_3/_reshape`` to a hard-coded [1, POOL_WIDTH] ->
    ``softmax/logits/MatMul`` -> bias -> ``softmax``; with ``_output_shapes`` recorded, as old
    exporters did.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="Cast")
        expanded = tf.expand_dims(image, 0, name="ExpandDims")
        resized = tf.image.resize(expanded, [12, 12], method="bilinear")
        normalised = (resized - 128.0) / 128.0
        kernel = tf.constant(rng.normal(size=(3, 3, 3, POOL_WIDTH)).astype(np.float32))
        convolved = tf.nn.conv2d(normalised, kernel, 1, "SAME")
        for name, value in (("mean", 0.1), ("variance", 0.5), ("beta", 0.2), ("gamma", 1.5)):
            tf.constant(np.full(POOL_WIDTH, value, np.float32), name=f"conv/batchnorm/{name}")
        # Stands in for BatchNormWithGlobalNormalization, which today's TF refuses to create.
        normalised_conv = tf.identity(convolved, name="conv/batchnorm")
        activations = tf.nn.relu(normalised_conv)
        pool = tf.nn.avg_pool2d(activations, 12, 1, "VALID", name="pool_3")
        flat = tf.reshape(pool, [1, POOL_WIDTH], name="pool_3/_reshape")
        weights = tf.constant(rng.normal(size=(POOL_WIDTH, NUM_CLASSES)).astype(np.float32),
                              name="softmax/weights")
        logits = tf.matmul(flat, weights, name="softmax/logits/MatMul")
        biases = tf.constant(np.array([3.0, -2.0, 0.5, 1.0, -1.0], np.float32),
                             name="softmax/biases")
        tf.nn.softmax(tf.nn.bias_add(logits, biases, name="softmax/logits"), name="softmax")
    graph_def = graph.as_graph_def(add_shapes=True)
    # Like the 2015 graph: an op removed in GraphDef version 9, in a graph of an old producer.
    for node in graph_def.node:
        if node.name == "conv/batchnorm":
            source = node.input[0]
            del node.input[:]
            node.input.extend([source] + [f"conv/batchnorm/{name}"
                                          for name in ("mean", "variance", "beta", "gamma")])
            node.op = "BatchNormWithGlobalNormalization"
            del node.attr["T"]
            node.attr["T"].type = tf.float32.as_datatype_enum
            node.attr["variance_epsilon"].f = 1e-3
            node.attr["scale_after_normalization"].b = True
    graph_def.versions.producer = 5
    return graph_def


@pytest.fixture(scope="module")
def graph_def():
    return _miniature_graph_def()


@pytest.fixture(scope="module")
def graph_path(graph_def, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / inception.GRAPH_FILE_NAME
    path.write_bytes(graph_def.SerializeToString())
    return path


@pytest.fixture(scope="module")
def backend(graph_path):
    return inception.GraphInception(graph_path)


def _images(n=5, size=20, seed=1):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _run_original_graph(graph_def, image):
    """One image through the untouched graph, fed at ``Cast`` as the original feeds a JPEG."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(["pool_3:0", "softmax/logits/MatMul:0", "softmax:0",
                            "softmax/biases:0"], {"Cast:0": image.astype(np.float32)})


def test_graph_backend_matches_the_original_graph_run_one_image_at_a_time(backend, graph_def):
    images = _images()
    features, probs = backend.compute(images, batch_size=5)
    assert features.shape == (5, POOL_WIDTH) and features.dtype == np.float32
    assert probs.shape == (5, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    for i, image in enumerate(images):
        pool, unbiased_logits, graph_softmax, biases = _run_original_graph(graph_def, image)
        np.testing.assert_allclose(features[i], pool.reshape(-1), rtol=1e-5, atol=1e-6)
        expected = np.exp(unbiased_logits[0]) / np.exp(unbiased_logits[0]).sum()
        np.testing.assert_allclose(probs[i], expected, rtol=1e-5, atol=1e-7)
        # The graph's own softmax includes the bias: in log space the two differ by exactly the
        # bias, up to the normalising constant.
        log_ratio = np.log(graph_softmax[0]) - np.log(probs[i])
        np.testing.assert_allclose(log_ratio - log_ratio.mean(), biases - biases.mean(), atol=1e-3)
        with_bias = np.exp(unbiased_logits[0] + biases)
        np.testing.assert_allclose(graph_softmax[0], with_bias / with_bias.sum(), rtol=1e-5)


def test_graph_backend_bias_is_not_added(backend):
    features, probs = backend.compute(_images(n=3))
    logits = features.astype(np.float64) @ backend.logit_weights.astype(np.float64)
    manual = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, manual, rtol=1e-5)
    assert backend.logit_weights.shape == (POOL_WIDTH, NUM_CLASSES)


def test_graph_backend_batches_equal_single_images(backend):
    images = _images(n=5)
    features_all, probs_all = backend.compute(images, batch_size=5)
    features_uneven, probs_uneven = backend.compute(images, batch_size=2)
    singles = [backend.compute(images[i:i + 1], batch_size=1) for i in range(5)]
    np.testing.assert_allclose(features_all, np.concatenate([f for f, _ in singles]), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(probs_all, np.concatenate([p for _, p in singles]), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(features_uneven, features_all, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs_uneven, probs_all, rtol=1e-5, atol=1e-7)


def test_graph_backend_takes_uint8_and_float_alike_and_any_native_size(backend):
    images = _images(n=2, size=31)
    from_uint8 = backend.compute(images)
    from_float = backend.compute(images.astype(np.float32))
    np.testing.assert_array_equal(from_uint8[0], from_float[0])
    assert from_uint8[0].shape == (2, POOL_WIDTH)


def test_images_from_tanh_range():
    np.testing.assert_allclose(inception.images_from_tanh_range(np.array([-1.0, 0.0, 1.0])),
                               [0.0, 127.5, 255.0])


def _write_tgz(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_graph_backend_reads_the_release_tgz_and_a_directory(graph_path, backend, tmp_path):
    archive = tmp_path / "inception-2015-12-05.tgz"
    _write_tgz(archive, {"imagenet_synset_to_human_label_map.txt": b"n01 thing\n",
                         inception.GRAPH_FILE_NAME: graph_path.read_bytes()})
    images = _images(n=2)
    expected = backend.compute(images)
    for source in (archive, tmp_path):
        features, probs = inception.GraphInception(source).compute(images)
        np.testing.assert_allclose(features, expected[0], rtol=1e-6)
        np.testing.assert_allclose(probs, expected[1], rtol=1e-6)


def test_graph_backend_errors_name_the_file(tmp_path, graph_def):
    with pytest.raises(DataError, match="missing.pb: Inception graph not found"):
        inception.GraphInception(tmp_path / "missing.pb")
    empty_archive = tmp_path / "other.tgz"
    _write_tgz(empty_archive, {"readme.txt": b"hello"})
    with pytest.raises(DataError, match=f"other.tgz: archive has no {inception.GRAPH_FILE_NAME}"):
        inception.GraphInception(empty_archive)
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\x00 definitely not a protobuf \x13\x37" * 10)
    with pytest.raises(DataError, match="garbage.pb"):
        inception.GraphInception(garbage)
    other_graph = type(graph_def)()
    other_graph.CopyFrom(graph_def)
    for node in other_graph.node:
        if node.name == "pool_3":
            node.name = "pool_4"
    wrong = tmp_path / "wrong.pb"
    wrong.write_bytes(other_graph.SerializeToString())
    with pytest.raises(DataError, match="wrong.pb: graph has no op 'pool_3'"):
        inception.GraphInception(wrong)


def test_load_backend_choice_and_reason(graph_path, monkeypatch):
    monkeypatch.delenv(inception.GRAPH_ENV, raising=False)
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    backend, reason = inception.load_backend()
    assert backend is None and "nothing is downloaded" in reason
    backend, reason = inception.load_backend(graph=graph_path, weights="/nonexistent.h5")
    assert isinstance(backend, inception.GraphInception) and reason == ""
    assert backend.paper_comparable
    monkeypatch.setenv(inception.GRAPH_ENV, str(graph_path))
    backend, _ = inception.load_backend()
    assert isinstance(backend, inception.GraphInception)
    monkeypatch.delenv(inception.GRAPH_ENV)
    with pytest.raises(DataError, match="nonexistent.h5"):
        inception.load_backend(weights="/nonexistent.h5")


# Expected: Keras 3's weight saving converts TensorFlow variables with np.array, whose
# __array__ lacks numpy 2's copy keyword; numpy warns (Keras's code, not ours).
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.slow
def test_keras_backend_with_local_random_weights(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(include_top=True, weights=None)
    weights_path = tmp_path / "inception_v3.weights.h5"
    model.save_weights(str(weights_path))

    backend = inception.KerasInception(weights_path)
    images = _images(n=3, size=40)
    features, probs = backend.compute(images, batch_size=2)
    assert features.shape == (3, 2048) and probs.shape == (3, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)

    # Same numbers as the saved model on images resized to 299 and scaled to [-1, 1] by hand.
    import tensorflow as tf

    resized = tf.image.resize(images.astype(np.float32), (299, 299)).numpy()
    pool_model = keras.Model(model.inputs[0], model.get_layer("avg_pool").output)
    expected_features = pool_model(resized / 127.5 - 1.0, training=False).numpy()
    expected_probs = model(resized / 127.5 - 1.0, training=False).numpy()
    np.testing.assert_allclose(features, expected_features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-4, atol=1e-7)


def test_relax_batch_dimension_drops_recorded_batch_one_shapes(graph_def):
    import tensorflow as tf

    relaxed = tf.compat.v1.GraphDef()
    relaxed.CopyFrom(graph_def)
    placeholder = relaxed.node.add(name="fixed_input", op="Placeholder")
    placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
    for size in (1, 299, 299, 3):
        placeholder.attr["shape"].shape.dim.add(size=size)
    assert any("_output_shapes" in node.attr for node in relaxed.node)
    inception.relax_batch_dimension(relaxed)
    assert not any("_output_shapes" in node.attr for node in relaxed.node)
    assert [d.size for d in relaxed.node[-1].attr["shape"].shape.dim] == [-1, 299, 299, 3]
    # Imported with the relaxed shapes, pool_3 has an open batch dimension.
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3])
        (pool,) = tf.graph_util.import_graph_def(relaxed, input_map={"ExpandDims:0": images},
                                                 return_elements=["pool_3:0"], name="")
    assert pool.shape.as_list() == [None, 1, 1, POOL_WIDTH]
