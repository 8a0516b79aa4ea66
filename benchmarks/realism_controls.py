"""The controls of precision, recall and diversity at the GAN's 128 x 128, on the built-in letters.

    python -m benchmarks.realism_controls --train 100 --per-class 40

Draws ``--train`` training letters per class of the ``char`` set (random typeface, size and
position each, as ``prepare_data`` does) and, against them, sets of ``--per-class`` letters per
class: held out (drawn the same way), held out through JPEG quality 95 (what ``evaluate`` reads),
one typeface per class (ten different faces), blurred (Gaussian, ``--blur`` px) and binarised
(threshold 128). With ``--distortions``, also the held-out letters under small geometric changes
(shifted, rotated, scaled, strokes thinner or bolder, outlines wavering): how far from the real
letters an image may be drawn and still count as one. With ``--unseen-faces N``, also a second
table: training letters drawn without N typefaces chosen at random, against held-out letters in
the other typefaces and in those N (do real letters of a typeface the training set lacks count?).
Prints a Markdown table of precision, recall (overall and class means), the diversity ratio and
the manifold distances in the gradient-histogram space (:mod:`eeg2image_tf.evaluation.realism`).
``tests/test_realism.py`` asserts the first controls at 64 x 64 with margins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

COLUMNS = ("precision", "recall", "class_precision", "class_recall", "diversity_ratio",
           "precision_distance", "recall_distance")


def draw(letters: str, per_class: int, rng: np.random.Generator, size: int,
         faces: Optional[Sequence[int]] = None, pool: Optional[Sequence[int]] = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(K * per_class, size, size, 3)`` letters and their class ids: each in a random
    typeface of ``FONT_FILES``, of ``pool`` (indices) when given, or class c in ``faces[c]``."""
    from eeg2image_tf.data.synthetic import font_paths, render_character

    if faces is not None and pool is not None:
        raise ValueError("draw: give faces (one typeface per class) or pool (typefaces to draw "
                         "from), not both")
    fonts = font_paths()

    def face(c: int):
        if faces is not None:
            return fonts[faces[c]]
        return None if pool is None else fonts[int(rng.choice(pool))]

    images = [render_character(letter, rng, size=size, font=face(c))
              for c, letter in enumerate(letters) for _ in range(per_class)]
    return np.stack(images), np.repeat(np.arange(len(letters)), per_class)


def _affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    size = image.shape[0]
    return cv2.warpAffine(image, np.asarray(matrix, np.float32), (size, size),
                          flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))


def shifted(image: np.ndarray, pixels: float) -> np.ndarray:
    """``image`` moved ``pixels`` right and down, white coming in."""
    return _affine(image, [[1, 0, pixels], [0, 1, pixels]])


def rotated(image: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    """``image`` rotated ``degrees`` anticlockwise and scaled ``scale`` about its centre."""
    centre = image.shape[0] / 2
    return _affine(image, cv2.getRotationMatrix2D((centre, centre), degrees, scale))


def wavering(image: np.ndarray, amplitude: float, rng: np.random.Generator,
             smoothness: float = 8.0) -> np.ndarray:
    """``image`` resampled through a smooth random displacement of at most ``amplitude`` pixels
    (Gaussian-smoothed noise, ``smoothness`` px): outlines that waver as a drawn stroke does."""
    size = image.shape[0]
    grid = np.arange(size, dtype=np.float32)
    columns, rows = np.meshgrid(grid, grid)
    moved = []
    for base in (columns, rows):
        field = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0),
                                 smoothness)
        moved.append(base + field * (amplitude / max(float(np.abs(field).max()), 1e-9)))
    return cv2.remap(image, moved[0], moved[1], cv2.INTER_LINEAR, borderValue=(255, 255, 255))


