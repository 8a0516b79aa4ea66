"""prepare_data --eegcvpr40: the release's .pth files -> our set, with the PerceiveLab loader's
semantics, checked against a numpy re-implementation of that loader on the fixtures' trials."""

from __future__ import annotations

import os

import numpy as np
import pytest

from eeg2image_tf import prepare_data
from eeg2image_tf.data import list_image_folder, load_thoughtviz
from eeg2image_tf.errors import run_main
from torch_format_support import Storage, Tensor, write_legacy, write_zip

WRITERS = {"zip": write_zip, "legacy": write_legacy}
NUM_CLASSES = 2


# --------------------------------------------------------------------------------------------------
# Release-shaped files built from a fixture's trials (as torch reads them: expected.npz)
# --------------------------------------------------------------------------------------------------

def _label(i):
    return (i // 2) % NUM_CLASSES           # trials 2k and 2k+1 saw the same image


def _release(expected):
    """The dataset dict: the fixture's EEG (float32 and float64 tensors, some as transposed views into
    one shared storage, as in the release), its subjects, and two classes so that small splits hold
    every class."""
    wnids = _wnids(expected)
    count = len(expected["length"])
    names = [f"{wnids[_label(2 * k)]}_{100 + k}" for k in range((count + 1) // 2)]
    views = [i for i in range(count) if i % 3 == 0]
    shared = Storage(np.concatenate([expected[f"eeg_{i}"].T.reshape(-1) for i in views]).astype(np.float32),
                     "shared")
    trials, offset = [], 0
    for i in range(count):
        eeg = expected[f"eeg_{i}"]
        if i in views:
            tensor = Tensor(shared, offset, eeg.shape, (1, eeg.shape[0]))
            offset += eeg.size
        else:
            tensor = Tensor.of(eeg.astype(np.float64 if i % 2 else np.float32), f"t{i}")
        trials.append({"eeg": tensor, "image": i // 2, "label": _label(i),
                       "subject": int(expected["subject"][i])})
    return {"dataset": trials, "labels": wnids, "images": names}


def _wnids(expected):
    """Two of the fixture's WordNet ids, in the opposite of their sorted order (as the release's
    order is not sorted)."""
    return sorted(expected["labels"][:NUM_CLASSES].tolist(), reverse=True)


def _splits_for(lengths, seed):
    """A train/val/test partition of the trials, in shuffled orders: one kept and one too short or
    too long trial each in val and test, the rest in train."""
    rng = np.random.default_rng(seed)
    ok = (lengths >= 450) & (lengths <= 600)
    kept, dropped = rng.permutation(np.flatnonzero(ok)).tolist(), rng.permutation(np.flatnonzero(~ok)).tolist()
    parts = {"train": kept[2:] + dropped[2:], "val": kept[:1] + dropped[:1], "test": kept[1:2] + dropped[1:2]}
    return {part: rng.permutation(indices).tolist() for part, indices in parts.items()}


def _loader(expected, split, subject=0, window=(20, 460)):
    """The PerceiveLab loader's set, in numpy: subject filter, then the split's indices into that
    list, then 450 <= L <= 600, then samples [window)."""
    count = len(expected["length"])
    chosen = [i for i in range(count) if subject == 0 or expected["subject"][i] == subject]
    out = {}
    for part in ("train", "val", "test"):
        kept = [chosen[j] for j in split[part] if 450 <= expected["length"][chosen[j]] <= 600]
        out[part] = {
            "x": np.stack([expected[f"eeg_{i}"][:, window[0]:window[1]] for i in kept]).astype(np.float32),
            "y": np.array([_label(i) for i in kept]),
            "subject": expected["subject"][kept],
            "trials": kept,
        }
    return out


@pytest.fixture(params=["zip", "legacy"])
def release(request, fixture_file, tmp_path):
    """(expected.npz, dataset .pth, splits .pth for subject 0, form) in one serialisation."""
    expected = dict(np.load(fixture_file(f"eegcvpr40_format_{request.param}") / "expected.npz"))
    write = WRITERS[request.param]
    dataset = write(tmp_path / "eeg_5_95_std.pth", _release(expected))
    # Split 0 is a decoy: --split-num 1 must pick the second.
    splits = write(tmp_path / "block_splits_by_image_all.pth",
                   {"splits": [_splits_for(expected["length"], 0), _splits_for(expected["length"], 1)]})
    return expected, dataset, splits, request.param


def _convert(*flags):
    return run_main(prepare_data.main, ["--eegcvpr40", *map(str, flags)])


def _compare(written, want, class_names):
    for part in ("train", "val", "test"):
        x = written[f"x_{part}"]
        assert x.dtype == np.float32 and x.shape == want[part]["x"].shape + (1,)
        np.testing.assert_array_equal(x[..., 0], want[part]["x"])
        y = written[f"y_{part}"]
        assert y.shape == (len(want[part]["y"]), NUM_CLASSES)        # one-hot, as ThoughtViz
        np.testing.assert_array_equal(y, np.eye(NUM_CLASSES)[want[part]["y"]])
        np.testing.assert_array_equal(written[f"subject_{part}"], want[part]["subject"])
        stimuli = [f"{class_names[_label(i)]}/{class_names[_label(i)]}_{100 + i // 2}.JPEG"
                   for i in want[part]["trials"]]
        assert written[f"image_{part}"].tolist() == stimuli


# --------------------------------------------------------------------------------------------------
# The loader's semantics
# --------------------------------------------------------------------------------------------------

def test_all_subjects_match_the_loader(release, tmp_path, capsys):
    expected, dataset, splits, form = release
    assert _convert(dataset, "--splits", splits, "--split-num", 1, "--out", tmp_path / "data",
                    "--set", "cvpr40") == 0
    path = tmp_path / "data" / "eeg" / "cvpr40" / "data.npz"
    assert f"wrote {path}" in capsys.readouterr().out
    want = _loader(expected, _splits_for(expected["length"], 1))
    assert set(want["train"]["y"].tolist()) == set(range(NUM_CLASSES))   # the case is not degenerate
    with np.load(path, allow_pickle=False) as archive:
        written = {key: archive[key] for key in archive.files}
    wnids = _wnids(expected)
    _compare(written, want, wnids)
    assert written["class_names"].tolist() == wnids                 # the file's order
    assert written["class_descriptions"].tolist() == ["parachute", "sorrel"]
    assert str(written["normalisation"]) == "zscore"
    splits_read = load_thoughtviz(path.parent)
    assert splits_read.splits == ("train", "val", "test") and splits_read.num_channels == 128
    assert splits_read.num_samples == 440 and splits_read.normalisation == "zscore"


def test_one_subject_indexes_that_subjects_trials(release, tmp_path):
    expected, dataset, _, form = release
    lengths, labels = expected["length"], np.array([_label(i) for i in range(len(expected["length"]))])
    ok = (lengths >= 450) & (lengths <= 600)
    # A subject whose kept trials show both classes (the loader's filter applies after the subject's).
    subject = next(s for s in sorted(set(expected["subject"].tolist()))
                   if len(set(labels[ok & (expected["subject"] == s)].tolist())) == NUM_CLASSES)
    own = np.flatnonzero(expected["subject"] == subject)
    # The _single splits index the subject's own trials: positions 0 .. len(own) - 1.
    positions = list(range(len(own)))
    single = {"train": positions[::-1], "val": positions[:2], "test": positions[-2:]}
    splits = WRITERS[form](tmp_path / "single.pth", {"splits": [single]})
    want = _loader(expected, single, subject=subject, window=(10, 450))
    assert _convert(dataset, "--splits", splits, "--subject", subject, "--window", 10, 450,
                    "--out", tmp_path / "data", "--set", "one") == 0
    with np.load(tmp_path / "data" / "eeg" / "one" / "data.npz", allow_pickle=False) as archive:
        written = {key: archive[key] for key in archive.files}
    _compare(written, want, _wnids(expected))
    assert set(written["subject_train"].tolist()) == {subject}


def test_stimuli_are_placed_where_the_pipeline_reads_them(release, tmp_path, capsys):
    expected, dataset, splits, _ = release
    root = tmp_path / "imagenet"
    content = _release(expected)
    for name in content["images"]:
        wnid = name.split("_")[0]
        (root / wnid).mkdir(parents=True, exist_ok=True)
        (root / wnid / f"{name}.JPEG").write_bytes(f"jpeg {name}".encode())
    out = tmp_path / "data"
    assert _convert(dataset, "--splits", splits, "--split-num", 1, "--images", root, "--out", out,
                    "--set", "cvpr40") == 0
    assert "stimuli in" in capsys.readouterr().out
    written = load_thoughtviz(out / "eeg" / "cvpr40")
    for part in written.splits:
        for relative in getattr(written, f"image_{part}"):
            placed = out / "images" / part / relative
            assert placed.read_bytes() == (root / relative).read_bytes()
        # every class has its folder in every split, so class indices agree across splits
        assert sorted(p.name for p in (out / "images" / part).iterdir()) == sorted(written.class_names)
    # The folders index classes in the set's order (the release's, not the sorted WordNet ids).
    folder = list_image_folder(out / "images" / "train", class_names=written.class_names)
    assert folder.class_names == written.class_names
    assert len(folder) == len(set(written.image_train.tolist()))
    for path, label in zip(folder.paths, folder.labels):
        assert path.split("/")[-2] == written.class_names[label]
    # A second set of the same recording shares the split folders and adds only what is missing.
    assert _convert(dataset, "--splits", splits, "--split-num", 0, "--images", root, "--out", out,
                    "--set", "other") == 0
    assert load_thoughtviz(out / "eeg" / "other").has_stimuli
    assert not [p for p in out.rglob("*") if p.name.startswith(".prepare-")]


# --------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, exit 2, nothing written
# --------------------------------------------------------------------------------------------------

def _refused(capsys, out, *flags):
    assert _convert(*flags, "--out", out, "--set", "s") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()
    return err


def test_bad_inputs_are_one_line_and_leave_nothing(release, tmp_path, capsys):
    expected, dataset, splits, form = release
    out = tmp_path / "out"
    err = _refused(capsys, out, dataset, "--splits", splits, "--split-num", 5)
    assert str(splits) in err and "--split-num 5 is out of range: the file has 2 splits" in err
    # The all-subject split's indices run past one subject's trials.
    err = _refused(capsys, out, dataset, "--splits", splits, "--subject", int(expected["subject"].min()))
    assert "out of range" in err and "count that subject's trials only" in err
    err = _refused(capsys, out, dataset, "--splits", splits, "--split-num", 1, "--window", 20, 470)
    assert str(dataset) in err and "460 samples, fewer than the window's end 470" in err
    err = _refused(capsys, out, dataset, "--splits", splits, "--split-num", 1, "--images", tmp_path)
    assert "stimulus image not found" in err
    err = _refused(capsys, out, splits, "--splits", splits)
    assert "expected a dict with 'dataset', 'labels' and 'images'" in err

    broken = _release(expected)
    broken["dataset"][3]["label"] = 7
    bad = WRITERS[form](tmp_path / "bad.pth", broken)
    err = _refused(capsys, out, bad, "--splits", splits)
    assert "dataset[3]['label'] is 7, expected an integer in [0, 2)" in err

    marker = tmp_path / "owned"

    class RunsShell:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = _release(expected)
    evil["labels"] = RunsShell()
    err = _refused(capsys, out, WRITERS[form](tmp_path / "evil.pth", evil), "--splits", splits)
    assert "refused to load global" in err and not marker.exists()


def test_an_existing_set_is_not_overwritten(release, tmp_path, capsys):
    _, dataset, splits, _ = release
    (tmp_path / "data" / "eeg" / "cvpr40").mkdir(parents=True)
    assert _convert(dataset, "--splits", splits, "--split-num", 1, "--out", tmp_path / "data",
                    "--set", "cvpr40") == 2
    assert "already exists" in capsys.readouterr().err
    assert not list((tmp_path / "data" / "eeg" / "cvpr40").iterdir())


def test_required_flags(tmp_path, capsys):
    assert run_main(prepare_data.main, ["--eegcvpr40", "x.pth", "--out", str(tmp_path)]) == 2
    assert "--eegcvpr40 needs --splits, --set" in capsys.readouterr().err


@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_the_fixture_files_themselves_are_read_and_judged(fixture_file, tmp_path, capsys, form):
    # The fixtures are release-format files too small for a set: 16-24 random trials over 40 classes.
    folder = fixture_file(f"eegcvpr40_format_{form}")
    err = _refused(capsys, tmp_path / "out", folder / "eeg_5_95_std.pth", "--splits",
                   folder / "block_splits_by_image_all.pth")
    assert str(folder / "block_splits_by_image_all.pth") in err
    assert ("'test' has no trial left" in err) if form == "zip" else ("'train' has no trial of class" in err)
