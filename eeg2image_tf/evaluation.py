"""Evaluation of a GAN run: Inception Score and FID, conditional accuracy, encoder probes, figures.

The images come from a folder written by ``generate`` (``--images-dir``), or are generated in memory
(``per_class`` per class, 100 by default so that evaluation takes minutes, not the hour that the
paper's 5000 per class take here; IS and FID from small sets are biased, so compare numbers only at
the same ``per_class``). In-memory images go through JPEG at the ``generate`` quality, so that they
are the pixels a folder would hold. Either way the images are processed chunk by chunk: 50,000 of them
never sit in memory together.

Results go into ``<run>/metrics.json`` under the key ``evaluation`` (other keys are kept) and the
figures into ``<run>/figures/``. A metric whose network is missing is recorded as
``{"available": false, "reason": ...}`` instead of failing the whole evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .errors import DataError, Eeg2ImageError
from .io_utils import atomic_write_json, read_json

METRICS_FILE = "metrics.json"
EVALUATION_KEY = "evaluation"
FIGURES_DIR = "figures"
GRID_FILE = "generated_grid.png"
LOSS_CURVES_FILE = "loss_curves.png"
TSNE_FILE = "tsne.png"
GRID_COLUMNS = 8
CHUNK_SIZE = 500
REAL_IMAGE_SIZE = 128


# --------------------------------------------------------------------------------------------------
# Image sources: chunks of uint8 RGB images with the class that conditioned them
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageChunk:
    """``images`` uint8 ``(n, H, W, 3)`` RGB; ``class_index`` int64 ``(n,)``."""

    images: np.ndarray
    class_index: np.ndarray


def uint8_to_tanh_range(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 [-1, 1], the range the classifier was trained on."""
    return (np.asarray(images, dtype=np.float32) - np.float32(127.5)) / np.float32(127.5)


def generated_chunks(sources, per_class: int, batch_size: int, seed: int,
                     jpeg_quality: Optional[int],
                     precision: str = "float32") -> Iterator[ImageChunk]:
    """Images generated in memory exactly as ``generate`` would write them (class-major order)."""
    from .generation import iterate_generated, jpeg_round_trip

    for batch in iterate_generated(sources.generator, sources.features_by_class, per_class,
                                   batch_size, seed, trials_by_class=sources.trials_by_class,
                                   latent_dim=sources.latent_dim, precision=precision):
        images = batch.images if jpeg_quality is None else jpeg_round_trip(batch.images,
                                                                            jpeg_quality)
        yield ImageChunk(images=images, class_index=batch.class_index)


