"""Reading torch.save files without torch: both containers, views, dtypes, and refusal of code."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest

from eeg2image_tf.data import load_torch_file
from eeg2image_tf.errors import DataError, UnsafePickleError
from torch_format_support import Storage, Tensor, write_legacy, write_zip

WRITERS = {"zip": write_zip, "legacy": write_legacy}


# --------------------------------------------------------------------------------------------------
# Files written by torch itself
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_fixture_files_match_what_torch_reads(fixture_file, form):
    folder = fixture_file(f"eegcvpr40_format_{form}")
    expected = np.load(folder / "expected.npz", allow_pickle=False)
    loaded = load_torch_file(folder / "eeg_5_95_std.pth")
    assert sorted(loaded) == ["dataset", "images", "labels"]
    assert len(loaded["dataset"]) == len(expected["label"])
    for i, trial in enumerate(loaded["dataset"]):
        eeg = trial["eeg"]
        assert isinstance(eeg, np.ndarray) and eeg.flags.c_contiguous
        assert eeg.shape == (128, expected["length"][i])
        # The fixture's tensors are float32; expected.npz holds them as float64.
        np.testing.assert_allclose(eeg, expected[f"eeg_{i}"], rtol=2.0 ** -24, atol=0)
        assert (trial["label"], trial["image"], trial["subject"]) == \
            (expected["label"][i], expected["image"][i], expected["subject"][i])
    assert loaded["labels"] == expected["labels"].tolist()
    assert loaded["images"] == expected["images"].tolist()

    splits = load_torch_file(folder / "block_splits_by_image_all.pth")["splits"]
    for part in ("train", "val", "test"):
        assert splits[0][part] == expected[f"split_{part}"].tolist()


def test_fixture_has_views_into_shared_storage(fixture_file):
    # The reader's shared-storage path is exercised by the fixture only if the fixture has such views.
    with zipfile.ZipFile(fixture_file("eegcvpr40_format_zip") / "eeg_5_95_std.pth") as archive:
        storages = [n for n in archive.namelist() if "/data/" in n]
    trials = len(load_torch_file(fixture_file("eegcvpr40_format_zip") / "eeg_5_95_std.pth")["dataset"])
    assert len(storages) < trials


# --------------------------------------------------------------------------------------------------
# Files written here: every plain dtype, byte orders, offsets, strides, shared storages
# --------------------------------------------------------------------------------------------------

def _tensors(rng):
    shared = Storage(rng.normal(size=60).astype(np.float32), "shared")
    return {
        "transposed": Tensor(shared, 5, (4, 6), (1, 4)),           # a .t() view with an offset
        "strided": Tensor(shared, 1, (3, 2, 2), (20, 7, 3)),       # same storage, other view
        "scalar": Tensor(shared, 59, (), ()),
        "empty": Tensor(shared, 0, (0, 3), (3, 1)),
        "float64": Tensor.of(rng.normal(size=(2, 3)), "f64"),
        "float16": Tensor.of(rng.normal(size=(5,)).astype(np.float16), "f16"),
        "int64": Tensor.of(rng.integers(-2 ** 40, 2 ** 40, size=(3, 2)), "i64"),
        "int32": Tensor.of(rng.integers(-2 ** 30, 2 ** 30, size=(4,)).astype(np.int32), "i32"),
        "int16": Tensor.of(np.array([-32768, 7, 32767], np.int16), "i16"),
        "int8": Tensor.of(np.array([-128, 0, 127], np.int8), "i8"),
        "uint8": Tensor.of(np.array([[0, 255], [3, 4]], np.uint8), "u8"),
        "bool": Tensor.of(np.array([True, False, True]), "b"),
    }


@pytest.mark.parametrize("form, big_endian", [("zip", False), ("zip", True), ("legacy", False),
                                              ("legacy", True)])
def test_dtypes_views_and_byte_orders(tmp_path, form, big_endian):
    tensors = _tensors(np.random.default_rng(3))
    obj = {"tensors": tensors, "list": [1, 2.5, "three", None], "nested": ({"deep": tensors["int8"]},)}
    path = tmp_path / "file.pth"
    if form == "zip":
        write_zip(path, obj, byteorder="big" if big_endian else "little")
    else:
        write_legacy(path, obj, little_endian=not big_endian)
    loaded = load_torch_file(path)
    for name, tensor in tensors.items():
        got = loaded["tensors"][name]
        want = tensor.expected()
        assert got.dtype == want.dtype.newbyteorder("=") and got.shape == want.shape, name
        assert got.dtype.isnative, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        # Copies, not views of the file: views of one storage do not alias each other.
        assert got.flags.owndata and got.flags.writeable, name
    assert loaded["list"] == [1, 2.5, "three", None]
    np.testing.assert_array_equal(loaded["nested"][0]["deep"], [-128, 0, 127])


def test_legacy_storage_views_are_honoured(tmp_path):
    # Before torch 0.4 a storage could itself be a view of part of another.
    storage = Storage(np.arange(10, dtype=np.int64), "0", view=("v", 3, 4))
    path = write_legacy(tmp_path / "views.pth", {"x": Tensor(storage, 1, (2,), (1,)),
                                                 "y": Tensor(storage, 0, (2, 2), (1, 2))})
    loaded = load_torch_file(path)
    np.testing.assert_array_equal(loaded["x"], [4, 5])
    np.testing.assert_array_equal(loaded["y"], [[3, 5], [4, 6]])
    past_the_view = write_legacy(tmp_path / "past.pth", {"x": Tensor(storage, 2, (3,), (1,))})
    _one_line_error(past_the_view, "reaches element 4 of storage 0, which holds 4")


# --------------------------------------------------------------------------------------------------
# Code in a .pth is refused before it runs
# --------------------------------------------------------------------------------------------------

class _RunsShell:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_code_in_a_pth_is_refused_without_running(tmp_path, form):
    marker = tmp_path / "owned"
    obj = {"dataset": [{"eeg": Tensor.of(np.ones((2, 3), np.float32), "0"), "label": _RunsShell(marker)}]}
    path = WRITERS[form](tmp_path / "evil.pth", obj)
    with pytest.raises(UnsafePickleError) as caught:
        load_torch_file(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "system" in message and "\n" not in message
    assert "nothing from this pickle was executed" in message
    assert not marker.exists()


def test_a_plain_pickle_named_pth_is_refused_without_running(tmp_path):
    marker = tmp_path / "owned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_RunsShell(marker), protocol=2))
    with pytest.raises(UnsafePickleError, match="evil.pth"):
        load_torch_file(path)
    assert not marker.exists()


def test_the_payload_does_run_under_plain_pickle(tmp_path):
    # Guards the refusal tests above: their payload is real.
    marker = tmp_path / "owned"
    pickle.loads(pickle.dumps(_RunsShell(marker), protocol=2))
    assert marker.exists()


# --------------------------------------------------------------------------------------------------
# Malformed files: one line naming the file
# --------------------------------------------------------------------------------------------------

def _one_line_error(path, match):
    with pytest.raises(DataError, match=match) as caught:
        load_torch_file(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_missing_and_foreign_files(tmp_path):
    _one_line_error(tmp_path / "absent.pth", "file not found")
    (tmp_path / "text.pth").write_text("hello")
    _one_line_error(tmp_path / "text.pth", "not a readable pickle")
    (tmp_path / "int.pth").write_bytes(pickle.dumps(7, protocol=2))
    _one_line_error(tmp_path / "int.pth", "not written by torch.save")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    _one_line_error(tmp_path / "other.zip", "without one '<name>/data.pkl'")


def test_truncated_legacy_file(tmp_path):
    path = write_legacy(tmp_path / "cut.pth", {"x": Tensor.of(np.zeros(100, np.float32), "0")})
    path.write_bytes(path.read_bytes()[:-8])
    _one_line_error(path, "truncated: storage 0 needs 400 bytes")


def test_zip_with_missing_or_short_storage(tmp_path):
    path = write_zip(tmp_path / "full.pth", {"x": Tensor.of(np.zeros(4, np.float32), "0")})
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "gone.pth", "w") as target:
        for item in source.namelist():
            if not item.endswith("data/0"):
                target.writestr(item.replace("full/", "gone/"), source.read(item))
            else:
                kept = source.read(item)
    _one_line_error(tmp_path / "gone.pth", "entry gone/data/0 .* is missing")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "short.pth", "w") as target:
        for item in source.namelist():
            data = kept[:12] if item.endswith("data/0") else source.read(item)
            target.writestr(item.replace("full/", "short/"), data)
    _one_line_error(tmp_path / "short.pth", "holds 12 bytes, expected 4 x 4")


def test_view_beyond_its_storage(tmp_path):
    storage = Storage(np.zeros(6, np.float32), "0")
    path = write_zip(tmp_path / "over.pth", {"x": Tensor(storage, 2, (2, 3), (3, 1))})
    _one_line_error(path, r"size \(2, 3\), stride \(3, 1\) at offset 2 reaches element 7 of storage 0, "
                          "which holds 6")


def test_unsupported_storage_type_is_named(tmp_path):
    path = write_zip(tmp_path / "bf16.pth", {"x": Tensor.of(np.zeros(2, np.float32), "0")})
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "b.pth", "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item.endswith("data.pkl"):
                data = data.replace(b"torch\nFloatStorage", b"torch\nBFloat16Storage")
            target.writestr(item.replace("bf16/", "b/"), data)
    _one_line_error(tmp_path / "b.pth", "holds a torch.BFloat16Storage .only plain dtypes")
