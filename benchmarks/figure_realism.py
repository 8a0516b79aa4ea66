"""Precision, recall and diversity of the letters in a published figure, beside ours and real ones.

    python -m benchmarks.figure_realism FIGURE --rows 10 --columns 6 --real-columns 0 \
        --train data/images/train --test data/images/test --images-dir runs/quality/generated

``FIGURE`` is a grid image: one row per class, in the training folder's class order, one image per
cell (e.g. the paper's letter figure, its first column the real letters). Each cell is cut out
(``--margin`` px of every side dropped: grid lines, frames), padded to a white square and resized
to 128 x 128. Against every image of ``--train`` it scores, in the gradient-histogram space of
:mod:`eeg2image_tf.evaluation.realism`: the figure's generated cells, its ``--real-columns`` cells,
as many held-out ``--test`` images per class as the figure has generated columns, and as many of a
``generate`` folder (``--images-dir``) per class. The sets are small (a few images per class), so
recall is not comparable between them; precision, the diversity ratio and the precision distance
are per image and are.

``--fit-ink``: every image, the training ones too, is cut to the box of its dark pixels and fitted
to 100 px at the centre of a white 128 x 128 canvas, so that only the letters' shapes are compared,
not their size and place in the frame (a figure's cells are drawn at their own scale).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import cv2
import numpy as np

SIZE = 128
FITTED = 100
INK = 128          # grey levels below this count as the letter's


def figure_cells(figure: np.ndarray, rows: int, columns: int, margin: int) -> np.ndarray:
    """uint8 RGB ``(rows, columns, SIZE, SIZE, 3)``: the grid's cells, squared on white."""
    height, width = figure.shape[:2]
    cells = np.empty((rows, columns, SIZE, SIZE, 3), np.uint8)
    for row in range(rows):
        for column in range(columns):
            top, bottom = row * height // rows + margin, (row + 1) * height // rows - margin
            left, right = column * width // columns + margin, (column + 1) * width // columns - margin
            cell = figure[top:bottom, left:right]
            side = max(cell.shape[:2])
            square = np.full((side, side, 3), 255, np.uint8)
            y, x = (side - cell.shape[0]) // 2, (side - cell.shape[1]) // 2
            square[y:y + cell.shape[0], x:x + cell.shape[1]] = cell
            cells[row, column] = cv2.resize(square, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return cells


def fit_ink(images: np.ndarray) -> np.ndarray:
    """Each uint8 RGB image cut to its dark pixels' box, fitted to ``FITTED`` px, centred on white
    (an image without dark pixels becomes blank)."""
    fitted = np.full((len(images), SIZE, SIZE, 3), 255, np.uint8)
    for index, image in enumerate(images):
        rows, columns = np.nonzero(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) < INK)
        if rows.size == 0:
            continue
        letter = image[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
        scale = FITTED / max(letter.shape[:2])
        width = max(1, round(letter.shape[1] * scale))
        height = max(1, round(letter.shape[0] * scale))
        letter = cv2.resize(letter, (width, height), interpolation=cv2.INTER_AREA)
        y, x = (SIZE - height) // 2, (SIZE - width) // 2
        fitted[index, y:y + height, x:x + width] = letter
    return fitted


def folder_images(root: str, class_names: Sequence[str], per_class: Optional[int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB images of ``root/<class>/`` (the first ``per_class`` of each in name order, or
    all) and their class indices into ``class_names``."""
    from eeg2image_tf.data.images import list_image_folder, load_images

    folder = list_image_folder(root, class_names)
    labels = np.asarray(folder.labels)
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class]
                             for c in range(len(folder.class_names))])
    images = load_images([folder.paths[i] for i in chosen], size=SIZE)
    return np.round((images + 1.0) * 127.5).astype(np.uint8), labels[chosen]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure")
    parser.add_argument("--rows", type=int, required=True, help="classes, in the training order")
    parser.add_argument("--columns", type=int, required=True)
    parser.add_argument("--real-columns", type=int, nargs="*", default=[],
                        help="columns of real images (0-based); the others are generated")
    parser.add_argument("--margin", type=int, default=3, help="figure pixels cut from each side")
    parser.add_argument("--train", required=True, help="the training image folder")
    parser.add_argument("--test", help="a held-out image folder of the same classes")
    parser.add_argument("--images-dir", help="a generate folder of the same classes")
    parser.add_argument("--fit-ink", action="store_true",
                        help="compare the letters' shapes only (module docstring)")
    args = parser.parse_args(argv)

    from eeg2image_tf.data.images import list_image_folder
    from eeg2image_tf.evaluation.realism import gradient_histograms, realism_scores

    bgr = cv2.imread(args.figure, cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"{args.figure}: not a readable image", file=sys.stderr)
        return 2
    class_names = list_image_folder(args.train).class_names
    if len(class_names) != args.rows:
        print(f"{args.train}: {len(class_names)} classes, the figure {args.rows} rows",
              file=sys.stderr)
        return 2
    cells = figure_cells(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), args.rows, args.columns,
                         args.margin)
    generated_columns = [c for c in range(args.columns) if c not in args.real_columns]
    per_class = len(generated_columns)

    def cells_of(columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        return (cells[:, columns].reshape(-1, SIZE, SIZE, 3),
                np.repeat(np.arange(args.rows), len(columns)))

    sets = {"figure, generated": cells_of(generated_columns)}
    if args.real_columns:
        sets["figure, real"] = cells_of(args.real_columns)
    if args.test:
        sets[f"held-out real ({args.test})"] = folder_images(args.test, class_names, per_class)
    if args.images_dir:
        sets[f"generated ({args.images_dir})"] = folder_images(args.images_dir, class_names,
                                                              per_class)
    shape = fit_ink if args.fit_ink else (lambda images: images)
    train, train_labels = folder_images(args.train, class_names, None)
    reference = gradient_histograms(shape(train))
    print(f"against {len(train)} images of {args.train}"
          f"{', letters fitted to their ink box' if args.fit_ink else ''}\n")
    print("| set | images | precision | diversity ratio | precision distance |")
    print("|---|---|---|---|---|")
    for name, (images, labels) in sets.items():
        scores = realism_scores(reference, train_labels, gradient_histograms(shape(images)),
                                labels, class_names)
        if scores.get("available") is False:     # k images or fewer: no manifold to draw
            print(f"| {name} | {len(images)} | n/a ({scores['reason']}) | | |")
            continue
        diversity = scores.get("diversity_ratio")
        print(f"| {name} | {len(images)} | {scores['precision']:.3f} | "
              f"{'n/a' if diversity is None else f'{diversity:.3f}'} | "
              f"{scores['precision_distance']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