def list_generated_folder(images_dir: str | Path,
                          class_names: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """Files and condition classes of a generated folder, class-major.

    ``manifest.csv`` decides when present (it knows the conditioning class of every file); otherwise
    the class folders, matched to ``class_names`` by name.
    """
    from .generation import MANIFEST_NAME, read_manifest

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: generated image folder not found")
    index_of = {name: c for c, name in enumerate(class_names)}
    manifest = images_dir / MANIFEST_NAME
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
        from .data import list_image_folder

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


def _read_rgb(path: Path) -> np.ndarray:
    from .generation import decode_jpeg

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image listed but not found") from None
    return decode_jpeg(data, name=str(path))


def folder_chunks(paths: Sequence[Path], labels: np.ndarray,
                  chunk_size: int = CHUNK_SIZE) -> Iterator[ImageChunk]:
    """Decode ``paths`` chunk by chunk on a few threads (OpenCV releases the GIL)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), chunk_size):
            images = list(pool.map(_read_rgb, paths[start:start + chunk_size]))
            shapes = {image.shape for image in images}
            if len(shapes) != 1:
                raise DataError(f"{paths[start].parent.parent}: generated images of different "
                                f"sizes {sorted(shapes)}")
            yield ImageChunk(images=np.stack(images), class_index=labels[start:start + chunk_size])


def real_image_folder(config, sources) -> tuple[Optional[Path], str]:
    """The real images FID compares with: ``config.real_images`` or the run's ``images/test``."""
    from .generation import image_split_folder

    if config.real_images:
        return Path(config.real_images), ""
    if sources.images_root is None:
        return None, "the run names no image folder; pass --real-images"
    folder = image_split_folder(sources.images_root, "test")
    if folder is None:
        return None, f"no test image folder beside {sources.images_root}; pass --real-images"
    return folder, ""


def real_chunks(folder: Path, class_names: Sequence[str],
                chunk_size: int = CHUNK_SIZE) -> Iterator[ImageChunk]:
    """Real images at the GAN's 128x128 (``data.load_images``), as uint8, with their classes."""
    from .data import list_image_folder, load_images

    listing = list_image_folder(folder)
    index_of = {name: c for c, name in enumerate(class_names)}
    labels = np.array([index_of.get(listing.class_names[i], -1) for i in listing.labels],
                      dtype=np.int64)
    for start in range(0, len(listing), chunk_size):
        images = load_images(listing.paths[start:start + chunk_size], size=REAL_IMAGE_SIZE)
        # load_images maps 0 -> -1 and 255 -> 1 exactly, so this recovers the decoded bytes.
        pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
        yield ImageChunk(images=pixels, class_index=labels[start:start + chunk_size])


# --------------------------------------------------------------------------------------------------
# One pass over a source, feeding every consumer
# --------------------------------------------------------------------------------------------------

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


def run_pass(chunks: Iterator[ImageChunk], inception=None, classifier=None,
             grid_classes: Optional[int] = None, grid_columns: int = GRID_COLUMNS,
             total: Optional[int] = None, desc: str = "evaluate",
             show_progress: bool = False) -> PassResult:
    """Feed every chunk to the Inception backend and the classifier; keep grid samples.

    ``inception.compute(uint8 0-255) -> (pool_features, probs)``;
    ``classifier.features_and_probs(float [-1, 1]) -> (features, probs)``.
    """
    from .training.common import progress_bar

    collected: dict[str, list[np.ndarray]] = {"class_index": [], "inception_features": [],
                                              "inception_probs": [], "classifier_features": [],
                                              "classifier_probs": []}
    grid = [[] for _ in range(grid_classes)] if grid_classes else None
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
        if grid is not None:
            for image, c in zip(chunk.images, chunk.class_index):
                if 0 <= c < grid_classes and len(grid[c]) < grid_columns:
                    grid[c].append(image)
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
                      classifier_probs=joined("classifier_probs"), grid=grid_arrays)


# --------------------------------------------------------------------------------------------------
# Metric sections
# --------------------------------------------------------------------------------------------------

def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def score_section(probs: np.ndarray, class_index: np.ndarray, class_names: Sequence[str],
                  splits: int, split_order: str, seed: int,
                  score: Callable[..., tuple[float, float]]) -> dict[str, Any]:
    """IS-style score (all classes, in both split orders, and per class) of ``probs`` ``(N, K)``.

    The rows are class-major, so ``class-sorted`` splits are the original's protocol. Per class, a
    class's images are split into ``min(splits, n_c)`` parts.
    """
    other_order = "class-sorted" if split_order == "mixed" else "mixed"
    if probs.shape[0] < splits:
        return unavailable(f"{probs.shape[0]} images are fewer than the {splits} splits")
    mean, std = score(probs, splits=splits, split_order=split_order, seed=seed)
    other_mean, other_std = score(probs, splits=splits, split_order=other_order, seed=seed)
    per_class: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        members = probs[class_index == c]
        if members.shape[0] == 0:
            per_class[name] = unavailable("no images of this class")
            continue
        class_mean, class_std = score(members, splits=min(splits, members.shape[0]),
                                      split_order=split_order, seed=seed)
        per_class[name] = {"available": True, "mean": class_mean, "std": class_std,
                           "count": int(members.shape[0])}
    return {"available": True, "mean": mean, "std": std, "splits": splits,
            "split_order": split_order, "count": int(probs.shape[0]),
            "other_split_order": {"split_order": other_order, "mean": other_mean, "std": other_std},
            "per_class": per_class}


