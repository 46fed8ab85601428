"""GF(2^61 - 1) kernels (csrc/fieldp.c) against pure-Python big-int references.

The references use Python ints only: (a * b) % p, sum(c_k * x**k) % p with
pow(), and, for the fused Shamir kernel, the pure-Python ChaCha20 of
native_reference.py.  Shapes cross the kernels' block boundaries (4-lane
groups, 64 Horner lanes x 16 points, 256 evaluation / combination columns,
1024 rows per lazy AVX2 accumulator) and inputs are loaded with the values
that stress the lazy-reduction bounds (p - 1 everywhere).  Every SIMD path
the machine has -- portable scalar, AVX2, AVX-512 (whose only own code here
is the 17-block ChaCha20 of the Shamir coefficient stream) -- is run
in-process through the ``path`` fixture of conftest.py: the one SIMD switch
(``simd_select``) is checked on every call.
"""

from __future__ import annotations

import os

import native_reference as ref
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simd_paths import PATHS, each_path

from mpcai import _bindings as nb
from mpcai.errors import InvalidInput, InvalidType

ffi, lib = nb.ffi, nb.lib

P = (1 << 61) - 1
EDGE = [0, 1, 2, P - 1, P - 2, 1 << 60, (1 << 32) - 1, 1 << 32, (1 << 61) - 2]
BAD = [P, 1 << 61, (1 << 64) - 1, 1 << 63]
LENGTHS = [0, 1, 3, 7, 257, 1031]


def field(rng: np.random.Generator, *shape: int, edges: bool = True) -> np.ndarray:
    x = rng.integers(0, P, size=shape, dtype=np.uint64)
    if edges and x.size:
        pick = rng.random(shape) < 0.3
        x[pick] = rng.choice(np.array(EDGE, dtype=np.uint64), size=int(pick.sum()))
    return x


def py(a: np.ndarray) -> list[int]:
    return [int(v) for v in a.reshape(-1)]


def ref_poly_eval(coeffs: np.ndarray, points: list[int]) -> np.ndarray:
    """out[j][i] = sum_k coeffs[k][i] * points[j]**k mod p, term by term."""
    n_coeffs, length = coeffs.shape
    cols = [[int(coeffs[k, i]) for k in range(n_coeffs)] for i in range(length)]
    out = [[sum(c * pow(x, k, P) for k, c in enumerate(col)) % P for col in cols] for x in points]
    return np.array(out, dtype=np.uint64).reshape(len(points), length)


def ref_lincomb(rows: np.ndarray, weights: list[int]) -> np.ndarray:
    n_rows, length = rows.shape
    out = [sum(weights[j] * int(rows[j, i]) for j in range(n_rows)) % P for i in range(length)]
    return np.array(out, dtype=np.uint64)


# ---- element-wise -----------------------------------------------------------

OPS = {
    "add": (nb.fp_add, lambda a, b: (a + b) % P),
    "sub": (nb.fp_sub, lambda a, b: (a - b) % P),
    "mul": (nb.fp_mul, lambda a, b: (a * b) % P),
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("n", LENGTHS)
def test_elementwise_matches_bigint(path: int, op: str, n: int) -> None:
    fn, refop = OPS[op]
    rng = np.random.default_rng(n)
    a, b = field(rng, n), field(rng, n)
    got = fn(a, b)
    assert got.dtype == np.uint64 and got.shape == (n,)
    assert py(got) == [refop(x, y) for x, y in zip(py(a), py(b), strict=True)]


@pytest.mark.parametrize("op", sorted(OPS))
def test_elementwise_all_edge_pairs(path: int, op: str) -> None:
    fn, refop = OPS[op]
    pairs = [(x, y) for x in EDGE for y in EDGE]
    a = np.array([x for x, _ in pairs], dtype=np.uint64)
    b = np.array([y for _, y in pairs], dtype=np.uint64)
    assert py(fn(a, b)) == [refop(x, y) for x, y in pairs]


@pytest.mark.parametrize("op", sorted(OPS))
def test_elementwise_shapes_and_noncontiguous(op: str) -> None:
    fn, refop = OPS[op]
    rng = np.random.default_rng(7)
    a, b = field(rng, 6, 10), field(rng, 6, 10)
    got = fn(a[:, ::2], b[:, 1::2])
    exp = [refop(x, y) for x, y in zip(py(a[:, ::2]), py(b[:, 1::2]), strict=True)]
    assert got.shape == (6, 5) and py(got) == exp


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, P - 1), st.integers(0, P - 1)), max_size=40))
def test_elementwise_property(pairs: list[tuple[int, int]]) -> None:
    a = np.array([x for x, _ in pairs], dtype=np.uint64)
    b = np.array([y for _, y in pairs], dtype=np.uint64)
    for _ in each_path():
        for op, (fn, refop) in OPS.items():
            assert py(fn(a, b)) == [refop(x, y) for x, y in pairs], op


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("bad", BAD)
def test_elementwise_rejects_unreduced(path: int, op: str, bad: int) -> None:
    fn, _ = OPS[op]
    a = np.arange(100, dtype=np.uint64)
    b = np.ones(100, dtype=np.uint64)
    for x, y in ((a.copy(), b), (a, b.copy())):
        (x if x is not a else y)[57] = bad
        with pytest.raises(InvalidInput, match="reduced"):
            fn(x, y)


