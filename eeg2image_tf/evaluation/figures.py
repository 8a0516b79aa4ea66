"""Evaluation figures: a per-class grid of generated images, generated images beside their nearest
training images, GAN loss curves, the encoder's t-SNE.

Matplotlib runs on the Agg backend (no display needed) and every figure is written with
:func:`~eeg2image_tf.io_utils.atomic_savefig`. The grid is laid out in pixels, so its size is exact:
``title_height + rows * H`` by ``label_width + columns * W`` for ``H x W`` images.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from ..errors import DataError
from ..io_utils import atomic_path, atomic_savefig

GAN_LOSS_TAGS = ("gan/d_hinge", "gan/g_hinge", "gan/mode_seeking", "gan/g_total")
GRID_DPI = 100


def new_figure(width_inches: float, height_inches: float, dpi: int = 100):
    """A figure on its own Agg canvas: no pyplot, so no global backend or figure registry is touched
    (safe in threads, headless, and inside a notebook that uses another backend)."""
    figure = Figure(figsize=(width_inches, height_inches), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


# --------------------------------------------------------------------------------------------------
# Grid of generated images
# --------------------------------------------------------------------------------------------------

def grid_pixel_size(rows: int, columns: int, image_height: int, image_width: int,
                    label_width: int, title_height: int = 0) -> tuple[int, int]:
    """``(width, height)`` in pixels of :func:`save_generated_grid`'s PNG."""
    return label_width + columns * image_width, title_height + rows * image_height


TITLE_HEIGHT = 28     # pixels of the title band, when a grid has a title
PAIR_GAP = 4          # grey pixels between a generated image and its nearest training image


def save_generated_grid(images_by_class: Sequence[np.ndarray], class_names: Sequence[str],
                        destination: str | Path, columns: int = 8,
                        label_width: int = 160, title: str = "") -> Path:
    """One row per class (class name on the left), ``columns`` images per row, as a PNG.

    ``images_by_class[c]`` is uint8 ``(n_c, H, W, 3)`` RGB, ``n_c <= columns`` (missing cells stay
    white). A ``title`` takes a band of :data:`TITLE_HEIGHT` pixels above the images. The PNG
    measures exactly :func:`grid_pixel_size` pixels.
    """
    if len(images_by_class) != len(class_names) or not class_names:
        raise DataError(f"{destination}: {len(images_by_class)} image rows for "
                        f"{len(class_names)} class names")
    sample = next((row for row in images_by_class if len(row)), None)
    if sample is None:
        raise DataError(f"{destination}: no images to show")
    height, width = sample.shape[1:3]
    rows = len(class_names)
    mosaic = np.full((rows * height, columns * width, 3), 255, dtype=np.uint8)
    for r, row_images in enumerate(images_by_class):
        for col, image in enumerate(np.asarray(row_images)[:columns]):
            if image.shape[:2] != (height, width):
                raise DataError(f"{destination}: images of different sizes "
                                f"({image.shape[:2]} and {(height, width)})")
            mosaic[r * height:(r + 1) * height, col * width:(col + 1) * width] = image

    title_height = TITLE_HEIGHT if title else 0
    total_width, total_height = grid_pixel_size(rows, columns, height, width, label_width,
                                                title_height)
    figure = new_figure(total_width / GRID_DPI, total_height / GRID_DPI, dpi=GRID_DPI)
    left = label_width / total_width
    images_top = 1.0 - title_height / total_height
    axes = figure.add_axes((left, 0.0, 1.0 - left, images_top))
    axes.imshow(mosaic, interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    if title:
        figure.text(0.5, 1.0 - 0.5 * title_height / total_height, title, ha="center",
                    va="center", fontsize=10)
    # Font size in points from the row height in pixels, so that labels fit any image size.
    font_size = max(6.0, min(14.0, 0.18 * height * 72.0 / GRID_DPI))
    for r, name in enumerate(class_names):
        y = images_top * (1.0 - (r + 0.5) / rows)
        figure.text(left - 8.0 / total_width, y, str(name), ha="right", va="center",
                    fontsize=font_size)
    return atomic_savefig(figure, destination, dpi=GRID_DPI)


def save_nearest_training(generated_by_class: Sequence[np.ndarray],
                          nearest_by_class: Sequence[np.ndarray], class_names: Sequence[str],
                          destination: str | Path, space: str = "gradient-histogram") -> Path:
    """Each generated image beside its nearest training image in a feature space, one row a class.

    ``generated_by_class[c]`` and ``nearest_by_class[c]`` are uint8 ``(n_c, H, W, 3)``, pair ``i``
    of a row being generated image ``i`` and its neighbour; a grey bar of :data:`PAIR_GAP` pixels
    joins each pair and a white column of as many pixels separates the pairs. Copies show up as
    pairs that are the same picture; variety as pairs that differ while every neighbour is a
    different training image.
    """
    rows = []
    for generated, nearest in zip(generated_by_class, nearest_by_class):
        generated, nearest = np.asarray(generated), np.asarray(nearest)
        if len(generated) == 0:
            rows.append(generated)
            continue
        count, height = generated.shape[:2]
        gap = np.full((count, height, PAIR_GAP, 3), 128, np.uint8)
        space_after = np.full((count, height, PAIR_GAP, 3), 255, np.uint8)
        rows.append(np.concatenate([generated, gap, nearest, space_after], axis=2))
    columns = max(len(row) for row in rows) if rows else 0
    return save_generated_grid(rows, class_names, destination, columns=max(columns, 1),
                               label_width=80,
                               title=f"generated | nearest training image ({space} features)")


# --------------------------------------------------------------------------------------------------
# Loss curves from TensorBoard events
# --------------------------------------------------------------------------------------------------

def read_scalars(event_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar summary under ``event_dir``: ``{tag: (steps int64 (n,), values float64 (n,))}``.

    TF2's ``tf.summary.scalar`` stores scalars as tensors (plugin ``scalars``); TF1-style simple
    values are read too. A restarted (resumed) run's repeated steps are resolved by TensorBoard's
    own rule (later events win).
    """
    event_dir = Path(event_dir)
    if not event_dir.exists():
        raise DataError(f"{event_dir}: no TensorBoard events here")
    accumulator = event_accumulator.EventAccumulator(
        str(event_dir), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag in tags.get(event_accumulator.TENSORS, []):
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        events = accumulator.Tensors(tag)
        values = [float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)).reshape(-1)[0])
                  for e in events]
        scalars[tag] = (np.array([e.step for e in events], dtype=np.int64),
                        np.array(values, dtype=np.float64))
    for tag in tags.get(event_accumulator.SCALARS, []):
        events = accumulator.Scalars(tag)
        scalars[tag] = (np.array([e.step for e in events], dtype=np.int64),
                        np.array([e.value for e in events], dtype=np.float64))
    return scalars


def exponential_moving_average(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """TensorBoard-style smoothing (debiased so the curve starts at the first value)."""
    smoothed = np.empty(len(values), dtype=np.float64)
    running = 0.0
    for i, value in enumerate(values):
        running = weight * running + (1.0 - weight) * value
        smoothed[i] = running / (1.0 - weight ** (i + 1))
    return smoothed


def save_loss_curves(event_dir: str | Path, destination: str | Path,
                     tags: Optional[Sequence[str]] = None) -> tuple[Path, list[str]]:
    """Plot scalar curves from ``event_dir``, one panel per tag; returns ``(path, tags plotted)``.

    ``tags`` default: the GAN's ``gan/*`` losses that are present, else every scalar found.
    """
    scalars = read_scalars(event_dir)
    if tags is None:
        tags = [t for t in GAN_LOSS_TAGS if t in scalars] or sorted(scalars)
    tags = [t for t in tags if t in scalars and len(scalars[t][0])]
    if not tags:
        raise DataError(f"{event_dir}: no scalar summaries to plot")

    columns = 2 if len(tags) > 1 else 1
    rows = (len(tags) + columns - 1) // columns
    figure = new_figure(6.0 * columns, 3.2 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, tag in zip(axes.ravel(), tags):
        steps, values = scalars[tag]
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        axis.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=0.8, label="raw")
        if len(values) > 10:
            axis.plot(steps, exponential_moving_average(values), color="tab:blue",
                      linewidth=1.5, label="smoothed (EMA 0.9)")
            axis.legend(fontsize=8, loc="best")
        axis.set_title(tag)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    for axis in axes.ravel()[len(tags):]:
        axis.set_axis_off()
    figure.tight_layout()
    return atomic_savefig(figure, destination, dpi=100), list(tags)


# --------------------------------------------------------------------------------------------------
# t-SNE of encoder features
# --------------------------------------------------------------------------------------------------

def tsne_embedding(features: np.ndarray, perplexity: float = 40.0, iterations: int = 700,
                   random_state: int = 45) -> np.ndarray:
    """2-D t-SNE of ``features`` ``(N, D)`` -> ``(N, 2)`` (the original: perplexity 40, 700 iterations).

    The perplexity is lowered to ``N - 1`` for sets too small for it (scikit-learn requires
    perplexity < N); 250 is scikit-learn's minimum number of iterations (``max_iter``, ``n_iter``
    before scikit-learn 1.5).
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] < 3:
        raise DataError(f"t-SNE needs (N >= 3, D) features, got shape {features.shape}")
    perplexity = min(float(perplexity), features.shape[0] - 1.0)
    iteration_arg = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=random_state,
                **{iteration_arg: max(250, int(iterations))})
    return tsne.fit_transform(features)


