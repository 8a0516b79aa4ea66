"""The data layer: EEG sets (ThoughtViz's ``data.pkl`` and our ``.npz``), ``torch.save`` files read
without torch, EEG normalisation, image folders, tf.data pipelines and the built-in synthetic sets
(see ``docs/design.md``), and the check of a command's input paths (:mod:`.inputs`, not re-exported
here: only the commands call it). Importing it does not import TensorFlow."""

from .builtin import (BUILTIN_SETS, builtin_class_names, builtin_sizes, check_builtin_set_root,
                      check_builtin_sizes, write_builtin_set)
from .eegcvpr40 import convert_eegcvpr40, read_eegcvpr40
from .images import (IMAGE_EXTENSIONS, ImageFolder, known_class_names, list_image_folder,
                     list_split_folders, load_image, load_images, pair_images, stimulus_images)
from .pipelines import encoder_dataset, gan_dataset
from .preprocess import (PREPROCESS_METHODS, normalisation_note, preprocess, preprocess_numpy,
                         resolve_normalisation)
from .safe_pickle import RestrictedUnpickler, safe_load_pickle, safe_loads
from .synthetic import (SYNTHETIC_SETS, check_synthetic_images, check_synthetic_root,
                        make_synthetic_eeg, render_character, write_synthetic_set)
from .torch_file import load_torch_file
from .thoughtviz import (CLASS_NAMES, SPLIT_KEYS, EEGSplits, convert_to_npz, eeg_file,
                         load_thoughtviz, save_npz)

__all__ = [
    "CLASS_NAMES", "SPLIT_KEYS", "EEGSplits", "convert_to_npz", "eeg_file", "load_thoughtviz", "save_npz",
    "RestrictedUnpickler", "safe_load_pickle", "safe_loads", "load_torch_file",
    "convert_eegcvpr40", "read_eegcvpr40",
    "PREPROCESS_METHODS", "preprocess", "preprocess_numpy", "resolve_normalisation", "normalisation_note",
    "IMAGE_EXTENSIONS", "ImageFolder", "list_image_folder", "list_split_folders", "load_image",
    "load_images", "pair_images", "known_class_names", "stimulus_images",
    "encoder_dataset", "gan_dataset",
    "SYNTHETIC_SETS", "check_synthetic_images", "check_synthetic_root", "make_synthetic_eeg",
    "render_character", "write_synthetic_set",
    "BUILTIN_SETS", "builtin_class_names", "builtin_sizes", "check_builtin_set_root",
    "check_builtin_sizes", "write_builtin_set",
]