@pytest.mark.parametrize("op", sorted(OPS))
def test_elementwise_error_leaves_aliased_output_untouched(path: int, op: str) -> None:
    """C level: out == a, and an unreduced element late in b: nothing written."""
    a = np.arange(1000, dtype=np.uint64)
    b = np.full(1000, 3, dtype=np.uint64)
    b[-1] = P
    before = a.copy()
    fn = getattr(lib, f"mpcai_fp_{op}")
    pa, pb = ffi.cast("uint64_t *", ffi.from_buffer(a)), ffi.cast("uint64_t *", ffi.from_buffer(b))
    assert fn(pa, pb, pa, a.size) == lib.MPCAI_ERR_RANGE
    assert np.array_equal(a, before)
    b[-1] = 5
    assert fn(pa, pb, pa, a.size) == lib.MPCAI_OK  # in place
    assert py(a) == [OPS[op][1](x, y) for x, y in zip(py(before), py(b), strict=True)]


@pytest.mark.parametrize("op", sorted(OPS))
def test_elementwise_types(op: str) -> None:
    fn, _ = OPS[op]
    u = np.ones(4, dtype=np.uint64)
    for bad in (np.ones(4, dtype=np.int64), np.ones(4, dtype=np.float64), [1, 2, 3, 4]):
        with pytest.raises(InvalidType):
            fn(bad, u)
        with pytest.raises(InvalidType):
            fn(u, bad)
    with pytest.raises(InvalidInput):
        fn(u, np.ones(5, dtype=np.uint64))


def test_c_null_and_length_checks() -> None:
    null = ffi.NULL
    one = np.ones(4, dtype=np.uint64)
    p1 = ffi.cast("uint64_t *", ffi.from_buffer(one))
    assert lib.mpcai_fp_mul(null, p1, p1, 4) == lib.MPCAI_ERR_NULL
    assert lib.mpcai_fp_mul(null, null, null, 0) == lib.MPCAI_OK
    big = (1 << 64) - 1
    assert lib.mpcai_fp_poly_eval(p1, 2, big, p1, 2, p1) == lib.MPCAI_ERR_LENGTH
    assert lib.mpcai_fp_poly_eval(p1, 0, 4, p1, 1, p1) == lib.MPCAI_ERR_LENGTH
    assert lib.mpcai_fp_lincomb(p1, big, 2, p1, p1) == lib.MPCAI_ERR_LENGTH
    assert lib.mpcai_fp_lincomb(null, 1, 4, p1, p1) == lib.MPCAI_ERR_NULL
    seed = ffi.new("uint8_t[32]")
    assert lib.mpcai_fp_shamir_share(p1, 4, seed, 31, 1, p1, 1, p1) == lib.MPCAI_ERR_LENGTH
    assert lib.mpcai_fp_shamir_share(p1, 4, null, 32, 1, p1, 1, p1) == lib.MPCAI_ERR_NULL
    assert lib.mpcai_fp_shamir_share(p1, 1 << 33, seed, 32, 4, p1, 0, p1) == lib.MPCAI_ERR_LENGTH


# ---- polynomial evaluation --------------------------------------------------

POINT_SETS = {
    "1..20": list(range(1, 21)),  # forward differences
    "1..3": [1, 2, 3],
    "gappy": [2, 9, 4, 4, 0, 7],  # differences, unsorted, repeated, x = 0
    "one": [5],  # Horner (single point)
    "1..40": list(range(1, 41)),  # > 16 points per Horner chunk / long stepping
    "big": [P - 1, 1 << 32, (1 << 32) - 1, 3, 1 << 60],  # Horner, both step kinds
    "far": [70000, 70001, 1],  # Horner: beyond the stepping range
}


