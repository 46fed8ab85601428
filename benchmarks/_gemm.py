"""Z_2^64 GEMM benchmarks: ``ring64_gemm`` (C, single-threaded) against numpy.

Baselines, measured in the same run:

- numpy int64 matmul, ``a.astype(int64) @ b.astype(int64)`` -- what a user
  would write; numpy's integer matmul has no BLAS behind it;
- float64 BLAS matmul of the same shape -- not exact for Z_2^64, but the
  practical limit of a GEMM on this machine.  It is pinned to one thread
  (the C kernel is single-threaded): in-process with threadpoolctl when that
  is installed, else in a subprocess with the BLAS thread variables set to 1
  (which then times our kernel too, so both sides share the rounds).  The
  record says which (``blas_pinning``) and, with threadpoolctl, which BLAS
  kernel ran (``blas_kernel``; OpenBLAS honours ``OPENBLAS_CORETYPE``).

Ours runs on the best SIMD path and, when that is above AVX2, on the AVX2
path forced too; all variants are timed round by round in turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from mpcai import _bindings as nb

from . import _simd
from ._common import record

_BLAS_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _operands(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)  # benchmark data only
    a = rng.integers(0, 1 << 64, (n, n), dtype=np.uint64)
    b = rng.integers(0, 1 << 64, (n, n), dtype=np.uint64)
    return a, b, a.astype(np.float64), b.astype(np.float64)


def _timed(n: int, reps: int, levels: list[int]) -> dict[str, list[float]]:
    """Interleaved times of ours on each level and of float64 matmul (pinned by the caller)."""
    a, b, af, bf = _operands(n)
    fns = {f"ours{lv}": _simd.on_path(lv, lambda: nb.ring64_gemm(a, b)) for lv in levels}
    fns["blas"] = lambda: af @ bf
    return _simd.interleaved(fns, reps)


def _blas_kernel() -> str:
    """The BLAS library and kernel threadpoolctl reports, or ``"unknown"``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed); OPENBLAS_CORETYPE=" + os.environ.get(
            "OPENBLAS_CORETYPE", "(unset)")
    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                     for i in info) or "unknown"


def _child() -> None:
    """Subprocess entry: argv n, reps, levels (comma-separated); prints the times as JSON."""
    n, reps = int(sys.argv[1]), int(sys.argv[2])
    levels = [int(x) for x in sys.argv[3].split(",")]
    sys.stdout.write(json.dumps(_timed(n, reps, levels)))


def _one_blas_thread(n: int, reps: int, levels: list[int]) -> tuple[dict[str, list[float]], str]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            return _timed(n, reps, levels), "threadpoolctl"
    env = dict(os.environ)
    env.update(dict.fromkeys(_BLAS_THREAD_VARS, "1"))
    out = subprocess.run(
        [sys.executable, "-P", "-c", "from mpcai.benchmarks import _gemm; _gemm._child()",
         str(n), str(reps), ",".join(map(str, levels))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout), "subprocess, BLAS thread env vars = 1"


def run(reps: int = 5, quick: bool = False) -> list[dict]:
    n = 64 if quick else 512
    shape = f"{n}^3"
    levels = _simd.compared_paths()
    best = levels[0]
    a, b, af, bf = _operands(n)

    t, pinning = _one_blas_thread(n, reps, levels)
    t.update(_simd.interleaved(
        {"best": _simd.on_path(best, lambda: nb.ring64_gemm(a, b)),
         "int64": lambda: a.astype(np.int64) @ b.astype(np.int64),
         "blas_default": lambda: af @ bf}, reps))
    med = {k: _simd.median(v) for k, v in t.items()}
    kernel = _blas_kernel()

    records = [
        record(f"ring64 gemm {shape}", med["best"], "numpy int64 matmul", med["int64"],
               simd_path=_simd.path_name(best), gmac_per_s=n**3 / med["best"] / 1e9,
               ratio_q1_q3=_simd.ratio_spread(t["int64"], t["best"])),
    ]
    for lv in levels:
        tag = "" if lv == best else f" ({_simd.path_name(lv).upper()} path forced)"
        records.append(record(
            f"ring64 gemm {shape}{tag}",
            med[f"ours{lv}"],
            "float64 BLAS matmul, 1 thread (limit)",
            med["blas"],
            simd_path=_simd.path_name(lv),
            ratio_q1_q3=_simd.ratio_spread(t["blas"], t[f"ours{lv}"]),
            gmac_per_s=n**3 / med[f"ours{lv}"] / 1e9,
            blas_threads=1,
            blas_pinning=pinning,
            blas_kernel=kernel,
            blas_default_threads_s=med["blas_default"],
        ))
    return records
