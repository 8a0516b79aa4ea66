"""The benchmarks' own pieces: the plain reference loss they time alongside ours, the child process
that times the authors' code, the report (every ratio between two figures of one run), and the
training comparison's scores, summary and arguments."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from benchmarks import encoder_step  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402
from benchmarks.common import alternated_medians, median_seconds  # noqa: E402
from benchmarks.encoder_step import cubic_triplet_semihard_loss  # noqa: E402
from benchmarks.reference import (NOT_BUILT, TIMING_SCRIPT, ReferenceProcess,  # noqa: E402
                                  compared_with_original, reference_python)
from eeg2image_tf.training.losses import triplet_semihard_loss  # noqa: E402

TFA_FIXTURE = "tfa_triplet_semihard_reference.npz"
NO_POSITIVE_CASE = 7  # every label distinct: TFA returns NaN, the reference loss 0


def test_cubic_reference_loss_is_the_tensorflow_addons_loss(fixture_file):
    """The plain step's loss is a real semi-hard triplet loss: TFA's numbers on the fixture."""
    with np.load(fixture_file(TFA_FIXTURE)) as data:
        for j in range(int(data["n_cases"])):
            if j == NO_POSITIVE_CASE:
                continue
            for margin, key in ((1.0, "loss_m1"), (0.5, "loss_m05")):
                found = float(cubic_triplet_semihard_loss(
                    tf.constant(data[f"y_{j}"].reshape(-1)), tf.constant(data[f"emb_{j}"]),
                    margin=margin))
                np.testing.assert_allclose(found, float(data[f"{key}_{j}"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch, classes", [(16, 3), (64, 10)])
def test_cubic_reference_loss_equals_ours_on_random_batches(batch, classes):
    rng = np.random.default_rng(batch)
    embeddings = rng.normal(size=(batch, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = tf.constant(rng.integers(0, classes, batch))
    np.testing.assert_allclose(float(cubic_triplet_semihard_loss(labels, embeddings, 0.7)),
                               float(triplet_semihard_loss(labels, embeddings, margin=0.7)),
                               rtol=1e-5)


def test_report_line_shows_every_ratio_of_the_run():
    line = bench_run._format({"name": "gan_step", "ms_per_step": 1500.0, "batch_size": 16,
                              "speedup_vs_original": 1.43, "speedup_vs_plain_keras": 1.7})
    assert "1500.0 ms/step" in line and "x1.43 vs the authors' code" in line
    assert "x1.70 vs plain Keras 3" in line and "batch_size=16" in line
    line = bench_run._format({"name": "generate", "items_per_s": 150.0, "original": NOT_BUILT,
                              "speedup_vs_one_at_a_time": 3.1})
    assert "150.0 items/s" in line and "x3.10 vs one at a time" in line
    assert "authors' code not measured" in line and "vs the authors' code" not in line


def test_ratio_to_the_authors_code_only_from_a_figure_of_the_run():
    assert compared_with_original(50.0, 150.0, "ms") == {"original_ms_alongside": 150.0,
                                                         "speedup_vs_original": 3.0}
    assert compared_with_original(300.0, 100.0, "items/s") == {
        "original_items_per_s_alongside": 100.0, "speedup_vs_original": 3.0}
    assert compared_with_original(50.0, None, "ms") == {"original": NOT_BUILT}


def test_reference_python_needs_the_interpreter_and_the_authors_code(monkeypatch, tmp_path):
    monkeypatch.setenv("EEG2IMAGE_REF", str(tmp_path))
    assert reference_python() is None
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert reference_python() is None                     # no code/model.py yet
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "model.py").write_text("")
    assert reference_python() == python


def test_reference_process_times_one_call_per_request(tmp_path):
    """The child protocol of benchmarks/reference_timing.py, run as that script runs: imported
    from its folder, without this package."""
    calls = tmp_path / "calls"
    child = (f"import sys; sys.path.insert(0, {str(TIMING_SCRIPT.parent)!r}); "
             "from reference_timing import serve; "
             f"serve(lambda: open({str(calls)!r}, 'a').write('x'), ready={{'benchmark': 'probe'}})")
    with ReferenceProcess([sys.executable, "-c", child]) as process:
        assert process.ready == {"benchmark": "probe"}
        seconds = [process.run() for _ in range(3)]
    assert process._process.returncode == 0
    assert calls.read_text() == "xxx" and all(0 <= s < 60 for s in seconds)


@pytest.mark.slow
def test_without_the_authors_stack_a_record_holds_no_ratio_to_their_code(monkeypatch, tmp_path):
    monkeypatch.setenv("EEG2IMAGE_REF", str(tmp_path))
    record = encoder_step.run(repeats=1, batch_size=20, compare_plain=True, compare_original=True)
    assert record["original"] == NOT_BUILT
    assert not any("original" in key for key in record if key != "original")
    assert record["speedup_vs_plain_keras"] == pytest.approx(
        record["plain_keras_ms_alongside"] / record["ms_per_step"], abs=0.011)


def test_median_seconds_excludes_warmup():
    calls = []
    seconds, times = median_seconds(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3 and seconds >= 0


def test_alternated_medians_times_both_in_turn():
    calls = []
    first, second = alternated_medians(lambda: calls.append("a"), lambda: calls.append("b"),
                                       repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4 and first >= 0 and second >= 0
    calls.clear()
    medians = alternated_medians(*(lambda k=k: calls.append(k) for k in "xyz"), repeats=2,
                                 warmup=0)
    assert calls == list("xyz") * 2 and len(medians) == 3


def test_machine_line_names_the_cpu_and_versions():
    from benchmarks.common import machine_line

    line = machine_line()
    assert line.startswith("machine: ") and "cores" in line
    assert f"TensorFlow {tf.__version__}" in line and "GPUs: " in line
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        model = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "")
    assert model in line


def test_suite_times_the_chosen_mixed_mode(monkeypatch, tmp_path):
    """``--precision`` decides the mixed mode of the gan_step and generate rows (float32 stays)."""
    from benchmarks import gan_step, generate

    seen = []
    monkeypatch.setattr(gan_step, "run", lambda **kw: seen.append(("gan", kw.get("precision"))))
    monkeypatch.setattr(generate, "run", lambda **kw: seen.append(("gen", kw.get("precision"))))
    suite = bench_run._suite(True, str(tmp_path), "mixed_float16")
    for run in suite["gan_step"] + suite["generate"]:
        run()
    assert ("gan", "mixed_float16") in seen and ("gen", "mixed_float16") in seen
    assert ("gan", None) in seen and ("gen", None) in seen            # the float32 default rows
    assert not any(precision == "mixed_bfloat16" for _, precision in seen)


# --------------------------------------------------------------------------------------------------
# Training against the authors': the scores, the seeds' summary, the table, the arguments
# --------------------------------------------------------------------------------------------------

def test_training_comparison_scores_realism_beside_the_classifier():
    from benchmarks.training_vs_original import score
    from eeg2image_tf.data.synthetic import render_character
    from eeg2image_tf.evaluation.realism import gradient_histograms

    class FirstClass:
        """Names class 0 for every image; its features are the images' mean colours."""

        def features_and_probs(self, images):
            probs = np.zeros((len(images), 2))
            probs[:, 0] = 1.0
            return images.mean(axis=(1, 2)), probs

    rng = np.random.default_rng(0)
    bank = np.stack([render_character(letter, rng, size=32) for letter in "AH" for _ in range(8)])
    labels = np.repeat([0, 1], 8)
    scores = score(bank, labels, FirstClass(), ("A", "H"), (gradient_histograms(bank), labels))
    assert scores["conditional_accuracy"] == 0.5
    # The bank's own images (through JPEG quality 95) lie in the bank's manifold and vary as it does.
    assert scores["precision"] >= 0.9 and scores["recall"] >= 0.9
    assert scores["diversity_ratio"] == pytest.approx(1.0, abs=0.1)


