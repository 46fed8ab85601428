"""CPU and SIMD-path reporting, and interleaved timing across the C kernels' SIMD paths.

The C kernels pick their SIMD path at run time (``mpcai._bindings``:
scalar, AVX2, AVX-512).  The primitives benchmarks time the best path and,
for comparison in the same run, the AVX2 path forced, interleaving every
variant round by round so that the load of a shared machine hits them alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mpcai import _bindings as nb

#: CPU flags that decide which paths the kernels (and OpenSSL, BLAS) can take.
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512ifma",
                     "avx512vbmi")


def cpu_model() -> str:
    """The CPU model name (/proc/cpuinfo on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Those of :data:`FLAGS_THAT_MATTER` that the CPU reports (Linux only; else [])."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in FLAGS_THAT_MATTER if f in have]
    except OSError:
        pass
    return []


def machine_line() -> str:
    """One line naming the CPU, its SIMD flags, the kernels' paths and the thread count."""
    paths = nb.SIMD_PATHS[: nb.simd_available() + 1]
    return (f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); flags: "
            f"{' '.join(cpu_flags()) or 'n/a'}; C kernel paths: {', '.join(paths)} "
            f"(default {nb.simd_path()}); single-threaded unless a name says threads")


def compared_paths() -> list[int]:
    """The SIMD levels to time: the best one and, if it is above AVX2, AVX2 too."""
    best = nb.simd_level()
    return [best, 1] if best > 1 else [best]


def path_name(level: int) -> str:
    """The name of SIMD level ``level``."""
    return nb.SIMD_PATHS[level]


@contextmanager
def simd_path(level: int) -> Iterator[None]:
    """Run the body with SIMD level ``level`` selected; restore the previous level after."""
    before = nb.simd_level()
    nb.simd_select(level)
    try:
        yield
    finally:
        nb.simd_select(before)


def on_path(level: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` wrapped to run with SIMD level ``level`` selected."""

    def run() -> Any:
        with simd_path(level):
            return fn()

    return run


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Wall times of every ``fns`` entry, ``reps`` rounds of one call each, in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, reps)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    """The median of ``xs``."""
    return statistics.median(xs)


def ratio_spread(baseline: list[float], ours: list[float]) -> str:
    """The quartiles of the per-round ratios baseline/ours, as ``"q1..q3"``."""
    r = sorted(b / o for b, o in zip(baseline, ours, strict=True))
    if len(r) < 4:
        return f"{r[0]:.2f}..{r[-1]:.2f}"
    q = statistics.quantiles(r, n=4)
    return f"{q[0]:.2f}..{q[2]:.2f}"
