"""Timing helpers shared by the benchmark modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def median_time(fn: Callable[[], Any], reps: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``reps`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def record(name: str, ours_s: float, baseline_name: str, baseline_s: float, **extra: Any) -> dict:
    """One benchmark record; ``ratio = baseline_s / ours_s`` (> 1 means we are faster)."""
    return {
        "name": name,
        "ours_s": ours_s,
        "baseline_name": baseline_name,
        "baseline_s": baseline_s,
        "ratio": baseline_s / ours_s if ours_s > 0 else float("inf"),
        **extra,
    }
