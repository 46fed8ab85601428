"""CKKS benchmarks: ``mpcai.he.ckks`` against raw TenSEAL, in the same run.

Ours and the baseline are timed interleaved (A, B, A, B, ...) and each
reports its median, so load from other processes hits both alike.  Every
record also gives the serialised size of the result ciphertext, ours
(``CKKSVector.serialize``) beside TenSEAL's (``CKKSVector.serialize``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tenseal as ts

from mpcai.he.ckks import CKKSContext

from ._common import record


def _interleaved(ours: Callable[[], Any], theirs: Callable[[], Any], reps: int,
                 inner: int = 1, theirs_reps: int | None = None) -> tuple[float, float]:
    """Medians (per call) of ``ours`` and ``theirs``, timed alternately after one warm-up each."""
    ours()
    theirs()
    a: list[float] = []
    b: list[float] = []
    n_theirs = reps if theirs_reps is None else theirs_reps
    for i in range(max(reps, n_theirs)):
        if i < reps:
            t0 = time.perf_counter()
            for _ in range(inner):
                ours()
            a.append((time.perf_counter() - t0) / inner)
        if i < n_theirs:
            t0 = time.perf_counter()
            for _ in range(inner):
                theirs()
            b.append((time.perf_counter() - t0) / inner)
    a.sort()
    b.sort()
    return a[len(a) // 2], b[len(b) // 2]


def _matvec_records(ctx: CKKSContext, reps: int, quick: bool) -> list[dict]:
    d_in, d_out = (256, 32) if quick else (784, 128)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, d_in)
    w = rng.uniform(-1, 1, (d_in, d_out))
    want = x @ w
    ctx.add_matvec_keys(d_in, d_out)
    tctx = ctx.tenseal_context
    v = ctx.encrypt(x)
    tv = ts.ckks_vector(tctx, x.tolist())
    wl = w.tolist()

    t0 = time.perf_counter()
    plan = ctx.prepare_matrix(w)
    v.matmul(plan)  # first call encodes the diagonals at the vector's level
    prepare_s = time.perf_counter() - t0

    out: dict[str, Any] = {}

    def ours() -> None:
        out["ours"] = v.matmul(plan)

    def theirs() -> None:
        out["theirs"] = tv.mm(wl)

    # TenSEAL's mm does one rotation per row (seconds per call): time it once in quick runs
    ours_s, theirs_s = _interleaved(ours, theirs, max(reps, 3), theirs_reps=1 if quick else reps)
    ours_err = float(np.max(np.abs(ctx.decrypt(out["ours"]) - want)))
    theirs_err = float(np.max(np.abs(np.array(out["theirs"].decrypt()) - want)))
    return [record(f"ckks vector x plain matrix {d_in}x{d_out} N=8192 (BSGS diagonals)", ours_s,
                   "TenSEAL CKKSVector.mm", theirs_s,
                   ours_max_err=ours_err, tenseal_max_err=theirs_err,
                   ours_prepare_s=prepare_s,
                   ours_ct_bytes=len(out["ours"].serialize()),
                   ours_compact_ct_bytes=len(out["ours"].compact().serialize()),
                   tenseal_ct_bytes=len(out["theirs"].serialize()))]


def _flooding_records() -> list[dict]:
    """Flooded release of a 4096-term dot product on ``n16384-hp`` at the default s and budget.

    Baseline: the owner's own (unflooded) decryption of the same ciphertext.
    Precision is ``log2(R / |error|)`` with ``R = sqrt(4096) / 3``, the RMS of
    such a dot product for inputs uniform in [-1, 1].
    """
    ctx = CKKSContext.create("n16384-hp")
    rng = np.random.default_rng(3)
    d = 4096
    a, b = rng.uniform(-1, 1, (2, d))
    dot = ctx.encrypt(a).dot(ctx.encrypt(b))
    # 1 warm-up + 5 timed + 8 precision trials = 14 of the key's 16 flooded decryptions
    ours_s, theirs_s = _interleaved(lambda: ctx.decrypt_flooded(dot), lambda: ctx.decrypt(dot), 5)
    errors, sigma = [], 0.0
    for _ in range(8):
        x, y = rng.uniform(-1, 1, (2, d))
        released, sig = ctx.decrypt_flooded(ctx.encrypt(x).dot(ctx.encrypt(y)), return_sigma=True)
        errors.append(float(released[0] - x @ y))
        sigma = float(sig[0])
    r = np.sqrt(d) / 3
    worst = float(np.max(np.abs(errors)))
    return [record("ckks flooded decryption of a 4096-term dot product N=16384 scale 2^55 "
                   "(s=40, budget 16)", ours_s, "owner's unflooded decrypt", theirs_s,
                   flood_sigma=sigma, bits_at_sigma=float(np.log2(r / sigma)),
                   # B = 2^ceil(log2(8 max_j |Im e_j|)) of the last product: sigma = 2^19.5 B * 4
                   noise_bound_log2=float(np.log2(sigma / (2.0 ** 19.5 * 4))),
                   bits_worst_of_8=float(np.log2(r / worst)),
                   error_rms_of_8=float(np.sqrt(np.mean(np.square(errors)))))]


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    ctx = CKKSContext.create("n8192")
    tctx = ctx.tenseal_context
    records = _matvec_records(ctx, reps, quick)
    records += _flooding_records()

    n = ctx.slot_count
    rng = np.random.default_rng(2)
    x, y, p = rng.uniform(-1, 1, (3, n))
    xl, pl = x.tolist(), p.tolist()
    a, b = ctx.encrypt(x), ctx.encrypt(y)
    ta, tb = ts.ckks_vector(tctx, xl), ts.ckks_vector(tctx, y.tolist())
    coeffs = [0.5, 0.197, 0.0, -0.004]  # degree-3 sigmoid approximation
    samples = max(reps, 15)
    cheap = 5 if quick else 20
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = [
        (f"encrypt {n}", lambda: ctx.encrypt(x), lambda: ts.ckks_vector(tctx, xl), 2),
        ("add (cipher + cipher)", lambda: a + b, lambda: ta + tb, cheap),
        ("add plain vector", lambda: a + p, lambda: ta + pl, cheap),
        ("mul (cipher * cipher)", lambda: a * b, lambda: ta * tb, 4),
        ("mul plain vector", lambda: a * p, lambda: ta * pl, 4),
        ("dot (cipher . cipher)", lambda: a.dot(b), lambda: ta.dot(tb), 1),
        ("sum", lambda: a.sum(), lambda: ta.sum(), 1),
        ("polyval degree 3", lambda: a.polyval(coeffs), lambda: ta.polyval(coeffs), 1),
        ("decrypt (key owner)", lambda: ctx.decrypt(a), lambda: ta.decrypt(), 4),
    ]
    for name, ours, theirs, inner in cases:
        ours_s, theirs_s = _interleaved(ours, theirs, samples, inner=inner)
        r_ours, r_theirs = ours(), theirs()
        extra: dict[str, Any] = {}
        if not isinstance(r_theirs, list):
            extra = {"ours_ct_bytes": len(r_ours.serialize()),
                     "ours_compact_ct_bytes": len(r_ours.compact().serialize()),
                     "tenseal_ct_bytes": len(r_theirs.serialize())}
        records.append(record(f"ckks {name} N=8192", ours_s, f"raw TenSEAL {name}", theirs_s,
                              **extra))
    return records
