"""GF(2^61 - 1) and Shamir benchmarks: mpcai's C kernels against numpy references.

The references are exact, vectorised numpy -- written to be as fast as numpy
allows, since every ratio is claimed against them:

* modular products by limb splitting: ``a = a1 2^32 + a0`` so every partial
  product fits in uint64, then folding with ``2^61 = 1`` and ``2^64 = 8``;
* Shamir evaluation at the points ``1..n`` by forward differences (d
  additions per point after a small-integer change of basis, the same
  algorithm as the C kernel), Horner with 32-bit-limb steps otherwise;
* randomness: the same ChaCha20 field PRG stream as mpcai, from OpenSSL
  through ``cryptography`` (a project dependency), streamed chunk by chunk,
  so the reference produces bit-identical shares (checked in every run);
* column chunks sized for the L2/L3 caches, ``out=`` everywhere.

``run()`` returns one record per comparison (medians of ``reps`` repetitions
measured in the same process); it prints nothing.  One record shares on 2
threads (``threads=2``) and is compared with the single-threaded numpy
reference: its ratio is multi-threaded vs single-threaded, as its name and
``threads`` / ``baseline_threads`` fields say.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from mpcai.sharing import shamir

from . import _progress, _simd

__all__ = [
    "NumpyFieldPRG",
    "np_lagrange_lincomb",
    "np_mul",
    "np_poly_eval",
    "np_reconstruct",
    "np_share",
    "run",
]

PRIME = shamir.FIELD_P
_P = np.uint64(PRIME)
_M32 = np.uint64(0xFFFFFFFF)
_S3, _S29, _S32, _S61 = (np.uint64(k) for k in (3, 29, 32, 61))


class NumpyFieldPRG:
    """The field PRG stream of ``mpcai`` (ChaCha20, key = seed, nonce = 0,
    counter from 0, little-endian words masked to 61 bits, p rejected), read
    in order with OpenSSL's ChaCha20."""

    def __init__(self, seed: bytes) -> None:
        # cryptography's 16-byte ChaCha20 nonce = 32-bit counter || 96-bit nonce
        self._enc = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
        self._zeros = b""
        self._buf = bytearray()

    def read(self, m: int) -> np.ndarray:
        """The next ``m`` accepted field elements."""
        if len(self._zeros) < 8 * m:
            self._zeros = bytes(8 * m)
            self._buf = bytearray(8 * m + 16)
        n = self._enc.update_into(memoryview(self._zeros)[: 8 * m], self._buf)
        words = np.frombuffer(self._buf, dtype="<u8", count=n // 8) & _P
        bad = words == _P
        if not bad.any():
            return words
        kept = words[~bad]  # rare (2^-61 each): top up from the stream
        return np.concatenate([kept, self.read(m - kept.size)])


def np_mul(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """(a * b) mod p for uint64 arrays of reduced elements (limb-split, exact)."""
    a = a.reshape(-1)
    b = b.reshape(-1)
    out = np.empty_like(a)
    bufs = [np.empty(min(chunk, a.size), np.uint64) for _ in range(5)]
    for s in range(0, a.size, chunk):
        e = min(a.size, s + chunk)
        a0, a1, b0, t, u = (x[: e - s] for x in bufs)
        np.bitwise_and(a[s:e], _M32, out=a0)
        np.right_shift(a[s:e], _S32, out=a1)
        np.bitwise_and(b[s:e], _M32, out=b0)
        np.right_shift(b[s:e], _S32, out=u)  # b1
        # a b = a1 b1 2^64 + (a0 b1 + a1 b0) 2^32 + a0 b0,  2^64 = 8 (mod p)
        np.multiply(a1, u, out=t)
        np.left_shift(t, _S3, out=t)  # 8 a1 b1 < 2^61
        np.multiply(a0, u, out=u)
        np.multiply(a1, b0, out=a1)
        u += a1  # mid < 2^62;  mid 2^32 = (mid >> 29) + ((mid << 32) & p)
        np.right_shift(u, _S29, out=a1)
        t += a1
        np.left_shift(u, _S32, out=u)
        np.bitwise_and(u, _P, out=u)
        t += u
        np.multiply(a0, b0, out=a0)  # < 2^64
        np.bitwise_and(a0, _P, out=u)
        t += u
        np.right_shift(a0, _S61, out=a0)
        t += a0  # < 2^63
        np.right_shift(t, _S61, out=u)
        np.bitwise_and(t, _P, out=t)
        t += u
        np.subtract(t, _P, out=u)
        np.minimum(t, u, out=out[s:e])  # t - p wraps above t when t < p
    return out.reshape(a.shape)


def np_lagrange_lincomb(
    rows: Sequence[np.ndarray], weights: Sequence[int], chunk: int = 1 << 14
) -> np.ndarray:
    """sum_j weights[j] * rows[j] mod p (weights Python ints < p, rows uint64 < p)."""
    size = rows[0].size
    out = np.empty(size, np.uint64)
    bufs = [np.empty(min(chunk, size), np.uint64) for _ in range(5)]
    limbs = [(np.uint64(w & 0xFFFFFFFF), np.uint64(w >> 32)) for w in weights]
    for s in range(0, size, chunk):
        e = min(size, s + chunk)
        a, x0, x1, y, z = (buf[: e - s] for buf in bufs)
        a.fill(0)
        for j, (row, (w0, w1)) in enumerate(zip(rows, limbs, strict=True)):
            r = row.reshape(-1)[s:e]
            np.bitwise_and(r, _M32, out=x0)
            np.right_shift(r, _S32, out=x1)
            np.multiply(x0, w1, out=y)
            np.multiply(x1, w0, out=z)
            y += z  # mid = r0 w1 + r1 w0 < 2^62
            np.multiply(x0, w0, out=x0)  # lo < 2^64
            np.bitwise_and(x0, _P, out=z)
            a += z
            np.right_shift(x0, _S61, out=x0)
            a += x0
            np.multiply(x1, w1, out=x1)
            np.left_shift(x1, _S3, out=x1)  # 8 r1 w1 < 2^61  (2^64 = 8 mod p)
            a += x1
            np.right_shift(y, _S29, out=z)  # mid 2^32 = (mid >> 29) + ((mid << 32) & p)
            a += z
            np.left_shift(y, _S32, out=y)
            np.bitwise_and(y, _P, out=y)
            a += y  # each row adds < 3 2^61 + 2^34: fold every second row
            if j % 2:
                np.right_shift(a, _S61, out=z)
                np.bitwise_and(a, _P, out=a)
                a += z
        np.right_shift(a, _S61, out=z)
        np.bitwise_and(a, _P, out=a)
        a += z
        np.subtract(a, _P, out=z)
        np.minimum(a, z, out=out[s:e])
    return out


def _surjections(d: int) -> list[list[int]] | None:
    """T[m][k] = k! S(m, k), or None if the lazy sums could overflow."""
    T = [[0] * (d + 1) for _ in range(d + 1)]
    T[0][0] = 1
    for m in range(1, d + 1):
        for k in range(1, m + 1):
            T[m][k] = k * (T[m - 1][k - 1] + T[m - 1][k])
    if any(sum(T[m][k] for m in range(k, d + 1)) >= 1 << 32 for k in range(1, d + 1)):
        return None
    return T


def _eval_step(coefs: np.ndarray, xs: Sequence[int], T: list[list[int]], out: np.ndarray) -> None:
    """Forward differences: D_k = sum_m c_m T[m][k], then D_k += D_{k+1} per x."""
    ncoef, w = coefs.shape
    d = ncoef - 1
    D = np.empty((ncoef, w), np.uint64)
    lo = coefs & _M32
    hi = coefs >> _S32
    sl, sh, tmp = (np.empty(w, np.uint64) for _ in range(3))
    D[0] = coefs[0]
    for k in range(1, ncoef):
        sl.fill(0)
        sh.fill(0)
        for m in range(k, ncoef):
            tm = np.uint64(T[m][k])
            np.multiply(lo[m], tm, out=tmp)
            sl += tmp  # < 2^64 (checked by _surjections)
            np.multiply(hi[m], tm, out=tmp)
            sh += tmp  # < 2^61
        Dk = D[k]
        np.bitwise_and(sl, _P, out=Dk)
        np.right_shift(sl, _S61, out=sl)
        Dk += sl
        np.right_shift(sh, _S29, out=sl)
        Dk += sl
        np.left_shift(sh, _S32, out=sh)
        np.bitwise_and(sh, _P, out=sh)
        Dk += sh  # < 2^63
        np.right_shift(Dk, _S61, out=sl)
        np.bitwise_and(Dk, _P, out=Dk)
        Dk += sl  # <= p + 3
        np.subtract(Dk, _P, out=sl)
        np.minimum(Dk, sl, out=Dk)
    rows: dict[int, list[int]] = {}
    for j, x in enumerate(xs):
        rows.setdefault(int(x), []).append(j)
    low, high = D[:-1], D[1:]
    spare = np.empty((d, w), np.uint64)
    for x in range(max(xs) + 1):
        if x:
            np.add(low, high, out=spare)  # simultaneous D_k += D_{k+1}
            np.subtract(spare, _P, out=low)
            np.minimum(spare, low, out=low)  # canonical again
        for j in rows.get(x, ()):
            out[j] = D[0]


def _eval_horner(coefs: np.ndarray, xs: Sequence[int], out: np.ndarray) -> None:
    """Horner with acc x split as (acc_hi x) 2^32 + acc_lo x (points < 2^32)."""
    ncoef, w = coefs.shape
    x = np.array(xs, dtype=np.uint64)[:, None]
    shape = (len(xs), w)
    acc, lo, hi, t = (np.empty(shape, np.uint64) for _ in range(4))
    acc[...] = coefs[ncoef - 1]
    for k in range(ncoef - 2, -1, -1):
        np.bitwise_and(acc, _M32, out=lo)
        np.multiply(lo, x, out=lo)  # < 2^64
        np.right_shift(acc, _S32, out=hi)
        np.multiply(hi, x, out=hi)  # < 2^63 (acc < 2^63)
        np.bitwise_and(lo, _P, out=acc)
        np.right_shift(lo, _S61, out=lo)
        acc += lo
        np.right_shift(hi, _S29, out=t)
        acc += t
        np.left_shift(hi, _S32, out=hi)
        np.bitwise_and(hi, _P, out=hi)
        acc += hi
        acc += coefs[k]  # < 2^63
    np.right_shift(acc, _S61, out=t)
    np.bitwise_and(acc, _P, out=acc)
    acc += t
    np.subtract(acc, _P, out=t)
    np.minimum(acc, t, out=out)


def _use_step(d: int, xs: Sequence[int]) -> list[list[int]] | None:
    if d < 1 or max(xs) > 4 * len(xs) + 16:
        return None
    return _surjections(d)


def np_poly_eval(coefs: np.ndarray, xs: Sequence[int], chunk: int = 1 << 14) -> np.ndarray:
    """out[j, i] = sum_k coefs[k, i] xs[j]^k mod p; points are ints < 2^32."""
    ncoef, size = coefs.shape
    out = np.empty((len(xs), size), np.uint64)
    T = _use_step(ncoef - 1, xs)
    for s in range(0, size, chunk):
        e = min(size, s + chunk)
        if T is not None:
            _eval_step(coefs[:, s:e], xs, T, out[:, s:e])
        else:
            _eval_horner(coefs[:, s:e], xs, out[:, s:e])
    return out


def np_share(
    secret: np.ndarray,
    t: int,
    n: int,
    seed: bytes,
    chunk: int = 1 << 14,
    *,
    horner: bool = False,
) -> np.ndarray:
    """Shares at 1..n as an (n, size) array, bit-identical to ``fp_shamir_share``.

    Forward differences unless ``horner`` (the textbook evaluation, slower).
    """
    d = t - 1
    size = secret.size
    xs = list(range(1, n + 1))
    out = np.empty((n, size), np.uint64)
    prg = NumpyFieldPRG(seed)
    T = None if horner else _use_step(d, xs)
    coefs = np.empty((t, min(chunk, size)), np.uint64)
    for s in range(0, size, chunk):
        e = min(size, s + chunk)
        c = coefs[:, : e - s]
        c[0] = secret[s:e]
        if d:
            c[1:] = prg.read((e - s) * d).reshape(e - s, d).T
        if T is not None:
            _eval_step(c, xs, T, out[:, s:e])
        else:
            _eval_horner(c, xs, out[:, s:e])
    return out


def np_reconstruct(rows: Sequence[np.ndarray], xs: Sequence[int]) -> np.ndarray:
    """f(0) from len(xs) shares (no consistency check, like mpcai with exactly t)."""
    return np_lagrange_lincomb(rows, [int(w) for w in shamir.lagrange_weights(xs, 0)])


# ---- runner -----------------------------------------------------------------


def _median_time(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _record(name: str, ours: float, base_name: str, base: float, elements: int) -> dict[str, Any]:
    rec = {
        "name": name,
        "ours_s": ours,
        "baseline_name": base_name,
        "baseline_s": base,
        "ratio": base / ours,
        "elements": elements,
        "elements_per_s": elements / ours,
    }
    _progress.measured(rec)  # a line on stderr while ``mpcai bench`` runs
    return rec


def run(reps: int = 5, quick: bool = False) -> list[dict[str, Any]]:
    """Shamir share+reconstruct and field multiplication, mpcai vs numpy."""
    size = 10_000 if quick else 1_000_000
    t, n = 10, 20
    rng = np.random.default_rng(2024)  # benchmark data only, not crypto
    secret = rng.integers(0, PRIME, size, dtype=np.uint64)
    seed = os.urandom(32)
    records = []

    # correctness of the baseline in this run: same shares, same secret
    ours_shares = shamir.share(secret, t, n, seed=seed)
    ref_shares = np_share(secret, t, n, seed)
    if not all(np.array_equal(s.values, ref_shares[j]) for j, s in enumerate(ours_shares)):
        raise AssertionError("numpy reference shares differ from mpcai's")
    if not np.array_equal(np_reconstruct(list(ref_shares[:t]), range(1, t + 1)), secret):
        raise AssertionError("numpy reference reconstruction failed")
    del ours_shares, ref_shares

    def ours_sr() -> None:
        sh = shamir.share(secret, t, n)
        shamir.reconstruct(sh[:t], t)

    def ref_sr(horner: bool = False) -> None:
        sh = np_share(secret, t, n, os.urandom(32), horner=horner)
        np_reconstruct(list(sh[:t]), range(1, t + 1))

    # ours on the best SIMD path and (if that is above AVX2) the AVX2 path
    # forced, interleaved round by round with the numpy reference
    levels = _simd.compared_paths()
    fns = {f"ours{lv}": _simd.on_path(lv, ours_sr) for lv in levels}
    fns["ref"] = ref_sr
    times = _simd.interleaved(fns, reps)
    base_name = "numpy (limb-split, forward differences, OpenSSL ChaCha20)"
    for lv in levels:
        tag = "" if lv == levels[0] else f" ({_simd.path_name(lv).upper()} path forced)"
        r = _record(
            f"shamir share+reconstruct {size // 1000}k t={t} n={n}{tag}",
            statistics.median(times[f"ours{lv}"]),
            base_name,
            statistics.median(times["ref"]),
            size,
        )
        r["simd_path"] = _simd.path_name(lv)
        r["ratio_q1_q3"] = _simd.ratio_spread(times["ref"], times[f"ours{lv}"])
        records.append(r)
    rec = records[0]
    # for information: the same numpy code with textbook Horner evaluation
    rec["baseline_horner_s"] = _median_time(lambda: ref_sr(horner=True), max(1, reps // 2))
    rec["ratio_vs_horner"] = rec["baseline_horner_s"] / rec["ours_s"]

    # the same work with the sharing split over 2 threads (reconstruction stays
    # single-threaded), against the same single-threaded numpy reference time
    def ours_sr_mt() -> None:
        sh = shamir.share(secret, t, n, threads=2)
        shamir.reconstruct(sh[:t], t)

    rec_mt = _record(
        f"shamir share+reconstruct {size // 1000}k t={t} n={n}, share on 2 threads",
        _median_time(ours_sr_mt, reps),
        rec["baseline_name"] + ", single-threaded",
        rec["baseline_s"],
        size,
    )
    rec_mt["threads"] = 2
    rec_mt["baseline_threads"] = 1
    records.append(rec_mt)

    shares = shamir.share(secret, t, n)
    rows = [s.values for s in shares]
    records.append(
        _record(
            f"shamir reconstruct {size // 1000}k t={t} (exactly t shares)",
            _median_time(lambda: shamir.reconstruct(shares[:t], t), reps),
            "numpy limb-split Lagrange combination",
            _median_time(lambda: np_reconstruct(rows[:t], range(1, t + 1)), reps),
            size,
        )
    )

    a = rng.integers(0, PRIME, size, dtype=np.uint64)
    b = rng.integers(0, PRIME, size, dtype=np.uint64)
    if not np.array_equal(np_mul(a, b), shamir.field_mul(a, b)):
        raise AssertionError("numpy reference product differs")
    records.append(
        _record(
            f"fp_mul {size // 1000}k",
            _median_time(lambda: shamir.field_mul(a, b), reps),
            "numpy limb-split modular product",
            _median_time(lambda: np_mul(a, b), reps),
            size,
        )
    )
    return records
