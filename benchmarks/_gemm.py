"""Z_2^64 GEMM benchmarks: ``ring64_gemm`` (C, single-threaded) against numpy.

Baselines, measured in the same run:

- numpy int64 matmul, ``a.astype(int64) @ b.astype(int64)`` -- what a user
  would write; numpy's integer matmul has no BLAS behind it;
- float64 BLAS matmul of the same shape -- not exact for Z_2^64, but the
  practical limit of a GEMM on this machine.  It is pinned to one thread
  (the C kernel is single-threaded): in-process with threadpoolctl when that
  is installed, else in a subprocess with the BLAS thread variables set to 1.
  The record says which (``blas_pinning``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

from mpcai import _bindings as nb

from ._common import median_time, record

_BLAS_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_BLAS_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    n, reps = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(1)
    a, b = rng.random((n, n)), rng.random((n, n))
    a @ b
    ts = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    ts.sort()
    sys.stdout.write(repr(ts[len(ts) // 2]))
    """
)


def _blas_one_thread(n: int, reps: int) -> tuple[float, str]:
    """Median time of an n x n x n float64 matmul on one BLAS thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        rng = np.random.default_rng(1)
        a, b = rng.random((n, n)), rng.random((n, n))
        with threadpool_limits(limits=1, user_api="blas"):
            return median_time(lambda: a @ b, reps), "threadpoolctl"
    env = dict(os.environ)
    env.update(dict.fromkeys(_BLAS_THREAD_VARS, "1"))
    out = subprocess.run(
        [sys.executable, "-c", _BLAS_SCRIPT, str(n), str(reps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(out.stdout), "subprocess, BLAS thread env vars = 1"


def run(reps: int = 5, quick: bool = False) -> list[dict]:
    n = 64 if quick else 512
    shape = f"{n}^3"
    rng = np.random.default_rng(0)
    a = rng.integers(0, 1 << 64, (n, n), dtype=np.uint64)
    b = rng.integers(0, 1 << 64, (n, n), dtype=np.uint64)
    af, bf = a.astype(np.float64), b.astype(np.float64)

    ours = median_time(lambda: nb.ring64_gemm(a, b), reps)
    t_int64 = median_time(lambda: a.astype(np.int64) @ b.astype(np.int64), reps)
    t_blas, pinning = _blas_one_thread(n, reps)
    t_blas_default = median_time(lambda: af @ bf, reps)

    gmacs = n**3 / ours / 1e9
    name = f"ring64 gemm {shape}"
    return [
        record(name, ours, "numpy int64 matmul", t_int64, gmac_per_s=gmacs),
        record(
            name,
            ours,
            "float64 BLAS matmul (limit)",
            t_blas,
            blas_threads=1,
            blas_pinning=pinning,
            blas_default_threads_s=t_blas_default,
        ),
    ]
