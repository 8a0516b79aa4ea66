"""Keras 3 models of EEG2Image: the EEG encoder and the conditional DCGAN (spec sections 3-4)."""

from .encoder import EEGEncoder, build_encoder, l2_normalize
from .gan import Discriminator, Generator, build_discriminator, build_generator

__all__ = [
    "EEGEncoder", "Generator", "Discriminator",
    "build_encoder", "build_generator", "build_discriminator", "l2_normalize",
]
