"""Nothing a user has is lost or mixed: bad inputs and faults over the twelve commands.

The table (:data:`CASES`) runs each command as a user would (its ``main`` under ``run_main``) on a
small world of data roots, runs and output folders, and asserts for every case: exit code 2, one
``error:`` line saying what was wrong, and not one file of the world changed or appeared. Every
case is refused before TensorFlow loads; the few tests beside it that need TensorFlow stop before
any training. The slow tests below the table train tiny runs: resume after a damaged checkpoint index
and a checkpoint cut short (after a refused option, whose corrected command then runs), a full
disk during a save, ``kill -9`` mid-training, two runs side by side.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
import numpy as np
import pytest

from eeg2image_tf.config import EncoderTrainConfig, GanTrainConfig, GenerateConfig
from eeg2image_tf.data import write_synthetic_set
from eeg2image_tf.errors import run_main
from eeg2image_tf.runs import lock_run, save_config

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-train", "40", "--n-test", "20", "--images-per-class", "1",
        "--test-images-per-class", "1"]


# --------------------------------------------------------------------------------------------------
# The world the cases run in
# --------------------------------------------------------------------------------------------------

def _user_pickle(path: Path, y_train: np.ndarray, channels: int = 14,
                 offset: float = 4200.0) -> Path:
    """A ThoughtViz-format pickle (integer labels) that prepare_data did not write: a user's data."""
    rng = np.random.default_rng(5)
    arrays = {"x_train": rng.uniform(-300, 300, (len(y_train), channels, 32, 1)) + offset,
              "y_train": np.asarray(y_train, np.int64),
              "x_test": rng.uniform(-300, 300, (2, channels, 32, 1)) + offset,
              "y_test": np.array([0, 1], np.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    return path


def _png(path: Path, value: int = 128) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((16, 16, 3), value, np.uint8))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    data = root / "data"
    write_synthetic_set(data, "char", seed=3, n_train=40, n_test=20, images_per_class=1,
                        test_images_per_class=1)
    data_pkl = data / "eeg" / "char" / "data.pkl"
    # A user's real set where the README tells them to put it, without its images yet.
    _user_pickle(root / "real" / "eeg" / "char" / "data.pkl", np.arange(20) % 10)
    # A built-in set beside which a user put an image of their own.
    write_synthetic_set(root / "mixed", "char", seed=3, n_train=40, n_test=20, images_per_class=1,
                        test_images_per_class=1)
    _png(root / "mixed" / "images" / "train" / "A" / "photo.png")
    # Another set already converted to .npz.
    other = _user_pickle(root / "other" / "data.pkl", np.arange(20) % 10, offset=4300.0)
    subprocess.run([sys.executable, "-m", "eeg2image_tf.prepare_data", "--convert", str(other),
                    "--out", str(root / "converted.npz")], check=True, capture_output=True)
    _user_pickle(root / "huge_label.pkl", np.array([0, 1, 2, 1_000_000]))
    _user_pickle(root / "centred.pkl", np.arange(20) % 10, offset=-400.0)
    # Image folders, one with a class without images in its test split.
    for split in ("train", "test"):
        _png(root / "empty_class" / split / "A" / "a.png")
    _png(root / "empty_class" / "train" / "B" / "b.png")
    (root / "empty_class" / "test" / "B").mkdir()
    # Runs: a GAN run and an encoder run (configs only: every case stops before their weights),
    # one with a damaged config.json, a held one.
    (root / "encoder").mkdir()
    gan_run = root / "gan_run"
    save_config(GanTrainConfig(data=str(data_pkl), images=str(data / "images"),
                               encoder=str(root / "encoder"), run=str(gan_run)), gan_run)
    for name in ("enc_run", "held_run"):
        save_config(EncoderTrainConfig(data=str(data_pkl), run=str(root / name)), root / name)
    (root / "corrupt_run").mkdir()
    (root / "corrupt_run" / "config.json").write_text("{not json")
    # Output folders: images generated from another run; exports beside a user's file and of
    # another run.
    generated = root / "generated"
    save_config(GenerateConfig(out=str(generated), run=str(root / "another_gan_run")), generated,
                "generate_config.json")
    for name, extra in (("export_notes", {"notes.txt": "mine"}),
                        ("export_other", {"signature.json": json.dumps(
                            {"provenance": {"run": "/elsewhere/gan"}})})):
        (root / name).mkdir()
        (root / name / "saved_model.pb").write_bytes(b"a model")
        for file_name, text in extra.items():
            (root / name / file_name).write_text(text)
    (root / "a_file").write_text("not a directory")
    return root


def _tree(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: kind, size, modification time and content digest."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        found[str(path.relative_to(root))] = (path.is_dir(), info.st_size, info.st_mtime_ns, digest)
    return found


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """A command line (``{name}`` stands for ``<world>/name``) and what its one error line says."""

    argv: tuple[str, ...]
    says: str


def _gan(*extra: str) -> tuple[str, ...]:
    return ("train_gan", "--data", "{data}/eeg/char/data.pkl", "--images", "{data}/images",
            "--encoder", "{encoder}", "--run", "{new_run}", *extra)


def _encoder(*extra: str) -> tuple[str, ...]:
    return ("train_encoder", "--data", "{data}/eeg/char/data.pkl", "--run", "{new_run}", *extra)


CASES = {
    # Data loss and mixing
    "synthetic over a real data.pkl": Case(
        ("prepare_data", "--synthetic", "--out", "{real}", *TINY),
        "holds data.pkl, which prepare_data --synthetic did not write"),
    "synthetic beside a user's image": Case(
        ("prepare_data", "--synthetic", "--out", "{mixed}", *TINY), "holds A/photo.png"),
    "pipeline data stage over a real data.pkl": Case(
        ("pipeline", "--run", "{new_run}", "--data-root", "{real}", "--profile", "smoke"),
        "holds data.pkl, which prepare_data --synthetic did not write; write the built-in set "
        "to another --data-root"),
    "convert over another .npz": Case(
        ("prepare_data", "--convert", "{real}/eeg/char/data.pkl", "--out", "{converted.npz}"),
        "exists and holds another set"),
    "export beside a user's file": Case(
        ("export", "--run", "{gan_run}", "--out", "{export_notes}"),
        "holds files export did not write (notes.txt)"),
    "export over another run's export": Case(
        ("export", "--run", "{gan_run}", "--out", "{export_other}"),
        "holds the export of /elsewhere/gan; use another --out, or --force"),
    # Options checked before the run is written
    "--ema-decay 1.5": Case(_gan("--ema-decay", "1.5"), "--ema-decay must be in [0, 1), got 1.5"),
    "--batch-size 0": Case(_gan("--batch-size", "0"), "--batch-size must be at least 1, got 0"),
    "--latent-dim 0": Case(_gan("--latent-dim", "0"), "--latent-dim must be at least 1, got 0"),
    "a bad --data": Case(("train_gan", "--data", "{gone}/data.pkl", "--images", "{data}/images",
                          "--encoder", "{encoder}", "--run", "{new_run}"),
                         "gone/data.pkl: file not found"),
    "pipeline --set-stage gan.batch_size=-4": Case(
        ("pipeline", "--run", "{new_run}", "--data-root", "{data}", "--profile", "smoke",
         "--set-stage", "gan.batch_size=-4"), "--set-stage gan.batch_size must be at least 1"),
    # Tracebacks before
    "--run names a file": Case(("train_encoder", "--data", "{data}/eeg/char/data.pkl", "--run",
                                "{a_file}"), "exists and is not a directory; choose another --run"),
    "--out names a file": Case(("generate", "--run", "{gan_run}", "--out", "{a_file}"),
                               "exists and is not a directory; choose another --out"),
    "--image-size 7": Case(("train_image_classifier", "--images", "{data}/images", "--run",
                            "{new_run}", "--image-size", "7"), "--image-size must be at least 32"),
    "--policy bogus": Case(_gan("--policy", "bogus"), "--policy must be comma-separated names"),
    "--n-clusters 0": Case(("select_encoder", "--run", "{enc_run}", "--n-clusters", "0"),
                           "--n-clusters must be at least 2, got 0"),
    # Accepted silently before
    "--epochs 0": Case(_encoder("--epochs", "0"), "--epochs must be at least 1, got 0"),
    "--epochs -3": Case(_gan("--epochs", "-3"), "--epochs must be at least 1, got -3"),
    "--max-steps 0": Case(_gan("--max-steps", "0"), "--max-steps must be at least 1, got 0"),
    "--max-steps -2": Case(_gan("--max-steps", "-2"), "--max-steps must be at least 1, got -2"),
    "--time-budget-s -1": Case(_encoder("--time-budget-s", "-1"),
                               "--time-budget-s must be at least 0, got -1.0"),
    "--time-budget-s nan": Case(_gan("--time-budget-s", "nan"),
                                "--time-budget-s must be a finite number, got nan"),
    "--learning-rate nan": Case(_gan("--learning-rate", "nan"),
                                "--learning-rate must be a finite number, got nan"),
    "--jpeg-quality 500": Case(("generate", "--run", "{gan_run}", "--out", "{new_run}",
                                "--jpeg-quality", "500"), "--jpeg-quality must be in [1, 100]"),
    "a class folder without images": Case(
        ("train_image_classifier", "--images", "{empty_class}", "--run", "{new_run}"),
        "empty_class/test: class folder(s) B hold no images"),
    # Messages
    "a label of 1,000,000": Case(("prepare_data", "--convert", "{huge_label.pkl}", "--out",
                                  "{new.npz}"), "no trial of class(es) [3, 4, 5, 6, 7] and 999992 more"),
    "a damaged config.json names --force": Case(
        ("train_encoder", "--data", "{data}/eeg/char/data.pkl", "--run", "{corrupt_run}"),
        "not valid JSON (Expecting property name enclosed in double quotes at line 1); fix or "
        "delete it, or use --force to overwrite it"),
    "another config into a run": Case(
        ("train_encoder", "--data", "{data}/eeg/char/data.pkl", "--run", "{enc_run}", "--seed", "7"),
        "another config (seed: 45 -> 7); use a new --run directory"),
    "generate into another run's images names --out": Case(
        ("generate", "--run", "{gan_run}", "--out", "{generated}"),
        "use a new --out directory, or --force to overwrite"),
    "an abbreviated flag": Case(("prepare_data", "--synthetic", "--images-per", "3", "--out",
                                 "{new_run}"), "unrecognized arguments: --images-per 3"),
}


def _argv(case: Case, world: Path) -> list[str]:
    def expand(arg: str) -> str:
        if arg.startswith("{") and "}" in arg:
            name, rest = arg[1:].split("}", 1)
            return str(world / name) + rest
        return arg
    return [expand(arg) for arg in case.argv]


def _run_in_process(argv: list[str], capsys) -> tuple[int, list[str]]:
    module = importlib.import_module(f"eeg2image_tf.{argv[0]}")
    code = run_main(module.main, argv[1:])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(world, name, capsys):
    case = CASES[name]
    before = _tree(world)
    code, lines = _run_in_process(_argv(case, world), capsys)
    assert (code, len(lines)) == (2, 1), lines
    assert lines[0].startswith("error: ") and case.says in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]
    assert _tree(world) == before


# Each command's required flags, and the start of one of its longer flags.
ABBREVIATED = {
    "prepare_data": (["--synthetic"], "--images-per"),
    "train_encoder": (["--data", "d", "--run", "r"], "--epoch"),
    "select_encoder": (["--run", "r"], "--n-cluster"),
    "train_image_classifier": (["--images", "i", "--run", "r"], "--image-siz"),
    "train_gan": (["--data", "d", "--images", "i", "--encoder", "e", "--run", "r"], "--latent"),
    "generate": (["--out", "o"], "--per-cla"),
    "evaluate": (["--run", "r"], "--per-cla"),
    "curve": (["--run", "r"], "--per-cla"),
    "average_checkpoints": (["--run", "r", "--out", "o"], "--las"),
    "export": (["--out", "o"], "--num-chan"),
    "import_original": (["--out", "o"], "--enc"),
    "pipeline": (["--run", "r"], "--prof"),
}


def test_no_command_takes_an_abbreviated_flag(capsys):
    from eeg2image_tf.__main__ import COMMANDS

    assert set(ABBREVIATED) == {name for name, _ in COMMANDS}
    for command, (required, abbreviation) in ABBREVIATED.items():
        code, lines = _run_in_process([command, *required, abbreviation, "3"], capsys)
        assert code == 2 and len(lines) == 1, (command, lines)
        assert f"unrecognized arguments: {abbreviation} 3" in lines[0], lines[0]


def test_a_run_held_by_another_process_is_refused_naming_it(world):
    before = _tree(world)
    with lock_run(world / "held_run"):
        held = _tree(world)
        result = subprocess.run(
            [sys.executable, "-m", "eeg2image_tf.train_encoder", "--data",
             str(world / "data" / "eeg" / "char" / "data.pkl"), "--run", str(world / "held_run")],
            capture_output=True, text=True)
        assert _tree(world) == held
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, len(lines)) == (2, 1), result.stderr
    assert f"in use by PID {os.getpid()} on " in lines[0] and "use another --run" in lines[0]
    assert set(_tree(world)) == set(before) | {"held_run/.lock"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_one_line(world, tmp_path, capsys):
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, lines = _run_in_process(["prepare_data", "--synthetic", "--out", str(locked / "x"),
                                       *TINY], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and len(lines) == 1 and "Permission denied" in lines[0], lines
    assert not (locked / "x").exists()


# Cases that need TensorFlow: they stop before any training, having written nothing.
def test_trials_that_do_not_fit_the_encoder_name_the_file(world, tmp_path, capsys):
    import keras

    from eeg2image_tf.checkpoints import save_encoder_weights
    from eeg2image_tf.models import build_encoder

    keras.utils.set_random_seed(3)
    save_encoder_weights(build_encoder(num_channels=14), tmp_path / "encoder")
    data = _user_pickle(tmp_path / "eight" / "data.pkl", np.arange(4) % 2, channels=8)
    for split in ("train", "test"):
        for name in ("A", "B"):
            _png(tmp_path / "images" / split / name / "x.png")
    before = _tree(tmp_path)
    code, lines = _run_in_process(["train_gan", "--data", str(data), "--images",
                                   str(tmp_path / "images"), "--encoder", str(tmp_path / "encoder"),
                                   "--run", str(tmp_path / "run"), "--batch-size", "2"], capsys)
    assert (code, len(lines)) == (2, 1), lines
    assert f"{data} (train split): trials of 8 channels x 32 samples do not fit the encoder" \
        in lines[0]
    assert _tree(tmp_path) == before


def test_zero_centred_eeg_names_the_normalisation_flag(world, capsys):
    before = _tree(world)
    code, lines = _run_in_process(["train_encoder", "--data", str(world / "centred.pkl"),
                                   "--run", str(world / "new_run")], capsys)
    assert (code, len(lines)) == (2, 1), lines
    assert "use --normalisation zscore" in lines[0]
    assert _tree(world) == before


# --------------------------------------------------------------------------------------------------
# Checkpoints found by their files
# --------------------------------------------------------------------------------------------------

def _three_checkpoints(directory: Path):
    import tensorflow as tf

    value = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(value=value)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=5)
    for step in (1, 2, 3):
        value.assign(float(step))
        manager.save(checkpoint_number=step)
    return checkpoint, value


def test_the_newest_checkpoint_that_reads_is_found_whatever_the_index_says(tmp_path, capsys):
    from eeg2image_tf.errors import CheckpointError
    from eeg2image_tf.runs import latest_checkpoint_in, settle_checkpoints

    checkpoint, value = _three_checkpoints(tmp_path)
    (tmp_path / "checkpoint").write_text("damaged }{")
    (tmp_path / "ckpt-4_temp").mkdir()                  # a save cut short by a crash
    assert latest_checkpoint_in(tmp_path) == str(tmp_path / "ckpt-3")
    data = next(tmp_path.glob("ckpt-3.data-*"))
    data.write_bytes(data.read_bytes()[:3])             # a data file cut short
    assert latest_checkpoint_in(tmp_path) == str(tmp_path / "ckpt-2")
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "ckpt-3 does not read" in warning[0] and "using" in warning[0]

    # Training settles the folder: no temporary folder, an index naming the checkpoint it resumes.
    assert settle_checkpoints(tmp_path) == str(tmp_path / "ckpt-2")
    assert not (tmp_path / "ckpt-4_temp").exists()
    import tensorflow as tf

    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=5)
    assert manager.latest_checkpoint == str(tmp_path / "ckpt-2")
    checkpoint.restore(manager.latest_checkpoint)
    assert float(value.numpy()) == 2.0
    for prefix in ("ckpt-1", "ckpt-2"):
        next(tmp_path.glob(f"{prefix}.data-*")).write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint reads"):
        latest_checkpoint_in(tmp_path)