@pytest.mark.parametrize("degree", [0, 1, 2, 5, 9, 12, 13])
@pytest.mark.parametrize("points", sorted(POINT_SETS))
def test_poly_eval_matches_bigint(path: int, degree: int, points: str) -> None:
    rng = np.random.default_rng(degree * 100 + len(points))
    xs = POINT_SETS[points]
    length = 67
    coeffs = field(rng, degree + 1, length)
    coeffs[:, :5] = P - 1  # worst case for every lazy bound
    got = nb.fp_poly_eval(coeffs, np.array(xs, dtype=np.uint64))
    assert got.shape == (len(xs), length)
    assert np.array_equal(got, ref_poly_eval(coeffs, xs))


@pytest.mark.parametrize("length", LENGTHS)
def test_poly_eval_lengths_and_blocks(path: int, length: int) -> None:
    rng = np.random.default_rng(length)
    coeffs = field(rng, 10, length)
    xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    got = nb.fp_poly_eval(coeffs, np.array(xs, dtype=np.uint64))
    cols = range(length) if length < 300 else [*range(300), *range(length - 40, length)]
    sel = list(cols)
    assert np.array_equal(got[:, sel], ref_poly_eval(coeffs[:, sel], xs))


def test_poly_eval_all_max(path: int) -> None:
    for degree in (9, 12, 20):
        coeffs = np.full((degree + 1, 9), P - 1, dtype=np.uint64)
        xs = list(range(1, 30))
        got = nb.fp_poly_eval(coeffs, np.array(xs, dtype=np.uint64))
        assert np.array_equal(got, ref_poly_eval(coeffs, xs))


def test_poly_eval_noncontiguous_and_errors() -> None:
    rng = np.random.default_rng(3)
    coeffs = field(rng, 4, 40)
    xs = np.arange(1, 6, dtype=np.uint64)
    got = nb.fp_poly_eval(coeffs[:, ::3], xs[::-1])
    assert np.array_equal(got, ref_poly_eval(coeffs[:, ::3], py(xs[::-1])))
    for bad in BAD:
        c = coeffs.copy()
        c[3, 39] = bad
        with pytest.raises(InvalidInput):
            nb.fp_poly_eval(c, xs)
        with pytest.raises(InvalidInput):
            nb.fp_poly_eval(coeffs, np.array([1, bad], dtype=np.uint64))
    with pytest.raises(InvalidType):
        nb.fp_poly_eval(coeffs.astype(np.int64), xs)
    with pytest.raises(InvalidType):
        nb.fp_poly_eval(coeffs, xs.astype(np.float64))
    assert nb.fp_poly_eval(coeffs, xs[:0]).shape == (0, 40)
    assert nb.fp_poly_eval(coeffs[:, :0], xs).shape == (5, 0)


# ---- fused Shamir sharing -----------------------------------------------------


def share_via_poly_eval(secret: np.ndarray, seed: bytes, degree: int, xs: np.ndarray) -> np.ndarray:
    r = nb.prg_fieldp(seed, secret.size * degree).reshape(secret.size, degree)
    return nb.fp_poly_eval(np.vstack([secret[None, :], r.T]), xs)


@pytest.mark.parametrize("degree", [0, 1, 2, 9, 12, 13, 40])
@pytest.mark.parametrize("length", [0, 1, 5, 203, 1001])
def test_shamir_share_equals_poly_eval_of_prg(path: int, degree: int, length: int) -> None:
    rng = np.random.default_rng(degree + length)
    secret = field(rng, length)
    seed = bytes(rng.integers(0, 256, 32, dtype=np.uint8))
    for xs in (np.arange(1, 21, dtype=np.uint64), np.array([P - 1, 3, 1 << 40], np.uint64)):
        got = nb.fp_shamir_share(secret, seed, degree, xs)
        assert got.shape == (xs.size, length)
        assert np.array_equal(got, share_via_poly_eval(secret, seed, degree, xs))


def test_shamir_share_against_pure_python(path: int) -> None:
    """Independent of every kernel: pure-Python ChaCha20 and big-int evaluation."""
    seed = bytes(range(100, 132))
    secret = np.array([0, 1, P - 1, 12345, 1 << 60], dtype=np.uint64)
    degree, xs = 3, [1, 2, 7, P - 1]
    r = py(ref.prg_fieldp(seed, secret.size * degree))
    coeffs = np.array(
        [py(secret)] + [[r[i * degree + k] for i in range(secret.size)] for k in range(degree)],
        dtype=np.uint64,
    )
    got = nb.fp_shamir_share(secret, seed, degree, np.array(xs, dtype=np.uint64))
    assert np.array_equal(got, ref_poly_eval(coeffs, xs))


