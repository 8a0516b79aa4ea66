"""Arithmetic precision of the GAN and of generation: ``float32`` (default), ``mixed_bfloat16`` or
``mixed_float16``.

``float32`` is the original's arithmetic; everything faithful (the legacy parity tests, the paper
profile) uses it. The two mixed modes are optional fast modes: Keras's mixed policy keeps every
variable, optimizer slot and checkpoint in float32 and runs the convolutions, BatchNorm inputs and
activations in 16 bits. A run trained in any precision loads and generates in any other.

- ``mixed_bfloat16`` (8 bits of mantissa: a relative rounding of ~0.4% per value, float32's range).
  On a CPU with AVX512-BF16 or AMX, oneDNN's bfloat16 convolutions run several times as fast as
  float32 ones (docs/performance.md); without such instructions they are emulated and slower, which :func:`bfloat16_supported`
  warns about. GPUs from NVIDIA's Ampere generation on run it natively too.
- ``mixed_float16`` (11 bits of mantissa, range up to 65504): the mode for GPUs with float16 units
  (NVIDIA Volta and later). Its small range makes small gradients underflow, so training scales the
  losses dynamically (:func:`uses_loss_scaling`; Keras's ``LossScaleOptimizer``: a step whose
  gradients overflow is skipped and the scale halved). On CPUs TensorFlow's oneDNN convolutions
  run it no faster than float32, and its kernel gradients take a slow reference path
  (docs/performance.md), hence a warning there.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Optional

import tensorflow as tf

from ..config import PRECISIONS
from ..errors import ConfigError
_COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def compute_dtype(precision: str) -> str:
    """The dtype arithmetic runs in: ``"float32"``, ``"bfloat16"`` or ``"float16"``."""
    return _COMPUTE_DTYPES[check_precision(precision)]


def uses_loss_scaling(precision: str) -> bool:
    """True where training must scale its losses (float16's gradients underflow without it)."""
    return check_precision(precision) == "mixed_float16"


@functools.lru_cache(maxsize=1)
def bfloat16_supported() -> bool:
    """True where the CPU has native bfloat16 dot products (``avx512_bf16`` or AMX), per /proc."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def gpu_present() -> bool:
    """True where TensorFlow sees a GPU (the one probe of the devices that choices depend on)."""
    return bool(tf.config.list_physical_devices("GPU"))


def slow_precision_warning(precision: str) -> Optional[str]:
    """Why ``precision`` will likely run slower than float32 on this machine, or None."""
    # float32 first: the default needs no look at the devices (generation asks once per set).
    if check_precision(precision) == "float32" or gpu_present():
        return None
    if precision == "mixed_bfloat16" and not bfloat16_supported():
        return ("--precision mixed_bfloat16: this CPU has no native bfloat16 instructions "
                "(avx512_bf16 / AMX); bfloat16 is emulated and likely slower than float32")
    if precision == "mixed_float16":
        return ("--precision mixed_float16 is meant for GPUs: no GPU is visible, and on CPUs float16 "
                "runs no faster than float32 (mixed_bfloat16 is the CPU's fast mode)")
    return None


def warn_if_slow(precision: str, stacklevel: int = 3) -> None:
    """Warn (RuntimeWarning) when :func:`slow_precision_warning` has a reason."""
    message = slow_precision_warning(precision)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
