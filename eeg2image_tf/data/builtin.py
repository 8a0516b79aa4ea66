"""The built-in sets, written with no download: ``digit`` and ``char`` (ThoughtViz's shape,
:mod:`.synthetic`) and ``cvpr40-synthetic`` (EEGCVPR40's shape, :mod:`.synthetic_cvpr40`)."""

from __future__ import annotations

import os
from typing import Any, Optional

from ..errors import DataError
from ..runs import EEG_NPZ_FILE
from .synthetic import (SYNTHETIC_SETS, check_builtin_root, check_synthetic_root,
                        check_synthetic_sizes, write_synthetic_set)
from .synthetic_cvpr40 import CLASS_NAMES as CVPR40_CLASS_NAMES
from .synthetic_cvpr40 import CVPR40_SET, DEFAULT_SIZES, check_cvpr40_sizes, write_cvpr40_synthetic
from .thoughtviz import CLASS_NAMES, SPLITS

BUILTIN_SETS = SYNTHETIC_SETS + (CVPR40_SET,)
# write_synthetic_set's defaults: ThoughtViz-sized splits, 200 + 50 images per class.
_THOUGHTVIZ_SIZES = {"n_train": 2500, "n_test": 600, "images_per_class": 200,
                     "test_images_per_class": 50}


def builtin_sizes(set_name: str) -> dict[str, int]:
    """``n_train``, ``n_test``, ``images_per_class``, ``test_images_per_class`` of a built-in set."""
    return dict(DEFAULT_SIZES if set_name == CVPR40_SET else _THOUGHTVIZ_SIZES)


def builtin_class_names(set_name: str) -> tuple[str, ...]:
    """The class folder names of a built-in set, in class-index order."""
    return CVPR40_CLASS_NAMES if set_name == CVPR40_SET else CLASS_NAMES[set_name]


def _check_known(set_name: str) -> None:
    if set_name not in BUILTIN_SETS and set_name != "image":
        raise DataError(f"built-in set {set_name!r}: unknown; expected one of {', '.join(BUILTIN_SETS)}")


def check_builtin_set_root(out_root: str | os.PathLike, set_name: str, flag: str = "--out") -> None:
    """Refuse, writing nothing, a data root :func:`write_builtin_set` may not write ``set_name``
    to: not writable, or holding files the built-in set did not write (``flag`` names it)."""
    _check_known(set_name)
    if set_name == CVPR40_SET:
        check_builtin_root(out_root, set_name, CVPR40_CLASS_NAMES, SPLITS, EEG_NPZ_FILE, flag)
    else:
        check_synthetic_root(out_root, set_name, flag)


def check_builtin_sizes(set_name: str, n_train: Optional[int] = None, n_test: Optional[int] = None,
                        images_per_class: Optional[int] = None,
                        test_images_per_class: Optional[int] = None) -> dict[str, int]:
    """The sizes :func:`write_builtin_set` would write ``set_name`` with (None: the set's own), or
    its one-line :class:`DataError` when the set's rule refuses them; writes nothing."""
    _check_known(set_name)
    given = {"n_train": n_train, "n_test": n_test, "images_per_class": images_per_class,
             "test_images_per_class": test_images_per_class}
    sizes = {key: value if value is not None else builtin_sizes(set_name)[key]
             for key, value in given.items()}
    if set_name == CVPR40_SET:
        check_cvpr40_sizes(**sizes)
    else:
        check_synthetic_sizes(set_name, **sizes)
    return sizes


def write_builtin_set(out_root: str | os.PathLike, set_name: str, seed: int = 45,
                      n_train: Optional[int] = None, n_test: Optional[int] = None,
                      images_per_class: Optional[int] = None,
                      test_images_per_class: Optional[int] = None,
                      flag: str = "--out") -> dict[str, Any]:
    """Write the built-in set ``set_name`` under ``out_root``; sizes left None take the set's own
    (:func:`builtin_sizes`). Folders holding what it did not write are refused first (``flag``
    names ``out_root``). Returns what was written (paths, shapes, counts)."""
    sizes = check_builtin_sizes(set_name, n_train, n_test, images_per_class, test_images_per_class)
    if set_name == CVPR40_SET:
        return write_cvpr40_synthetic(out_root, seed=seed, flag=flag, **sizes)
    # write_synthetic_set refuses 'image', saying why the objects set has no synthetic version.
    return write_synthetic_set(out_root, set_name=set_name, seed=seed, flag=flag, **sizes)
