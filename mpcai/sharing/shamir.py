"""t-of-n Shamir secret sharing over the prime field GF(p), p = 2^61 - 1.

The scheme (Shamir, "How to share a secret", Communications of the ACM 22(11),
1979): to share a field element ``s`` among ``n`` parties so that any ``t`` of
them can recover it, the dealer picks a polynomial of degree ``t - 1``

    f(X) = s + r_1 X + ... + r_{t-1} X^{t-1}

with uniformly random coefficients ``r_k`` and gives party ``i`` the share
``(x_i, f(x_i))`` at a distinct public point ``x_i != 0`` (by default
``x_i = i + 1``).  Any ``t`` shares determine ``f`` by Lagrange interpolation,
so ``s = f(0) = sum_i L_i(0) f(x_i)``.  Any ``t - 1`` shares are jointly
uniform and independent of ``s``: they reveal nothing about it, whatever the
computing power of whoever holds them.

Vectors are shared element-wise with independent polynomials, in one call to
the C kernel: the random coefficients are expanded from a fresh 32-byte seed
(:func:`mpcai.prg.new_seed`) by the ChaCha20 field PRG of :mod:`mpcai._bindings`
and are never materialised as a whole.

The scheme is linear: adding the shares of ``a`` and ``b`` held by the same
party gives a share of ``a + b`` (:func:`add`, likewise :func:`sub` and
:func:`neg`), multiplying a share by a public constant gives a share of the
scaled secret (:func:`mul_public`), and adding a public constant to every
share gives a share of the shifted secret (:func:`add_public`) -- the same
verbs as :mod:`mpcai.sharing.additive`.

Integrity.  :func:`reconstruct` given more than ``t`` shares checks that all
of them lie on one polynomial of degree ``t - 1`` and raises
:class:`~mpcai.errors.InconsistentShares` otherwise.  With exactly ``t``
shares no check is possible -- any ``t`` values are consistent with some
polynomial of degree ``t - 1`` -- so a wrong share then yields a wrong secret,
undetectably.  That is information-theoretic, not a limitation of this code;
ask for more than ``t`` shares (or authenticate them) when parties may lie.
:func:`reconstruct_robust` goes further and corrects up to ``(m - t) // 2``
wrong shares among ``m`` (Berlekamp–Welch), naming the wrong ones.

Field elements are ``numpy.uint64`` values in ``[0, p)``.  :func:`to_field` and
:func:`from_field` map signed integers to and from the field (negative ``v``
as ``p - |v|``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from mpcai import _bindings, prg
from mpcai.errors import (
    DuplicateShares,
    InconsistentShares,
    InvalidInput,
    InvalidType,
    NotEnoughShares,
)
from mpcai.validation import check_bytes, check_int

__all__ = [
    "FIELD_P",
    "SEED_BYTES",
    "Share",
    "add",
    "add_public",
    "bytes_share_size",
    "field_add",
    "field_mul",
    "field_sub",
    "from_field",
    "lagrange_weights",
    "mul_public",
    "neg",
    "reconstruct",
    "reconstruct_bytes",
    "reconstruct_bytes_robust",
    "reconstruct_robust",
    "share",
    "share_bytes",
    "sub",
    "to_field",
]

FIELD_P: Final[int] = _bindings.FIELD_P
"""The field modulus, the Mersenne prime 2^61 - 1 (read from the C core; also
:data:`mpcai.prg.FIELD_P`)."""

SEED_BYTES: Final[int] = _bindings.SEED_BYTES
"""Length of the seed from which the random coefficients are expanded."""

_P64: Final = np.uint64(FIELD_P)
_BYTES_PER_ELEMENT: Final[int] = 7  # 56 bits < 61: any 7 bytes are a field element
# Columns per chunk when combining shares: keeps the stacked rows in cache.
_CHUNK_WORDS: Final[int] = 1 << 17


@dataclass(frozen=True, eq=False)
class Share:
    """One party's share of a (vector) secret.

    Attributes:
        x: the public evaluation point, an int in ``[1, p)``; party ``i``
            gets ``x = i + 1`` by default.
        values: ``uint64`` field elements ``f(x)``, with the shape of the
            secret.  The shares returned by one :func:`share` call are views
            of the rows of one ``(n, size)`` array (no copy is made).
    """

    x: int
    values: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", _point(self.x, "Share.x"))
        if not isinstance(self.values, np.ndarray):
            raise InvalidType(
                f"Share.values must be a numpy array, not {type(self.values).__name__}"
            )
        if self.values.dtype != np.uint64:
            raise InvalidType(f"Share.values must have dtype uint64, not {self.values.dtype}")


# ---- validation helpers ---------------------------------------------------


def _point(value: Any, name: str) -> int:
    return check_int(value, name, lo=1, hi=FIELD_P - 1)


def _field_array(values: Any, name: str) -> np.ndarray:
    """An integer array with values in [0, p), as uint64 (a copy only if needed)."""
    if not isinstance(values, np.ndarray):
        raise InvalidType(f"{name} must be a numpy array, not {type(values).__name__}")
    if values.dtype.kind not in "iu":
        raise InvalidType(f"{name} must have an integer dtype, not {values.dtype}")
    if values.size:
        if values.dtype.kind == "i" and values.min() < 0:
            raise InvalidInput(f"{name} has negative values; map them with to_field() first")
        if values.dtype.itemsize == 8 and values.max() >= FIELD_P:
            raise InvalidInput(f"{name} has values >= p = 2^61 - 1; reduce them first")
    return values.astype(np.uint64, copy=False)


def _seed(seed: Any) -> bytes:
    if seed is None:
        return prg.new_seed()
    return check_bytes(seed, "seed", size=SEED_BYTES)


def _threshold(t: Any, n: int | None = None) -> int:
    t = check_int(t, "threshold t", lo=1)
    if n is not None and t > n:
        raise InvalidInput(f"threshold t = {t} exceeds the number of shares n = {n}")
    return t


def _points(points: Iterable[Any] | None, n: int) -> list[int]:
    if points is None:
        return list(range(1, n + 1))
    if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
        raise InvalidType(f"points must be a sequence of ints, not {type(points).__name__}")
    xs = [_point(x, "each point") for x in points]
    if len(xs) != n:
        raise InvalidInput(f"{len(xs)} points given for n = {n} shares")
    if len(set(xs)) != n:
        raise InvalidInput("points must be distinct")
    return xs


# ---- field helpers --------------------------------------------------------


def to_field(values: np.ndarray) -> np.ndarray:
    """Map an integer array into GF(p): ``v mod p``, so ``-v`` becomes ``p - v``.

    Accepts any integer dtype (values outside ``(-p, p)`` are reduced too) and
    returns ``uint64``.  Inverse of :func:`from_field` for ``|v| <= (p-1)/2``.
    """
    if not isinstance(values, np.ndarray):
        raise InvalidType(f"values must be a numpy array, not {type(values).__name__}")
    if values.dtype.kind not in "iu":
        raise InvalidType(f"values must have an integer dtype, not {values.dtype}")
    if values.dtype.kind == "u":
        return (values.astype(np.uint64, copy=False) % _P64).astype(np.uint64, copy=False)
    # floored modulo with a positive divisor is non-negative and exact in int64
    return (values.astype(np.int64, copy=False) % np.int64(FIELD_P)).astype(np.uint64)


def from_field(values: np.ndarray) -> np.ndarray:
    """Map field elements to signed ``int64``: ``v > (p-1)/2`` becomes ``v - p``."""
    if not isinstance(values, np.ndarray):
        raise InvalidType(f"values must be a numpy array, not {type(values).__name__}")
    if values.dtype != np.uint64:
        raise InvalidType(f"values must have dtype uint64, not {values.dtype}")
    if values.size and values.max() >= FIELD_P:
        raise InvalidInput("values must be field elements in [0, p)")
    signed = values.astype(np.int64)
    return np.where(values > _P64 // np.uint64(2), signed - np.int64(FIELD_P), signed)


def field_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a + b) mod p`` element-wise; uint64 arrays of equal shape, values < p."""
    return _bindings.fp_add(a, b)


