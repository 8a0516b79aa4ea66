"""A small CNN that recognises the dataset's classes in real images, to score generated ones.

The Inception Score and FID need an ImageNet network that must be fetched separately, and ImageNet
classes say little about letters or digits. This classifier is trained on the set's own real images
(``training.image_classifier``) and then measures whether a generated image shows the class of the
EEG trial that conditioned it (``metrics.conditional_accuracy``), how separable the classes are
(``metrics.conditional_separability``), and IS / FID analogues on its own probabilities and features.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from .layers import SynchronizedBatchNormalization


class ImageClassifier(keras.Model):
    """``(B, H, W, 3)`` images in [-1, 1] -> ``(B, num_classes)`` logits.

    Inputs of any size (the GAN's 128 x 128 included) are first resized to ``image_size`` (bilinear
    with antialiasing), so generated images can be classified as they come. Then one block per entry
    of ``widths``: 3x3 convolution (no bias) -> BatchNorm -> ReLU -> 2x2 max-pool; global average
    pooling gives the ``widths[-1]``-d features; dropout; a dense layer gives the logits.
    Five blocks on 64 x 64 give the last convolution a 63-pixel receptive field: each of its units
    sees a whole letter (with four, a short run reaches test accuracy 0.4-0.75 instead of 0.97).
    ``class_names`` (optional, ``num_classes`` names) travels with the model for reports.
    ``synchronized_batch_norm``: replicas training on one global batch normalise with its
    statistics (:class:`~.layers.SynchronizedBatchNormalization`; same variables).
    """

    def __init__(self, num_classes: int, image_size: int = 64,
                 widths: Sequence[int] = (16, 32, 64, 128, 128), dropout: float = 0.3,
                 class_names: Optional[Sequence[str]] = None,
                 synchronized_batch_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"ImageClassifier: {len(class_names)} class names for {num_classes} "
                             "classes")
        self.class_names = tuple(class_names) if class_names is not None else None
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.widths = tuple(int(w) for w in widths)
        self.dropout_rate = float(dropout)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.resize = keras.layers.Resizing(self.image_size, self.image_size,
                                            interpolation="bilinear", antialias=True,
                                            name="resize")
        # One attribute per layer: tf.train.Checkpoint does not see layers kept in a Python list of a
        # Keras 3 model (they would silently be left out of the checkpoint).
        for index, width in enumerate(self.widths):
            setattr(self, f"conv_{index}", keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"conv_{index}"))
            # Momentum 0.9, not Keras's 0.99: a run is a few hundred steps, and with 0.99 the moving
            # statistics used at test time would still remember their initial values.
            batch_norm = (SynchronizedBatchNormalization if self.synchronized_batch_norm
                          else keras.layers.BatchNormalization)
            setattr(self, f"bn_{index}", batch_norm(momentum=0.9, name=f"bn_{index}"))
        self.block_pool = keras.layers.MaxPooling2D(2, name="block_pool")
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.head = keras.layers.Dense(self.num_classes, name="logits")
        self._inference_fn = None

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    def resize_inputs(self, images):
        """``(B, H, W, 3)`` -> ``(B, image_size, image_size, 3)``; sized ones pass unchanged."""
        if tuple(images.shape[1:3]) == (self.image_size, self.image_size):
            return images
        return self.resize(images)

    def embed(self, images, training: bool = False):
        """Penultimate features ``(B, feature_dim)`` of images in [-1, 1] (a tensor, differentiable)."""
        x = self.resize_inputs(images)
        for index in range(len(self.widths)):
            x = getattr(self, f"conv_{index}")(x)
            x = getattr(self, f"bn_{index}")(x, training=training)
            x = self.block_pool(keras.activations.relu(x))
        return self.global_pool(x)

    def call(self, images, training: bool = False):
        features = self.embed(images, training=training)
        return self.head(self.dropout(features, training=training))

    def build(self, input_shape=None) -> None:
        """Create every variable; the input size does not matter (inputs are resized first)."""
        size, channels = self.image_size, 3
        for index, width in enumerate(self.widths):
            getattr(self, f"conv_{index}").build((None, size, size, channels))
            getattr(self, f"bn_{index}").build((None, size, size, width))
            size, channels = size // 2, width
        self.head.build((None, channels))
        self.built = True

    def build_for_images(self, image_size: int = 128) -> "ImageClassifier":
        """Build, then run one blank ``(1, image_size, image_size, 3)`` image through the model."""
        self.build()
        self(np.zeros((1, image_size, image_size, 3), np.float32), training=False)
        return self

    # ----------------------------------------------------------------------------------------------
    # numpy conveniences: batched inference in one traced function
    # ----------------------------------------------------------------------------------------------

    def _infer(self, batch):
        if self._inference_fn is None:
            @tf.function(reduce_retracing=True, autograph=False)
            def infer(images):
                features = self.embed(images, training=False)
                return features, tf.nn.softmax(self.head(features))

            self._inference_fn = infer
        return self._inference_fn(batch)

    def features_and_probs(self, images: np.ndarray, batch_size: int = 256
                           ) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, feature_dim), probs (N, num_classes))`` float32 of images in [-1, 1]."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"ImageClassifier: images must be (N, H, W, 3), got {images.shape}")
        features = np.empty((images.shape[0], self.feature_dim), np.float32)
        probs = np.empty((images.shape[0], self.num_classes), np.float32)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].astype(np.float32)
            batch_features, batch_probs = self._infer(batch)
            features[start:start + len(batch)] = batch_features.numpy()
            probs[start:start + len(batch)] = batch_probs.numpy()
        return features, probs

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Penultimate features ``(N, feature_dim)`` float32 (for FID analogues and separability)."""
        return self.features_and_probs(images, batch_size)[0]

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` float32 of images in [-1, 1]."""
        return self.features_and_probs(images, batch_size)[1]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_classes=self.num_classes, image_size=self.image_size,
                      widths=list(self.widths), dropout=self.dropout_rate,
                      class_names=list(self.class_names) if self.class_names else None,
                      synchronized_batch_norm=self.synchronized_batch_norm)
        return config
