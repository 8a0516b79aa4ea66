"""Output: atomic files (a reader, or a crash, never sees a half-written file in place of a good one),
one writer per folder (:class:`FolderLock`), folders checked before anything is written, and the
terminal's progress bars and lines.

Every writer goes to a temporary name in the same directory, flushes and fsyncs it, then renames it
over the destination; ``os.replace`` is atomic on POSIX within one file system.

:func:`replace_bytes` is the light variant for thousands of small files (generated images): the
rename alone already guarantees that a crash or ``kill -9`` of this process never leaves a partial
file under the final name; only durability across a power loss waits for one ``os.sync()`` that the
caller makes once for the whole set (a per-file fsync costs more than encoding the JPEG).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import Eeg2ImageError


@functools.lru_cache(maxsize=1)
def _default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would have given the file.

    Read from /proc where possible, because probing with ``os.umask`` briefly changes it for every
    thread (the image writers run in threads).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; on success rename it over ``destination``.

    ``suffix`` defaults to the destination's suffix so that writers which infer a format from the
    file name (``savefig``, ``cv2.imwrite``, ``np.savez``) keep working. On any exception the
    temporary file is removed and the destination is left untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = destination.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=f".tmp{suffix}",
                                    dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            # mkstemp creates the file 0600; give it the mode a plain open() would have.
            os.chmod(tmp, _default_file_mode())
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(destination: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def replace_bytes(destination: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary name beside ``destination``, then rename it over it (no fsync).

    The temporary name is unique per process and thread, so concurrent writers never share one.
    """
    destination = Path(destination)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return destination


def atomic_write_text(destination: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(destination, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays appear in metrics; convert without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(destination: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=True)
    return atomic_write_text(destination, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Eeg2ImageError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise Eeg2ImageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex (read in blocks: checkpoints are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_savefig(figure, destination: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the destination's suffix)."""
    destination = Path(destination)
    with atomic_path(destination) as tmp:
        figure.savefig(tmp, format=destination.suffix.lstrip(".") or "png", **kwargs)
    return destination


# --------------------------------------------------------------------------------------------------
# Folders: writable, and one writer at a time
# --------------------------------------------------------------------------------------------------

def check_writable_dir(folder: str | os.PathLike, flag: str) -> None:
    """Refuse (one line naming ``flag``) a folder this process could not create or write into:
    the folder, or its nearest existing parent, is not a directory or not writable."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise Eeg2ImageError(f"{existing}: exists and is not a directory; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Eeg2ImageError(f"{existing}: {os.strerror(errno.EACCES)} (cannot write there); "
                             f"choose another {flag}")


# Locks this process holds, by the lock file's real path: [file descriptor, holders].
_HELD: dict[str, list[int]] = {}


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    return f"PID {text[0]} on {text[1]}" if len(text) >= 2 else "another process"


def _busy(path: Path, fd: int, hint: str) -> Eeg2ImageError:
    return Eeg2ImageError(f"{path.parent}: in use by {_holder(fd)} (it holds {path.name}); "
                          f"wait for it to finish, or {hint}")


class FolderLock:
    """An exclusive ``fcntl.flock`` on the lock file ``path``, held while this process keeps the
    file open; refused with one line naming the process that holds it (its PID and host, which the
    holder writes into the file).

    The kernel drops a flock with the process that held it, so a killed writer never leaves the
    folder locked. Re-entrant within a process (the pipeline's stages lock folders the pipeline
    itself locked). Released by :meth:`release`, or when the object is garbage collected.
    """

    def __init__(self, path: str | os.PathLike, hint: str):
        self.path = Path(path)
        self._key = os.path.realpath(self.path)
        if self._key in _HELD:
            _HELD[self._key][1] += 1
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _default_file_mode())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = _busy(self.path, fd, hint)
                os.close(fd)
                raise error from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            _HELD[self._key] = [fd, 1]
        self._finalizer = weakref.finalize(self, _release, self._key)

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _release(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])           # closing the last descriptor drops the flock


def check_unlocked(path: str | os.PathLike, hint: str) -> None:
    """Refuse, as :class:`FolderLock` would, a lock file that another process holds; take nothing."""
    path = Path(path)
    if os.path.realpath(path) in _HELD or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(path, fd, hint) from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# The terminal
# --------------------------------------------------------------------------------------------------

def progress_bar(total: Optional[int], initial: int = 0, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr that stays quiet-ish when not attached to a terminal (CI logs)."""
    # Imported here, not above: tqdm is only needed once a loop runs, not for a command's --help.
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 10.0, file=sys.stderr)


class SilentBar:
    """Stands in for :func:`progress_bar` where no bar is wanted."""

    def __enter__(self) -> "SilentBar":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, count: int = 1) -> None:
        return None

    def set_postfix(self, *args, **kwargs) -> None:
        return None

    def close(self) -> None:
        return None


def print_line(message: str) -> None:
    """Print a line to stdout without tearing an active progress bar."""
    # Imported here, not above: as in progress_bar.
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()
