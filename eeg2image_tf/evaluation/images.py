"""The images an evaluation reads, chunk by chunk: generated in memory, from a generated folder, or
real images (the test images, the training images); and one pass over them that feeds every
consumer (Inception, the classifier, feature spaces such as the gradient histograms, the grid), so
that 50,000 images never sit in memory together.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from ..data import list_image_folder, load_images
from ..errors import DataError
from ..generation import decode_jpeg, iterate_generated, jpeg_round_trip, read_manifest
from ..io_utils import progress_bar
from ..models.inference import to_uint8
from ..runs import MANIFEST_FILE, TEST_SPLIT, image_split_folder, training_image_folder

GRID_COLUMNS = 8
CHUNK_SIZE = 500
REAL_IMAGE_SIZE = 128


@dataclasses.dataclass(frozen=True)
class ImageChunk:
    """``images`` uint8 ``(n, H, W, 3)`` RGB; ``class_index`` int64 ``(n,)``; ``source_trial`` int64
    ``(n,)``, the test trial each generated image was conditioned on, when known."""

    images: np.ndarray
    class_index: np.ndarray
    source_trial: Optional[np.ndarray] = None


def uint8_to_tanh_range(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 [-1, 1], the range the classifier was trained on."""
    return (np.asarray(images, dtype=np.float32) - np.float32(127.5)) / np.float32(127.5)


def generated_chunks(sources, per_class: int, batch_size: int, seed: int,
                     jpeg_quality: Optional[int], precision: str = "float32", forward=None,
                     latent_range: float = 1.0) -> Iterator[ImageChunk]:
    """Images generated in memory exactly as ``generate`` would write them (class-major order).
    ``forward`` and ``latent_range``: as :func:`~eeg2image_tf.generation.iterate_generated`
    takes them."""
    for batch in iterate_generated(sources.generator, sources.features_by_class, per_class,
                                   batch_size, seed, trials_by_class=sources.trials_by_class,
                                   latent_dim=sources.latent_dim, latent_range=latent_range,
                                   precision=precision, forward=forward):
        images = batch.images if jpeg_quality is None else jpeg_round_trip(batch.images,
                                                                            jpeg_quality)
        yield ImageChunk(images=images, class_index=batch.class_index, source_trial=batch.source_trial)


