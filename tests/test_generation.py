"""Generation: files, manifest, pixel conversion, reproducibility, and a GAN run end to end.

Most tests use a tiny Keras generator (8x8 images) so they run in milliseconds; the ``slow`` ones
build a real GAN run directory (the 128x128 Generator, an encoder checkpoint, an EEG set and image
folders) with :func:`make_gan_run`, which ``test_evaluation`` reuses.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

CLASS_NAMES = ("Apple", "Car", "Dog")
LATENT_DIM = 6
CONDITION_DIM = 4


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def tiny_generator(latent_dim: int = LATENT_DIM, condition_dim: int = CONDITION_DIM, seed: int = 3):
    """``(B, latent + condition) -> (B, 8, 8, 3)`` in [-1, 1]; returns zeros when ``training=True``
    so that a generator called in training mode would be caught."""
    import keras

    class TinyGenerator(keras.Model):
        def __init__(self):
            super().__init__()
            self.latent_dim = latent_dim
            self.dense = keras.layers.Dense(8 * 8 * 3, kernel_initializer=keras.initializers
                                            .RandomNormal(stddev=1.0, seed=seed))

        def call(self, inputs, training=False):
            images = keras.ops.tanh(keras.ops.reshape(self.dense(inputs), (-1, 8, 8, 3)))
            return keras.ops.zeros_like(images) if training else images

    generator = TinyGenerator()
    generator(np.zeros((1, latent_dim + condition_dim), np.float32))
    return generator


def tiny_features(trials_per_class=(2, 3, 1), seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(m, CONDITION_DIM)).astype(np.float32) for m in trials_per_class]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def jpeg_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def make_gan_run(root: Path, latent_dim: int = 8, feature_dim: int = 8,
                 test_per_class: int = 3, train_per_class: int = 8, images_per_class: int = 3,
                 seed: int = 0) -> dict[str, Path]:
    """A GAN run as ``train_gan`` leaves it, with random weights: ``<root>/gan`` (config.json +
    checkpoints/), ``<root>/encoder`` (weights-only checkpoint), ``<root>/data.npz`` (3 classes) and
    ``<root>/images/{train,test}/<Class>/*.png``."""
    import cv2
    import tensorflow as tf

    from eeg2image_tf.checkpoints import save_encoder_weights
    from eeg2image_tf.config import GanTrainConfig
    from eeg2image_tf.runs import save_config
    from eeg2image_tf.data import EEGSplits, save_npz
    from eeg2image_tf.models import build_discriminator, build_encoder, build_generator

    rng = np.random.default_rng(seed)
    k = len(CLASS_NAMES)

    def split(per_class):
        labels = rng.permutation(np.repeat(np.arange(k), per_class)).astype(np.int64)
        # Raw Emotiv-like values (positive, ~4000-4600) with a class-dependent offset.
        x = rng.uniform(3900, 4600, size=(labels.size, 14, 32, 1)) + 40.0 * labels[:, None, None, None]
        return x.astype(np.float32), labels

    x_train, y_train = split(train_per_class)
    x_test, y_test = split(test_per_class)
    data = save_npz(EEGSplits(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                              class_names=None, source="test"), root / "data.npz")
    for part in ("train", "test"):
        for c, name in enumerate(CLASS_NAMES):
            folder = root / "images" / part / name
            folder.mkdir(parents=True)
            for i in range(images_per_class):
                rgb = np.zeros((40, 40, 3), np.uint8)
                rgb[..., c] = 200   # class colour: red, green, blue
                rgb[: 10 + 5 * i] = 60 * i
                cv2.imwrite(str(folder / f"{name}_{i}.png"), rgb[..., ::-1])

    save_encoder_weights(build_encoder(feature_dim=feature_dim, hidden=4), root / "encoder")
    run = root / "gan"
    generator = build_generator(latent_dim=latent_dim, condition_dim=feature_dim)
    discriminator = build_discriminator(condition_dim=feature_dim)
    checkpoint = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64), generator=generator,
                                     discriminator=discriminator)
    tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=1).save()
    save_config(GanTrainConfig(data=str(data), images=str(root / "images" / "train"),
                               encoder=str(root / "encoder"), run=str(run), latent_dim=latent_dim,
                               condition_dim=feature_dim), run)
    return {"run": run, "data": data, "encoder": root / "encoder", "images": root / "images",
            "y_test": y_test}


# --------------------------------------------------------------------------------------------------
# Pixels and latents
# --------------------------------------------------------------------------------------------------

def test_to_uint8_is_the_original_truncating_conversion():
    from eeg2image_tf.models.inference import to_uint8

    x = np.array([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0, -0.2], np.float32)
    expected = np.uint8(np.clip((x * 0.5 + 0.5) * 255, 0, 255))
    np.testing.assert_array_equal(to_uint8(x), expected)
    # 0 maps to 127.5 which truncates (not rounds) to 127, as numpy's uint8 cast in the original.
    assert to_uint8(np.float32(0.0)) == 127 and to_uint8(np.float32(1.0)) == 255


def test_jpeg_bytes_are_bgr_for_opencv():
    import cv2

    from eeg2image_tf.generation import decode_jpeg, encode_jpeg

    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    data = encode_jpeg(red, quality=95)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr[..., 2].mean() > 240 and bgr[..., 0].mean() < 15   # red lands in OpenCV's channel 2
    np.testing.assert_allclose(decode_jpeg(data).mean(axis=(0, 1)), [255, 0, 0], atol=15)


def test_latent_streams_are_uniform_chunk_invariant_and_per_class():
    from eeg2image_tf.generation import LatentStreams

    whole = LatentStreams(seed=5, num_classes=2, latent_dim=7)
    chunked = LatentStreams(seed=5, num_classes=2, latent_dim=7)
    all_at_once = whole.draw(1, 10)
    in_pieces = np.concatenate([chunked.draw(1, 3), chunked.draw(1, 1), chunked.draw(1, 6)])
    np.testing.assert_array_equal(all_at_once, in_pieces)
    assert all_at_once.dtype == np.float32 and all_at_once.shape == (10, 7)
    many = LatentStreams(seed=5, num_classes=2, latent_dim=128).draw(0, 500)
    assert many.min() >= -1.0 and many.max() <= 1.0
    assert abs(many.mean()) < 0.02 and abs(many.var() - 1.0 / 3.0) < 0.01   # U(-1, 1)
    assert not np.array_equal(LatentStreams(5, 2, 7).draw(0, 10), all_at_once)
    assert not np.array_equal(LatentStreams(6, 2, 7).draw(1, 10), all_at_once)


def test_latent_range_narrows_the_same_stream():
    from eeg2image_tf.errors import Eeg2ImageError
    from eeg2image_tf.generation import LatentStreams

    training_range = LatentStreams(seed=5, num_classes=2, latent_dim=128).draw(1, 400)
    # 1 is training's U(-1, 1), drawn exactly as before the option existed.
    np.testing.assert_array_equal(LatentStreams(5, 2, 128, latent_range=1.0).draw(1, 400),
                                  training_range)
    narrow = LatentStreams(5, 2, 128, latent_range=0.25).draw(1, 400)
    assert narrow.min() >= -0.25 and narrow.max() <= 0.25
    assert abs(narrow.var() - 0.25 ** 2 / 3.0) < 0.002                  # U(-0.25, 0.25)
    # The same draws, scaled: one image's latent keeps its direction, only its length shrinks.
    np.testing.assert_allclose(narrow, 0.25 * training_range, atol=1e-6)
    assert not LatentStreams(5, 2, 128, latent_range=0.0).draw(0, 3).any()
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(Eeg2ImageError, match="latent_range"):
            LatentStreams(5, 2, 7, latent_range=bad)


# --------------------------------------------------------------------------------------------------
# The fast inference path
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stride, size, in_channels, out_channels",
                         [(2, 4, 16, 8), (2, 5, 3, 7), (4, 1, 12, 6), (2, 1, 4, 4)])
def test_conv_transpose_as_matmul_equals_tensorflow(stride, size, in_channels, out_channels):
    import tensorflow as tf

    from eeg2image_tf.models.matmul_conv import conv_transpose_as_matmul

    rng = np.random.default_rng(stride * 100 + size)
    inputs = rng.normal(size=(3, size, size, in_channels)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, out_channels, in_channels)).astype(np.float32)
    expected = tf.nn.conv2d_transpose(inputs, kernel, (3, size * stride, size * stride,
                                                       out_channels), stride, padding="SAME")
    found = conv_transpose_as_matmul(tf.constant(inputs), tf.constant(kernel), stride)
    assert found.shape == expected.shape
    np.testing.assert_allclose(found.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_conv_transpose_as_matmul_skips_a_known_zero_border():
    import tensorflow as tf

    from eeg2image_tf.models.matmul_conv import conv_transpose_as_matmul

    rng = np.random.default_rng(9)
    inputs = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    inputs[:, 3:, :, :] = 0.0          # what block 0 of the generator leaves: last row and column 0
    inputs[:, :, 3:, :] = 0.0
    kernel = rng.normal(size=(3, 3, 5, 6)).astype(np.float32)
    expected = tf.nn.conv2d_transpose(inputs, kernel, (2, 8, 8, 5), 2, padding="SAME").numpy()
    found = conv_transpose_as_matmul(tf.constant(inputs), tf.constant(kernel), 2, live=3).numpy()
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected[:, 6, :, :]).max() > 0.1   # the border's taps reach row 6: kept


def test_fast_call_applies_only_to_our_generator():
    from eeg2image_tf.models.inference import fast_generator_call

    assert fast_generator_call(tiny_generator()) is None   # falls back to the model's own call


@pytest.mark.parametrize("matmul_max_pixels, narrow_rgb", [(0, False), (16, True), (64, True),
                                                          (64, False)])
def test_fast_call_variants_equal_the_generator(matmul_max_pixels, narrow_rgb):
    import tensorflow as tf

    from eeg2image_tf.models.inference import GENERATION_MATMUL_MAX_PIXELS, fast_generator_call
    from eeg2image_tf.models import build_generator

    assert GENERATION_MATMUL_MAX_PIXELS >= 4 * 4   # blocks 0 and 1 at least
    generator = build_generator()
    inputs = np.random.default_rng(3).uniform(-1, 1, (2, 256)).astype(np.float32)
    expected = generator(inputs, training=False).numpy()
    fast = fast_generator_call(generator, matmul_max_pixels=matmul_max_pixels,
                               narrow_rgb=narrow_rgb)
    found = tf.function(fast)(inputs).numpy()
    assert found.shape == expected.shape == (2, 128, 128, 3)
    # A fresh generator's images are small: compare relative to their range.
    assert np.abs(found - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_stale_fast_forward_fails_instead_of_falling_back(monkeypatch):
    import dataclasses

    from eeg2image_tf.models import build_generator
    from eeg2image_tf.models.gan import Generator
    from eeg2image_tf.models.inference import FastForwardError, verified_fast_call

    generator = build_generator(latent_dim=8, condition_dim=8)
    declared = Generator.inference_layers
    # The Generator's call changed (say, another LeakyReLU slope) but inference_layers did not
    # follow: the check against the Generator's own call refuses the forward.
    monkeypatch.setattr(Generator, "inference_layers", lambda self: dataclasses.replace(
        declared(self), negative_slope=0.9))
    with pytest.raises(FastForwardError, match="differs from the Generator's own call"):
        verified_fast_call(generator, 16)
    # A layer the forward cannot reproduce is refused before anything runs.
    monkeypatch.setattr(Generator, "inference_layers", lambda self: dataclasses.replace(
        declared(self), norms=declared(self).norms[:-1]))
    with pytest.raises(FastForwardError, match="6 blocks but 5 norms"):
        verified_fast_call(generator, 16)


def test_a_mixed_precision_forward_rounding_more_than_keras_own_model_is_refused(monkeypatch):
    from eeg2image_tf.models import build_generator, inference

    generator = build_generator(latent_dim=8, condition_dim=8)
    assert inference.verified_fast_call(generator, 16, "mixed_bfloat16") is not None
    fast_generator_call = inference.fast_generator_call

    def shifted(generator, precision="float32"):
        call = fast_generator_call(generator, precision)
        if precision == "float32":
            return call
        # Every pixel 0.05 off: five times the floor, and the float32 path still right.
        return lambda inputs: call(inputs) + 0.05

    monkeypatch.setattr(inference, "fast_generator_call", shifted)
    with pytest.raises(inference.FastForwardError, match="Keras's own mixed_bfloat16 model"):
        inference.verified_fast_call(generator, 16, "mixed_bfloat16")
    assert inference.verified_fast_call(generator, 16, "float32") is not None


def test_verifying_a_forward_per_pipeline_stage_does_not_warn_of_retracing():
    """A pipeline verifies a mixed-precision forward three times in one process (select_gan,
    generate, curve); TensorFlow's retracing detector is process-wide, hence a fresh process."""
    script = textwrap.dedent("""
        from eeg2image_tf.models import build_generator, inference
        for _ in range(3):
            generator = build_generator(latent_dim=8, condition_dim=8)
            assert inference.verified_fast_call(generator, 16, "mixed_bfloat16") is not None
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retracing" not in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
def test_fast_call_reproduces_the_original_generator_images(fixture_file):
    import tensorflow as tf

    from eeg2image_tf.models.inference import fast_generator_call, to_uint8
    from eeg2image_tf.generation import make_uint8_forward
    from eeg2image_tf.checkpoints.original import load_original_gan

    reference = np.load(fixture_file("original_gan_reference.npz"))
    generator = load_original_gan(fixture_file("original_gan_ckpt")).generator
    fast = fast_generator_call(generator)
    assert fast is not None
    images = tf.function(fast)(tf.constant(reference["z"])).numpy()
    np.testing.assert_allclose(images, reference["images"], atol=1e-5)
    pixels = make_uint8_forward(generator, 4, 256)(reference["z"]).numpy()
    # Truncation to uint8 may move a value sitting on a level boundary by one.
    assert np.abs(pixels.astype(int) - to_uint8(reference["images"]).astype(int)).max() <= 1


# --------------------------------------------------------------------------------------------------
# generate_images with a tiny generator
# --------------------------------------------------------------------------------------------------

def test_generate_images_writes_documented_files_and_manifest(tmp_path):
    from eeg2image_tf.generation import generate_arrays, generate_images

    generator = tiny_generator()
    features = tiny_features()
    trials = [np.array([7, 2]), np.array([0, 4, 9]), np.array([5])]
    manifest = generate_images(generator, features, CLASS_NAMES, tmp_path / "out", per_class=4,
                               batch_size=3, seed=11, trials_by_class=trials,
                               show_progress=False)

    out = tmp_path / "out"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    expected_files = sorted(f"{n}/{n}_{k}.jpg" for n in CLASS_NAMES for k in range(4))
    assert files == expected_files
    assert manifest.count == 12 and manifest.path == out / "manifest.csv"
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]   # no temporary left behind

    rows = read_rows(out / "manifest.csv")
    assert list(rows[0]) == ["file", "class", "class_index", "source_trial"]
    assert sorted(r["file"] for r in rows) == expected_files
    for row in rows:
        name, k = row["file"].split("/")[1][:-4].rsplit("_", 1)
        assert row["class"] == name == CLASS_NAMES[int(row["class_index"])]
        # Conditions cycle through the class's trials in order.
        class_trials = trials[int(row["class_index"])]
        assert int(row["source_trial"]) == class_trials[int(k) % len(class_trials)]

    # The files hold exactly the generator's images (training=False) after the JPEG round trip.
    in_memory = generate_arrays(generator, features, 4, batch_size=5, seed=11, jpeg_quality=95)
    import cv2
    for i, row in enumerate(rows):
        bgr = cv2.imread(str(out / row["file"]))
        np.testing.assert_array_equal(bgr[..., ::-1], in_memory.images[i])
    assert in_memory.images.std() > 20   # not the zeros a training=True call would give


def test_conditions_and_latents_reach_the_generator(tmp_path):
    from eeg2image_tf.generation import LatentStreams, generate_arrays
    from eeg2image_tf.models.inference import to_uint8

    generator = tiny_generator()
    features = tiny_features()
    result = generate_arrays(generator, features, per_class=3, batch_size=4, seed=2)
    streams = LatentStreams(2, len(features), LATENT_DIM)
    inputs = []
    for c, f in enumerate(features):
        z = streams.draw(c, 3)
        inputs.append(np.concatenate([z, f[np.arange(3) % len(f)]], axis=1))
    expected = to_uint8(np.asarray(generator(np.concatenate(inputs), training=False)))
    # float32 rounding may differ by one grey level between a batched and an unbatched matmul
    assert np.abs(result.images.astype(int) - expected.astype(int)).max() <= 1
    np.testing.assert_array_equal(result.class_index, np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(result.source_trial, [0, 1, 0, 0, 1, 2, 0, 0, 0])


def test_the_latent_range_reaches_the_generator():
    from eeg2image_tf.generation import generate_arrays

    generator, features = tiny_generator(), tiny_features()
    full = generate_arrays(generator, features, per_class=3, batch_size=4, seed=2)
    same = generate_arrays(generator, features, per_class=3, batch_size=4, seed=2, latent_range=1.0)
    np.testing.assert_array_equal(same.images, full.images)
    # Without latents every image of one condition is the same picture; with them they differ.
    fixed = generate_arrays(generator, features, per_class=3, batch_size=4, seed=2,
                            latent_range=0.0)
    one_condition = [f[:1] for f in features]
    repeated = generate_arrays(generator, one_condition, per_class=3, batch_size=4, seed=2,
                               latent_range=0.0)
    varied = generate_arrays(generator, one_condition, per_class=3, batch_size=4, seed=2)
    assert all(np.array_equal(repeated.images[3 * c], repeated.images[3 * c + i])
               for c in range(len(features)) for i in (1, 2))
    assert not np.array_equal(varied.images[0], varied.images[1])
    assert not np.array_equal(fixed.images, full.images)


def test_same_seed_same_bytes_whatever_the_batch_size_and_threads(tmp_path):
    from eeg2image_tf.generation import generate_images

    generator, features = tiny_generator(), tiny_features()
    generate_images(generator, features, CLASS_NAMES, tmp_path / "a", per_class=5, batch_size=2,
                    seed=7, writer_threads=1, show_progress=False)
    generate_images(generator, features, CLASS_NAMES, tmp_path / "b", per_class=5, batch_size=64,
                    seed=7, writer_threads=3, show_progress=False)
    generate_images(generator, features, CLASS_NAMES, tmp_path / "c", per_class=5, batch_size=2,
                    seed=8, show_progress=False)
    a, b, c = (jpeg_files(tmp_path / name) for name in "abc")
    assert len(a) == 15 and a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)   # another seed: every image differs
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == \
        (tmp_path / "b" / "manifest.csv").read_bytes()


def test_a_smaller_run_is_a_prefix_of_a_larger_one():
    from eeg2image_tf.generation import generate_arrays

    generator, features = tiny_generator(), tiny_features()
    small = generate_arrays(generator, features, per_class=2, batch_size=4, seed=1)
    large = generate_arrays(generator, features, per_class=5, batch_size=4, seed=1)
    for c in range(3):
        np.testing.assert_array_equal(small.images[small.class_index == c],
                                      large.images[large.class_index == c][:2])


def test_bad_arguments_are_one_line_errors(tmp_path):
    from eeg2image_tf.errors import DataError, Eeg2ImageError
    from eeg2image_tf.generation import generate_images, group_by_class

    generator, features = tiny_generator(), tiny_features()
    with pytest.raises(Eeg2ImageError, match="class names"):
        generate_images(generator, features, CLASS_NAMES[:2], tmp_path, per_class=1,
                        show_progress=False)
    with pytest.raises(Eeg2ImageError, match="per_class"):
        generate_images(generator, features, CLASS_NAMES, tmp_path, per_class=0,
                        show_progress=False)
    with pytest.raises(DataError, match="class Dog .index 2. has no trials"):
        group_by_class(np.zeros((3, 4)), np.array([0, 1, 1]), 3, CLASS_NAMES)


def test_read_manifest_round_trip_and_malformed(tmp_path):
    from eeg2image_tf.errors import DataError
    from eeg2image_tf.generation import ManifestRow, manifest_text, read_manifest

    rows = [ManifestRow("A/A_0.jpg", "A", 0, 3), ManifestRow("B, x/B, x_0.jpg", "B, x", 1, 0)]
    (tmp_path / "m.csv").write_text(manifest_text(rows))
    assert read_manifest(tmp_path / "m.csv") == rows
    (tmp_path / "bad.csv").write_text("file,class\nA/A_0.jpg,A\n")
    with pytest.raises(DataError, match="bad.csv: expected columns"):
        read_manifest(tmp_path / "bad.csv")


# --------------------------------------------------------------------------------------------------
# From a GAN run (real modules)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return make_gan_run(tmp_path_factory.mktemp("gan_run"))


@pytest.mark.slow
def test_generate_from_run_and_from_explicit_checkpoints(gan_run, tmp_path, capsys):
    import cv2

    from eeg2image_tf.config import GenerateConfig
    from eeg2image_tf.generate import main
    from eeg2image_tf.generation import generate_from_run

    manifest = generate_from_run(GenerateConfig(run=str(gan_run["run"]), out=str(tmp_path / "a"),
                                                per_class=3, batch_size=4), show_progress=False)
    assert manifest.class_names == CLASS_NAMES   # from the image folder, natsort order
    files = jpeg_files(tmp_path / "a")
    assert len(files) == 9 and (tmp_path / "a" / "generate_config.json").exists()
    image = cv2.imread(str(tmp_path / "a" / "Car" / "Car_2.jpg"))
    assert image.shape == (128, 128, 3)
    y_test = gan_run["y_test"]
    for row in read_rows(tmp_path / "a" / "manifest.csv"):
        assert y_test[int(row["source_trial"])] == int(row["class_index"])

    # The same models named explicitly (as for converted published checkpoints) and another batch
    # size give the same bytes.
    code = main(["--gan", str(gan_run["run"]), "--encoder", str(gan_run["encoder"]),
                 "--data", str(gan_run["data"]), "--images", str(gan_run["images"]),
                 "--out", str(tmp_path / "b"), "--per-class", "3", "--batch-size", "2",
                 "--quiet"])
    assert code == 0
    assert "wrote 9 images" in capsys.readouterr().out
    assert jpeg_files(tmp_path / "b") == files


@pytest.mark.slow
def test_generate_cli_errors(gan_run, tmp_path, capsys):
    from eeg2image_tf.errors import run_main
    from eeg2image_tf.generate import main

    assert run_main(main, ["--out", str(tmp_path), "--gan", str(gan_run["run"])]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: give --run") and "--encoder" in error and "\n" not in error

    out = str(tmp_path / "x")
    assert run_main(main, ["--run", str(gan_run["run"]), "--out", out, "--per-class", "1",
                           "--quiet"]) == 0
    # Another config into the same folder is refused; a batch size change is not.
    assert run_main(main, ["--run", str(gan_run["run"]), "--out", out, "--per-class", "2",
                           "--quiet"]) == 2
    assert "per_class" in capsys.readouterr().err
    assert run_main(main, ["--run", str(gan_run["run"]), "--out", out, "--per-class", "1",
                           "--batch-size", "2", "--quiet"]) == 0
    capsys.readouterr()
    # A latent range below 0 is refused before the output folder is made.
    refused = tmp_path / "negative"
    assert run_main(main, ["--run", str(gan_run["run"]), "--out", str(refused),
                           "--latent-range", "-1", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--latent-range" in error and "\n" not in error and not refused.exists()


def test_bfloat16_fast_call_serves_a_generator_trained_as_the_original_ran():
    """As-run generators train their raw kernels (never divided by sigma), whose norms grow to tens:
    tanh saturates and bfloat16 rounding flips some pixels from -1 to 1, as Keras's own bfloat16
    model does (how many depends on the CPU's bfloat16 instructions). The check judges the fast
    path against that model's rounding, so it still serves them (no fallback, no warning)."""
    import warnings

    from eeg2image_tf.models.inference import verified_fast_call as _verified_fast_call
    from eeg2image_tf.models import build_generator

    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    generator = build_generator()
    for conv in generator.upsampling_convs:
        conv.layer.kernel.assign(conv.layer.kernel * 60.0)     # norms like a trained as-run G
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert _verified_fast_call(generator, 256, "mixed_bfloat16") is not None
        assert _verified_fast_call(generator, 256, "float32") is not None
