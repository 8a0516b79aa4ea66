"""Inception networks for the Inception Score and FID, from local files only (nothing is downloaded).

Two backends share one interface, :class:`InceptionBackend`:

- :class:`GraphInception`: the TF ``inception-2015-12-05`` graph (``classify_image_graph_def.pb``)
  the paper's numbers come from (docs/method.md section 5). Its probabilities are
  ``softmax(pool_3 @ W)`` with ``W`` the weight matrix of ``softmax/logits/MatMul`` and **no bias**,
  the quirk of the Improved-GAN reference code that every paper-comparable score keeps.
- :class:`KerasInception`: ``keras.applications.InceptionV3`` with a local weights file. Its scores
  are the usual Keras ones (the bias included) and are not comparable with the paper's.

:func:`load_backend` picks one from the paths a user gave, or says why none is available.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from ..errors import DataError

GRAPH_FILE_NAME = "classify_image_graph_def.pb"
GRAPH_INPUT = "ExpandDims:0"
GRAPH_POOL = "pool_3:0"
GRAPH_LOGITS_OP = "softmax/logits/MatMul"

KERAS_IMAGE_SIZE = 299
KERAS_POOL_LAYER = "avg_pool"

GRAPH_ENV = "EEG2IMAGE_INCEPTION_GRAPH"
WEIGHTS_ENV = "EEG2IMAGE_INCEPTION_WEIGHTS"


def images_from_tanh_range(images: np.ndarray) -> np.ndarray:
    """Map generator output in [-1, 1] to the float 0-255 RGB the backends expect."""
    return (np.asarray(images, dtype=np.float32) + 1.0) * 127.5


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class InceptionBackend:
    """``compute(images)`` -> ``(pool_features (N, D), probs (N, K))``.

    ``images`` is ``(N, H, W, 3)`` RGB, uint8 or float, with values in 0-255 (use
    :func:`images_from_tanh_range` for generator output). Images are converted batch by batch, so a
    uint8 array is never copied whole into float; for very large sets call ``compute`` on chunks and
    concatenate. ``pool_features`` are float32 (2048-d for the real networks), ``probs`` float64 rows
    summing to one.
    """

    name: str = "inception"
    paper_comparable: bool = False

    def _run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def compute(self, images: np.ndarray, batch_size: int = 100,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be (N, H, W, 3), got shape {images.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"{self.name}: no images")
        starts = range(0, images.shape[0], batch_size)
        if progress:
            starts = tqdm(starts, desc=self.name, unit="batch")
        features, probs = [], []
        for start in starts:
            batch = images[start:start + batch_size].astype(np.float32)
            batch_features, batch_probs = self._run_batch(batch)
            features.append(batch_features)
            probs.append(batch_probs)
        return np.concatenate(features), np.concatenate(probs)


# --------------------------------------------------------------------------------------------------
# The 2015 TF graph
# --------------------------------------------------------------------------------------------------

def read_graph_bytes(path: str | os.PathLike) -> bytes:
    """The serialised GraphDef from ``classify_image_graph_def.pb``, the release ``.tgz``, or a
    directory holding either."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / GRAPH_FILE_NAME, *sorted(path.glob("*.tgz")),
                      *sorted(path.glob("*.tar.gz"))]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{path}: no {GRAPH_FILE_NAME} or .tgz archive in this directory")
        path = found
    if not path.is_file():
        raise DataError(f"{path}: Inception graph not found")
    if path.name.endswith((".tgz", ".tar.gz", ".tar")):
        try:
            with tarfile.open(path) as archive:
                # Read the member in memory: nothing from the archive is written to disk.
                member = next((m for m in archive.getmembers()
                               if m.isfile() and Path(m.name).name == GRAPH_FILE_NAME), None)
                if member is None:
                    raise DataError(f"{path}: archive has no {GRAPH_FILE_NAME}")
                return archive.extractfile(member).read()
        except tarfile.TarError as exc:
            raise DataError(f"{path}: not a readable tar archive ({exc})") from None
    return path.read_bytes()


def relax_batch_dimension(graph_def) -> None:
    """Make a GraphDef importable with any batch size, in place.

    The 2015 graph was exported for one image: shapes recorded in ``_output_shapes`` attributes, and
    ``shape`` attributes of placeholders, fix the batch dimension to 1, and the importer merges them
    into the static shapes, so every tensor after our batched input would claim a batch of 1 (the
    Improved-GAN code patches ``_shape`` for the same reason). Dropping the recorded shapes lets
    TensorFlow infer them from our ``[None, None, None, 3]`` input. The one op whose *value*
    hard-codes batch 1, the ``pool_3/_reshape`` to ``[1, 2048]``, only feeds the graph's own
    (biased) softmax; we read ``pool_3:0`` and reshape it ourselves, so that op is pruned and never
    runs.
    """
    for node in graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
        if "shape" in node.attr:
            dims = node.attr["shape"].shape.dim
            if len(dims) > 0 and dims[0].size == 1:
                dims[0].size = -1


