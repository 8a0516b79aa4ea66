"""The authors' code as a benchmark reference: found where ``../shared/reference/setup.sh`` built it,
run in its own interpreter, timed call by call beside ours.

``reference_python()`` is the authors' interpreter (``$EEG2IMAGE_REF/venv/bin/python``, default
``/tmp/eeg2image-ref``) when their stack and code are there, else None. ``ReferenceProcess`` keeps
one of their hot paths (``benchmarks/reference_timing.py``) warm in a child process; each call of
``run()`` times one call of it, so the benchmarks can alternate it with ours
(:func:`benchmarks.common.alternated_medians`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .common import alternated_medians

TIMING_SCRIPT = Path(__file__).with_name("reference_timing.py")
NOT_BUILT = "not measured: the authors' stack is not built (../shared/reference/setup.sh)"


def reference_root() -> Path:
    return Path(os.environ.get("EEG2IMAGE_REF", "/tmp/eeg2image-ref"))


def reference_python() -> Optional[Path]:
    """The authors' interpreter when it and their code exist, else None."""
    root = reference_root()
    python = root / "venv" / "bin" / "python"
    return python if python.exists() and (root / "code" / "model.py").exists() else None


class ReferenceProcess:
    """A child process that answers each ``run`` request with the seconds of one timed call.

    ``command``: the child's argv; it prints one ``{"ready": ...}`` line when built and traced, then
    one ``{"seconds": s}`` line per request (``reference_timing.serve``). Use as a context manager.
    """

    def __init__(self, command: Sequence[str]):
        self.command = list(command)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._answer("ready")

    @classmethod
    def for_benchmark(cls, benchmark: str, **options) -> Optional["ReferenceProcess"]:
        """The authors' ``benchmark`` path (``reference_timing.BENCHMARKS``), or None without their
        stack. ``options``: ``batch_size``, ``count``, ``latent_dim`` as the script's flags."""
        python = reference_python()
        if python is None:
            return None
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
        return cls([str(python), str(TIMING_SCRIPT), "--code", str(reference_root() / "code"),
                    "--benchmark", benchmark, *flags])

    def _answer(self, key: str):
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise RuntimeError(f"{' '.join(self.command)}: exited {code} before answering")
        return json.loads(line)[key]

    def run(self) -> float:
        """Seconds of one call of the reference path, timed inside the child."""
        self._process.stdin.write("run\n")
        self._process.stdin.flush()
        return float(self._answer("seconds"))

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write("\n")
                self._process.stdin.close()
                self._process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "ReferenceProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compared_with_original(ours: float, original: Optional[float], unit: str) -> dict:
    """The record's fields about the authors' code: its figure and ours over it, both measured in
    this run, or a note that it was not measured. ``unit``: ``"ms"`` (per call, lower is faster) or
    ``"items/s"`` (higher is faster)."""
    if original is None:
        return {"original": NOT_BUILT}
    speedup = original / ours if unit == "ms" else ours / original
    key = "original_ms_alongside" if unit == "ms" else "original_items_per_s_alongside"
    return {key: round(original, 1), "speedup_vs_original": round(speedup, 2)}


def time_alongside(ours: Callable[[], Any], plain: Optional[Callable[[], Any]],
                   original: Optional[str], original_options: dict, repeats: int, warmup: int,
                   digits: int = 1) -> tuple[float, dict]:
    """Median milliseconds of ``ours``, and the record's fields of the references timed in turn
    with it: ``plain`` (a callable) and ``original`` (a ``reference_timing`` benchmark name, run with
    ``original_options`` when the authors' stack is built); None leaves a reference out."""
    runs = [ours] + ([plain] if plain is not None else [])
    reference = (ReferenceProcess.for_benchmark(original, **original_options)
                 if original is not None else None)
    try:
        if reference is not None:
            runs.append(reference.run)
        medians = alternated_medians(*runs, repeats=repeats, warmup=warmup)
    finally:
        if reference is not None:
            reference.close()
    ms = medians[0] * 1000.0
    fields: dict[str, Any] = {}
    if plain is not None:
        fields["plain_keras_ms_alongside"] = round(medians[1] * 1000.0, digits)
        fields["speedup_vs_plain_keras"] = round(medians[1] / medians[0], 2)
    if original is not None:
        fields.update(compared_with_original(
            ms, medians[-1] * 1000.0 if reference is not None else None, "ms"))
    return ms, fields
