"""Arithmetic precision of the GAN and of generation: ``float32`` (default) or ``mixed_bfloat16``.

``float32`` is the original's arithmetic; everything faithful (the legacy parity tests, the paper
profile) uses it. ``mixed_bfloat16`` is an optional fast mode: Keras's mixed policy keeps every
variable, optimizer slot and checkpoint in float32 and runs the convolutions, BatchNorm inputs and
activations in bfloat16 (8 bits of mantissa: a relative rounding of ~0.4% per value). On a CPU with
AVX512-BF16 or AMX, oneDNN's bfloat16 convolutions run about twice as fast as float32 ones; without
such instructions they are emulated and slower, which :func:`bfloat16_supported` warns about.
A run trained in either precision loads and generates in either.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .errors import ConfigError

PRECISIONS = ("float32", "mixed_bfloat16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def compute_dtype(precision: str) -> str:
    """The dtype arithmetic runs in: ``"float32"`` or ``"bfloat16"``."""
    return "bfloat16" if check_precision(precision) == "mixed_bfloat16" else "float32"


@functools.lru_cache(maxsize=1)
def bfloat16_supported() -> bool:
    """True where the CPU has native bfloat16 dot products (``avx512_bf16`` or AMX), per /proc."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))