class GraphInception(InceptionBackend):
    """The TF ``inception-2015-12-05`` graph, run in batches in a TF1-style session.

    Images enter at ``ExpandDims:0`` as float 0-255 RGB at their native size (the graph resizes to
    299 and normalises itself); all images of one ``compute`` batch must share a size.
    ``pool_features`` is ``pool_3:0`` reshaped to ``(N, D)``; ``probs = softmax(pool_3 @ W)`` without
    the bias (docs/method.md section 5).
    """

    name = "inception-2015-12-05"
    paper_comparable = True

    def __init__(self, path: str | os.PathLike):

        self.path = Path(path)
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(read_graph_bytes(self.path))
        except Exception as exc:  # protobuf raises its own DecodeError
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{self.path}: not a TensorFlow GraphDef ({type(exc).__name__})") from None
        node_names = {node.name for node in graph_def.node}
        for required in (GRAPH_INPUT.split(":")[0], GRAPH_POOL.split(":")[0], GRAPH_LOGITS_OP):
            if required not in node_names:
                raise DataError(f"{self.path}: graph has no op '{required}'; "
                                f"is this the inception-2015-12-05 {GRAPH_FILE_NAME}?")
        relax_batch_dimension(graph_def)

        # A TF1 graph and session, as the reference code runs it: the 2015 graph uses ops that were
        # removed in GraphDef version 9 (BatchNormWithGlobalNormalization). Imported into a graph of
        # its own, the graph keeps the old producer version and the old kernels still run; wrapped
        # into a TF2 function (tf.compat.v1.wrap_function) it is re-versioned and refused.
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._input = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3],
                                                   name="eeg2image_inception_input")
            try:
                tf.graph_util.import_graph_def(graph_def, input_map={GRAPH_INPUT: self._input},
                                               name="")
                self._pool = self._graph.get_tensor_by_name(GRAPH_POOL)
                weights = self._graph.get_operation_by_name(GRAPH_LOGITS_OP).inputs[1]
            except (ValueError, KeyError, tf.errors.OpError) as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                    type(exc).__name__
                raise DataError(f"{self.path}: cannot import the Inception graph ({first_line})") \
                    from None
        self._session = tf.compat.v1.Session(graph=self._graph)
        # W is a constant of the graph: fetch it once, without feeding any image.
        self.logit_weights = self._session.run(weights)

    def close(self) -> None:
        """Release the TF session (also done when the backend is garbage-collected)."""
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            session.close()

    def __del__(self) -> None:
        self.close()

    def _run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._session is None:
            raise RuntimeError(f"{self.name}: backend was closed")
        pool = self._session.run(self._pool, {self._input: batch})
        features = pool.reshape(batch.shape[0], -1)
        # The original multiplies in float32 (TF); the softmax is taken in float64 for the logs of IS.
        logits = features @ self.logit_weights
        return features, _softmax(logits.astype(np.float64))


# --------------------------------------------------------------------------------------------------
# Keras InceptionV3
# --------------------------------------------------------------------------------------------------

class KerasInception(InceptionBackend):
    """``keras.applications.InceptionV3`` (with its 1000-class top) and a local weights file.

    ``weights_path`` is a Keras weights file of the full model, e.g. Keras's own
    ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5`` or a ``.weights.h5`` saved by Keras 3.
    Images are resized to 299 (bilinear) and scaled by ``inception_v3.preprocess_input``;
    ``pool_features`` are the 2048-d ``avg_pool`` output, ``probs`` the model's softmax.
    """

    name = "keras-inception-v3"
    paper_comparable = False

    def __init__(self, weights_path: str | os.PathLike):

        self.path = Path(weights_path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: InceptionV3 weights file not found")
        model = keras.applications.InceptionV3(include_top=True, weights=None)
        try:
            model.load_weights(str(self.path))
        except Exception as exc:  # h5py, ValueError on layer mismatch, ...
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{self.path}: cannot load InceptionV3 weights with the top "
                            f"({first_line})") from None
        self._model = keras.Model(model.inputs[0],
                                  [model.get_layer(KERAS_POOL_LAYER).output, model.output])
        preprocess = keras.applications.inception_v3.preprocess_input

        @tf.function(reduce_retracing=True, autograph=False)
        def forward(batch):
            resized = tf.image.resize(batch, (KERAS_IMAGE_SIZE, KERAS_IMAGE_SIZE),
                                      method="bilinear")
            return self._model(preprocess(resized), training=False)

        self._forward = forward

    def _run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:

        features, probs = self._forward(tf.constant(batch))
        probs = probs.numpy().astype(np.float64)
        return features.numpy(), probs / probs.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# Choice
# --------------------------------------------------------------------------------------------------

def load_backend(graph: Optional[str | os.PathLike] = None,
                 weights: Optional[str | os.PathLike] = None
                 ) -> tuple[Optional[InceptionBackend], str]:
    """Build the Inception backend the user asked for: ``(backend, "")`` or ``(None, reason)``.

    The 2015 graph (``graph``, paper-comparable) wins over Keras weights (``weights``); without
    either argument the environment variables ``EEG2IMAGE_INCEPTION_GRAPH`` and
    ``EEG2IMAGE_INCEPTION_WEIGHTS`` are consulted. A path that was given but cannot be used raises
    :class:`~eeg2image_tf.errors.DataError` (a typo must not silently skip the metric); ``None`` is
    returned only when no network was given at all.
    """
    graph = graph or os.environ.get(GRAPH_ENV) or None
    weights = weights or os.environ.get(WEIGHTS_ENV) or None
    if graph:
        return GraphInception(graph), ""
    if weights:
        return KerasInception(weights), ""
    return None, (f"no Inception network given (nothing is downloaded): pass the "
                  f"inception-2015-12-05 graph ({GRAPH_FILE_NAME} or its .tgz) for paper-comparable "
                  f"IS/FID, or InceptionV3 Keras weights; or set {GRAPH_ENV} / {WEIGHTS_ENV}")