def distorted_sets(held_out: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The held-out letters under each small geometric change (names say how much)."""
    size = held_out.shape[1]
    step = size / 128       # the changes are given for 128 x 128 and scale with the image
    stroke = np.ones((3, 3), np.uint8)

    def each(change) -> np.ndarray:
        return np.stack([change(image) for image in held_out])

    return {
        f"shifted {2 * step:g} px": each(lambda image: shifted(image, 2 * step)),
        f"shifted {4 * step:g} px": each(lambda image: shifted(image, 4 * step)),
        f"shifted {8 * step:g} px": each(lambda image: shifted(image, 8 * step)),
        "rotated 5 degrees": each(lambda image: rotated(image, 5)),
        "scaled 0.9": each(lambda image: rotated(image, 0, 0.9)),
        "scaled 1.1": each(lambda image: rotated(image, 0, 1.1)),
        "strokes thinner (3 x 3)": each(lambda image: cv2.dilate(image, stroke)),
        "strokes bolder (3 x 3)": each(lambda image: cv2.erode(image, stroke)),
        f"outlines wavering {1.5 * step:g} px": each(lambda image: wavering(image, 1.5 * step, rng)),
        f"outlines wavering {3 * step:g} px": each(lambda image: wavering(image, 3 * step, rng)),
        f"outlines wavering {6 * step:g} px": each(lambda image: wavering(image, 6 * step, rng)),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=100, help="training letters per class")
    parser.add_argument("--per-class", type=int, default=40, help="letters per class of each set")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--blur", type=float, default=1.5, help="Gaussian sigma in pixels")
    parser.add_argument("--seed", type=int, default=45)
    parser.add_argument("--distortions", action="store_true",
                        help="also the held-out letters under small geometric changes")
    parser.add_argument("--unseen-faces", type=int, default=0,
                        help="also: training letters without this many typefaces, against "
                             "held-out letters in them")
    args = parser.parse_args(argv)

    from benchmarks.common import machine_line
    from eeg2image_tf.data import CLASS_NAMES
    from eeg2image_tf.data.synthetic import FONT_FILES
    from eeg2image_tf.generation import jpeg_round_trip

    letters = "".join(CLASS_NAMES["char"])
    rng = np.random.default_rng(args.seed)
    train, train_labels = draw(letters, args.train, rng, args.size)
    held_out, labels = draw(letters, args.per_class, rng, args.size)
    faces = rng.choice(len(FONT_FILES), len(letters), replace=False)
    one_face, one_face_labels = draw(letters, args.per_class, rng, args.size, faces)
    sets = {
        "held out": (held_out, labels),
        "held out, JPEG 95": (jpeg_round_trip(held_out, 95), labels),
        "one typeface per class": (one_face, one_face_labels),
        f"blurred (sigma {args.blur:g} px)": (
            np.stack([cv2.GaussianBlur(image, (0, 0), args.blur) for image in held_out]), labels),
        "binarised": (np.where(held_out > 127, 255, 0).astype(np.uint8), labels),
    }
    if args.distortions:
        sets.update({name: (images, labels)
                     for name, images in distorted_sets(held_out, rng).items()})
    print(machine_line())
    print(f"{args.train} training and {args.per_class} evaluated letters per class, "
          f"{args.size} x {args.size}, seed {args.seed}\n")
    print_table(train, train_labels, sets, letters)
    if args.unseen_faces:
        unseen = sorted(int(f) for f in rng.choice(len(FONT_FILES), args.unseen_faces,
                                                   replace=False))
        seen = [f for f in range(len(FONT_FILES)) if f not in unseen]
        names = ", ".join(Path(FONT_FILES[f]).stem for f in unseen)
        print(f"\nTraining letters in {len(seen)} typefaces; {names} left out of them:\n")
        print_table(*draw(letters, args.train, rng, args.size, pool=seen), {
            "held out, typefaces of the training letters":
                draw(letters, args.per_class, rng, args.size, pool=seen),
            "held out, typefaces left out of the training letters":
                draw(letters, args.per_class, rng, args.size, pool=unseen)}, letters)
    return 0


def print_table(train: np.ndarray, train_labels: np.ndarray,
                sets: dict[str, tuple[np.ndarray, np.ndarray]], letters: str) -> None:
    """A Markdown table of :data:`COLUMNS` for each set against the training letters."""
    from eeg2image_tf.evaluation.realism import gradient_histograms, realism_scores

    reference = gradient_histograms(train)
    print("| set | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, (images, classes) in sets.items():
        scores = realism_scores(reference, train_labels, gradient_histograms(images), classes,
                                tuple(letters))
        print(f"| {name} | " + " | ".join(f"{scores[key]:.3f}" for key in COLUMNS) + " |")


if __name__ == "__main__":
    sys.exit(main())