# --------------------------------------------------------------------------------------------------
# Slow: tiny training runs in subprocesses
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_synthetic_set(root, set_name="char", seed=3, n_train=160, n_test=60, images_per_class=1,
                        test_images_per_class=1)
    return root / "eeg" / "char" / "data.pkl"


_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _train_command(data: Path, run: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "eeg2image_tf.train_encoder", "--data", str(data),
            "--run", str(run), "--epochs", str(epochs), "--batch-size", "32",
            "--checkpoint-every", "1"]


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-2000:]
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _checkpoint_epochs(run: Path) -> list[int]:
    """Epochs of the complete checkpoints in ``run`` (an index file is written last)."""
    if not (run / "checkpoints").is_dir():
        return []
    return sorted(int(p.name.split("-")[1].split(".")[0])
                  for p in (run / "checkpoints").glob("ckpt-*.index"))


@pytest.mark.slow
def test_resume_passes_over_a_damaged_index_and_a_checkpoint_cut_short(tiny_set, tmp_path):
    run = tmp_path / "run"
    # A refused option writes nothing, so the corrected command runs.
    refused = subprocess.run(_train_command(tiny_set, run, 0), capture_output=True, text=True,
                             env=_ENV, timeout=300)
    assert refused.returncode == 2 and not run.exists(), refused.stderr[-2000:]
    first = subprocess.run(_train_command(tiny_set, run, 3), capture_output=True, text=True,
                           env=_ENV, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    (run / "checkpoints" / "checkpoint").write_text("damaged }{")
    data = next((run / "checkpoints").glob("ckpt-3.data-*"))
    data.write_bytes(data.read_bytes()[:100])
    (run / "checkpoints" / "ckpt-4_temp").mkdir()
    resumed = subprocess.run(_train_command(tiny_set, run, 4), capture_output=True, text=True,
                             env=_ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "ckpt-3 does not read" in resumed.stderr and "using" in resumed.stderr
    assert "resuming" in resumed.stderr and "ckpt-2 at epoch 3 of 4" in resumed.stderr
    assert _checkpoint_epochs(run) == [1, 2, 3, 4]
    assert not (run / "checkpoints" / "ckpt-4_temp").exists()


def _small_files_only(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_and_leaves_no_temporary_folder(tiny_set, tmp_path):
    run = tmp_path / "run"
    # Room for config.json and the event file, not for the first checkpoint's data (~60 KB).
    result = subprocess.run(_train_command(tiny_set, run, 2), capture_output=True, text=True,
                            env=_ENV, timeout=300, preexec_fn=_small_files_only(40_000))
    errors = _errors(result.stderr)
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "checkpoint 1 could not be written (File too large)" in errors[0]
    assert not list((run / "checkpoints").glob("*_temp*")) and _checkpoint_epochs(run) == []


@pytest.mark.slow
def test_pipeline_force_recovers_a_stage_whose_config_refuses(tmp_path, capsys):
    write_synthetic_set(tmp_path / "data", "char", seed=3, n_train=100, n_test=40,
                        images_per_class=1, test_images_per_class=1)
    run = tmp_path / "run"
    argv = ["pipeline", "--run", str(run), "--data-root", str(tmp_path / "data"), "--profile",
            "smoke", "--stages", "data", "encoder"]
    (run / "encoder").mkdir(parents=True)
    (run / "encoder" / "config.json").write_text("{damaged")
    before = _tree(tmp_path)
    code, lines = _run_in_process(argv, capsys)
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "use --force to overwrite it" in errors[0], lines
    after = _tree(tmp_path)
    assert {path: after[path] for path in after if path.startswith("run/encoder")} == \
        {path: before[path] for path in before if path.startswith("run/encoder")}
    code, _ = _run_in_process(argv + ["--force"], capsys)
    assert code == 0
    assert json.loads((run / "encoder" / "config.json").read_text())["epochs"] == 2


@pytest.mark.slow
def test_kill_9_mid_training_then_the_same_command_resumes(tiny_set, tmp_path):
    run = tmp_path / "run"
    command = _train_command(tiny_set, run, epochs=400)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=_ENV)
    deadline = time.monotonic() + 240
    try:
        while len(_checkpoint_epochs(run)) < 2:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    # Whatever instant the kill hit, the checkpoint index names a complete checkpoint and no
    # temporary file stands in place of a good one.
    from eeg2image_tf.checkpoints import load_encoder

    load_encoder(str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics
    killed_at = max(_checkpoint_epochs(run))

    # The killed process's lock went with it.
    resumed = subprocess.run(_train_command(tiny_set, run, epochs=killed_at + 2),
                             capture_output=True, text=True, env=_ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and f"at epoch {killed_at + 1}" in resumed.stderr
    assert max(_checkpoint_epochs(run)) == killed_at + 2


@pytest.mark.slow
def test_two_runs_side_by_side_do_not_interfere(tiny_set, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    processes = [subprocess.Popen(_train_command(tiny_set, run, epochs=3) + ["--seed", str(seed)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_ENV)
                 for run, seed in zip(runs, (1, 2))]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-2000:]
    for run, seed in zip(runs, (1, 2)):
        assert json.loads((run / "config.json").read_text())["seed"] == seed
        assert _checkpoint_epochs(run) == [1, 2, 3]
    # Different seeds, separate directories: the two runs' results differ.
    a, b = (json.loads((run / "metrics.json").read_text()) for run in runs)
    assert a != b