def test_shamir_share_paths_bit_identical() -> None:
    if len(PATHS) < 2:
        pytest.skip("no AVX2 on this machine")
    rng = np.random.default_rng(11)
    secret = field(rng, 4099)
    seed = os.urandom(32)
    outs = [
        (
            nb.fp_shamir_share(secret, seed, 9, np.arange(1, 21, dtype=np.uint64)),
            nb.fp_shamir_share(secret, seed, 20, np.arange(1, 41, dtype=np.uint64)),
        )
        for _ in each_path()
    ]
    for other in outs[1:]:
        assert np.array_equal(outs[0][0], other[0])
        assert np.array_equal(outs[0][1], other[1])


# ---- threaded Shamir sharing ----------------------------------------------------

MIN_PER_THREAD = 1 << 12  # SHARE_MIN_PER_THREAD in fieldp.c


def _cp(a: np.ndarray):
    return ffi.cast("uint64_t *", ffi.from_buffer(a))


def share_hook(
    secret: np.ndarray,
    seed: bytes,
    degree: int,
    xs: np.ndarray,
    threads: int,
    *,
    min_per_thread: int = 0,
    force: list[int] = (),
) -> tuple[np.ndarray, list[int]]:
    """mpcai_testhook_fp_shamir_share_mt: (shares, [threads used, repaired-from])."""
    out = np.zeros((xs.size, secret.size), dtype=np.uint64)
    f = np.array(sorted(force), dtype=np.uint64)
    info = ffi.new("int[2]")
    rc = lib.mpcai_testhook_fp_shamir_share_mt(
        _cp(secret),
        secret.size,
        ffi.from_buffer("uint8_t[]", seed),
        32,
        degree,
        _cp(xs),
        xs.size,
        _cp(out),
        threads,
        min_per_thread,
        _cp(f) if f.size else ffi.NULL,
        f.size,
        info,
    )
    assert rc == lib.MPCAI_OK
    return out, list(info)


def share_with_rejections(
    secret: np.ndarray, seed: bytes, degree: int, xs: np.ndarray, force: list[int]
) -> np.ndarray:
    """Reference: the field stream with the candidates at `force` rejected too,
    built from the ring stream (checked against OpenSSL elsewhere)."""
    need = secret.size * degree
    words = nb.prg_ring64(seed, need + len(force) + 8)
    cand = words & np.uint64(P)
    keep = cand != np.uint64(P)
    keep[list(force)] = False
    r = cand[keep][:need].reshape(secret.size, degree)
    return nb.fp_poly_eval(np.vstack([secret[None, :], r.T]), xs)


def single(secret: np.ndarray, seed: bytes, degree: int, xs: np.ndarray) -> np.ndarray:
    out = np.zeros((xs.size, secret.size), dtype=np.uint64)
    rc = lib.mpcai_fp_shamir_share(
        _cp(secret),
        secret.size,
        ffi.from_buffer("uint8_t[]", seed),
        32,
        degree,
        _cp(xs),
        xs.size,
        _cp(out),
    )
    assert rc == lib.MPCAI_OK
    return out