def quiet_frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """:func:`metrics.frechet_distance` without scipy's singular-matrix warning.

    Sets smaller than the feature dimension give singular covariances; ``frechet_distance`` handles
    them and :func:`distance_section` notes it in the results, so the warning would only repeat it.
    """
    import warnings

    from scipy.linalg import LinAlgWarning

    from .metrics import frechet_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=LinAlgWarning)
        return frechet_distance(features_a, features_b)


def distance_section(generated_features: np.ndarray, real_features: np.ndarray,
                     real_folder: Path) -> dict[str, Any]:
    """Frechet distance between generated and real features (``(N, D)`` each)."""
    if generated_features.shape[0] < 2 or real_features.shape[0] < 2:
        return unavailable("FID needs at least 2 generated and 2 real images")
    section = {"available": True,
               "value": quiet_frechet_distance(generated_features, real_features),
               "generated_count": int(generated_features.shape[0]),
               "real_count": int(real_features.shape[0]), "real_images": str(real_folder)}
    smallest = min(generated_features.shape[0], real_features.shape[0])
    if smallest <= generated_features.shape[1]:
        section["note"] = (f"{smallest} images for {generated_features.shape[1]}-d features: the "
                           "covariance is singular and the distance biased upwards; compare only "
                           "at equal set sizes")
    return section


def encoder_section(sources, num_classes: int, seed: int) -> dict[str, Any]:
    """k-means (Hungarian), kNN and linear-probe accuracy of the encoder's test features."""
    from .data import preprocess
    from .generation import encoder_features
    from .metrics import kmeans_accuracy, knn_accuracy, linear_probe_accuracy

    splits = sources.splits
    train_features = encoder_features(sources.encoder,
                                      preprocess(splits.x_train, method=sources.normalisation))
    test_features = sources.test_features
    kmeans, _ = kmeans_accuracy(test_features, splits.y_test, n_clusters=num_classes,
                                random_state=45)
    return {"kmeans_accuracy": kmeans,
            "knn_accuracy": knn_accuracy(train_features, splits.y_train, test_features,
                                         splits.y_test),
            "linear_probe_accuracy": linear_probe_accuracy(train_features, splits.y_train,
                                                           test_features, splits.y_test,
                                                           seed=seed),
            "train_trials": int(train_features.shape[0]),
            "test_trials": int(test_features.shape[0]),
            "chance": 1.0 / num_classes}


def recorded_classifier_runs(run: str | Path) -> list[Path]:
    """Classifier runs that earlier evaluations of the GAN ``run`` used, newest record first.

    Read from the run's own records: ``metrics.json`` (``evaluation.classifier.run``, written by
    ``evaluate``) and the curves' ``curve*.json`` (``settings.classifier``, written by ``curve``).
    """
    run = Path(run)
    records: list[tuple[float, Path]] = []
    metrics = run / "metrics.json"
    candidates = [(metrics, ("evaluation", "classifier", "run"))]
    candidates += [(path, ("settings", "classifier")) for path in sorted(run.glob("curve*.json"))
                   if not path.name.startswith("curve_config")]
    for path, keys in candidates:
        if not path.is_file():
            continue
        try:
            value: Any = read_json(path)
        except Eeg2ImageError:
            continue        # an unreadable record is no provenance; evaluation reports the rest
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value not in ("", "<given>"):
            records.append((path.stat().st_mtime, Path(value)))
    ordered = [path for _, path in sorted(records, key=lambda item: -item[0])]
    return list(dict.fromkeys(ordered))


