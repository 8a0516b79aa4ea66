"""Image folders (natsort class order), decoding to [-1, 1] RGB, and the original's pairing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from eeg2image_tf.data import ImageFolder, list_image_folder, load_image, load_images, pair_images
from eeg2image_tf.errors import DataError


def write_image(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))
    return path


def solid(height, width, rgb):
    return np.broadcast_to(np.asarray(rgb, np.uint8), (height, width, 3)).copy()


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "images" / "train"
    # Natural order puts class2 before class10 (a plain sort would not).
    for name, count in (("class10", 2), ("class2", 3), ("class1", 1)):
        for k in range(count):
            write_image(root / name / f"img{k + 1}.png", solid(40, 60, (k * 50, 0, 0)))
    write_image(root / "class2" / "img10.jpg", solid(8, 8, (0, 0, 0)))
    (root / "class2" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    return root


def test_class_index_is_natsort_order_of_folders(image_root):
    folder = list_image_folder(image_root)
    assert isinstance(folder, ImageFolder)
    assert folder.class_names == ("class1", "class2", "class10")
    assert folder.labels.dtype == np.int64
    np.testing.assert_array_equal(folder.counts(), [1, 4, 2])
    class2 = [p.split("/")[-1] for p, y in zip(folder.paths, folder.labels) if y == 1]
    assert class2 == ["img1.png", "img2.png", "img3.png", "img10.jpg"]  # natural order, txt skipped
    assert len(folder) == 7 and folder.num_classes == 3


def test_a_sets_class_order_wins_when_the_folders_are_its_classes(image_root):
    # EEGCVPR40 keeps the release's order of WordNet ids; the image folders must index classes alike.
    folder = list_image_folder(image_root, class_names=("class10", "class1", "class2"))
    assert folder.class_names == ("class10", "class1", "class2")
    np.testing.assert_array_equal(folder.counts(), [2, 1, 4])
    assert all(f"/{folder.class_names[y]}/" in p for p, y in zip(folder.paths, folder.labels))
    # Names that are not exactly the folders (e.g. ThoughtViz's, spelt otherwise) keep natsort order.
    for other in (("Class1", "class2", "class10"), ("class1", "class2")):
        assert list_image_folder(image_root, class_names=other).class_names == ("class1", "class2", "class10")


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        list_image_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no class folders"):
        list_image_folder(tmp_path)
    (tmp_path / "A").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_image_folder(tmp_path)


def test_load_image_is_rgb_in_range_and_resized(tmp_path):
    rgb = solid(300, 200, (255, 0, 128))
    path = write_image(tmp_path / "big.png", rgb)
    image = load_image(path)
    assert image.shape == (128, 128, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[..., 0], 1.0)  # red stays in channel 0: BGR was converted
    np.testing.assert_allclose(image[..., 1], -1.0)
    np.testing.assert_allclose(image[..., 2], (128 - 127.5) / 127.5, atol=1e-6)
    small = load_image(write_image(tmp_path / "small.png", solid(10, 10, (0, 255, 0))), size=32)
    assert small.shape == (32, 32, 3)
    assert small[..., 1].min() == 1.0 and small[..., 0].max() == -1.0


def test_shrinking_averages_instead_of_aliasing(tmp_path):
    # One-pixel stripes: area interpolation gives their mean grey, not a sample of either.
    stripes = np.zeros((256, 256, 3), np.uint8)
    stripes[:, ::2] = 255
    image = load_image(write_image(tmp_path / "stripes.png", stripes))
    np.testing.assert_allclose(image, 0.0, atol=0.01)


def test_load_images_keeps_order(image_root):
    folder = list_image_folder(image_root)
    bank = load_images(folder.paths, size=16)
    assert bank.shape == (7, 16, 16, 3) and bank.dtype == np.float32
    assert bank.min() >= -1.0 and bank.max() <= 1.0
    for k, path in enumerate(folder.paths):
        np.testing.assert_array_equal(bank[k], load_image(path, size=16))


def test_unreadable_image_is_named(tmp_path):
    broken = tmp_path / "A" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(DataError, match=r"broken.jpg: not a readable image"):
        load_images([broken])
    with pytest.raises(DataError, match=r"gone.png: image file not found"):
        load_image(tmp_path / "gone.png")


def test_pairing_is_class_correct_and_reproducible():
    image_labels = np.repeat(np.arange(4), [3, 5, 2, 4])
    eeg_labels = np.random.default_rng(1).integers(0, 4, 200)
    pairs = pair_images(eeg_labels, image_labels, seed=45)
    assert pairs.dtype == np.int64 and pairs.shape == (200,)
    np.testing.assert_array_equal(image_labels[pairs], eeg_labels)
    np.testing.assert_array_equal(pairs, pair_images(eeg_labels, image_labels, seed=45))
    assert not np.array_equal(pairs, pair_images(eeg_labels, image_labels, seed=46))
    # every image of a class gets used somewhere with 200 draws over at most 5 candidates
    assert set(pairs.tolist()) == set(range(len(image_labels)))


def test_pairing_follows_the_original_random_stream():
    # The original: np.random.seed(45), then per trial np.random.choice(paths_of_class, size=(1,))[0],
    # training trials first, test trials next in the same stream.
    image_labels = np.repeat(np.arange(3), [4, 2, 6])
    paths = [f"img{k}" for k in range(len(image_labels))]
    train_one_hot = np.eye(3)[[2, 0, 1, 1, 2, 0, 2]]
    test_labels = np.array([1, 2, 0])
    legacy = np.random.RandomState(45)
    by_class = {c: [p for p, y in zip(paths, image_labels) if y == c] for c in range(3)}
    expected_train = [legacy.choice(by_class[int(np.argmax(row))], size=(1,), replace=True)[0]
                      for row in train_one_hot]
    expected_test = [legacy.choice(by_class[int(c)], size=(1,), replace=True)[0] for c in test_labels]

    stream = np.random.RandomState(45)
    train_pairs = pair_images(train_one_hot, image_labels, seed=stream)
    test_pairs = pair_images(test_labels, image_labels, seed=stream)
    assert [paths[i] for i in train_pairs] == expected_train
    assert [paths[i] for i in test_pairs] == expected_test


def test_pairing_refuses_a_class_without_images():
    with pytest.raises(DataError, match=r"image class 'Dog' \(index 2\) has no images, but 1 EEG"):
        pair_images([0, 2, 1], [0, 0, 1], class_names=("Apple", "Car", "Dog"))
    with pytest.raises(DataError, match=r"index 7"):
        pair_images([7], [0, 1])
