"""Convert a THINGS-EEG2 preprocessed file (Gifford et al., 2022) into an eeg2image-tf set.

    python examples/things_eeg2_to_npz.py sub-01/preprocessed_eeg_training.npy \
        --metadata image_metadata.npy --concepts 40 --test-images 2 --subject 1 \
        --out data/eeg/things40/data.npz

THINGS-EEG2's preprocessed files are pickled dicts (``pickle.dump``, or ``np.save`` of the dict):
``preprocessed_eeg_data`` (image conditions, repetitions, 17 channels, 100 samples), ``ch_names``,
``times``. The training file holds 10 images of each of 1654 concepts, in concept order. Here the
first ``--concepts`` concepts become the classes; the last ``--test-images`` images of each concept
go to the test split, the others to train; every repetition is a trial (``--average`` averages them
into one). Both files are read without unpickling anything but arrays and plain containers
(eeg2image-tf's restricted unpickler): a pickle can run code.

``--metadata`` (THINGS-EEG2's ``image_metadata.npy``) names the classes after their concepts and
records each trial's stimulus as ``<concept>/<file>``, its place under ``training_images/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eeg2image_tf.data import EEGSplits, safe_load_pickle, safe_loads, save_npz
from eeg2image_tf.errors import DataError, run_main


def read_pickled(path: Path) -> Any:
    """The object in a pickle file, or in an ``.npy`` file of one pickled object, read safely."""
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            return safe_load_pickle(path)
        handle.seek(0)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
            else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(handle)
        if dtype != object:
            raise DataError(f"{path}: a plain {dtype} array, expected a saved dict")
        array = safe_loads(handle.read(), source=str(path))
    return array.item() if isinstance(array, np.ndarray) and array.shape == () else array


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eeg", help="preprocessed_eeg_training.npy of one subject")
    parser.add_argument("--out", required=True, help="the .npz to write (e.g. data/eeg/<set>/data.npz)")
    parser.add_argument("--metadata", help="image_metadata.npy: concept names and image files")
    parser.add_argument("--concepts", type=int, default=40, help="the first N concepts are the classes")
    parser.add_argument("--images-per-concept", type=int, default=10)
    parser.add_argument("--test-images", type=int, default=2, help="last images of each concept -> test")
    parser.add_argument("--average", action="store_true", help="one trial per image: repetitions averaged")
    parser.add_argument("--subject", type=int, help="subject number, recorded with every trial")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    source = Path(args.eeg)
    content = read_pickled(source)
    data = content.get("preprocessed_eeg_data") if isinstance(content, dict) else None
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        raise DataError(f"{source}: expected a dict with 'preprocessed_eeg_data' (images, repetitions, "
                        "channels, samples)")
    per_concept, test_images = args.images_per_concept, args.test_images
    count = args.concepts * per_concept
    if not 0 < test_images < per_concept or not 0 < count <= len(data):
        raise DataError(f"{source}: {len(data)} images; cannot take {args.concepts} concepts of "
                        f"{per_concept} images with {test_images} for test")

    # Image i shows concept i // per_concept; its place within the concept decides the split.
    images = np.arange(count)
    is_test = images % per_concept >= per_concept - test_images
    trials = data[:count].mean(axis=1, keepdims=True) if args.average else data[:count]
    repetitions = trials.shape[1]

    names, stimuli = None, None
    if args.metadata:
        metadata = read_pickled(Path(args.metadata))
        if not isinstance(metadata, dict) or not {"train_img_concepts", "train_img_files"} <= set(metadata):
            raise DataError(f"{args.metadata}: expected a dict with 'train_img_concepts', 'train_img_files'")
        concepts, files = metadata["train_img_concepts"], metadata["train_img_files"]
        names = tuple(str(concepts[c * per_concept]) for c in range(args.concepts))
        stimuli = np.array([f"{concepts[i]}/{files[i]}" for i in range(count)])

    fields = {}
    for split, chosen in (("train", images[~is_test]), ("test", images[is_test])):
        # Trials in image order, the repetitions of one image together.
        fields[f"x_{split}"] = trials[chosen].reshape(-1, *trials.shape[2:])[..., None].astype(np.float32)
        fields[f"y_{split}"] = np.repeat(chosen // per_concept, repetitions).astype(np.int64)
        if stimuli is not None:
            fields[f"image_{split}"] = np.repeat(stimuli[chosen], repetitions)
        if args.subject is not None:
            fields[f"subject_{split}"] = np.full(len(chosen) * repetitions, args.subject, np.int64)
    # Preprocessed THINGS-EEG2 is baseline-corrected and whitened: zero-centred, so z-scored per trial.
    splits = EEGSplits(class_names=names, source=str(source), normalisation="zscore", **fields)
    save_npz(splits, args.out, one_hot=True)
    print(f"wrote {args.out}: x_train {fields['x_train'].shape}, x_test {fields['x_test'].shape}, "
          f"{args.concepts} classes, channels {', '.join(map(str, content.get('ch_names', [])))}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