def find_classifier_run(config) -> tuple[Optional[Path], list[Path]]:
    """Where the image classifier of an evaluation of ``config.run`` is, and where it was looked for.

    In order: ``config.classifier``; the classifier an earlier ``evaluate`` or ``curve`` of this
    run recorded (:func:`recorded_classifier_runs`); ``<run>/../image_classifier`` (the
    pipeline's layout).
    """
    if config.classifier:
        return Path(config.classifier), [Path(config.classifier)]
    looked = recorded_classifier_runs(config.run) + [Path(config.run).resolve().parent /
                                                      "image_classifier"]
    for path in looked:
        if path.exists():
            return path, looked
    return None, looked


def load_classifier_or_reason(config) -> tuple[Any, str, Optional[Path]]:
    """The image classifier that :func:`find_classifier_run` finds; else None and a reason."""
    path, looked = find_classifier_run(config)
    if path is None or not path.exists():
        if config.classifier:
            return None, f"no image classifier run at {config.classifier}", Path(config.classifier)
        recorded = [str(place) for place in looked[:-1]]
        also = f"; the run's records name {', '.join(recorded)}, which are gone" if recorded else \
            " and none recorded by an earlier evaluate or curve of this run"
        return None, (f"no image classifier run at {looked[-1]} (default location){also}; pass "
                      "--classifier RUN"), looked[-1]
    from .training.image_classifier import load_image_classifier

    return load_image_classifier(str(path)), "", path


class ReorderedClassifier:
    """A classifier whose probability columns are put into the run's class order."""

    def __init__(self, classifier, columns: np.ndarray):
        self.classifier = classifier
        self.columns = columns

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, probs = self.classifier.features_and_probs(images)
        return features, np.asarray(probs)[:, self.columns]


def align_classifier(classifier, class_names: Sequence[str]) -> tuple[Any, str]:
    """Match the classifier's classes to the run's by name: ``(classifier or None, reason)``."""
    names = getattr(classifier, "class_names", None)
    if names is None or tuple(names) == tuple(class_names):
        return classifier, ""
    if sorted(names) != sorted(class_names):
        return None, (f"the image classifier knows classes {', '.join(names)}, the run "
                      f"{', '.join(class_names)}")
    columns = np.array([list(names).index(name) for name in class_names])
    return ReorderedClassifier(classifier, columns), ""


def classifier_section(result: PassResult, real: Optional[PassResult], class_names: Sequence[str],
                       config, path: Path) -> dict[str, Any]:
    """Conditional accuracy and separability, and the classifier's IS/FID analogues."""
    from .metrics import classifier_score, conditional_separability, per_class_accuracy

    labels = result.class_index
    predictions = result.classifier_probs.argmax(axis=1)
    section: dict[str, Any] = {
        "available": True, "run": str(path),
        "conditional_accuracy": float(np.mean(predictions == labels)),
        "per_class_accuracy": per_class_accuracy(predictions, labels, class_names),
        "conditional_separability": conditional_separability(
            result.classifier_features, labels, n_clusters=len(class_names)),
        "classifier_score": score_section(result.classifier_probs, labels, class_names,
                                          config.splits, config.split_order, config.seed,
                                          classifier_score),
        "chance": 1.0 / len(class_names),
    }
    if real is not None and real.count >= 2:
        known = real.class_index >= 0
        section["real_accuracy"] = float(np.mean(
            real.classifier_probs[known].argmax(axis=1) == real.class_index[known]))
        section["classifier_fid"] = quiet_frechet_distance(result.classifier_features,
                                                           real.classifier_features)
    return section


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

def _encoder_run_candidates(config, sources) -> list[Path]:
    if config.encoder_run:
        return [Path(config.encoder_run)]
    encoder = getattr(sources.gan_config, "encoder", None)
    if not encoder:
        return []
    # The GAN config may name the encoder run, its checkpoints/ folder, or one checkpoint prefix.
    path = Path(encoder)
    return [path, path.parent, path.parent.parent]


