"""``mpcai bench he``: Paillier against phe and CKKS against raw TenSEAL, in one run.

Records as in ``mpcai bench primitives``: ``ratio = baseline_s / ours_s``,
both sides measured in this run; ciphertext sizes ride along as extra fields.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _ckks, _paillier, _progress
from ._common import report

SUITES: dict[str, Callable[..., list[dict]]] = {"paillier": _paillier.run, "ckks": _ckks.run}


def run(reps: int = 5, quick: bool = False, only: list[str] | None = None) -> list[dict]:
    """Run the suites (all, or those named in ``only``) and return their records."""
    records: list[dict] = []
    for name, fn in SUITES.items():
        if not only or name in only:
            _progress.step(name)
            records.extend(fn(reps=reps, quick=quick))
    return records


def main(reps: int = 5, quick: bool = False, json_path: str | None = None,
         only: list[str] | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    with _progress.running("mpcai bench he", [s for s in SUITES if not only or s in only]):
        records = run(reps=reps, quick=quick, only=only)
    report(records, reps, json_path)
    return 0
