"""examples/things_eeg2_to_npz.py on small files of THINGS-EEG2's preprocessed structure."""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from eeg2image_tf.data import load_thoughtviz
from eeg2image_tf.errors import run_main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "things_eeg2_to_npz.py"
CONCEPTS, PER_CONCEPT, REPETITIONS = 5, 10, 4


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("things_eeg2_to_npz", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _preprocessed(rng):
    # One more concept than converted, to check that only the first --concepts are taken.
    return {"preprocessed_eeg_data": rng.normal(size=((CONCEPTS + 1) * PER_CONCEPT, REPETITIONS, 17, 100)),
            "ch_names": [f"ch{c}" for c in range(17)], "times": np.linspace(-0.2, 0.79, 100)}


def _metadata():
    concepts = [f"{c + 1:05d}_thing{c}" for c in range(CONCEPTS + 1) for _ in range(PER_CONCEPT)]
    files = [f"thing{i // PER_CONCEPT}_{i % PER_CONCEPT:02d}.jpg" for i in range(len(concepts))]
    return {"train_img_concepts": concepts, "train_img_files": files}


@pytest.mark.parametrize("saved_with", ["pickle", "np.save"])
def test_converts_into_our_format(example, tmp_path, saved_with, capsys):
    content = _preprocessed(np.random.default_rng(0))
    source = tmp_path / "preprocessed_eeg_training.npy"
    if saved_with == "pickle":
        source.write_bytes(pickle.dumps(content, protocol=4))    # as THINGS-EEG2 writes its training file
    else:
        np.save(source, content)                                  # and its test file
    np.save(tmp_path / "image_metadata.npy", _metadata())
    out = tmp_path / "eeg" / "things" / "data.npz"
    assert run_main(example.main, [str(source), "--out", str(out), "--concepts", str(CONCEPTS),
                                   "--test-images", "2", "--subject", "3",
                                   "--metadata", str(tmp_path / "image_metadata.npy")]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    splits = load_thoughtviz(out.parent)
    data = content["preprocessed_eeg_data"]
    train_images = [i for i in range(CONCEPTS * PER_CONCEPT) if i % PER_CONCEPT < PER_CONCEPT - 2]
    test_images = [i for i in range(CONCEPTS * PER_CONCEPT) if i % PER_CONCEPT >= PER_CONCEPT - 2]
    for split, chosen in (("train", train_images), ("test", test_images)):
        x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
        assert x.shape == (len(chosen) * REPETITIONS, 17, 100, 1) and x.dtype == np.float32
        # trial k is image chosen[k // REPETITIONS], repetition k % REPETITIONS
        for k in (0, 5, len(x) - 1):
            image, repetition = chosen[k // REPETITIONS], k % REPETITIONS
            np.testing.assert_array_equal(x[k, ..., 0], data[image, repetition].astype(np.float32))
            assert y[k] == image // PER_CONCEPT
            assert getattr(splits, f"image_{split}")[k] == \
                f"{image // PER_CONCEPT + 1:05d}_thing{image // PER_CONCEPT}/thing{image // PER_CONCEPT}_{image % PER_CONCEPT:02d}.jpg"
        assert set(getattr(splits, f"subject_{split}").tolist()) == {3}
    assert splits.class_names == tuple(f"{c + 1:05d}_thing{c}" for c in range(CONCEPTS))
    assert splits.normalisation == "zscore"
    with np.load(out, allow_pickle=False) as archive:
        assert archive["y_train"].shape == (len(train_images) * REPETITIONS, CONCEPTS)   # one-hot


def test_average_gives_one_trial_per_image(example, tmp_path):
    content = _preprocessed(np.random.default_rng(1))
    source = tmp_path / "eeg.npy"
    source.write_bytes(pickle.dumps(content, protocol=4))
    out = tmp_path / "avg.npz"
    assert run_main(example.main, [str(source), "--out", str(out), "--concepts", "2", "--average"]) == 0
    splits = load_thoughtviz(out)
    assert splits.x_train.shape == (16, 17, 100, 1) and splits.x_test.shape == (4, 17, 100, 1)
    np.testing.assert_allclose(splits.x_test[0, ..., 0], content["preprocessed_eeg_data"][8].mean(axis=0),
                               rtol=1e-6, atol=1e-6)
    assert splits.class_names is None and splits.image_train is None


class _RunsShell:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_code_in_the_file_is_refused(example, tmp_path, capsys):
    marker = tmp_path / "owned"
    source = tmp_path / "evil.npy"
    np.save(source, {"preprocessed_eeg_data": _RunsShell(marker)})
    assert run_main(example.main, [str(source), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "refused to load global" in err and str(source) in err
    assert not marker.exists() and not (tmp_path / "x.npz").exists()
