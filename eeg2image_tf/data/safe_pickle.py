"""Reading pickles of numpy arrays without letting the pickle run code.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ``/``EXT*`` opcodes ask the
unpickler for any importable callable and ``REDUCE`` calls it, so ``pickle.load`` on a downloaded
``data.pkl`` can run ``os.system``. Every one of those opcodes goes through ``Unpickler.find_class``;
answering it from a fixed allow-list (and never importing anything) stops a hostile pickle at its first
global, before any call is made.

The list holds exactly what numpy arrays, numpy scalars and plain containers need, under the names
written by Python 2 (``__builtin__``, ``numpy.core``), numpy 1 and numpy 2 (``numpy._core``).
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UnsafePickleError

# Python 3 writes ``bytes`` at protocol 2 as ``_codecs.encode(text, "latin1")``; any other codec name
# could ask for compression or an exotic codec, so only the latin-1 spellings are accepted.
_LATIN1_NAMES = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if encoding.lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The allow-list: (module, name) as written in the pickle -> the object to hand back."""
    # numpy's private module moved in numpy 2: which one exists is only known when trying.
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        # Protocol 5 pickles of contiguous arrays rebuild them from an in-band buffer.
        allowed[(module, "_frombuffer")] = numeric._frombuffer
    for module in ("builtins", "__builtin__"):
        for name, value in (("set", set), ("frozenset", frozenset), ("complex", complex),
                            ("bytearray", bytearray), ("slice", slice), ("range", range)):
            allowed[(module, name)] = value
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the globals of :meth:`allowed_globals`.

    ``source`` names the file in error messages. Python 2 pickles are read with ``encoding="latin1"``
    (as the original code does), which turns Python 2 ``str`` into ``str`` and leaves numpy's raw
    array bytes intact. A subclass for another format overrides :meth:`allowed_globals`,
    :attr:`admits` (the refusal message's "only ... are allowed") and, if the format has them,
    :meth:`persistent_load`.
    """

    admits = "numpy arrays and plain containers"

    def __init__(self, file, source: str = "<pickle>", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding, fix_imports=False)
        self._source = source
        self._allowed = self.allowed_globals()

    def allowed_globals(self) -> dict[tuple[str, str], Any]:
        """(module, name) as written in the pickle -> the object to hand back."""
        return _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to load global '{module}.{name}' (only {self.admits} are "
                "allowed; nothing from this pickle was executed)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused persistent id {pid!r} (not a plain data pickle)")

    def load_checked(self) -> Any:
        """:meth:`load`, with every failure but :class:`UnsafePickleError` turned into one
        :class:`DataError` line naming the source."""
        try:
            return self.load()
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, UnicodeDecodeError, MemoryError, OverflowError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{self._source}: not a readable pickle of {self.admits} ({detail})") from None


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; errors name ``source``."""
    return _load(io.BytesIO(data), source)


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle file holding only numpy arrays and plain containers.

    Raises :class:`DataError` for a missing or corrupt file and :class:`UnsafePickleError` (a
    ``DataError``) as soon as the pickle asks for anything else.
    """
    path = Path(path)
    with open_input(path) as handle:
        return _load(handle, str(path))


def open_input(path: Path):
    """``open(path, "rb")``, with a missing or unreadable file as one :class:`DataError` line."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from None


def _load(handle, source: str) -> Any:
    return RestrictedUnpickler(handle, source=source).load_checked()
