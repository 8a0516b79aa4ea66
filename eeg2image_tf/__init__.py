"""EEG2Image in TensorFlow 2 / Keras 3.

Importing the package is cheap: TensorFlow is imported only by the submodules that need it.
"""

__version__ = "0.1.0"