def make_figures(config, sources, grid: Sequence[np.ndarray],
                 kmeans: Optional[float]) -> dict[str, Any]:
    """Write the three figures into ``<run>/figures/``; returns their paths and any reasons."""
    from . import figures

    out = Path(config.run) / FIGURES_DIR
    written: dict[str, Any] = {"dir": str(out)}
    notes: dict[str, str] = {}

    written["generated_grid"] = str(figures.save_generated_grid(grid, sources.class_names,
                                                                out / GRID_FILE,
                                                                columns=GRID_COLUMNS))

    events = Path(config.run) / "tensorboard" / "train"
    if events.is_dir():
        try:
            path, tags = figures.save_loss_curves(events, out / LOSS_CURVES_FILE)
            written["loss_curves"] = str(path)
            written["loss_curve_tags"] = tags
        except DataError as exc:
            notes["loss_curves"] = str(exc)
    else:
        notes["loss_curves"] = f"{events}: no TensorBoard events"

    existing = next((d / TSNE_FILE for d in _encoder_run_candidates(config, sources)
                     if (d / TSNE_FILE).is_file()), None)
    if existing is not None:
        written["tsne"] = str(figures.copy_figure(existing, out / TSNE_FILE))
        written["tsne_source"] = str(existing)
    else:
        title = "t-SNE of the EEG test features"
        if kmeans is not None:
            title += f" (k-means accuracy {kmeans:.3f})"
        written["tsne"] = str(figures.save_tsne(sources.test_features, sources.splits.y_test,
                                                sources.class_names, out / TSNE_FILE, title=title))
        written["tsne_source"] = "computed (perplexity 40, 700 iterations)"
    if notes:
        written["notes"] = notes
    return written


# --------------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------------

def _headline_inception(inception: dict[str, Any], fid: dict[str, Any]) -> str:
    if not inception.get("available"):
        return f"unavailable: {inception.get('reason')}"
    text = (f"IS {inception['mean']:.3f} +- {inception['std']:.3f} "
            f"({inception['splits']} {inception['split_order']} splits)")
    if fid.get("available"):
        text += f", FID {fid['value']:.2f}"
    return text


