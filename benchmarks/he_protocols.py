"""``mpcai bench he-protocols``: the protocols on homomorphic encryption, in one run.

Suites (records as in the other benches: ``ratio = baseline_s / ours_s``, both sides
measured in this run, sizes and errors as extra fields):

* ``inference``: CKKS client-server inference (:mod:`mpcai.protocols.inference.he`)
  against the evaluation TenSEAL's tutorials write (breast-cancer logistic regression,
  digits MLP with square activations, a small CNN), per query, one and batched;
* ``aggregation``: threshold-Paillier homomorphic aggregation
  (:mod:`mpcai.protocols.he_aggregation`, N = 50, d = 100,000, 3-of-5) against plain
  unpacked phe and against our mask-based secure aggregation on the same N and d;
* ``committee-ckks``: CKKS under a committee key (encrypt, add, a holder's flooded
  partial decryption, combine) beside the single-key operations.

The dealerless two-party inference (oblivious transfer, no HE) is in ``mpcai bench
inference``, beside SPU's CHEETAH.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _ckks_threshold, _he_aggregation, _he_inference, _progress
from ._common import report


def _inference(reps: int, quick: bool) -> list[dict]:
    return _he_inference.run(quick=quick)


def _aggregation(reps: int, quick: bool) -> list[dict]:
    return _he_aggregation.run(quick=quick)


def _committee(reps: int, quick: bool) -> list[dict]:
    return _ckks_threshold.run(reps=reps, quick=quick)


SUITES: dict[str, Callable[[int, bool], list[dict]]] = {
    "inference": _inference,
    "aggregation": _aggregation,
    "committee-ckks": _committee,
}


def run(reps: int = 3, quick: bool = False, only: list[str] | None = None) -> list[dict]:
    """Run the suites (all, or those named in ``only``) and return their records."""
    records: list[dict] = []
    for name, fn in SUITES.items():
        if not only or name in only:
            _progress.step(name)
            records.extend(fn(reps, quick))
    return records


def main(reps: int = 3, quick: bool = False, json_path: str | None = None,
         only: list[str] | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    with _progress.running("mpcai bench he-protocols",
                           [s for s in SUITES if not only or s in only]):
        records = run(reps=reps, quick=quick, only=only)
    report(records, reps, json_path)
    return 0