def field_sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) mod p`` element-wise; uint64 arrays of equal shape, values < p."""
    return _bindings.fp_sub(a, b)


def field_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a * b) mod p`` element-wise; uint64 arrays of equal shape, values < p."""
    return _bindings.fp_mul(a, b)


def _batch_inverse(values: list[int]) -> list[int]:
    """Inverses mod p of non-zero values with one modular inversion (Montgomery)."""
    prefix = [1] * (len(values) + 1)
    for i, v in enumerate(values):
        prefix[i + 1] = prefix[i] * v % FIELD_P
    inv = pow(prefix[-1], -1, FIELD_P)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % FIELD_P
        inv = inv * values[i] % FIELD_P
    return out


def _lagrange_rows(xs: Sequence[int], ats: Sequence[int]) -> list[np.ndarray]:
    """Lagrange weights of the points ``xs`` for each evaluation point in ``ats``.

    Barycentric form: ``L_i(a) = l(a) w_i / (a - x_i)`` with ``l(a) = prod_j (a - x_j)``
    and ``w_i = 1 / prod_{j != i} (x_i - x_j)``: ``O(len(xs)^2)`` once, then
    ``O(len(xs))`` per evaluation point.
    """
    pts = [check_int(x, "each point") % FIELD_P for x in xs]
    if len(set(pts)) != len(pts):
        raise DuplicateShares("interpolation points must be distinct")
    den = []
    for i, xi in enumerate(pts):
        d = 1
        for j, xj in enumerate(pts):
            if j != i:
                d = d * (xi - xj) % FIELD_P
        den.append(d)
    w = _batch_inverse(den)
    index = {x: i for i, x in enumerate(pts)}
    rows = []
    for at in ats:
        a = check_int(at, "at") % FIELD_P
        if a in index:  # the polynomial's value there is that share
            row = [0] * len(pts)
            row[index[a]] = 1
        else:
            diffs = [(a - xj) % FIELD_P for xj in pts]
            ell = 1
            for d in diffs:
                ell = ell * d % FIELD_P
            row = [ell * wi % FIELD_P * di % FIELD_P
                   for wi, di in zip(w, _batch_inverse(diffs), strict=True)]
        rows.append(np.array(row, dtype=np.uint64))
    return rows


