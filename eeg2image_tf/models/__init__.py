"""Keras 3 models of EEG2Image: the EEG encoder and the conditional DCGAN (docs/method.md sections
3-4), the image classifier, their layers, the Generator's fast inference forward and arithmetic
precisions."""

from .encoder import EEGEncoder, build_encoder, encoder_features, l2_normalize
from .gan import Discriminator, Generator, build_discriminator, build_generator

__all__ = [
    "EEGEncoder", "Generator", "Discriminator",
    "build_encoder", "build_generator", "build_discriminator", "encoder_features", "l2_normalize",
]