def test_training_comparison_summarises_seeds_and_tabulates_their_means():
    from benchmarks.training_vs_original import format_table, summarise

    by_seed = {"45": {"conditional_accuracy": 0.5, "precision": 0.1, "recall": None},
               "46": {"conditional_accuracy": 0.7, "precision": 0.3, "recall": None}}
    summary = summarise(by_seed)
    assert summary["conditional_accuracy"] == pytest.approx({"mean": 0.6, "half_range": 0.1})
    assert summary["precision"] == pytest.approx({"mean": 0.2, "half_range": 0.1})
    assert "recall" not in summary and "diversity_ratio" not in summary
    table = format_table({"seeds": [45, 46], "classes": 10,
                          "sides": {"authors": {"250": {"summary": summary}},
                                    "ours_as_run": {"250": {"summary": summary}}}})
    assert table.startswith("| iteration | authors | ours_as_run |")
    assert "| 250 | 0.600 ±0.100 / 0.200 ±0.100 / n/a / n/a |" in table
    assert "mean over seeds 45, 46" in table and "chance accuracy 0.100" in table


@pytest.mark.parametrize("extra, message", [(["--iterations", "250", "2500"],
                                             r"must lie in 1\.\.2000"),
                                            (["--seeds", "45", "45"], "must differ")])