def lagrange_weights(xs: Sequence[int], at: int = 0) -> np.ndarray:
    """Lagrange coefficients ``L_i(at) = prod_{j != i} (at - x_j) / (x_i - x_j) mod p``.

    ``sum_i L_i(at) f(x_i) = f(at)`` for every polynomial ``f`` of degree below
    ``len(xs)``.  The points must be distinct field elements.  O(len(xs)^2)
    Python-int work, negligible next to the vector operations.
    """
    return _lagrange_rows(xs, [at])[0]


# ---- sharing --------------------------------------------------------------


def share(
    secret: np.ndarray,
    t: int,
    n: int,
    *,
    points: Sequence[int] | None = None,
    seed: bytes | None = None,
    threads: int = 1,
) -> list[Share]:
    """Split ``secret`` into ``n`` shares, any ``t`` of which reconstruct it.

    Args:
        secret: array of any shape and integer dtype with values in ``[0, p)``
            (use :func:`to_field` for signed data).  Each element is shared
            with its own random polynomial of degree ``t - 1``.
        t: threshold, ``1 <= t <= n``; ``t - 1`` shares reveal nothing.
        n: number of shares.
        points: the ``n`` distinct evaluation points in ``[1, p)``; default
            ``1, 2, ..., n``.
        seed: 32 bytes from which the random coefficients are expanded.
            Default: fresh from :func:`mpcai.prg.new_seed`.  Pass one only
            for reproducible tests: anyone who knows it learns the secret
            from any single share, and reusing it leaks differences between
            secrets.
        threads: split the work over up to this many threads (1 to 64;
            vectors too short to gain from more use fewer).  The shares are
            bit-identical for every value, so it changes only the speed.
            Default 1: the calling thread alone.

    Returns:
        ``n`` :class:`Share` objects, in the order of ``points``.

    Raises:
        InvalidType: ``secret`` is not an integer numpy array, or bad types.
        InvalidInput: values outside ``[0, p)``, ``t`` or ``n`` out of range,
            bad or repeated points, bad seed length, ``threads`` not in
            ``[1, 64]``.
    """
    arr = _field_array(secret, "secret")
    n = check_int(n, "n", lo=1)
    t = _threshold(t, n)
    xs = _points(points, n)
    values = _bindings.fp_shamir_share(
        arr.reshape(-1), _seed(seed), t - 1, np.array(xs, dtype=np.uint64), threads=threads
    )
    shape = arr.shape
    return [Share(x, values[j].reshape(shape)) for j, x in enumerate(xs)]


