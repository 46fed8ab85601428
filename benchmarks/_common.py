"""Timing helpers shared by the benchmark modules."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
STEADY_MMAP_THRESHOLD = 32 << 20
STEADY_TRIM_THRESHOLD = 1 << 30


def steady_allocator() -> str:
    """Fix glibc's malloc thresholds for the rest of this process, so that rounds that
    allocate and free many multi-megabyte buffers stop paying a page-fault storm at
    random: by default glibc serves such buffers with fresh ``mmap`` s (each page
    faulted in on first touch) or returns the freed top of its heap to the OS, and
    its adaptive thresholds move with the process's history -- seen here as ~47,000
    minor faults (0.1-0.5 s of system time) in one secure-aggregation round and ~0 in
    the next, identical one.  With allocations up to 32 MiB from the heap and no trim
    below 1 GiB of free top, each round reuses the memory the previous one freed.
    Both sides of a comparison run under it.  Returns what was set (for the records),
    or ``"default"`` where there is no glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD)
            and mallopt(_M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD)):
        return "default"
    return (f"glibc mallopt: mmap threshold {STEADY_MMAP_THRESHOLD >> 20} MiB, "
            f"trim threshold {STEADY_TRIM_THRESHOLD >> 20} MiB")


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
    """One benchmark record; ``ratio = baseline_s / ours_s`` (> 1 means we are faster).
    Reported as a progress line on stderr while a suite's ``main`` runs."""
    from . import _progress

    rec = {
        "name": name,
        "ours_s": ours_s,
        "baseline_name": baseline_name,
        "baseline_s": baseline_s,
        "ratio": baseline_s / ours_s if ours_s > 0 else float("inf"),
        **extra,
    }
    _progress.measured(rec)
    return rec


def format_table(records: list[dict]) -> str:
    """A fixed-width text table of records."""
    rows = [("benchmark", "ours", "baseline", "baseline time", "ratio")]
    for r in records:
        rows.append((r["name"], fmt_s(r["ours_s"]), r["baseline_name"], fmt_s(r["baseline_s"]),
                     f"{r['ratio']:.2f}x"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    """Seconds in a readable unit."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def report(records: list[dict], reps: int, json_path: str | None) -> None:
    """Print the table (and extra figures) and optionally write the JSON records."""
    import json
    import platform
    from pathlib import Path

    print(format_table(records))
    core = {"name", "ours_s", "baseline_name", "baseline_s", "ratio"}
    for r in records:
        extra = {k: v for k, v in r.items() if k not in core}
        if extra:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in extra.items())
            print(f"  {r['name']}: {shown}")
    print(f"\n(ratio = baseline time / our time; median of {reps} runs; "
          f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()})")
    if json_path:
        Path(json_path).write_text(json.dumps(records, indent=2) + "\n")
        print(f"wrote {len(records)} records to {json_path}")
