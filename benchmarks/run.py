"""``python -m benchmarks.run [--only NAME ...] [--json]``: speed of the hot paths on this machine.

Prints one JSON line per benchmark (``--json``) or a table. Every ratio is between two figures of
this run, timed alternately: ours against a plain Keras 3 version or a one-at-a-time loop, and
against the authors' code itself when ``../shared/reference/setup.sh`` has built their stack
(``benchmarks/reference.py``; ``--no-original`` leaves it out). Warm-up is excluded; each figure is
the median of several repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Callable, Sequence

from eeg2image_tf.models.precision import PRECISIONS

from .common import machine_line


def _suite(quick: bool, scratch: str, fast_precision: str = "mixed_bfloat16",
           original: bool = True) -> dict[str, list[Callable[[], dict[str, Any]]]]:
    """``scratch``: where ``generate`` writes; deleted by the caller after all benchmarks (see
    ``benchmarks.generate``: deleting thousands of files slows the next file creations).
    ``fast_precision``: the optional mixed mode timed beside the default float32. ``original``:
    time the authors' code beside the default rows when their stack is built."""
    from . import encoder_step, gan_step, generate, inception

    gan_repeats = 2 if quick else 5
    return {
        "encoder_step": [lambda: encoder_step.run(compare_plain=True, compare_original=original),
                         lambda: encoder_step.run(unroll=False),
                         lambda: encoder_step.run(jit=True),
                         # EEGCVPR40's trials (440 steps of 128 channels, 40 classes) at the
                         # cvpr40 profile's batch: its LSTMs run as a loop.
                         lambda: encoder_step.run(repeats=3 if quick else 5, batch_size=128,
                                                  unroll=False, num_samples=440, num_channels=128,
                                                  num_classes=40)],
        "gan_step": [
            # The default (exact: split first convolution, fused BatchNorm, matrix-product and
            # Winograd convolutions), timed alternately with the plain Keras 3 model and the
            # authors' code; then the exact re-expressions switched off one after another, the
            # optional mixed mode, the paper's batch.
            lambda: gan_step.run(batch_size=16, repeats=gan_repeats, compare_plain=True,
                                 compare_original=original),
            lambda: gan_step.run(batch_size=16, repeats=gan_repeats, matmul_convs=False),
            lambda: gan_step.run(batch_size=16, repeats=gan_repeats, matmul_convs=False,
                                 fused_batch_norm=False),
            lambda: gan_step.run(batch_size=16, repeats=gan_repeats, precision=fast_precision),
            lambda: gan_step.run(batch_size=128, repeats=1 if quick else 3),
        ],
        "generate": [lambda: generate.run(repeats=1 if quick else 3, scratch=scratch,
                                          compare_original=original),
                     lambda: generate.run(repeats=1 if quick else 3, precision=fast_precision,
                                          scratch=scratch)],
        "inception": [lambda: inception.run()],
    }


# The ratios a record may hold, each between two figures of the same run.
RATIOS = (("speedup_vs_original", "the authors' code"),
          ("speedup_vs_plain_keras", "plain Keras 3"),
          ("speedup_vs_one_at_a_time", "one at a time"))


def _format(record: dict[str, Any]) -> str:
    figure = (f"{record['ms_per_step']:.1f} ms/step" if "ms_per_step" in record
              else f"{record['items_per_s']:.1f} items/s")
    ratios = [(record.get(key), label) for key, label in RATIOS]
    ratio_text = "".join(f"  x{ratio:.2f} vs {label}" for ratio, label in ratios if ratio is not None)
    if "original" in record:
        ratio_text += "  (authors' code not measured: ../shared/reference/setup.sh)"
    shown = {"name", "ms_per_step", "items_per_s", "original", *(key for key, _ in RATIOS)}
    settings = ", ".join(f"{k}={v}" for k, v in record.items() if k not in shown)
    return f"{record['name']:<14} {figure:>18}{ratio_text}   ({settings})"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["encoder_step", "gan_step", "generate",
                                                      "inception"])
    parser.add_argument("--json", action="store_true", help="one JSON line per benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-original", action="store_true",
                        help="do not time the authors' code even when its stack is built")
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=[p for p in PRECISIONS if p != "float32"],
                        help="the optional mixed mode timed beside float32 (mixed_float16 is for "
                             "GPUs: on CPUs its gradients run a reference path, ~100x slower)")
    args = parser.parse_args(argv)
    print(machine_line(), file=sys.stderr if args.json else sys.stdout, flush=True)
    with tempfile.TemporaryDirectory(prefix="eeg2image_bench_") as scratch:
        for name, runs in _suite(args.quick, scratch, args.precision,
                                 original=not args.no_original).items():
            if args.only and name not in args.only:
                continue
            for run in runs:
                record = run()
                print(json.dumps(record) if args.json else _format(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
