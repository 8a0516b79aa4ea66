"""Sample grids: generated images in a montage with their class names as titles, as PNG and as arrays.

The GAN trainer draws one every ``sample_every`` steps from a fixed latent and the first training
conditions (docs/method.md section 4), writes it to ``<run>/samples/`` and to TensorBoard. Rendering
uses OpenCV only (no figure machinery), so a grid costs a few milliseconds.

Layout (all sizes in pixels): every cell is a title strip of :data:`TITLE_HEIGHT` above an image;
cells are separated from each other and from the border by :data:`PADDING`.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from ..io_utils import atomic_write_bytes
from ..models.inference import to_uint8

TITLE_HEIGHT = 20
PADDING = 4
BACKGROUND_RGB = (32, 32, 32)
TEXT_RGB = (255, 255, 255)

__all__ = ["TITLE_HEIGHT", "PADDING", "grid_shape", "sample_grid", "write_png"]


def grid_shape(count: int, columns: int, image_height: int, image_width: int) -> tuple[int, int]:
    """``(height, width)`` of the grid that :func:`sample_grid` draws for ``count`` images."""
    rows = -(-count // columns)
    height = rows * (TITLE_HEIGHT + image_height) + (rows + 1) * PADDING
    width = columns * image_width + (columns + 1) * PADDING
    return height, width


def _title_scale(text: str, width: int) -> float:
    """The largest Hershey font scale (up to 0.45) whose rendering of ``text`` fits in ``width``."""
    scale = 0.45
    while scale > 0.2:
        (text_width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        if text_width <= width - 4:
            break
        scale -= 0.05
    return scale


def sample_grid(images, titles: Sequence[str], columns: int = 4) -> np.ndarray:
    """Arrange images row by row, each under its title.

    Args:
        images: ``(N, H, W, 3)`` float in ``[-1, 1]`` (generator output) or uint8.
        titles: ``N`` strings (class names), drawn centred above each image.
        columns: images per row; the last row may be incomplete.

    Returns:
        ``(height, width, 3)`` uint8 RGB, ``(height, width) = grid_shape(N, columns, H, W)``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"sample_grid: expected (N, H, W, 3) images, got shape {images.shape}")
    if len(titles) != len(images):
        raise ValueError(f"sample_grid: {len(images)} images but {len(titles)} titles")
    pixels = images if images.dtype == np.uint8 else to_uint8(images, rounding="nearest")
    count, image_height, image_width = pixels.shape[:3]
    height, width = grid_shape(count, columns, image_height, image_width)
    grid = np.empty((height, width, 3), dtype=np.uint8)
    grid[:] = BACKGROUND_RGB

    for index, (image, title) in enumerate(zip(pixels, titles)):
        row, column = divmod(index, columns)
        left = PADDING + column * (image_width + PADDING)
        top = PADDING + row * (TITLE_HEIGHT + image_height + PADDING)
        text = str(title)
        scale = _title_scale(text, image_width)
        (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        origin = (left + max((image_width - text_width) // 2, 0),
                  top + (TITLE_HEIGHT + text_height) // 2)
        # Text is drawn on the RGB array directly: the colour tuple is in the array's channel order.
        cv2.putText(grid, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_RGB, 1, cv2.LINE_AA)
        grid[top + TITLE_HEIGHT:top + TITLE_HEIGHT + image_height, left:left + image_width] = image
    return grid


def write_png(rgb: np.ndarray, destination: str | os.PathLike) -> None:
    """Write an RGB uint8 array as PNG, atomically (a reader never sees half a file)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{destination}: PNG encoding failed")
    atomic_write_bytes(destination, encoded.tobytes())
