"""Timing helpers: warm-up excluded, median of repeats, one JSON-able record per benchmark."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable


def median_seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Run ``run`` ``warmup`` times untimed, then ``repeats`` timed; return (median, all) seconds."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def alternated_medians(*runs: Callable[[], Any], repeats: int, warmup: int = 2
                       ) -> tuple[float, ...]:
    """Median seconds of each of ``runs``, timed in turn ``repeats`` times each after ``warmup``
    untimed rounds, so that all see the same machine state (a shared machine's speed drifts
    between hours, so figures timed apart are not comparable)."""
    for _ in range(warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, bucket in zip(runs, times):
            start = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - start)
    return tuple(statistics.median(bucket) for bucket in times)


def machine_line() -> str:
    """One line naming what the figures were measured on: CPU model and cores, the instruction sets
    the fast modes use, GPUs, TensorFlow and Keras versions: the figures depend on all of them."""
    import keras
    import tensorflow as tf

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    extensions = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16") if f in flags]
    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    return (f"machine: {model}, {os.cpu_count()} cores, {' '.join(extensions) or 'no AVX-512'}; "
            f"GPUs: {', '.join(gpus) or 'none'}; TensorFlow {tf.__version__}, Keras {keras.__version__}")