def test_training_comparison_refuses_bad_milestones_and_seeds(tmp_path, capsys, extra, message):
    from benchmarks.training_vs_original import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--encoder", "e", "--classifier", "c", "--out", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_generator_saturation_reads_the_values_tanh_receives():
    from benchmarks.generator_saturation import kernel_norms, pre_tanh
    from eeg2image_tf.models.gan import build_generator

    generator = build_generator(latent_dim=4, condition_dim=4)
    inputs = np.random.default_rng(0).uniform(-1, 1, size=(2, 8)).astype(np.float32)
    # The output is linear in the last kernel: scale it so that the median value reaches 3, half
    # the values in tanh's flat ends and half not.
    kernel = generator.to_rgb.layer.kernel
    kernel.assign(kernel * (3.0 / np.median(np.abs(pre_tanh(generator, inputs)))))
    values = pre_tanh(generator, inputs)
    assert values.shape == (2, 128, 128, 3)
    assert 0.3 < np.mean(np.abs(values) > 3.0) < 0.7
    np.testing.assert_allclose(np.tanh(values), np.asarray(generator(inputs, training=False)),
                               atol=1e-5)
    norms = kernel_norms(generator)
    assert len(norms) == 7
    rgb = np.asarray(kernel).reshape(-1, 3)
    np.testing.assert_allclose(norms["sn_conv_to_rgb"], np.linalg.svd(rgb, compute_uv=False)[0],
                               rtol=1e-5)


def test_realism_distortions_move_a_letter_as_their_names_say():
    from benchmarks.realism_controls import distorted_sets, rotated, shifted, wavering

    image = np.full((64, 64, 3), 255, np.uint8)
    image[20:24, 30:34] = 0                         # a 4 x 4 dark square
    moved = shifted(image, 4)
    assert (moved[24:28, 34:38] == 0).all() and (moved[20:24, 30:34] != 0).any()
    # Half a turn about the centre (32, 32) sends pixel x to 64 - x.
    turned = rotated(image, 180)
    assert (turned[41:45, 31:35] < 128).all()

    def dark_centre(picture: np.ndarray) -> np.ndarray:
        rows, columns = np.nonzero(picture[..., 0] < 128)
        return np.array([rows.mean(), columns.mean()])

    rng = np.random.default_rng(0)
    for amplitude in (1.0, 3.0):
        drift = np.abs(dark_centre(wavering(image, amplitude, rng)) - dark_centre(image))
        assert drift.max() <= amplitude + 0.5
    sets = distorted_sets(np.stack([image, image]), rng)
    assert len(sets) == 11
    assert all(images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
               for images in sets.values())


