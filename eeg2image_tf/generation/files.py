"""Generated image files: JPEG bytes, the ``<Class>/<Class>_<k>.jpg`` layout, ``manifest.csv``, and
:func:`generate_images`, which writes a whole set.

The generator runs in fixed size batches inside one ``tf.function`` while a thread pool encodes and
writes the JPEGs of the previous batch (OpenCV releases the GIL while encoding, so the two overlap on
two cores). Every image is written to a temporary name and renamed (never partial under its name);
the set is flushed to disk once, then ``manifest.csv`` is written atomically last, so a manifest only
ever describes a complete set.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import io
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import DataError, Eeg2ImageError
from ..io_utils import atomic_write_text, progress_bar, replace_bytes
from ..runs import MANIFEST_FILE
from .batches import iterate_generated, prepare_forward
from .jpeg import encode_jpeg

MANIFEST_COLUMNS = ("file", "class", "class_index", "source_trial")


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One generated image: ``file`` relative to the output folder, with forward slashes."""

    file: str
    class_name: str
    class_index: int
    source_trial: int


@dataclasses.dataclass(frozen=True)
class GenerationManifest:
    """What :func:`generate_images` wrote (``rows`` in class-major order, ``k`` ascending)."""

    out_dir: Path
    rows: tuple[ManifestRow, ...]
    class_names: tuple[str, ...]
    seconds: float                  # generating and writing, after start-up
    startup_seconds: float = 0.0    # building, checking and tracing the forward pass, once

    @property
    def path(self) -> Path:
        return self.out_dir / MANIFEST_FILE

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def images_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def image_file_name(class_name: str, k: int) -> str:
    """``<ClassName>/<ClassName>_<k>.jpg``, the original's layout."""
    return f"{class_name}/{class_name}_{k}.jpg"


def _write_jpegs(out_dir: Path, names: list[str], images: np.ndarray, quality: int) -> int:
    for name, image in zip(names, images):
        replace_bytes(out_dir / name, encode_jpeg(image, quality, name=str(out_dir / name)))
    return len(names)


def manifest_text(rows: Sequence[ManifestRow]) -> str:
    """The manifest CSV: header ``file,class,class_index,source_trial`` and one line per image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        writer.writerow((row.file, row.class_name, row.class_index, row.source_trial))
    return buffer.getvalue()


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a ``manifest.csv`` written by :func:`generate_images`."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
                raise DataError(f"{path}: expected columns {','.join(MANIFEST_COLUMNS)}, "
                                f"found {','.join(reader.fieldnames or ())}")
            return [ManifestRow(file=r["file"], class_name=r["class"],
                                class_index=int(r["class_index"]),
                                source_trial=int(r["source_trial"])) for r in reader]
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: malformed manifest row ({exc})") from None


def generate_images(generator, features_by_class: Sequence[np.ndarray],
                    class_names: Sequence[str], out_dir: str | Path, per_class: int,
                    batch_size: int = 256, seed: int = 45, *,
                    trials_by_class: Optional[Sequence[np.ndarray]] = None,
                    latent_dim: Optional[int] = None, latent_range: float = 1.0,
                    jpeg_quality: int = 95, writer_threads: int = 2, show_progress: bool = True,
                    precision: str = "float32") -> GenerationManifest:
    """Generate ``per_class`` images per class and write them as JPEG, plus ``manifest.csv``.

    Files: ``<out_dir>/<ClassName>/<ClassName>_<k>.jpg`` (``k`` from 0 within each class), each
    written to a temporary name and renamed (never partial under its name; flushed to disk together
    before the manifest), then ``<out_dir>/manifest.csv`` (columns ``file, class, class_index,
    source_trial``) written atomically last, so a manifest only ever describes a complete set.
    Pixels: the original's ``uint8(clip((x * 0.5 + 0.5) * 255))``, RGB -> BGR for OpenCV.
    See :func:`iterate_generated` for conditions, latents and reproducibility.
    """
    class_names = tuple(str(name) for name in class_names)
    if len(class_names) != len(features_by_class):
        raise Eeg2ImageError(f"{len(class_names)} class names for {len(features_by_class)} classes")
    if writer_threads < 1:
        raise Eeg2ImageError(f"writer_threads must be at least 1, got {writer_threads}")
    out_dir = Path(out_dir)
    for name in class_names:
        (out_dir / name).mkdir(parents=True, exist_ok=True)

    rows: list[ManifestRow] = []
    total = per_class * len(class_names)
    # Start-up (the fast path's check and the trace) is timed apart: it is paid once per run,
    # whatever the number of images, like the original's own model loading.
    startup_started = time.monotonic()
    forward = prepare_forward(generator, features_by_class, per_class, batch_size, latent_dim,
                              precision)
    startup_seconds = time.monotonic() - startup_started
    bar = progress_bar(total, desc="generate", unit="img") if show_progress else None
    started = time.monotonic()
    # At most two batches wait for the writers: enough to keep them busy while the generator runs,
    # little enough to bound memory at 50,000 images.
    max_pending = 2 * writer_threads
    pending: collections.deque = collections.deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            written = pending.popleft().result()
            if bar is not None:
                bar.update(written)

    with concurrent.futures.ThreadPoolExecutor(max_workers=writer_threads,
                                               thread_name_prefix="jpeg") as pool:
        try:
            for batch in iterate_generated(generator, features_by_class, per_class, batch_size,
                                           seed, trials_by_class=trials_by_class,
                                           latent_dim=latent_dim, latent_range=latent_range,
                                           precision=precision, forward=forward):
                names = [image_file_name(class_names[c], int(k))
                         for c, k in zip(batch.class_index, batch.k)]
                rows.extend(ManifestRow(file=name, class_name=class_names[c], class_index=int(c),
                                        source_trial=int(t))
                            for name, c, t in zip(names, batch.class_index, batch.source_trial))
                # One chunk per writer thread, so a batch is written by all threads at once.
                for part in np.array_split(np.arange(len(names)), writer_threads):
                    if part.size:
                        pending.append(pool.submit(_write_jpegs, out_dir,
                                                   [names[i] for i in part],
                                                   batch.images[part[0]:part[-1] + 1],
                                                   jpeg_quality))
                settle(max_pending)
            settle(0)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
    # One flush of the whole set instead of an fsync per image (io_utils.replace_bytes), before
    # the manifest that vouches for it.
    os.sync()
    seconds = time.monotonic() - started
    atomic_write_text(out_dir / MANIFEST_FILE, manifest_text(rows))
    return GenerationManifest(out_dir=out_dir, rows=tuple(rows), class_names=class_names,
                              seconds=seconds, startup_seconds=startup_seconds)

