"""``python -m eeg2image_tf.prepare_data``: synthetic sets, pickle -> npz conversion, clear errors."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np

from eeg2image_tf import prepare_data
from eeg2image_tf.errors import run_main
from eeg2image_tf.data import CLASS_NAMES, load_thoughtviz

TINY_FLAGS = ["--n-train", "40", "--n-test", "10", "--images-per-class", "2", "--test-images-per-class", "1"]


def test_synthetic_writes_the_layout_and_reports_it(tmp_path, capsys):
    code = run_main(prepare_data.main, ["--synthetic", "--set", "char", "--out", str(tmp_path),
                                        "--seed", "7", *TINY_FLAGS])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "eeg" / "char" / "data.pkl") in printed and "(40, 14, 32, 1)" in printed
    assert "20 PNG images" in printed and "10 PNG images" in printed
    splits = load_thoughtviz(tmp_path / "eeg" / "char" / "data.pkl")
    assert splits.x_train.shape == (40, 14, 32, 1) and splits.class_names == CLASS_NAMES["char"]
    # the class folders and the record of the renderer version
    assert sorted(p.name for p in (tmp_path / "images" / "train").iterdir()) == \
        sorted(CLASS_NAMES["char"]) + ["synthetic.json"]
    assert len(list((tmp_path / "images" / "test" / "Y").glob("*.png"))) == 1
    # no temporary files are left behind by the atomic writes
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_the_pickle_is_thoughtviz_format(tmp_path):
    run_main(prepare_data.main, ["--synthetic", "--set", "digit", "--out", str(tmp_path), *TINY_FLAGS])
    raw = (tmp_path / "eeg" / "digit" / "data.pkl").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    data = pickle.loads(raw, encoding="latin1")
    assert sorted(data) == ["x_test", "x_train", "y_test", "y_train"]
    assert data["x_train"].shape == (40, 14, 32, 1) and data["y_train"].shape == (40, 10)
    np.testing.assert_array_equal(data["y_train"].sum(axis=1), 1.0)


def test_image_set_has_no_synthetic_version(tmp_path, capsys):
    code = run_main(prepare_data.main, ["--synthetic", "--set", "image", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "objects set has no synthetic version" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "eeg").exists()


def test_convert_pickle_to_npz(tmp_path, fixture_file, capsys):
    out = tmp_path / "converted.npz"
    code = run_main(prepare_data.main, ["--convert", str(fixture_file("thoughtviz_py2_format.pkl")),
                                        "--out", str(out)])
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as archive:
        assert archive["x_train"].shape == (40, 14, 32, 1) and archive["y_test"].shape == (20,)
    original = load_thoughtviz(fixture_file("thoughtviz_py2_format.pkl"))
    converted = load_thoughtviz(out)
    np.testing.assert_array_equal(converted.x_train, original.x_train)
    np.testing.assert_array_equal(converted.y_test, original.y_test)


def test_convert_refuses_unsafe_pickle_and_bad_output(tmp_path, capsys):
    evil = tmp_path / "data.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    assert run_main(prepare_data.main, ["--convert", str(evil), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "refused to load global 'os.system'" in err and str(evil) in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x.npz").exists()
    assert run_main(prepare_data.main, ["--convert", str(evil), "--out", str(tmp_path / "x.txt")]) == 2
    assert "--out must name a .npz file" in capsys.readouterr().err


def test_mode_is_required(capsys):
    assert run_main(prepare_data.main, ["--out", "somewhere"]) == 2
    assert "one of the arguments --synthetic --convert --eegcvpr40 is required" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    command = [sys.executable, "-m", "eeg2image_tf.prepare_data", "--synthetic", "--set", "char",
               "--out", str(tmp_path), *TINY_FLAGS]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert load_thoughtviz(tmp_path / "eeg" / "char").x_train.shape == (40, 14, 32, 1)