def _checked_shares(shares: Any) -> list[Share]:
    if isinstance(shares, Share) or not isinstance(shares, Iterable):
        raise InvalidType("shares must be a sequence of Share objects")
    out = list(shares)
    for s in out:
        if not isinstance(s, Share):
            raise InvalidType(f"shares must be Share objects, not {type(s).__name__}")
    seen: dict[int, int] = {}
    for k, s in enumerate(out):
        if s.x in seen:
            raise DuplicateShares(f"shares {seen[s.x]} and {k} are both at x = {s.x}")
        seen[s.x] = k
    if out:
        shape = out[0].values.shape
        for s in out[1:]:
            if s.values.shape != shape:
                raise InvalidInput(f"share shapes differ: {shape} and {s.values.shape}")
    return out


def _adjacent_rows(vals: list[np.ndarray]) -> np.ndarray | None:
    """``vals`` as one (k, size) array without copying, if they are consecutive
    rows of one C-contiguous 2-D array (as :func:`share` returns them)."""
    owner = vals[0].base
    size = vals[0].size
    if (
        not isinstance(owner, np.ndarray)
        or owner.ndim != 2
        or owner.dtype != np.uint64
        or not owner.flags.c_contiguous
        or owner.shape[1] != size
        or size == 0
    ):
        return None
    row_bytes = size * owner.itemsize
    start = owner.__array_interface__["data"][0]
    j0, rem = divmod(vals[0].__array_interface__["data"][0] - start, row_bytes)
    if rem or j0 < 0 or j0 + len(vals) > owner.shape[0]:
        return None
    for k, v in enumerate(vals):
        if (
            v.base is not owner
            or not v.flags.c_contiguous
            or v.__array_interface__["data"][0] != start + (j0 + k) * row_bytes
        ):
            return None
    return owner[j0 : j0 + len(vals)]


