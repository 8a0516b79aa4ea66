"""ThoughtViz loading: the restricted unpickler, the .npz format and validation messages."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from eeg2image_tf.data import CLASS_NAMES, EEGSplits, load_thoughtviz, safe_loads, save_npz
from eeg2image_tf.errors import DataError, UnsafePickleError


def make_arrays(n_train=20, n_test=10, channels=14, samples=32, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train) % classes
    y_test = rng.integers(0, classes, n_test)
    return {
        "x_train": rng.uniform(3900, 4600, (n_train, channels, samples, 1)),
        "y_train": np.eye(classes)[y_train],
        "x_test": rng.uniform(3900, 4600, (n_test, channels, samples, 1)),
        "y_test": np.eye(classes)[y_test],
    }


def write_pickle(path, obj, protocol=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)
    return path


# --------------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_round_trip_keeps_values_and_converts_labels(tmp_path, protocol):
    arrays = make_arrays()
    splits = load_thoughtviz(write_pickle(tmp_path / "data.pkl", arrays, protocol))
    assert splits.x_train.dtype == np.float32 and splits.x_train.shape == (20, 14, 32, 1)
    assert splits.y_train.dtype == np.int64 and splits.y_train.shape == (20,)
    np.testing.assert_allclose(splits.x_test, arrays["x_test"].astype(np.float32))
    np.testing.assert_array_equal(splits.y_test, arrays["y_test"].argmax(1))
    assert (splits.num_classes, splits.num_channels, splits.num_samples) == (10, 14, 32)
    assert splits.class_names is None  # "tmp_path" names no known set
    assert splits.source == str(tmp_path / "data.pkl")


def test_python2_style_bytes_keys_and_integer_labels(tmp_path):
    arrays = make_arrays()
    obj = {b"x_train": arrays["x_train"][..., 0], b"y_train": arrays["y_train"].argmax(1),
           b"x_test": arrays["x_test"], b"y_test": arrays["y_test"].argmax(1).astype(np.int32)}
    splits = load_thoughtviz(write_pickle(tmp_path / "eeg" / "char" / "data.pkl", obj))
    assert splits.x_train.shape == (20, 14, 32, 1)  # (N, C, T) gains the trailing axis
    np.testing.assert_array_equal(splits.y_train, np.arange(20) % 10)
    assert splits.class_names == CLASS_NAMES["char"]  # inferred from the set folder


def test_python2_fixture_loads_with_its_shapes(fixture_file):
    splits = load_thoughtviz(fixture_file("thoughtviz_py2_format.pkl"))
    assert splits.x_train.shape == (40, 14, 32, 1)
    assert splits.x_test.shape == (20, 14, 32, 1)
    assert splits.y_train.shape == (40,) and splits.y_test.shape == (20,)
    assert splits.num_classes == 10
    assert 3900.0 <= splits.x_train.min() and splits.x_train.max() <= 4600.0
    with open(fixture_file("thoughtviz_py2_format.pkl"), "rb") as handle:
        reference = pickle.load(handle, encoding="latin1")
    np.testing.assert_array_equal(splits.x_test, reference["x_test"].astype(np.float32))
    np.testing.assert_array_equal(splits.y_train, reference["y_train"].argmax(1))


def test_npz_round_trip_keeps_class_names(tmp_path):
    arrays = make_arrays()
    splits = load_thoughtviz(write_pickle(tmp_path / "data.pkl", arrays), class_names=CLASS_NAMES["digit"])
    out = save_npz(splits, tmp_path / "converted.npz")
    with np.load(out, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["class_names", "x_test", "x_train", "y_test", "y_train"]
    again = load_thoughtviz(out)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, key), getattr(splits, key))
    assert again.class_names == CLASS_NAMES["digit"]


def test_npz_with_one_hot_labels_and_directory_argument(tmp_path):
    arrays = make_arrays()
    np.savez(tmp_path / "data.npz", **arrays)
    splits = load_thoughtviz(tmp_path)
    assert splits.source.endswith("data.npz")
    np.testing.assert_array_equal(splits.y_train, np.arange(20) % 10)


def test_npz_with_object_array_is_refused(tmp_path):
    arrays = make_arrays()
    arrays["x_train"] = np.array([object()] * 3, dtype=object)
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(DataError, match="data.npz"):
        load_thoughtviz(tmp_path / "data.npz")


# --------------------------------------------------------------------------------------------------
# Optional keys: a validation split, stimuli, subjects, class descriptions, normalisation
# --------------------------------------------------------------------------------------------------

def make_full_set(tmp_path):
    """A set with every optional key, as EEGSplits, written to ``tmp_path/full.npz``."""
    arrays = make_arrays(n_train=6, n_test=4, channels=3, samples=5, classes=3)
    rng = np.random.default_rng(1)
    splits = EEGSplits(
        x_train=arrays["x_train"].astype(np.float32), y_train=np.arange(6) % 3,
        x_val=rng.normal(size=(2, 3, 5, 1)).astype(np.float32), y_val=np.array([2, 0]),
        x_test=arrays["x_test"].astype(np.float32), y_test=np.array([1, 1, 0, 2]),
        class_names=("n01", "n02", "n03"), class_descriptions=("dog", "cat", "bird"),
        image_train=np.array([f"n0{c + 1}/n0{c + 1}_{i}.JPEG" for i, c in enumerate(np.arange(6) % 3)]),
        image_val=np.array(["n03/n03_9.JPEG", "n01/n01_9.JPEG"]),
        image_test=np.array(["n02/a.JPEG", "n02/b.JPEG", "n01/c.JPEG", "n03/d.JPEG"]),
        subject_train=np.array([1, 2, 3, 1, 2, 3]), subject_val=np.array([4, 4]),
        subject_test=np.array([5, 6, 5, 6]), normalisation="zscore", source="made")
    return splits, save_npz(splits, tmp_path / "full.npz")


def test_thoughtviz_sets_have_no_optional_fields(tmp_path):
    splits = load_thoughtviz(write_pickle(tmp_path / "data.pkl", make_arrays()))
    assert splits.splits == ("train", "test") and not splits.has_stimuli
    for field in ("x_val", "y_val", "image_train", "image_val", "image_test", "subject_train",
                  "subject_val", "subject_test", "class_descriptions", "normalisation"):
        assert getattr(splits, field) is None, field


def test_npz_round_trip_keeps_every_optional_field(tmp_path):
    splits, path = make_full_set(tmp_path)
    with np.load(path, allow_pickle=False) as archive:
        assert archive["image_val"].dtype.kind == "U" and archive["normalisation"].shape == ()
        assert archive["subject_test"].dtype == np.int64
    again = load_thoughtviz(path)
    assert again.splits == ("train", "val", "test") and again.has_stimuli
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "image_train", "image_val",
                  "image_test", "subject_train", "subject_val", "subject_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(splits, field), err_msg=field)
    assert again.y_val.dtype == np.int64 and again.subject_val.dtype == np.int64
    assert again.x_val.dtype == np.float32 and again.x_val.shape == (2, 3, 5, 1)
    assert again.class_names == ("n01", "n02", "n03")
    assert again.class_descriptions == ("dog", "cat", "bird")
    assert again.normalisation == "zscore"


def test_pickled_sets_may_carry_optional_keys_as_lists(tmp_path):
    arrays = make_arrays(n_train=10, n_test=3)
    arrays.update(subject_train=[1] * 10, subject_test=[2, 2, 2], normalisation="original",
                  image_train=[f"c{i % 10}/{i}.png" for i in range(10)],
                  image_test=["c0/x.png", "c1/y.png", "c2/z.png"])
    splits = load_thoughtviz(write_pickle(tmp_path / "data.pkl", arrays))
    assert splits.image_test.tolist() == ["c0/x.png", "c1/y.png", "c2/z.png"]
    assert splits.subject_train.dtype == np.int64 and splits.normalisation == "original"


def _optional_error(tmp_path, **changes):
    splits, path = make_full_set(tmp_path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(DataError) as caught:
        load_thoughtviz(bad)
    message = str(caught.value)
    assert message.startswith(str(bad)) and "\n" not in message
    return message


@pytest.mark.parametrize("changes, expected", [
    ({"image_val": np.array(["n01/a.JPEG"])}, "image_val has shape (1,), expected (2,)"),
    ({"subject_train": np.arange(5)}, "subject_train has shape (5,), expected (6,)"),
    ({"subject_test": np.array([1.0, 2.0, 3.0, 4.0])}, "subject_test has dtype float64"),
    ({"image_test": np.arange(4)}, "image_test must be a 1-D unicode array"),
    ({"image_test": None}, "image_train given but image_test is missing"),
    ({"subject_val": None}, "subject_train given but subject_val is missing"),
    ({"x_val": None, "y_val": None}, "image_val given but the set has no x_val"),
    ({"y_val": None}, "missing key 'y_val'"),
    ({"x_val": np.zeros((2, 4, 5, 1))}, "x_val has 4 channels"),
    ({"y_val": np.array([0, 3])}, "y_val has label 3, expected < 3"),
    ({"image_train": np.array(["/etc/passwd"] + ["n01/a.JPEG"] * 5)}, "image_train[0] is '/etc/passwd'"),
    ({"image_test": np.array(["n01/a.JPEG", "../x.JPEG", "n01/b.JPEG", "n01/c.JPEG"])},
     "image_test[1] is '../x.JPEG'"),
    ({"class_descriptions": np.array(["dog"])}, "class_descriptions holds 1 names but the data has 3"),
    ({"normalisation": np.array("halfmax")}, "normalisation is 'halfmax', expected one of original, zscore"),
    ({"normalisation": np.array(["zscore"])}, "normalisation is a ndarray"),
])
def test_optional_keys_are_validated(tmp_path, changes, expected):
    assert expected in _optional_error(tmp_path, **changes)


# --------------------------------------------------------------------------------------------------
# Hostile pickles are refused before anything runs
# --------------------------------------------------------------------------------------------------

class _RunsShell:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Execs:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.target)!r}, 'w').write('owned')",))


class _Opens:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


@pytest.mark.parametrize("payload, refused", [(_RunsShell, ".system'"), (_Execs, ".exec'"),
                                              (_Opens, ".open'")])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_running_pickle_is_refused_without_running(tmp_path, payload, refused, protocol):
    target = tmp_path / "pwned"
    # The payload sits after a real array, so the refusal happens mid-load.
    obj = make_arrays()
    obj["y_test"] = payload(target)
    path = write_pickle(tmp_path / "data.pkl", obj, protocol)
    with pytest.raises(UnsafePickleError) as caught:
        load_thoughtviz(path)
    message = str(caught.value)
    assert str(path) in message and refused in message
    assert "\n" not in message
    assert not target.exists()


@pytest.mark.parametrize("payload", [_Execs, _Opens])
def test_the_payloads_do_create_the_file_under_plain_pickle(tmp_path, payload):
    # Control for the test above: the same bytes through pickle.loads do run code.
    target = tmp_path / "pwned"
    result = pickle.loads(pickle.dumps({"y": payload(target)}, protocol=2))
    if hasattr(result["y"], "close"):
        result["y"].close()
    assert target.exists()


def test_codec_other_than_latin1_is_refused():
    # _codecs.encode is allowed only for the latin-1 bytes that Python 3 writes at protocol 2.
    data = (b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x04\x00\x00\x00zlibq\x02"
            b"\x86q\x03Rq\x04.")
    with pytest.raises(DataError, match="zlib"):
        safe_loads(data, source="crafted")
    good = pickle.dumps(b"\x00\xff", protocol=2)
    assert safe_loads(good) == b"\x00\xff"


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "data.pkl"
    bad.write_bytes(pickle.dumps(make_arrays(), protocol=2)[:500])
    with pytest.raises(DataError, match=r"data.pkl: not a readable pickle"):
        load_thoughtviz(bad)
    with pytest.raises(DataError, match=r"nothere.pkl: file not found"):
        load_thoughtviz(tmp_path / "nothere.pkl")
    with pytest.raises(DataError, match="expected a dict"):
        load_thoughtviz(write_pickle(tmp_path / "list.pkl", [1, 2]))


# --------------------------------------------------------------------------------------------------
# Validation messages name the file, the key, expected vs found
# --------------------------------------------------------------------------------------------------

def _error_for(tmp_path, **changes):
    arrays = make_arrays()
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    path = write_pickle(tmp_path / "data.pkl", arrays)
    with pytest.raises(DataError) as caught:
        load_thoughtviz(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    return message


def test_wrong_x_shape(tmp_path):
    message = _error_for(tmp_path, x_train=np.ones((20, 14, 32, 2)))
    assert "x_train" in message and "(20, 14, 32, 2)" in message and "(N, C, T, 1)" in message
    message = _error_for(tmp_path, x_test=np.ones((10, 448)))
    assert "x_test" in message and "(10, 448)" in message


def test_nan_is_refused_with_trial(tmp_path):
    x = make_arrays()["x_train"]
    x[7, 3, 5, 0] = np.nan
    message = _error_for(tmp_path, x_train=x)
    assert "x_train" in message and "non-finite" in message and "trial 7" in message


def test_label_count_mismatch(tmp_path):
    message = _error_for(tmp_path, y_train=np.eye(10)[np.arange(19) % 10])
    assert "y_train has 19 labels" in message and "x_train has 20 trials" in message


def test_not_one_hot(tmp_path):
    y = np.eye(10)[np.arange(20) % 10]
    y[4, 0] = 1.0
    message = _error_for(tmp_path, y_train=y)
    assert "y_train row 4" in message and "one-hot" in message


def test_train_test_channel_mismatch(tmp_path):
    message = _error_for(tmp_path, x_test=np.full((10, 12, 32, 1), 4000.0))
    assert "12 channels" in message and "x_train has 14" in message


def test_train_test_class_count_mismatch(tmp_path):
    message = _error_for(tmp_path, y_test=np.eye(8)[np.arange(10) % 8])
    assert "y_test is one-hot over 8 classes" in message and "y_train has 10" in message


def test_class_missing_from_train(tmp_path):
    message = _error_for(tmp_path, y_train=np.eye(10)[np.arange(20) % 9])
    assert "no trial of class(es) [9]" in message


def test_missing_key(tmp_path):
    message = _error_for(tmp_path, y_test=None)
    assert "missing key 'y_test'" in message


def test_class_names_of_wrong_length(tmp_path):
    path = write_pickle(tmp_path / "data.pkl", make_arrays())
    with pytest.raises(DataError, match="3 class names given but the data has 10 classes"):
        load_thoughtviz(path, class_names=("a", "b", "c"))


def test_splits_are_frozen(tmp_path):
    splits = load_thoughtviz(write_pickle(tmp_path / "data.pkl", make_arrays()))
    assert isinstance(splits, EEGSplits)
    with pytest.raises(Exception):
        splits.source = "elsewhere"


def test_importing_the_data_package_does_not_import_tensorflow():
    code = "import sys, eeg2image_tf.data; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
