"""The serving graph of an exported EEG2Image model: raw EEG trials in, uint8 images out.

:class:`EEG2ImageServing` is a ``tf.Module`` that holds the frozen encoder and the generator and
defines the SavedModel signatures as ``tf.function`` s:

- ``generate`` (also ``serving_default``): ``eeg`` ``[batch, C, T]`` + ``noise`` ``[batch, latent]``
  -> ``images`` uint8 ``[batch, 128, 128, 3]`` and ``features`` ``[batch, feature_dim]``;
- ``generate_seeded``: ``eeg`` + int64 scalar ``seed``; the noise is drawn in the graph from
  U(-1, 1) (docs/method.md section 4) with ``tf.random.stateless_uniform(seed=[seed, 0])``, so a
  seed gives the same images on every machine and in every client; outputs ``images``,
  ``features``, ``noise``;
- ``embed``: ``eeg`` -> ``features`` and the L2-normalised ``embeddings``;
- ``generate_from_features``: ``features`` + ``noise`` -> ``images`` and ``images_float`` in [-1, 1].

The preprocessing of training (``eeg2image_tf.data.preprocess``, with the normalisation the run
used) runs inside the graph, so clients send the raw trials of the set (``data.pkl`` or ``data.npz``,
without the trailing axis of size 1).

The input specs are deliberately loose (unknown rank) and every shape is checked in the graph
instead: a loaded signature does not check static shapes against its spec, so a ``[batch, 14, 33]``
input would otherwise run through the LSTM unnoticed and a ``[batch, 13, 32]`` one would fail deep
inside it. The graph's check fails with ``eeg must have shape [batch, C, T] ..., got [...]`` in
every client alike (Python, ``saved_model_cli``, TF Serving).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import tensorflow as tf

from ..data import preprocess
from ..errors import CheckpointError
from ..models.inference import images_to_uint8

IMAGE_SIZE = 128
# Said after the expected shape when an eeg input has another (and in signature.json's errors); no
# quote marks: the graph's message would escape them.
EEG_SHAPE_HINT = " (raw trials, as in the x_* arrays of the set without their trailing axis of size 1)"


def _shape_text(dims: Sequence[Optional[int]]) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in dims) + "]"


def require_shape(tensor: tf.Tensor, name: str, expected: Sequence[Optional[int]],
                  hint: str = "") -> tf.Tensor:
    """Return ``tensor`` with the static shape ``expected`` after a graph check of its real shape.

    ``expected`` holds ``None`` for "any size" (the batch). The check prints the expected shape and
    the shape received, e.g. ``eeg must have shape [batch, 14, 32], got [2 13 32]``.
    """
    expected = list(expected)
    shape = tf.shape(tensor, out_type=tf.int64)
    rank_ok = tf.equal(tf.size(shape), len(expected))
    # Pad so that the per-axis comparison is defined even when the rank is wrong.
    padded = tf.concat([shape, tf.zeros([len(expected)], tf.int64)], axis=0)[:len(expected)]
    wanted = tf.constant([-1 if d is None else d for d in expected], tf.int64)
    axes_ok = tf.reduce_all(tf.logical_or(tf.equal(wanted, -1), tf.equal(padded, wanted)))
    message = f"{name} must have shape {_shape_text(expected)}{hint}, got"
    check = tf.debugging.Assert(tf.logical_and(rank_ok, axes_ok), [message, shape], summarize=16)
    with tf.control_dependencies([check]):
        checked = tf.identity(tensor)
    checked.set_shape(expected)
    return checked


def require_same_batch(first: tf.Tensor, first_name: str, second: tf.Tensor,
                       second_name: str) -> tf.Operation:
    """Graph check that two inputs hold the same number of rows (one noise vector per trial)."""
    first_rows = tf.shape(first, out_type=tf.int64)[0]
    second_rows = tf.shape(second, out_type=tf.int64)[0]
    return tf.debugging.Assert(
        tf.equal(first_rows, second_rows),
        [f"{first_name} and {second_name} must have the same batch size, got", first_rows,
         "and", second_rows])


class EEG2ImageServing(tf.Module):
    """The exported model: preprocessing, frozen encoder and generator behind five signatures.

    Args:
        encoder: ``encoder(x (B, T, C), training=False) -> (embedding, feature)``, as
            ``eeg2image_tf.models.EEGEncoder``.
        generator: ``generator(concat([noise, feature]) (B, latent_dim + feature_dim),
            training=False) -> (B, 128, 128, 3)`` in [-1, 1].
        num_channels, num_samples: ``C`` and ``T`` of a raw trial (14 and 32 for ThoughtViz, 128 and
            440 for EEGCVPR40).
        latent_dim: width of the noise vector (128 in the original).
        normalisation: ``eeg2image_tf.data.preprocess`` method the encoder was trained with.

    The models are probed once with a zero batch so that a mismatch (an encoder for another channel
    count, a generator for another latent size) is reported now, in words, rather than while
    tracing. The four functions are then traced (a few seconds for the full-size generator), so
    the module is ready for ``tf.saved_model.save(module, path, signatures=module.signature_functions())``.
    """

    def __init__(self, encoder: Any, generator: Any, *, num_channels: int, num_samples: int,
                 latent_dim: int, normalisation: str = "original", name: Optional[str] = None):
        super().__init__(name=name)
        self.encoder = encoder
        self.generator = generator
        self.num_channels = int(num_channels)
        self.num_samples = int(num_samples)
        self.latent_dim = int(latent_dim)
        self.normalisation = str(normalisation)
        self.feature_dim = self._probe_models()

        eeg_spec = tf.TensorSpec(None, tf.float32, name="eeg")
        noise_spec = tf.TensorSpec(None, tf.float32, name="noise")
        features_spec = tf.TensorSpec(None, tf.float32, name="features")
        seed_spec = tf.TensorSpec([], tf.int64, name="seed")
        self.generate = tf.function(self._generate, input_signature=[eeg_spec, noise_spec],
                                    autograph=False)
        self.generate_seeded = tf.function(self._generate_seeded,
                                           input_signature=[eeg_spec, seed_spec], autograph=False)
        self.embed = tf.function(self._embed, input_signature=[eeg_spec], autograph=False)
        self.generate_from_features = tf.function(self._generate_from_features,
                                                  input_signature=[features_spec, noise_spec],
                                                  autograph=False)
        self.graph_variables = self._variables_of(self.signature_functions().values())

    # ----------------------------------------------------------------------------------------------
    # Construction-time checks
    # ----------------------------------------------------------------------------------------------

    def _probe_models(self) -> int:
        """Run one zero trial through both models; return the feature width."""
        trial = tf.zeros([1, self.num_samples, self.num_channels], tf.float32)
        try:
            _, feature = self.encoder(trial, training=False)
        except Exception as exc:  # Keras raises several types for a wrong input width
            raise CheckpointError(
                f"encoder: does not take trials of {self.num_channels} channels x {self.num_samples} "
                f"samples ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        feature_dim = int(feature.shape[-1])
        width = self.latent_dim + feature_dim
        try:
            image = self.generator(tf.zeros([1, width], tf.float32), training=False)
        except Exception as exc:
            raise CheckpointError(
                f"generator: does not take inputs of width {width} = latent_dim {self.latent_dim} + "
                f"feature {feature_dim} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        if tuple(image.shape) != (1, IMAGE_SIZE, IMAGE_SIZE, 3):
            raise CheckpointError(f"generator: makes images of shape {tuple(image.shape)[1:]}; "
                                  f"expected ({IMAGE_SIZE}, {IMAGE_SIZE}, 3)")
        return feature_dim

    @staticmethod
    def _variables_of(functions: Any) -> list:
        """The ``tf.Variable`` s the traced functions capture, each once.

        Keras 3 tracks its own variable wrappers, not the ``tf.Variable`` s inside them that the
        graph reads. TF 2 loading reconnects them either way, but the session-based loaders
        (``saved_model_cli run``, TF Serving) restore only the variables the object graph holds
        directly and would find the graph's variables uninitialised; tracking these fixes that.
        """
        seen: dict[int, Any] = {}
        for function in functions:
            for variable in function.variables:
                seen.setdefault(id(variable), variable)
        return list(seen.values())

    # ----------------------------------------------------------------------------------------------
    # Graph pieces
    # ----------------------------------------------------------------------------------------------

    def _checked_eeg(self, eeg: tf.Tensor) -> tf.Tensor:
        return require_shape(eeg, "eeg", [None, self.num_channels, self.num_samples], EEG_SHAPE_HINT)

    def _checked_noise(self, noise: tf.Tensor) -> tf.Tensor:
        return require_shape(noise, "noise", [None, self.latent_dim], " (U(-1, 1) in training)")

    def _features(self, eeg: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Checked raw trials ``(B, C, T)`` -> ``(embedding, feature)``, each ``(B, feature_dim)``."""
        model_input = preprocess(eeg, method=self.normalisation)
        embedding, feature = self.encoder(model_input, training=False)
        return embedding, feature

    def _images(self, features: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """``(B, feature_dim)`` + ``(B, latent_dim)`` -> float images ``(B, 128, 128, 3)`` in [-1, 1]."""
        # The original's generator input is concat([z, c]), noise first (docs/method.md section 4).
        return self.generator(tf.concat([noise, features], axis=-1), training=False)

    # ----------------------------------------------------------------------------------------------
    # Signatures
    # ----------------------------------------------------------------------------------------------

    def _generate(self, eeg: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        eeg = self._checked_eeg(eeg)
        noise = self._checked_noise(noise)
        with tf.control_dependencies([require_same_batch(eeg, "eeg", noise, "noise")]):
            _, features = self._features(eeg)
        images = self._images(features, noise)
        return {"images": images_to_uint8(images), "features": features}

    def _generate_seeded(self, eeg: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        eeg = self._checked_eeg(eeg)
        _, features = self._features(eeg)
        batch = tf.shape(eeg)[0]
        noise = tf.random.stateless_uniform(
            tf.stack([batch, self.latent_dim]), seed=tf.stack([seed, tf.constant(0, tf.int64)]),
            minval=-1.0, maxval=1.0, dtype=tf.float32)
        images = self._images(features, noise)
        return {"images": images_to_uint8(images), "features": features, "noise": noise}

    def _embed(self, eeg: tf.Tensor) -> dict[str, tf.Tensor]:
        embeddings, features = self._features(self._checked_eeg(eeg))
        return {"features": features, "embeddings": embeddings}

    def _generate_from_features(self, features: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        features = require_shape(features, "features", [None, self.feature_dim],
                                 " (the encoder's features, not the normalised embeddings)")
        noise = self._checked_noise(noise)
        with tf.control_dependencies([require_same_batch(features, "features", noise, "noise")]):
            images = self._images(features, noise)
        return {"images": images_to_uint8(images), "images_float": images}

    def signature_functions(self) -> dict[str, Any]:
        """Signature name -> concrete function, for ``tf.saved_model.save(signatures=...)``."""
        generate = self.generate.get_concrete_function()
        return {
            "serving_default": generate,
            "generate": generate,
            "generate_seeded": self.generate_seeded.get_concrete_function(),
            "embed": self.embed.get_concrete_function(),
            "generate_from_features": self.generate_from_features.get_concrete_function(),
        }

    def describe(self, training_values: Optional[tuple[float, float]] = None) -> dict[str, Any]:
        """The signatures of this module as :func:`describe_signatures` documents them."""
        return describe_signatures(num_channels=self.num_channels, num_samples=self.num_samples,
                                   latent_dim=self.latent_dim, feature_dim=self.feature_dim,
                                   normalisation=self.normalisation,
                                   training_values=training_values)


# --------------------------------------------------------------------------------------------------
# Documentation of the signatures (signature.json and README.txt are generated from this)
# --------------------------------------------------------------------------------------------------

def _tensor(dtype: str, shape: list[Optional[int]], value_range: str, description: str) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "range": value_range, "description": description}


def describe_signatures(*, num_channels: int, num_samples: int, latent_dim: int, feature_dim: int,
                        normalisation: str,
                        training_values: Optional[tuple[float, float]] = None) -> dict[str, Any]:
    """Inputs and outputs of every signature: dtype, shape (``None`` = batch), value range, meaning.

    ``shape`` is the shape the graph requires; the declared input specs are of unknown rank (see the
    module docstring) so ``saved_model_cli show`` prints ``unknown_rank`` for the inputs.
    ``training_values``: the 1st and 99th percentiles of the training trials' raw values, when the
    exporter knows them (stated beside the eeg input, in the units of the set).
    """
    if normalisation == "original":
        eeg_range = ("raw values with a positive maximum per trial: each trial is divided by "
                     "max(trial)/2 in the graph ('original' normalisation), so a trial with "
                     "max <= 0 is refused")
    else:
        eeg_range = (f"any finite values: each trial is normalised in the graph "
                     f"('{normalisation}' normalisation)")
    if training_values is not None:
        eeg_range += (f"; the training trials' values lay in [{training_values[0]:.4g}, "
                      f"{training_values[1]:.4g}] (1st-99th percentile)")
    eeg = _tensor("float32", [None, num_channels, num_samples], eeg_range,
                  f"raw EEG trials: {num_channels} channels x {num_samples} samples, as a set's "
                  "x_* arrays hold them (N, C, T, 1) without the trailing axis of size 1")
    noise = _tensor("float32", [None, latent_dim], "[-1, 1] (training drew U(-1, 1))",
                    "latent noise, one row per trial")
    seed = _tensor("int64", [], "any int64",
                   "noise = tf.random.stateless_uniform([batch, latent_dim], seed=[seed, 0], "
                   "minval=-1, maxval=1)")
    features_in = _tensor("float32", [None, feature_dim], "unbounded (LSTM output, about [-1, 1])",
                          "encoder features (the GAN's condition), e.g. from the embed signature")
    features_out = _tensor("float32", [None, feature_dim], "unbounded (LSTM output, about [-1, 1])",
                           "encoder features: the GAN's condition")
    embeddings = _tensor("float32", [None, feature_dim], "unit L2 norm per row",
                         "L2-normalised features: the space of the triplet loss")
    images = _tensor("uint8", [None, IMAGE_SIZE, IMAGE_SIZE, 3], "0-255",
                     "RGB images: uint8(clip((x * 0.5 + 0.5) * 255, 0, 255)), truncating")
    images_float = _tensor("float32", [None, IMAGE_SIZE, IMAGE_SIZE, 3], "[-1, 1]",
                           "the generator's tanh output before the uint8 conversion")
    noise_out = dict(noise, description="the noise drawn from the seed")

    generate = {"inputs": {"eeg": eeg, "noise": noise},
                "outputs": {"images": images, "features": features_out},
                "description": "raw EEG + noise -> images (preprocessing and encoder in the graph)"}
    return {
        "serving_default": dict(generate, alias_of="generate"),
        "generate": generate,
        "generate_seeded": {
            "inputs": {"eeg": eeg, "seed": seed},
            "outputs": {"images": images, "features": features_out, "noise": noise_out},
            "description": "raw EEG + seed -> images; the same seed gives the same images anywhere"},
        "embed": {
            "inputs": {"eeg": eeg},
            "outputs": {"features": features_out, "embeddings": embeddings},
            "description": "raw EEG -> encoder features and embeddings"},
        "generate_from_features": {
            "inputs": {"features": features_in, "noise": noise},
            "outputs": {"images": images, "images_float": images_float},
            "description": "features + noise -> images (the generator alone)"},
    }
