"""Timing helpers: warm-up excluded, median of repeats, one JSON-able record per benchmark."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

# The authors' code (TF 2.15 + tensorflow-addons) measured on this 2-core machine kind
# (../shared/docs/performance-notes.md); the ratios printed are ours over these.
ORIGINAL = {
    "encoder_step_ms_b256": 143.0,
    # A plain Keras 3 step (keras LSTMs, the cubic triplet loss of tensorflow-addons' algorithm)
    # measured beside it while planning: the bridge from a same-process measurement to an estimate.
    "plain_keras_encoder_step_ms_b256": 96.0,
    "gan_step_ms_b16": 2150.0,
    # The plain Keras 3 port (no exact tricks), measured beside it while planning: the bridge from
    # a same-process measurement of that model to an estimate of the authors' iteration.
    "plain_keras_gan_step_ms_b16": 2260.0,
    "generate_images_per_s": 60.0,
    "generate_forward_images_per_s": 189.0,
}


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


def alternated_medians(first, second, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, timed in turn ``repeats`` times each after
    ``warmup`` untimed rounds, so that both see the same machine state (this machine kind's speed
    drifts between hours)."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def machine_line() -> str:
    """One line naming what the figures were measured on: CPU model and cores, the instruction sets
    the fast modes use, GPUs, TensorFlow and Keras versions. This machine kind's hardware differs
    between sessions (AMD EPYC one day, an Intel Xeon with AMX another), and so do the figures."""
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
