"""``mpcai bench primitives``: the C core against its baselines, in one run.

Every record is ``{"name", "ours_s", "baseline_name", "baseline_s", "ratio"}``
with ``ratio = baseline_s / ours_s`` (median of ``reps`` repetitions, both
sides measured in this run), plus optional extra figures.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path

from . import _gemm, _prg, _shamir

SUITES: dict[str, Callable[..., list[dict]]] = {
    "prg": _prg.run,
    "gemm": _gemm.run,
    "shamir": _shamir.run,
}


def run(reps: int = 7, quick: bool = False, only: list[str] | None = None) -> list[dict]:
    """Run the suites (all, or those named in ``only``) and return their records."""
    records: list[dict] = []
    for name, fn in SUITES.items():
        if only and name not in only:
            continue
        records.extend(fn(reps=reps, quick=quick))
    return records


def format_table(records: list[dict]) -> str:
    """A fixed-width text table of records."""
    rows = [("benchmark", "ours", "baseline", "baseline time", "ratio")]
    for r in records:
        rows.append((
            r["name"], _fmt_s(r["ours_s"]), r["baseline_name"], _fmt_s(r["baseline_s"]),
            f"{r['ratio']:.2f}x",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def main(reps: int = 7, quick: bool = False, json_path: str | None = None,
         only: list[str] | None = None) -> int:
    records = run(reps=reps, quick=quick, only=only)
    print(format_table(records))
    print(f"\n(ratio = baseline time / our time; median of {reps} runs; "
          f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()})")
    if json_path:
        Path(json_path).write_text(json.dumps(records, indent=2) + "\n")
        print(f"wrote {len(records)} records to {json_path}")
    return 0
