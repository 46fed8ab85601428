"""Quantisation benchmarks: the C kernel (csrc/quantize.c) against the numpy computation.

- ``quantize`` on a float32 vector (uint64 levels out) against
  ``encoding._quantize_reference`` (float64 temporaries, ``np.clip`` / ``np.rint``,
  ``astype``), the same arithmetic in numpy;
- a secure-aggregation client's quantise step: ``quantize_into`` (weight x levels
  straight into the uint32 message vector, clipped count) against the chunked numpy
  loop the client ran before (``quantize`` per 2^18 values, the clipped count, the
  weight multiplied into the vector).

Single-threaded; ours on the best SIMD path and, when that is AVX-512, on the AVX2
path forced too; every variant timed round by round in turn.
"""

from __future__ import annotations

import numpy as np

from mpcai import encoding

from . import _simd
from ._common import record

_CHUNK = 1 << 18  # the client's former chunk
CLIP, BITS, WEIGHT = 1.0, 16, 7


def _former_client_step(x: np.ndarray, vec: np.ndarray) -> int:
    clipped = 0
    for lo in range(0, x.size, _CHUNK):
        chunk = x[lo:lo + _CHUNK]
        q = encoding._quantize_reference(chunk, clip=CLIP, bits=BITS, out_of_range="clip")
        clipped += int(np.count_nonzero(chunk < -CLIP)) + int(np.count_nonzero(chunk > CLIP))
        np.multiply(q, np.uint64(WEIGHT), out=vec[lo:lo + q.size], casting="unsafe")
    return clipped


def run(reps: int = 9, quick: bool = False) -> list[dict]:
    n = 1 << 14 if quick else 10**6
    label = "1e6" if n == 10**6 else str(n)
    rng = np.random.default_rng(0)  # benchmark data only
    x = rng.normal(0.0, 0.4, n).astype(np.float32)
    vec = np.empty(n + 2, dtype=np.uint32)
    levels = _simd.compared_paths()
    fns = {
        "ref": lambda: encoding._quantize_reference(x, clip=CLIP, bits=BITS,
                                                    out_of_range="clip"),
        "loop": lambda: _former_client_step(x, vec),
    }
    for lv in levels:
        fns[f"q{lv}"] = _simd.on_path(lv, lambda: encoding.quantize(
            x, clip=CLIP, bits=BITS, out_of_range="clip"))
        fns[f"into{lv}"] = _simd.on_path(lv, lambda: encoding.quantize_into(
            x, vec[:-2], clip=CLIP, bits=BITS, out_of_range="clip", weight=WEIGHT))
    t = _simd.interleaved(fns, reps)
    med = {k: _simd.median(v) for k, v in t.items()}
    records = []
    for lv in levels:
        tag = "" if lv == levels[0] else f" ({_simd.path_name(lv).upper()} path forced)"
        records.append(record(
            f"quantize float32 d={label}{tag}", med[f"q{lv}"],
            "numpy (encoding._quantize_reference)", med["ref"],
            simd_path=_simd.path_name(lv), values_per_s=n / med[f"q{lv}"],
            ratio_q1_q3=_simd.ratio_spread(t["ref"], t[f"q{lv}"])))
        records.append(record(
            f"secagg client quantise x weight, uint32, d={label}{tag}", med[f"into{lv}"],
            "former chunked numpy loop", med["loop"],
            simd_path=_simd.path_name(lv), values_per_s=n / med[f"into{lv}"],
            ratio_q1_q3=_simd.ratio_spread(t["loop"], t[f"into{lv}"])))
    return records