def save_tsne(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
              destination: str | Path, title: str = "t-SNE of the EEG features",
              perplexity: float = 40.0, iterations: int = 700, random_state: int = 45,
              legend_outside: bool = False) -> Path:
    """Scatter plot of :func:`tsne_embedding` of ``features`` ``(N, D)``, coloured by class
    (``labels`` ``(N,)`` index ``class_names``), with a legend of class names; a 700 x 600 PNG.

    ``legend_outside``: the encoder run's layout (``select_encoder``): the legend right of the axes
    without a frame, classes without a point left out of it, ten colours in turn. Otherwise the
    legend sits inside (evaluation's layout), with twenty colours beyond ten classes.
    """
    points = tsne_embedding(features, perplexity, iterations, random_state)
    labels = np.asarray(labels).ravel()
    figure = new_figure(7.0, 6.0)
    axis = figure.subplots()
    colours = colormaps["tab10" if legend_outside or len(class_names) <= 10 else "tab20"]
    for c, name in enumerate(class_names):
        members = labels == c
        if legend_outside and not members.any():
            continue
        axis.scatter(points[members, 0], points[members, 1], s=8, color=colours(c % colours.N),
                     label=str(name))
    axis.set_title(title)
    axis.set_xticks([])
    axis.set_yticks([])
    if legend_outside:
        axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2, frameon=False)
    else:
        axis.legend(fontsize=8, markerscale=2, loc="best")
    figure.tight_layout()
    return atomic_savefig(figure, destination, dpi=100)


def copy_figure(source: str | Path, destination: str | Path) -> Path:
    """Copy an existing figure atomically (e.g. the encoder run's ``tsne.png``)."""
    source = Path(source)
    if not source.is_file():
        raise DataError(f"{source}: figure not found")
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)
    return Path(destination)