def evaluate_run(config, inception_backend: Any = None, classifier: Any = None,
                 show_progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate the GAN run of ``config`` (:class:`~eeg2image_tf.config.EvaluateConfig`).

    ``inception_backend`` and ``classifier`` override the ones the config names (objects with
    ``.compute`` / ``.features_and_probs``, e.g. test doubles). Returns the dict stored under
    ``evaluation`` in ``<run>/metrics.json``; its top-level scalars are the headline numbers
    (``conditional_accuracy``, ``conditional_separability``, ``kmeans_accuracy``, ``inception``
    as text...), the sections hold the details. Prints a table unless ``echo`` is None.
    """
    from .config import config_to_dict
    from .generation import load_generation_sources
    from .inception import load_backend
    from .metrics import SPLIT_ORDERS, inception_score

    if config.split_order not in SPLIT_ORDERS:
        raise Eeg2ImageError(f"--split-order must be one of {', '.join(SPLIT_ORDERS)}, "
                             f"got {config.split_order!r}")
    if config.per_class < 1 or config.splits < 1:
        raise Eeg2ImageError("--per-class and --splits must be at least 1")
    started = time.monotonic()
    sources = load_generation_sources(run=config.run, ema=config.ema)
    class_names = sources.class_names
    num_classes = len(class_names)

    # Networks: a missing one disables its metrics with a reason; a given but broken one is an error.
    inception_reason = ""
    if inception_backend is None:
        inception_backend, inception_reason = load_backend(graph=config.inception_graph,
                                                           weights=config.inception_weights)
    classifier_reason, classifier_path = "", None
    if classifier is None:
        classifier, classifier_reason, classifier_path = load_classifier_or_reason(config)
    else:
        classifier_path = Path(config.classifier or "<given>")
    if classifier is not None:
        classifier, classifier_reason = align_classifier(classifier, class_names)

    if config.images_dir:
        paths, labels = list_generated_folder(config.images_dir, class_names)
        chunks = folder_chunks(paths, labels)
        generated_info = {"source": str(config.images_dir), "count": len(paths)}
        total = len(paths)
    else:
        chunks = generated_chunks(sources, config.per_class, config.batch_size, config.seed,
                                  config.jpeg_quality, precision=config.precision)
        total = config.per_class * num_classes
        generated_info = {"source": "generated in memory", "per_class": config.per_class,
                          "count": total, "seed": config.seed, "jpeg_quality": config.jpeg_quality}
    generated = run_pass(chunks, inception_backend, classifier, grid_classes=num_classes,
                         total=total, desc="generated images", show_progress=show_progress)
    generated_info["count"] = generated.count
    generated_info["generator"] = _generator_kind(config)
    generated_info["per_class_counts"] = {name: int(np.sum(generated.class_index == c))
                                          for c, name in enumerate(class_names)}

    real = None
    real_folder, real_reason = real_image_folder(config, sources)
    if real_folder is not None and (inception_backend is not None or classifier is not None):
        real = run_pass(real_chunks(real_folder, class_names), inception_backend, classifier,
                        desc="real images", show_progress=show_progress)

    if inception_backend is None:
        inception = unavailable(inception_reason)
        fid = unavailable(inception_reason)
    else:
        inception = score_section(generated.inception_probs, generated.class_index, class_names,
                                  config.splits, config.split_order, config.seed, inception_score)
        inception["backend"] = getattr(inception_backend, "name", type(inception_backend).__name__)
        inception["paper_comparable"] = bool(getattr(inception_backend, "paper_comparable", False))
        fid = unavailable(real_reason) if real is None else \
            distance_section(generated.inception_features, real.inception_features, real_folder)

    if classifier is None:
        classifier_info = unavailable(classifier_reason)
    else:
        classifier_info = classifier_section(generated, real, class_names, config,
                                             classifier_path)

    encoder_info = encoder_section(sources, num_classes, config.seed)
    figures_info = make_figures(config, sources, generated.grid, encoder_info["kmeans_accuracy"]) \
        if config.figures else {}

    evaluation: dict[str, Any] = {
        "inception": _headline_inception(inception, fid),
        "inception_score_mean": inception.get("mean"),
        "inception_score_std": inception.get("std"),
        "fid": fid.get("value"),
        "conditional_accuracy": classifier_info.get("conditional_accuracy"),
        "conditional_separability": classifier_info.get("conditional_separability"),
        "kmeans_accuracy": encoder_info["kmeans_accuracy"],
        "knn_accuracy": encoder_info["knn_accuracy"],
        "linear_probe_accuracy": encoder_info["linear_probe_accuracy"],
        "class_names": list(class_names),
        "generated": generated_info,
        "inception_score": inception,
        "frechet_inception_distance": fid,
        "classifier": classifier_info,
        "encoder": encoder_info,
        "figures": figures_info,
        "seconds": round(time.monotonic() - started, 1),
        "config": config_to_dict(config),
    }
    write_evaluation(config.run, evaluation)
    if echo is not None:
        echo(format_table(evaluation))
    return evaluation


def _generator_kind(config) -> str:
    """``"ema"`` when the evaluated generator is the run's weight average, else ``"trained"``."""
    if config.images_dir:
        return "as generated"       # generate_config.json beside the images says which
    if not config.ema:
        return "trained"
    from .checkpoints import checkpoint_has_ema

    return "ema" if checkpoint_has_ema(config.run) else "trained"


def write_evaluation(run: str | Path, evaluation: dict[str, Any]) -> Path:
    """Merge ``evaluation`` into ``<run>/metrics.json`` under ``evaluation`` (other keys kept)."""
    path = Path(run) / METRICS_FILE
    metrics = read_json(path) if path.exists() else {}
    if not isinstance(metrics, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    metrics[EVALUATION_KEY] = evaluation
    return atomic_write_json(path, metrics)


# --------------------------------------------------------------------------------------------------
# The printed table
# --------------------------------------------------------------------------------------------------

def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def _score_text(section: dict[str, Any]) -> str:
    if not section.get("available"):
        return f"unavailable ({section.get('reason')})"
    return f"{section['mean']:.3f} +- {section['std']:.3f}"


def format_table(evaluation: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers, per-class scores and figure paths."""
    inception = evaluation["inception_score"]
    fid = evaluation["frechet_inception_distance"]
    classifier = evaluation["classifier"]
    encoder = evaluation["encoder"]
    generated = evaluation["generated"]
    lines = [f"Evaluation of {evaluation['config']['run']} "
             f"({generated['count']} images: {generated['source']})", ""]

    lines.append(f"  {'metric':<34} value")
    lines.append(f"  {'-' * 34} {'-' * 30}")
    if inception.get("available"):
        lines.append(f"  {'Inception Score (' + inception['split_order'] + ')':<34} "
                     f"{_score_text(inception)}   [{inception.get('backend')}]")
        other = inception["other_split_order"]
        lines.append(f"  {'Inception Score (' + other['split_order'] + ')':<34} "
                     f"{other['mean']:.3f} +- {other['std']:.3f}")
    else:
        lines.append(f"  {'Inception Score':<34} unavailable: {inception.get('reason')}")
    if fid.get("available"):
        fid_text = _number(fid.get("value"), 2)
    elif fid.get("reason") == inception.get("reason"):
        fid_text = "unavailable (as above)"
    else:
        fid_text = f"unavailable: {fid.get('reason')}"
    lines.append(f"  {'FID (pool_3, vs real test images)':<34} {fid_text}")
    if classifier.get("available"):
        lines.append(f"  {'conditional accuracy':<34} {_number(classifier['conditional_accuracy'])}"
                     f"   (chance {classifier['chance']:.3f})")
        lines.append(f"  {'conditional separability':<34} "
                     f"{_number(classifier['conditional_separability'])}")
        lines.append(f"  {'classifier score':<34} {_score_text(classifier['classifier_score'])}")
        if "classifier_fid" in classifier:
            lines.append(f"  {'classifier FID':<34} {_number(classifier['classifier_fid'], 2)}")
            lines.append(f"  {'classifier accuracy, real test':<34} "
                         f"{_number(classifier['real_accuracy'])}")
    else:
        lines.append(f"  {'conditional accuracy':<34} unavailable: {classifier.get('reason')}")
    lines.append(f"  {'encoder k-means accuracy (test)':<34} {_number(encoder['kmeans_accuracy'])}")
    lines.append(f"  {'encoder kNN accuracy (test)':<34} {_number(encoder['knn_accuracy'])}")
    lines.append(f"  {'encoder linear probe (test)':<34} "
                 f"{_number(encoder['linear_probe_accuracy'])}")

    names = evaluation["class_names"]
    if inception.get("available") or classifier.get("available"):
        lines += ["", f"  {'class':<16} {'IS':>16} {'cond. accuracy':>15} {'classifier score':>18}"]
        for name in names:
            is_text = _score_text(inception["per_class"][name]) if inception.get("available") \
                else "n/a"
            accuracy = classifier.get("per_class_accuracy", {}).get(name) \
                if classifier.get("available") else None
            class_score = classifier["classifier_score"].get("per_class", {}).get(name, {}) \
                if classifier.get("available") and classifier["classifier_score"].get("available") \
                else {}
            lines.append(f"  {name:<16} {is_text:>16} {_number(accuracy):>15} "
                         f"{_score_text(class_score) if class_score else 'n/a':>18}")

    figures_info = evaluation.get("figures") or {}
    if figures_info:
        lines += ["", f"  figures in {figures_info['dir']}:"]
        for key in ("generated_grid", "loss_curves", "tsne"):
            if key in figures_info:
                lines.append(f"    {key:<15} {figures_info[key]}")
        for key, note in figures_info.get("notes", {}).items():
            lines.append(f"    {key:<15} not made: {note}")
    return "\n".join(lines)