def list_generated_folder(images_dir: str | Path,
                          class_names: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """Files and condition classes of a generated folder, class-major.

    ``manifest.csv`` decides when present (it knows the conditioning class of every file); otherwise
    the class folders, matched to ``class_names`` by name.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: generated image folder not found")
    index_of = {name: c for c, name in enumerate(class_names)}
    manifest = images_dir / MANIFEST_FILE
    if manifest.exists():
        rows = read_manifest(manifest)
        for row in rows:
            if index_of.get(row.class_name) != row.class_index:
                raise DataError(f"{manifest}: class {row.class_name!r} (index {row.class_index}) "
                                f"is not class {row.class_index} of this run "
                                f"({', '.join(class_names)})")
        paths = [images_dir / row.file for row in rows]
        labels = np.array([row.class_index for row in rows], dtype=np.int64)
    else:
        folder = list_image_folder(images_dir)
        unknown = [name for name in folder.class_names if name not in index_of]
        if unknown:
            raise DataError(f"{images_dir}: class folder(s) {', '.join(unknown)} are not classes "
                            f"of this run ({', '.join(class_names)})")
        paths = [Path(p) for p in folder.paths]
        labels = np.array([index_of[folder.class_names[i]] for i in folder.labels], dtype=np.int64)
    if not paths:
        raise DataError(f"{images_dir}: no generated images")
    order = np.argsort(labels, kind="stable")
    return [paths[i] for i in order], labels[order]


def generated_trials(images_dir: str | Path, paths: Sequence[Path]) -> Optional[np.ndarray]:
    """The test trial each of ``paths`` (files of a generated folder) was conditioned on, int64
    ``(N,)``, from the folder's ``manifest.csv``; None without one."""
    manifest = Path(images_dir) / MANIFEST_FILE
    if not manifest.exists():
        return None
    trial_of = {(Path(images_dir) / row.file): row.source_trial for row in read_manifest(manifest)}
    return np.array([trial_of[Path(path)] for path in paths], dtype=np.int64)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image listed but not found") from None
    return decode_jpeg(data, name=str(path))


def folder_chunks(paths: Sequence[Path], labels: np.ndarray, chunk_size: int = CHUNK_SIZE,
                  trials: Optional[np.ndarray] = None) -> Iterator[ImageChunk]:
    """Decode ``paths`` chunk by chunk on a few threads (OpenCV releases the GIL); ``trials``: each
    file's source trial (:func:`generated_trials`), when known."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), chunk_size):
            images = list(pool.map(_read_rgb, paths[start:start + chunk_size]))
            shapes = {image.shape for image in images}
            if len(shapes) != 1:
                raise DataError(f"{paths[start].parent.parent}: generated images of different "
                                f"sizes {sorted(shapes)}")
            yield ImageChunk(images=np.stack(images), class_index=labels[start:start + chunk_size],
                             source_trial=None if trials is None else trials[start:start + chunk_size])


def real_image_folder(config, sources) -> tuple[Optional[Path], str]:
    """The real images FID compares with: ``config.real_images`` or the run's ``images/test``."""
    if config.real_images:
        return Path(config.real_images), ""
    if sources.images_root is None:
        return None, "the run names no image folder; pass --real-images"
    folder = image_split_folder(sources.images_root, TEST_SPLIT)
    if folder is None:
        return None, f"no test image folder beside {sources.images_root}; pass --real-images"
    return folder, ""


def training_folder(sources) -> tuple[Optional[Path], str]:
    """The images the GAN trained on (the reference of precision and recall), or None and a reason."""
    if sources.images_root is None:
        return None, "the run names no image folder it trained on"
    folder = training_image_folder(sources.images_root)
    if not folder.is_dir():
        return None, f"{folder}: the training images are not there"
    return folder, ""


def real_images_at(folder: Path, indices: Sequence[int], size: int = REAL_IMAGE_SIZE) -> np.ndarray:
    """uint8 ``(n, size, size, 3)``: the images at ``indices`` of :func:`real_chunks`' order."""
    listing = list_image_folder(folder)
    images = load_images([listing.paths[int(i)] for i in indices], size=size)
    return to_uint8(images, rounding="nearest")


def real_chunks(folder: Path, class_names: Sequence[str],
                chunk_size: int = CHUNK_SIZE) -> Iterator[ImageChunk]:
    """Real images at the GAN's 128x128 (``data.load_images``), as uint8, with their classes."""
    listing = list_image_folder(folder)
    index_of = {name: c for c, name in enumerate(class_names)}
    labels = np.array([index_of.get(listing.class_names[i], -1) for i in listing.labels],
                      dtype=np.int64)
    for start in range(0, len(listing), chunk_size):
        images = load_images(listing.paths[start:start + chunk_size], size=REAL_IMAGE_SIZE)
        # load_images maps 0 -> -1 and 255 -> 1 exactly, so this recovers the decoded bytes.
        pixels = to_uint8(images, rounding="nearest")
        yield ImageChunk(images=pixels, class_index=labels[start:start + chunk_size])


@dataclasses.dataclass
class PassResult:
    """What one pass over the images collected (arrays in image order)."""

    class_index: np.ndarray
    count: int
    inception_features: Optional[np.ndarray] = None
    inception_probs: Optional[np.ndarray] = None
    classifier_features: Optional[np.ndarray] = None
    classifier_probs: Optional[np.ndarray] = None
    grid: Optional[list[np.ndarray]] = None
    features: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    source_trial: Optional[np.ndarray] = None       # when every chunk knew its images' trials
    by_trial: Optional[dict[int, list[np.ndarray]]] = None  # the first images of ``keep_trials``


FeatureSpace = Callable[[np.ndarray], np.ndarray]


def run_pass(chunks: Iterator[ImageChunk], inception=None, classifier=None,
             grid_classes: Optional[int] = None, grid_columns: int = GRID_COLUMNS,
             total: Optional[int] = None, desc: str = "evaluate",
             show_progress: bool = False,
             feature_spaces: Optional[Mapping[str, FeatureSpace]] = None,
             keep_trials: Sequence[int] = (), per_trial: int = 3) -> PassResult:
    """Feed every chunk to the Inception backend, the classifier and the feature spaces; keep grid
    samples, and the first ``per_trial`` images of each trial in ``keep_trials`` (chunks that know
    their trials).

    ``inception.compute(uint8 0-255) -> (pool_features, probs)``;
    ``classifier.features_and_probs(float [-1, 1]) -> (features, probs)``;
    ``feature_spaces[name](uint8 (n, H, W, 3)) -> (n, D)``, collected in ``PassResult.features``.
    """
    spaces = dict(feature_spaces or {})
    collected: dict[str, list[np.ndarray]] = {"class_index": [], "inception_features": [],
                                              "inception_probs": [], "classifier_features": [],
                                              "classifier_probs": [], "source_trial": [],
                                              **{f"space:{name}": [] for name in spaces}}
    grid = [[] for _ in range(grid_classes)] if grid_classes else None
    by_trial: dict[int, list[np.ndarray]] = {int(trial): [] for trial in keep_trials}
    trials_known = True
    bar = progress_bar(total, desc=desc, unit="img") if show_progress else None
    count = 0
    for chunk in chunks:
        collected["class_index"].append(np.asarray(chunk.class_index, dtype=np.int64))
        if inception is not None:
            features, probs = inception.compute(chunk.images)
            collected["inception_features"].append(np.asarray(features, dtype=np.float32))
            collected["inception_probs"].append(np.asarray(probs, dtype=np.float64))
        if classifier is not None:
            features, probs = classifier.features_and_probs(uint8_to_tanh_range(chunk.images))
            collected["classifier_features"].append(np.asarray(features, dtype=np.float32))
            collected["classifier_probs"].append(np.asarray(probs, dtype=np.float64))
        for name, space in spaces.items():
            collected[f"space:{name}"].append(np.asarray(space(chunk.images), dtype=np.float32))
        if grid is not None:
            for image, c in zip(chunk.images, chunk.class_index):
                if 0 <= c < grid_classes and len(grid[c]) < grid_columns:
                    grid[c].append(image)
        if chunk.source_trial is None:
            trials_known = False
        else:
            collected["source_trial"].append(np.asarray(chunk.source_trial, dtype=np.int64))
            for image, trial in zip(chunk.images, chunk.source_trial.tolist()):
                if trial in by_trial and len(by_trial[trial]) < per_trial:
                    by_trial[trial].append(image)
        count += len(chunk.images)
        if bar is not None:
            bar.update(len(chunk.images))
    if bar is not None:
        bar.close()
    if count == 0:
        raise DataError(f"{desc}: no images")

    def joined(key: str) -> Optional[np.ndarray]:
        return np.concatenate(collected[key]) if collected[key] else None

    grid_arrays = None
    if grid is not None:
        grid_arrays = [np.stack(row) if row else np.zeros((0, 1, 1, 3), np.uint8) for row in grid]
    return PassResult(class_index=joined("class_index"), count=count,
                      inception_features=joined("inception_features"),
                      inception_probs=joined("inception_probs"),
                      classifier_features=joined("classifier_features"),
                      classifier_probs=joined("classifier_probs"), grid=grid_arrays,
                      features={name: joined(f"space:{name}") for name in spaces},
                      source_trial=joined("source_trial") if trials_known else None,
                      by_trial=by_trial if trials_known and by_trial else None)
