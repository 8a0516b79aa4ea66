"""The built-in synthetic sets: layout, determinism, loading through the real loaders, difficulty."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2image_tf.data import (CLASS_NAMES, list_image_folder, load_images, load_thoughtviz,
                               make_synthetic_eeg, pair_images, preprocess_numpy, render_character,
                               write_synthetic_set)
from eeg2image_tf.data.synthetic import (RENDERER_VERSION, check_synthetic_images, font_paths,
                                         render_digit)
from eeg2image_tf.io_utils import read_json
from eeg2image_tf.errors import DataError

TINY = dict(n_train=60, n_test=20, images_per_class=3, test_images_per_class=2)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return root, write_synthetic_set(root, "char", seed=3, **TINY)


def file_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_loading_through_the_real_loaders(tiny_set):
    root, written = tiny_set
    assert written["eeg"] == str(root / "eeg" / "char" / "data.pkl")
    splits = load_thoughtviz(written["eeg"])
    assert splits.x_train.shape == (60, 14, 32, 1) and splits.x_test.shape == (20, 14, 32, 1)
    assert splits.class_names == CLASS_NAMES["char"]
    np.testing.assert_array_equal(np.bincount(splits.y_train, minlength=10), np.full(10, 6))
    assert set(np.unique(splits.y_test)) == set(range(10))

    train = list_image_folder(root / "images" / "train")
    test = list_image_folder(root / "images" / "test")
    assert train.class_names == CLASS_NAMES["char"] == test.class_names
    np.testing.assert_array_equal(train.counts(), np.full(10, 3))
    np.testing.assert_array_equal(test.counts(), np.full(10, 2))
    assert all(p.endswith(".png") for p in train.paths)
    assert (written["num_train_images"], written["num_test_images"]) == (30, 20)

    bank = load_images(train.paths)
    assert bank.shape == (30, 128, 128, 3) and bank.dtype == np.float32
    assert bank.min() >= -1.0 and bank.max() <= 1.0
    pairs = pair_images(splits.y_train, train.labels)
    np.testing.assert_array_equal(train.labels[pairs], splits.y_train)


def test_same_seed_gives_identical_bytes_other_seed_differs(tiny_set, tmp_path):
    root, _ = tiny_set
    write_synthetic_set(tmp_path / "again", "char", seed=3, **TINY)
    first, second = file_bytes(root), file_bytes(tmp_path / "again")
    # data.pkl and its synthetic.json, 50 images and one synthetic.json per split
    assert first.keys() == second.keys() and len(first) == 54
    assert first == second
    write_synthetic_set(tmp_path / "other", "char", seed=4, **TINY)
    other = file_bytes(tmp_path / "other")
    assert other["eeg/char/data.pkl"] != first["eeg/char/data.pkl"]
    assert other["images/train/A/A_0000.png"] != first["images/train/A/A_0000.png"]


def test_raw_values_are_emotiv_like_and_normalise(tiny_set):
    splits = load_thoughtviz(tiny_set[1]["eeg"])
    x = splits.x_train
    assert x.min() > 0.0  # the original normalisation needs a positive maximum
    assert 4000.0 < np.median(x) < 4600.0  # the offsets dominate, as in raw Emotiv recordings
    low, high = np.percentile(x, [1, 99])
    assert 2000.0 < low and high < 6500.0
    model_input = preprocess_numpy(x)
    np.testing.assert_allclose(model_input.max(axis=(1, 2)), 1.0, rtol=1e-6)


def test_default_size_is_large_enough_and_balanced():
    arrays = make_synthetic_eeg("digit", seed=45)
    assert arrays["x_train"].shape == (2500, 14, 32, 1) and arrays["x_test"].shape == (600, 14, 32, 1)
    assert arrays["y_train"].shape == (2500, 10) and arrays["y_test"].shape == (600, 10)
    counts = arrays["y_train"].sum(axis=0)
    assert counts.min() == counts.max() == 250
    assert np.isfinite(arrays["x_train"]).all()


def test_digit_set_and_refusals(tmp_path):
    written = write_synthetic_set(tmp_path, "digit", seed=1, **TINY)
    assert written["class_names"] == CLASS_NAMES["digit"]
    assert list_image_folder(tmp_path / "images" / "train").class_names == tuple("0123456789")
    # another set's class folders in the same images/ would shift every class index
    with pytest.raises(DataError, match=r"class folders of another set \(0, 1, 2"):
        write_synthetic_set(tmp_path, "char", seed=1, **TINY)
    with pytest.raises(DataError, match="objects set has no synthetic version"):
        write_synthetic_set(tmp_path / "objects", "image")
    with pytest.raises(DataError, match="unknown"):
        write_synthetic_set(tmp_path / "x", "letters")


def test_rewriting_with_fewer_images_removes_the_extra_ones(tmp_path):
    write_synthetic_set(tmp_path, "char", seed=1, **TINY)
    smaller = dict(TINY, images_per_class=1)
    write_synthetic_set(tmp_path, "char", seed=1, **smaller)
    np.testing.assert_array_equal(list_image_folder(tmp_path / "images" / "train").counts(), np.ones(10))


def _ink_box(ink):
    rows, cols = np.nonzero(ink)
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("text", CLASS_NAMES["char"])
def test_char_images_are_black_capitals_on_pure_white_in_every_face(text):
    rng = np.random.default_rng(0)
    for font in font_paths():
        image = render_character(text, rng, font=font)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        # grey: the three channels are equal (no colour anywhere)
        np.testing.assert_array_equal(image[..., 0], image[..., 1])
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
        gray = image[..., 0]
        ink = gray < 128
        # pure white background, black strokes: a border of exactly 255 and solid black ink
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        assert (border == 255).all(), font.name
        assert gray.min() == 0, font.name
        assert 0.03 < ink.mean() < 0.6, font.name
        top, bottom, left, right = _ink_box(gray < 250)
        # the letter's height 70-90 % of the image (one pixel of anti-aliasing either way)
        assert 0.70 * 128 - 2 <= bottom - top + 1 <= 0.90 * 128 + 2, (font.name, bottom - top + 1)
        # centred by its bounding box within the jitter
        assert abs((top + bottom) / 2 - 63.5) <= 0.04 * 128 + 2, font.name
        assert abs((left + right) / 2 - 63.5) <= 0.04 * 128 + 2 or left == 0 or right == 127


@pytest.mark.parametrize("text", CLASS_NAMES["digit"])
def test_digit_images_are_white_digits_on_black_in_every_face(text):
    rng = np.random.default_rng(1)
    widths = []
    for font in font_paths():
        image = render_digit(text, rng, font=font)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
        gray = image[..., 0]
        border = np.concatenate([gray[:3].ravel(), gray[-3:].ravel(), gray[:, :3].ravel(),
                                 gray[:, -3:].ravel()])
        assert (border == 0).all(), font.name
        assert gray.max() >= 200, font.name
        ink = gray > 127
        assert 0.01 < ink.mean() < 0.45, font.name
        top, bottom, left, right = _ink_box(gray > 5)
        assert 0.5 * 128 <= bottom - top + 1 <= 0.8 * 128, (font.name, bottom - top + 1)
        rows, cols = np.nonzero(ink)
        # centred by its centre of mass, as MNIST (within the jitter and the blur)
        assert abs(rows.mean() - 64) < 9 and abs(cols.mean() - 64) < 9, font.name
        widths.append(ink.mean())
    # strokes of many widths: the ink fraction varies a lot over the faces
    assert max(widths) > 2 * min(widths)


def test_renderers_are_deterministic_by_seed_and_vary_between_draws():
    for render in (render_character, render_digit):
        first = render("S" if render is render_character else "5", np.random.default_rng(7))
        again = render("S" if render is render_character else "5", np.random.default_rng(7))
        np.testing.assert_array_equal(first, again)
        rng = np.random.default_rng(8)
        draws = [render("S" if render is render_character else "5", rng) for _ in range(6)]
        assert len({d.tobytes() for d in draws}) == 6


def test_classes_differ_more_than_faces_of_one_class():
    """A letter is recognisable across typefaces: nearest-mean classification of the renders by
    pixels alone is far above chance (the classifier and the GAN can learn the classes)."""
    rng = np.random.default_rng(3)
    names = CLASS_NAMES["char"]
    train = np.stack([[render_character(c, rng)[::4, ::4, 0] / 255.0 for _ in range(12)] for c in names])
    test = np.stack([[render_character(c, rng)[::4, ::4, 0] / 255.0 for _ in range(6)] for c in names])
    means = train.mean(axis=1).reshape(len(names), -1)
    flat = test.reshape(len(names) * 6, -1)
    predicted = np.argmin(((flat[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = (predicted == np.repeat(np.arange(len(names)), 6)).mean()
    assert accuracy > 0.5


def test_a_data_root_of_an_older_renderer_is_refused_not_mixed(tmp_path):
    write_synthetic_set(tmp_path, "char", seed=1, **TINY)
    marker = tmp_path / "images" / "train" / "synthetic.json"
    assert read_json(marker)["renderer_version"] == RENDERER_VERSION
    # the same version rewrites in place
    write_synthetic_set(tmp_path, "char", seed=1, **TINY)
    # images of the first renderer carried no marker
    marker.unlink()
    with pytest.raises(DataError, match=r"images/train: holds built-in images of an older renderer"):
        write_synthetic_set(tmp_path, "char", seed=1, **TINY)
    marker.write_text('{"renderer_version": 1}')
    with pytest.raises(DataError, match="renderer version 1, not of the current version"):
        check_synthetic_images(tmp_path / "images" / "train", CLASS_NAMES["char"])
    # folders of the real data (other file names, no marker) are not ours to judge
    real = tmp_path / "real"
    (real / "A").mkdir(parents=True)
    (real / "A" / "img_001.jpg").write_bytes(b"")
    check_synthetic_images(real, CLASS_NAMES["char"])


@pytest.mark.slow
def test_a_linear_model_is_far_from_perfect_but_the_signal_is_there():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    arrays = make_synthetic_eeg("char", seed=45)
    y_train, y_test = arrays["y_train"].argmax(1), arrays["y_test"].argmax(1)

    flat_train = arrays["x_train"].reshape(len(y_train), -1)
    flat_test = arrays["x_test"].reshape(len(y_test), -1)
    scaler = StandardScaler().fit(flat_train)
    linear = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(flat_train), y_train)
    linear_accuracy = linear.score(scaler.transform(flat_test), y_test)
    assert 0.3 < linear_accuracy < 0.9

    # Shift-invariant (spectral) features of the normalised trials separate the classes well:
    # what a linear model misses is learnable.
    def spectra(x):
        trials = preprocess_numpy(x)
        return np.abs(np.fft.rfft(trials - trials.mean(axis=1, keepdims=True), axis=1)).reshape(len(x), -1)

    scaler = StandardScaler().fit(spectra(arrays["x_train"]))
    spectral = LogisticRegression(C=0.1, max_iter=2000)
    spectral.fit(scaler.transform(spectra(arrays["x_train"])), y_train)
    assert spectral.score(scaler.transform(spectra(arrays["x_test"])), y_test) > linear_accuracy + 0.05