@pytest.mark.parametrize("threads", [1, 2, 3, 7, 64])
@pytest.mark.parametrize(
    "length",
    [
        0,
        1,
        7,
        MIN_PER_THREAD - 1,
        2 * MIN_PER_THREAD,
        2 * MIN_PER_THREAD + 1,
        7 * MIN_PER_THREAD + 5,
    ],
)
def test_shamir_share_threads_identical(path: int, threads: int, length: int) -> None:
    rng = np.random.default_rng(length + threads)
    secret = field(rng, length)
    seed = os.urandom(32)
    for degree, xs in (
        (9, np.arange(1, 21, dtype=np.uint64)),
        (3, np.array([P - 1, 5], np.uint64)),
    ):
        expect = single(secret, seed, degree, xs)
        got = nb.fp_shamir_share(secret, seed, degree, xs, threads=threads)
        assert np.array_equal(got, expect)
        _, (used, repaired) = share_hook(secret, seed, degree, xs, threads)
        expect_used = max(1, min(threads, length // MIN_PER_THREAD)) if length else 0
        assert (used, repaired) == (expect_used, -1)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(0, 300),
    degree=st.integers(0, 14),
    threads=st.integers(1, 64),
    min_per_thread=st.integers(1, 40),
)
def test_shamir_share_tiny_portions(length: int, degree: int, threads: int, min_per_thread: int):
    """Portions of a few elements start mid-block (any word offset in a block)."""
    rng = np.random.default_rng(length * 1000 + degree)
    secret = field(rng, length)
    seed = bytes(rng.integers(0, 256, 32, dtype=np.uint8))
    xs = np.arange(1, 6, dtype=np.uint64)
    expect = share_via_poly_eval(secret, seed, degree, xs)
    for _ in each_path():
        got, (used, repaired) = share_hook(
            secret, seed, degree, xs, threads, min_per_thread=min_per_thread
        )
        assert np.array_equal(got, expect)
        assert np.array_equal(got, single(secret, seed, degree, xs))
        assert used == (max(1, min(threads, length // min_per_thread)) if length else 0)
        assert repaired == -1


def test_shamir_share_forced_rejections_single_thread(path: int) -> None:
    """Rejections (forced: 2^-61 is too rare to meet) inside whole groups, in
    the buffered tail of a read, on group boundaries, back to back."""
    rng = np.random.default_rng(5)
    secret = field(rng, 1000)
    seed = os.urandom(32)
    xs = np.arange(1, 21, dtype=np.uint64)
    # group boundaries: 72 candidates (AVX2 and scalar), 136 (AVX-512)
    for force in ([0], [5], [71, 72], [127, 128], [135, 136], [271, 272, 273],
                  [100, 101, 102, 103],
                  [1835, 1836, 1837], [8999]):
        got, _ = share_hook(secret, seed, 9, xs, 1, force=force)
        assert np.array_equal(got, share_with_rejections(secret, seed, 9, xs, force)), force
        assert not np.array_equal(got, single(secret, seed, 9, xs))


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_shamir_share_forced_rejections_repair(path: int, threads: int) -> None:
    """A rejection in thread k's portion shifts every later portion: the
    portions after the first such thread are recomputed, exactly."""
    per = 64  # min_per_thread
    length, degree = threads * per + 3, 4
    rng = np.random.default_rng(threads)
    secret = field(rng, length)
    seed = os.urandom(32)
    xs = np.arange(1, 8, dtype=np.uint64)
    # portion t covers elements [begin_t, end_t): candidates [begin_t d, end_t d)
    sizes = [length // threads + (t < length % threads) for t in range(threads)]
    bounds = np.cumsum([0, *sizes])
    cases = {
        "first candidate": ([0], 0),
        "thread 0": ([int(bounds[1] * degree) - 5], 0),
        "last candidate of thread 0": ([int(bounds[1] * degree) - 1], 0),
        "first candidate of thread 1": ([int(bounds[1] * degree)], 1),
        "thread 1, twice": ([int(bounds[1] * degree) + 7, int(bounds[1] * degree) + 8], 1),
        "threads 0 and 1": ([3, int(bounds[1] * degree) + 2], 0),
        "last thread only": ([int(bounds[-2] * degree) + 1], -1),
    }
    for name, (force, repaired_from) in cases.items():
        if repaired_from == threads - 1:
            repaired_from = -1  # the last portion shifts nothing after it
        got, (used, repaired) = share_hook(
            secret, seed, degree, xs, threads, min_per_thread=per, force=force
        )
        assert used == threads, name
        assert repaired == repaired_from, name
        assert np.array_equal(got, share_with_rejections(secret, seed, degree, xs, force)), name
        single_got, _ = share_hook(secret, seed, degree, xs, 1, force=force)
        assert np.array_equal(got, single_got), name


def test_shamir_share_threads_argument() -> None:
    s = np.arange(10, dtype=np.uint64)
    xs = np.arange(1, 4, dtype=np.uint64)
    for bad in (0, -1, 65, 1000):
        with pytest.raises(InvalidInput, match="threads"):
            nb.fp_shamir_share(s, bytes(32), 2, xs, threads=bad)
    for bad in (1.0, True, "2", None):
        with pytest.raises(InvalidType):
            nb.fp_shamir_share(s, bytes(32), 2, xs, threads=bad)
    out = np.zeros((3, 10), dtype=np.uint64)
    seed = ffi.new("uint8_t[32]")
    for bad in (0, 65, -3):
        rc = lib.mpcai_fp_shamir_share_mt(_cp(s), 10, seed, 32, 2, _cp(xs), 3, _cp(out), bad)
        assert rc == lib.MPCAI_ERR_ARG
    assert not out.any()


def test_shamir_share_errors() -> None:
    xs = np.arange(1, 4, dtype=np.uint64)
    s = np.arange(10, dtype=np.uint64)
    for bad in BAD:
        with pytest.raises(InvalidInput):
            nb.fp_shamir_share(np.array([1, bad], np.uint64), bytes(32), 2, xs)
        with pytest.raises(InvalidInput):
            nb.fp_shamir_share(s, bytes(32), 2, np.array([1, bad], np.uint64))
    with pytest.raises(InvalidInput):
        nb.fp_shamir_share(s, bytes(31), 2, xs)
    with pytest.raises(InvalidType):
        nb.fp_shamir_share(s.astype(np.int64), bytes(32), 2, xs)


# ---- linear combination -------------------------------------------------------


@pytest.mark.parametrize("n_rows", [0, 1, 2, 10, 33, 1100])
@pytest.mark.parametrize("length", [0, 1, 6, 21, 259])
def test_lincomb_matches_bigint(path: int, n_rows: int, length: int) -> None:
    if n_rows * length > 30000:
        length = 21
    rng = np.random.default_rng(n_rows * 1000 + length)
    rows = field(rng, n_rows, length)
    weights = field(rng, n_rows)
    got = nb.fp_lincomb(rows, weights)
    assert got.shape == (length,)
    assert np.array_equal(got, ref_lincomb(rows, py(weights)))


def test_lincomb_worst_case_bounds(path: int) -> None:
    for n_rows in (1, 10, 1023, 1024, 1025, 2100):
        rows = np.full((n_rows, 13), P - 1, dtype=np.uint64)
        weights = np.full(n_rows, P - 1, dtype=np.uint64)
        assert np.array_equal(nb.fp_lincomb(rows, weights), ref_lincomb(rows, py(weights)))


def test_lincomb_noncontiguous_and_errors() -> None:
    rng = np.random.default_rng(5)
    rows = field(rng, 6, 30)
    w = field(rng, 6)
    assert np.array_equal(
        nb.fp_lincomb(rows[::2, ::3], w[::2]), ref_lincomb(rows[::2, ::3], py(w[::2]))
    )
    for bad in BAD:
        r = rows.copy()
        r[5, 29] = bad
        with pytest.raises(InvalidInput):
            nb.fp_lincomb(r, w)
        r = rows.copy()
        r[0, 0] = bad
        with pytest.raises(InvalidInput):
            nb.fp_lincomb(r, w)
        ww = w.copy()
        ww[2] = bad
        with pytest.raises(InvalidInput):
            nb.fp_lincomb(rows, ww)
    with pytest.raises(InvalidType):
        nb.fp_lincomb(rows.astype(np.float64), w)
    with pytest.raises(InvalidInput):
        nb.fp_lincomb(rows, w[:5])


def test_all_kernels_paths_bit_identical() -> None:
    if len(PATHS) < 2:
        pytest.skip("no AVX2 on this machine")
    rng = np.random.default_rng(99)
    a, b = field(rng, 5003), field(rng, 5003)
    coeffs = field(rng, 8, 999)
    rows, w = field(rng, 1500, 37), field(rng, 1500)
    results = [
        [
            nb.fp_add(a, b),
            nb.fp_sub(a, b),
            nb.fp_mul(a, b),
            nb.fp_poly_eval(coeffs, np.arange(1, 25, dtype=np.uint64)),
            nb.fp_poly_eval(coeffs, np.array([P - 2, 1 << 33, 17], dtype=np.uint64)),
            nb.fp_lincomb(rows, w),
        ]
        for _ in each_path()
    ]
    for other in results[1:]:
        for x, y in zip(results[0], other, strict=True):
            assert np.array_equal(x, y)


def test_elementwise_kernels_keep_the_shape_of_0d_and_nd_inputs() -> None:
    P = ref.P61
    for shape in ((), (0,), (3, 4), (2, 1, 5)):
        a = np.full(shape, 5, dtype=np.uint64)
        b = np.full(shape, P - 2, dtype=np.uint64)
        assert nb.fp_add(a, b).shape == shape and np.all(nb.fp_add(a, b) == 3)
        assert nb.fp_sub(a, b).shape == shape and np.all(nb.fp_sub(a, b) == 7)
        assert nb.fp_mul(a, b).shape == shape and np.all(nb.fp_mul(a, b) == P - 10)
