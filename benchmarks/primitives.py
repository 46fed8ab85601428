"""``mpcai bench primitives``: the C core against its baselines, in one run.

Every record is ``{"name", "ours_s", "baseline_name", "baseline_s", "ratio"}``
with ``ratio = baseline_s / ours_s`` (median of ``reps`` repetitions, both
sides measured in this run), plus optional extra figures.  Ours runs on the
best SIMD path of the C kernels and, where that is AVX-512, on the AVX2 path
forced too (names ending in ``(AVX2 path forced)``), interleaved with the
baselines round by round.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _gemm, _prg, _progress, _quantize, _shamir, _simd
from ._common import report

SUITES: dict[str, Callable[..., list[dict]]] = {
    "prg": _prg.run,
    "gemm": _gemm.run,
    "shamir": _shamir.run,
    "quantize": _quantize.run,
}


def run(reps: int = 7, quick: bool = False, only: list[str] | None = None) -> list[dict]:
    """Run the suites (all, or those named in ``only``) and return their records."""
    records: list[dict] = []
    for name, fn in SUITES.items():
        if only and name not in only:
            continue
        _progress.step(name)
        records.extend(fn(reps=reps, quick=quick))
    return records


def main(reps: int = 7, quick: bool = False, json_path: str | None = None,
         only: list[str] | None = None) -> int:
    """Run, print the machine line and the table, optionally write JSON; returns an exit code.

    The machine line names the CPU model, its SIMD flags and the C kernels'
    paths; every record also carries the path it ran on (``simd_path``) and
    the CPU model (``cpu``), so the JSON is self-describing.
    """
    print(_simd.machine_line() + "\n")
    with _progress.running("mpcai bench primitives", [s for s in SUITES if not only or s in only]):
        records = run(reps=reps, quick=quick, only=only)
    cpu = _simd.cpu_model()
    for r in records:
        r.setdefault("cpu", cpu)
    report(records, reps, json_path)
    return 0