def test_figure_cells_and_ink_fitting_keep_each_letter_where_the_names_say():
    from benchmarks.figure_realism import FITTED, SIZE, figure_cells, fit_ink

    # A 2 x 3 grid of 40 x 50 px cells, each with a dark bar at its own row and column.
    figure = np.full((80, 150, 3), 255, np.uint8)
    for row in range(2):
        for column in range(3):
            left = column * 50 + 20 + 5 * row
            figure[row * 40 + 10:row * 40 + 30, left:left + 5] = 0
    figure[:, ::50] = 0                             # grid lines the margin cuts away
    cells = figure_cells(figure, rows=2, columns=3, margin=2)
    assert cells.shape == (2, 3, SIZE, SIZE, 3) and cells.dtype == np.uint8
    for row in range(2):
        columns = np.nonzero(cells[row, 1, SIZE // 2, :, 0] < 128)[0]
        # The 46 x 36 px cell is padded to a 46-px square and scaled by 128 / 46: the bar's centre
        # (pixel 20 + 5 * row of the cell, 2 px of margin cut) moves with it.
        assert abs(columns.mean() - ((20 + 5 * row + 0.5) * SIZE / 46 - 0.5)) < 1
        assert (cells[row, 1, :, :2] > 200).all()  # no grid line left at the edge

    fitted = fit_ink(cells[:, 1])
    rows, columns = np.nonzero(fitted[0, ..., 0] < 128)
    assert rows.max() - rows.min() + 1 == FITTED    # the bar is the tallest thing: 100 px tall
    assert abs((rows.max() + rows.min()) / 2 - SIZE / 2) <= 1
    assert abs((columns.max() + columns.min()) / 2 - SIZE / 2) <= 1
    # The same bar elsewhere in its cell gives the same picture, up to the resampling of its edges.
    assert np.abs(fitted[1].astype(int) - fitted[0]).max() <= 16
    assert (fit_ink(np.full((1, SIZE, SIZE, 3), 255, np.uint8)) == 255).all()


def test_figure_realism_scores_a_figure_against_a_folder(tmp_path, capsys):
    import cv2

    from benchmarks.figure_realism import main

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("A", "B"):
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(6):
                image = np.full((128, 128, 3), 255, np.uint8)
                top, left = rng.integers(10, 60, size=2)
                if name == "A":
                    image[top:top + 50, left:left + 12] = 0
                else:
                    image[top:top + 12, left:left + 50] = 0
                cv2.imwrite(str(tmp_path / split / name / f"{index}.png"), image)
    figure = np.full((2 * 64, 3 * 64, 3), 255, np.uint8)
    figure[10:50, 20:30] = 0                        # row A: vertical bars
    figure[10:50, 84:94] = 0
    figure[64 + 25:64 + 35, 10:50] = 0              # row B: horizontal bars
    figure[64 + 25:64 + 35, 74:114] = 0
    cv2.imwrite(str(tmp_path / "figure.png"), figure)
    code = main([str(tmp_path / "figure.png"), "--rows", "2", "--columns", "3",
                 "--real-columns", "2", "--train", str(tmp_path / "train"),
                 "--test", str(tmp_path / "test")])
    printed = capsys.readouterr().out
    assert code == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in printed.splitlines()
            if line.startswith("| ") and not line.startswith("| set")}
    assert rows["figure, generated"][0] == "4" and rows["figure, real"][0] == "2"
    assert rows["held-out real (" + str(tmp_path / "test") + ")"][0] == "4"
    assert main([str(tmp_path / "figure.png"), "--rows", "3", "--columns", "3",
                 "--train", str(tmp_path / "train")]) == 2
    assert "2 classes, the figure 3 rows" in capsys.readouterr().err


def test_realism_controls_draw_from_the_typefaces_they_are_given(monkeypatch):
    from benchmarks.realism_controls import draw
    from eeg2image_tf.data import synthetic

    fonts = synthetic.font_paths()
    used = []

    def recording(letter, rng, size, font=None):
        used.append(font)
        return np.full((size, size, 3), 255, np.uint8)

    monkeypatch.setattr(synthetic, "render_character", recording)
    rng = np.random.default_rng(0)
    images, labels = draw("AB", 20, rng, 16, pool=[1, 3])
    assert images.shape == (40, 16, 16, 3) and list(labels) == [0] * 20 + [1] * 20
    assert set(used) == {fonts[1], fonts[3]}
    used.clear()
    draw("AB", 3, rng, 16, faces=[5, 7])
    assert used == [fonts[5]] * 3 + [fonts[7]] * 3
    used.clear()
    draw("AB", 2, rng, 16)
    assert used == [None] * 4          # render_character's own random choice over all 22
    with pytest.raises(ValueError, match="not both"):
        draw("AB", 2, rng, 16, faces=[5, 7], pool=[1, 3])
