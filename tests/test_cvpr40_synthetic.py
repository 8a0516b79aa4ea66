"""The built-in EEGCVPR40-shaped set (``cvpr40-synthetic``), at its smallest sizes: one image per
class and split, one trial per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eeg2image_tf.data import load_thoughtviz, write_builtin_set
from eeg2image_tf.data.synthetic_cvpr40 import (CLASS_GLYPHS, CLASS_NAMES, CVPR40_SET, NUM_SUBJECTS,
                                                WINDOW, make_cvpr40_synthetic, window_trials)
from eeg2image_tf.errors import DataError

SIZES = {"n_train": 80, "n_test": 40, "images_per_class": 2, "test_images_per_class": 1}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cvpr40")
    return {"root": root, **write_builtin_set(root, CVPR40_SET, seed=3, **SIZES)}


def test_the_set_has_eegcvpr40s_shape_and_keys(written):
    splits = load_thoughtviz(written["eeg"])
    assert Path(written["eeg"]) == written["root"] / "eeg" / CVPR40_SET / "data.npz"
    assert splits.splits == ("train", "val", "test")
    assert splits.x_train.shape == (80, 128, WINDOW[1] - WINDOW[0], 1)
    assert splits.x_val.shape == splits.x_test.shape == (40, 128, 440, 1)
    assert splits.class_names == CLASS_NAMES and len(CLASS_NAMES) == 40
    assert splits.normalisation == "zscore"
    # Standardised per channel over the set: zero-centred, unit scale.
    every = np.concatenate([splits.x_train, splits.x_val, splits.x_test])
    np.testing.assert_allclose(every.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(every.std(axis=(0, 2, 3)), 1.0, atol=1e-3)
    # Every class in every split; a class's j-th trial is subject 1 + j mod 6's (two trials here).
    for split in splits.splits:
        assert set(getattr(splits, f"y_{split}").tolist()) == set(range(40)), split
    assert set(splits.subject_train.tolist()) == {1, 2} and NUM_SUBJECTS == 6
    assert np.bincount(splits.subject_train).tolist() == [0, 40, 40]


def test_each_trial_names_its_stimulus_of_its_class_in_its_split(written):
    splits = load_thoughtviz(written["eeg"])
    for split in splits.splits:
        folder = written["root"] / "images" / split
        for label, stimulus in zip(getattr(splits, f"y_{split}"), getattr(splits, f"image_{split}")):
            assert stimulus.split("/")[0] == CLASS_NAMES[label]
            assert (folder / stimulus).is_file(), (split, stimulus)
    # Splits by image: no stimulus is in two splits (the file names repeat, the folders differ).
    assert len(set(splits.image_train.tolist())) == 40 * SIZES["images_per_class"]
    assert sorted(p.name for p in (written["root"] / "images" / "train").iterdir() if p.is_dir()) \
        == sorted(CLASS_NAMES)


def test_class_folders_list_in_class_index_order():
    from natsort import natsorted

    assert list(CLASS_NAMES) == natsorted(CLASS_GLYPHS)
    assert len(set(CLASS_GLYPHS.values())) == 40


def test_same_seed_same_set_and_sizes_are_checked():
    first = make_cvpr40_synthetic(seed=7, **SIZES)
    second = make_cvpr40_synthetic(seed=7, **SIZES)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.image_test, second.image_test)
    with pytest.raises(DataError, match="a trial for each of the 40 x 3 images"):
        make_cvpr40_synthetic(n_train=80, n_test=40, images_per_class=3, test_images_per_class=1)


def test_recordings_are_cut_to_the_window_and_bad_lengths_refused():
    recordings = [np.arange(128 * length, dtype=np.float64).reshape(128, length)
                  for length in (460, 600)]
    trials = window_trials(recordings, "sim")
    assert trials.shape == (2, 128, 440, 1)
    np.testing.assert_array_equal(trials[1, 3, :, 0], recordings[1][3, 20:460])
    with pytest.raises(DataError, match="sim: recording 0 has 455 samples; expected 460-600"):
        window_trials([np.zeros((128, 455))], "sim")


def test_prepare_data_writes_it(tmp_path, capsys):
    from eeg2image_tf import prepare_data

    assert prepare_data.main(["--synthetic", "--set", CVPR40_SET, "--out", str(tmp_path),
                              *[f"--{key.replace('_', '-')}={value}" for key, value in SIZES.items()]]) == 0
    assert "x_train (80, 128, 440, 1)" in capsys.readouterr().out
    assert (tmp_path / "images" / "val" / "A").is_dir()


def test_its_data_npz_is_recorded_and_a_users_files_are_never_replaced(written, tmp_path):
    import json

    from eeg2image_tf.data import check_builtin_set_root
    from eeg2image_tf.io_utils import file_sha256

    eeg_dir = written["root"] / "eeg" / CVPR40_SET
    record = json.loads((eeg_dir / "synthetic.json").read_text())
    assert file_sha256(eeg_dir / "data.npz") in record["sha256"] and record["seed"] == 3
    # Its own files may be written again (the same bytes: the record names them).
    check_builtin_set_root(written["root"], CVPR40_SET)
    # A set of the same name that the built-in writer did not write: refused, nothing touched.
    user = tmp_path / "user"
    (user / "eeg" / CVPR40_SET).mkdir(parents=True)
    (user / "eeg" / CVPR40_SET / "data.npz").write_bytes(b"a user's recording")
    with pytest.raises(DataError, match=r"holds data.npz, which prepare_data --synthetic did not "
                                        r"write; write the built-in set to another --data-root"):
        write_builtin_set(user, CVPR40_SET, flag="--data-root", **SIZES)
    assert (user / "eeg" / CVPR40_SET / "data.npz").read_bytes() == b"a user's recording"
    assert not (user / "images").exists()
    # A user's image among its validation images, likewise.
    (user / "eeg" / CVPR40_SET / "data.npz").unlink()
    (user / "images" / "val" / "A").mkdir(parents=True)
    (user / "images" / "val" / "A" / "photo.jpg").write_bytes(b"jpeg")
    with pytest.raises(DataError, match=r"val: holds A/photo.jpg"):
        write_builtin_set(user, CVPR40_SET, **SIZES)
    assert not (user / "eeg" / CVPR40_SET / "data.npz").exists()