def reconstruct(shares: Sequence[Share], t: int) -> np.ndarray:
    """Recover the secret from at least ``t`` shares of a threshold-``t`` sharing.

    The first ``t`` shares are interpolated at 0.  Every further share is
    checked against the polynomial they define (its value is predicted from
    the first ``t`` with Lagrange weights for its point); if any differs,
    nothing is returned.  With exactly ``t`` shares no check is possible (see
    the module docstring).

    Returns:
        ``uint64`` array with the shape of the shares.

    Raises:
        NotEnoughShares: fewer than ``t`` shares.
        DuplicateShares: two shares at the same point.
        InconsistentShares: more than ``t`` shares that do not lie on one
            polynomial of degree ``t - 1``.
        InvalidInput: shapes differ, or values outside ``[0, p)``.
        InvalidType: not a sequence of :class:`Share`.
    """
    t = _threshold(t)
    shares = _checked_shares(shares)
    if len(shares) < t:
        raise NotEnoughShares(f"{len(shares)} shares given, threshold is {t}")
    base, extra = shares[:t], shares[t:]
    base_x = [s.x for s in base]
    w0, *w_extra = _lagrange_rows(base_x, [0, *(s.x for s in extra)])
    shape = base[0].values.shape
    base_vals = [s.values.reshape(-1) for s in base]
    extra_vals = [s.values.reshape(-1) for s in extra]
    size = base_vals[0].size
    rows = None if extra else _adjacent_rows(base_vals)
    if rows is not None:  # the shares are rows of one array: no copy at all
        try:
            return _bindings.fp_lincomb(rows, w0).reshape(shape)
        except InvalidInput as exc:
            raise InvalidInput("share values must be field elements in [0, p)") from exc
    out = np.empty(size, dtype=np.uint64)
    step = max(1024, _CHUNK_WORDS // t)
    for c0 in range(0, size, step):
        c1 = min(size, c0 + step)
        rows = np.stack([v[c0:c1] for v in base_vals])
        try:
            out[c0:c1] = _bindings.fp_lincomb(rows, w0)
        except InvalidInput as exc:
            raise InvalidInput("share values must be field elements in [0, p)") from exc
        for s, w, v in zip(extra, w_extra, extra_vals, strict=True):
            got = v[c0:c1]
            if np.any(got >= _P64):
                raise InvalidInput(f"share at x = {s.x} has values outside [0, p)")
            if not np.array_equal(_bindings.fp_lincomb(rows, w), got):
                raise InconsistentShares(
                    f"share at x = {s.x} does not lie on the degree-{t - 1} polynomial "
                    f"through the shares at x = {base_x}"
                )
    return out.reshape(shape)


def _solve_mod_p(rows: list[list[int]], rhs: list[int]) -> list[int] | None:
    """One solution of ``rows @ x = rhs`` over GF(p) (free variables 0), or ``None``.

    Gauss–Jordan elimination with each pivot step one vectorised pass of the C
    field kernels over the whole matrix: ``O(m^3)`` field operations in C, not
    in Python.
    """
    aug = np.array([[*row, b] for row, b in zip(rows, rhs, strict=True)], dtype=np.uint64)
    n_rows, n_cols = aug.shape
    n_vars = n_cols - 1
    pivots: list[int] = []
    r = 0
    for c in range(n_vars):
        if r == n_rows:
            break
        nz = np.flatnonzero(aug[r:, c])
        if nz.size == 0:
            continue
        piv = r + int(nz[0])
        if piv != r:
            aug[[r, piv]] = aug[[piv, r]]
        inv = pow(int(aug[r, c]), -1, FIELD_P)
        aug[r] = _bindings.fp_mul(aug[r], np.full(n_cols, inv, dtype=np.uint64))
        factors = aug[:, c].copy()
        factors[r] = 0
        if factors.any():
            prod = _bindings.fp_mul(np.repeat(factors, n_cols).reshape(n_rows, n_cols),
                                    np.tile(aug[r], (n_rows, 1)))
            aug = _bindings.fp_sub(aug, prod)
        pivots.append(c)
        r += 1
    if aug[r:, -1].any():
        return None  # inconsistent
    x = [0] * n_vars
    for i, c in enumerate(pivots):
        x[c] = int(aug[i, -1])
    return x


def _poly_eval(coeffs: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % FIELD_P
    return acc


def _berlekamp_welch(xs: list[int], ys: list[int], t: int, e: int) -> list[int] | None:
    """The degree-``< t`` polynomial through all but at most ``e`` of the points.

    Berlekamp–Welch: find ``Q`` (degree ``< e + t``) and monic ``E`` (degree
    ``e``) with ``Q(x_i) = y_i E(x_i)`` for every ``i``; then ``P = Q / E``.
    Needs ``len(xs) >= t + 2e``.  Any solution of the (possibly rank-deficient)
    system gives the same ``P`` when at most ``e`` points are wrong.  Returns
    ``P``'s coefficients, or ``None`` when no such polynomial exists.
    """
    rows, rhs = [], []
    for x, y in zip(xs, ys, strict=True):
        powers = [1]
        for _ in range(e + t):
            powers.append(powers[-1] * x % FIELD_P)
        rows.append(powers[:e + t] + [(-y * powers[j]) % FIELD_P for j in range(e)])
        rhs.append(y * powers[e] % FIELD_P)
    sol = _solve_mod_p(rows, rhs)
    if sol is None:
        return None
    q, err = sol[:e + t], [*sol[e + t:], 1]  # E is monic
    # P = Q / E by long division; the remainder must vanish
    rem = list(q)
    quot = [0] * t
    for k in range(t - 1, -1, -1):
        c = rem[k + e]
        quot[k] = c
        if c:
            for j in range(e + 1):
                rem[k + j] = (rem[k + j] - c * err[j]) % FIELD_P
    if any(rem):
        return None
    wrong = sum(1 for x, y in zip(xs, ys, strict=True) if _poly_eval(quot, x) != y)
    return quot if wrong <= e else None


def reconstruct_robust(shares: Sequence[Share], t: int) -> tuple[np.ndarray, list[int]]:
    """Recover the secret even if some shares are wrong, and say which ones.

    With ``m`` shares of a threshold-``t`` sharing, up to ``e = (m - t) // 2``
    wrong shares are corrected (Reed–Solomon unique decoding: the
    Berlekamp–Welch algorithm, run once per secret on a random linear
    combination of its elements, so a share wrong in any element is found
    except with probability ``1/p``); the wrong shares are then left out and
    the others are checked to lie on one polynomial.  When all shares agree
    this costs as much as :func:`reconstruct`; otherwise one ``O(m^3)``
    elimination in the C field kernels.

    Returns:
        ``(secret, bad)``: the secret and the points ``x`` of the wrong shares.

    Raises:
        NotEnoughShares: fewer than ``t`` shares.
        InconsistentShares: more than ``e`` shares are wrong (with ``m = t``
            no error can be seen, with ``m = t + 1`` one can be seen but not
            corrected).
        DuplicateShares, InvalidInput, InvalidType: as :func:`reconstruct`.
    """
    t = _threshold(t)
    shares = _checked_shares(shares)
    if len(shares) < t:
        raise NotEnoughShares(f"{len(shares)} shares given, threshold is {t}")
    for s in shares:
        if s.values.size and s.values.max() >= _P64:
            raise InvalidInput(f"share at x = {s.x} has values outside [0, p)")
    e = (len(shares) - t) // 2
    xs = [s.x for s in shares]
    bad: set[int] = set()
    ys: list[int] | None = None
    while True:
        rest = [s for s in shares if s.x not in bad]
        try:
            return reconstruct(rest, t), sorted(bad)
        except InconsistentShares:
            if e == 0:
                raise InconsistentShares(
                    f"{len(shares)} shares at threshold {t} disagree; correcting a wrong "
                    "share needs at least t + 2 shares") from None
        if ys is None:  # y_i = sum_j r_j v_ij: one decoding finds every wrong share
            size = shares[0].values.size
            coeffs = np.array([secrets.randbelow(FIELD_P - 1) + 1 for _ in range(size)],
                              dtype=np.uint64)
            cols = np.ascontiguousarray(np.stack([s.values.reshape(-1) for s in shares]).T)
            ys = [int(v) for v in _bindings.fp_lincomb(cols, coeffs)]
        poly = _berlekamp_welch(xs, ys, t, e)
        found = set() if poly is None else {
            x for x, y in zip(xs, ys, strict=True) if _poly_eval(poly, x) != y}
        if not found - bad or len(bad | found) > e:
            raise InconsistentShares(
                f"more than {e} of {len(shares)} shares are wrong (threshold {t}): "
                "cannot correct them")
        bad |= found


# ---- linear operations on shares ------------------------------------------


def _same_point(a: Share, b: Share, verb: str) -> None:
    if not isinstance(a, Share) or not isinstance(b, Share):
        raise InvalidType(f"{verb} takes two Share objects")
    if a.x != b.x:
        raise InvalidInput(f"cannot {verb} shares at different points ({a.x} and {b.x})")


def add(a: Share, b: Share) -> Share:
    """The share of ``secret_a + secret_b`` from two shares held at the same point."""
    _same_point(a, b, "add")
    return Share(a.x, field_add(a.values, b.values))


def sub(a: Share, b: Share) -> Share:
    """The share of ``secret_a - secret_b`` from two shares held at the same point."""
    _same_point(a, b, "sub")
    return Share(a.x, field_sub(a.values, b.values))


def mul_public(s: Share, c: int) -> Share:
    """The share of ``c * secret`` (``c`` a public integer, reduced mod p)."""
    if not isinstance(s, Share):
        raise InvalidType(f"mul_public takes a Share, not {type(s).__name__}")
    c = check_int(c, "c") % FIELD_P
    flat = s.values.reshape(1, -1)
    scaled = _bindings.fp_lincomb(flat, np.array([c], dtype=np.uint64))
    return Share(s.x, scaled.reshape(s.values.shape))


def neg(s: Share) -> Share:
    """The share of ``-secret`` (mod p): every party negates its own share."""
    if not isinstance(s, Share):
        raise InvalidType(f"neg takes a Share, not {type(s).__name__}")
    return Share(s.x, field_sub(np.zeros_like(s.values), s.values))


def add_public(s: Share, c: int) -> Share:
    """The share of ``secret + c`` (``c`` a public integer, reduced mod p).

    Every party adds ``c`` to its share: the shares become the values of
    ``f(X) + c``, the same polynomial with its constant term ``f(0)`` grown by
    ``c``.  Unlike :func:`mpcai.sharing.additive.add_public` (where exactly one
    party adds ``c``, hence its ``party_index``), no party index is needed.
    """
    if not isinstance(s, Share):
        raise InvalidType(f"add_public takes a Share, not {type(s).__name__}")
    c = check_int(c, "c") % FIELD_P
    return Share(s.x, field_add(s.values, np.full(s.values.shape, c, dtype=np.uint64)))


# ---- byte strings ---------------------------------------------------------


def bytes_share_size(nbytes: int) -> int:
    """The number of field elements in each share of an ``nbytes``-long :func:`share_bytes`
    secret: one for the length, then one per 7 bytes (6 for a 32-byte key)."""
    nbytes = check_int(nbytes, "nbytes", lo=0)
    return 1 + -(-nbytes // _BYTES_PER_ELEMENT)


def _pack_bytes(data: bytes) -> np.ndarray:
    """[len(data), then 7 bytes per element, little-endian, zero padded]."""
    k = bytes_share_size(len(data)) - 1
    padded = np.zeros((k, 8), dtype=np.uint8)
    if k:
        chunk = np.frombuffer(data.ljust(k * _BYTES_PER_ELEMENT, b"\0"), dtype=np.uint8)
        padded[:, :_BYTES_PER_ELEMENT] = chunk.reshape(k, _BYTES_PER_ELEMENT)
    body = padded.reshape(-1).view("<u8").astype(np.uint64)
    return np.concatenate([np.array([len(data)], dtype=np.uint64), body])


def _unpack_bytes(values: np.ndarray) -> bytes:
    bad = InconsistentShares(
        "the reconstructed value is not a valid byte-string encoding "
        "(shares corrupted or from different secrets)"
    )
    if values.ndim != 1 or values.size < 1:
        raise bad
    length = int(values[0])
    k = values.size - 1
    if k != -(-length // _BYTES_PER_ELEMENT) or np.any(values[1:] >> np.uint64(56)):
        raise bad
    raw = values[1:].astype("<u8").view(np.uint8).reshape(k, 8)[:, :_BYTES_PER_ELEMENT]
    data = raw.tobytes()
    if any(data[length:]):
        raise bad
    return data[:length]


def share_bytes(
    secret: bytes,
    t: int,
    n: int,
    *,
    points: Sequence[int] | None = None,
    seed: bytes | None = None,
) -> list[Share]:
    """Share a byte string (e.g. a 32-byte key); undo with :func:`reconstruct_bytes`.

    The bytes are packed 7 per field element after one element holding the
    length, so any content (empty, leading or trailing zero bytes) comes back
    exactly.  Arguments as for :func:`share`.
    """
    return share(_pack_bytes(check_bytes(secret, "secret")), t, n, points=points, seed=seed)


def reconstruct_bytes(shares: Sequence[Share], t: int) -> bytes:
    """Recover a byte string shared with :func:`share_bytes` (checks as :func:`reconstruct`).

    Raises :class:`~mpcai.errors.InconsistentShares` also when the
    reconstructed elements are not a valid encoding.
    """
    return _unpack_bytes(reconstruct(shares, t))


def reconstruct_bytes_robust(shares: Sequence[Share], t: int) -> tuple[bytes, list[int]]:
    """:func:`reconstruct_bytes` with error correction: ``(secret, bad points)``
    (see :func:`reconstruct_robust` for how many wrong shares are corrected)."""
    values, bad = reconstruct_robust(shares, t)
    return _unpack_bytes(values), bad
