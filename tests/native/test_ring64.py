"""Z_2^64 GEMM (csrc/ring64.c) against independent references.

References: Python big-int products reduced mod 2^64 (small shapes) and
numpy's own uint64 matmul, which wraps mod 2^64 without BLAS (larger
shapes).  The kernel's blocking is MR = NR = 4, KC = 256, MC = 64,
NC = 1024 on the AVX2 path and MR = 12, NR = 16, KC = 256, MC = 96,
NC = 2048 on the AVX-512 path (and fewer than 4 rows take an unpacked row
loop on both), so the shapes below cross every block boundary.  Every path
the machine has (portable scalar, AVX2, AVX-512) runs each test through
the ``path`` fixture of conftest.py, in-process: the one SIMD switch
(``simd_select``) is checked on every call.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simd_paths import each_path

from mpcai import _bindings as nb
from mpcai.errors import InvalidInput, InvalidType

ffi, lib = nb.ffi, nb.lib  # the compiled module, for C-level status codes



MASK = (1 << 64) - 1
EDGE = np.array(
    [0, 1, 2, 1 << 31, 1 << 32, (1 << 32) - 1, 1 << 63, MASK, MASK - 1], dtype=np.uint64
)


def ref_bigint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-by-column dot products with Python ints, reduced mod 2^64."""
    m, k = a.shape
    n = b.shape[1]
    al = [[int(x) for x in row] for row in a]
    bt = [[int(b[p, j]) for p in range(k)] for j in range(n)]
    out = [[sum(x * y for x, y in zip(ar, bc, strict=True)) & MASK for bc in bt] for ar in al]
    return np.array(out, dtype=np.uint64).reshape(m, n)


def ref_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy's uint64 matmul: a plain C loop with unsigned (wrapping) arithmetic."""
    return np.matmul(a, b)


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 1 << 64, size=shape, dtype=np.uint64, endpoint=False)


def edgy(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Full-range random values with the edge values mixed in."""
    x = rand(rng, *shape)
    pick = rng.random(shape) < 0.5
    x[pick] = rng.choice(EDGE, size=int(pick.sum()))
    return x


def check(a: np.ndarray, b: np.ndarray, ref=ref_bigint) -> None:
    a0, b0 = a.copy(), b.copy()
    c = nb.ring64_gemm(a, b)
    assert c.dtype == np.uint64
    assert c.shape == (a.shape[0], b.shape[1])
    assert c.flags.c_contiguous
    np.testing.assert_array_equal(c, ref(a, b))
    np.testing.assert_array_equal(a, a0)  # inputs untouched
    np.testing.assert_array_equal(b, b0)


# ---- shapes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "m,k,n",
    [
        (1, 1, 1),
        (1, 7, 1),
        (1, 300, 1),
        (2, 2, 2),
        (3, 7, 5),
        (4, 4, 4),
        (5, 3, 9),
        (8, 1, 8),
        (17, 33, 9),
        (1, 33, 17),
        (33, 17, 1),
        (65, 130, 67),
        (12, 5, 16),
        (13, 9, 17),
        (11, 3, 15),
        (25, 4, 33),
    ],
)
def test_small_shapes_bigint(path: int, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 10_000 + k * 100 + n)
    check(edgy(rng, m, k), edgy(rng, k, n))


@pytest.mark.parametrize(
    "m,k,n",
    [
        (64, 256, 4),  # exactly one block in every dimension
        (65, 257, 5),  # one past each of MC, KC, NR
        (129, 513, 67),  # several MC and KC blocks, ragged tails
        (7, 300, 1030),  # crosses NC = 1024
        (130, 70, 131),
        (1, 600, 1030),  # single rows take an unpacked row loop (m < 4)
        (3, 300, 517),
        (4, 300, 517),
        (96, 256, 16),  # one AVX-512 block: MC x KC x NR
        (97, 257, 2049),  # one past MC, KC and NC of the AVX-512 path
        (193, 100, 31),  # several MC blocks, ragged MR and NR tails
        (12, 600, 8),  # exactly MR rows, half a NR strip
    ],
)
def test_block_boundaries_numpy(path: int, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m + 7 * k + 13 * n)
    check(rand(rng, m, k), rand(rng, k, n), ref=ref_numpy)


def test_block_boundaries_bigint_spot(path: int) -> None:
    """A few entries of a multi-block product against big ints (numpy-free)."""
    rng = np.random.default_rng(5)
    a, b = edgy(rng, 70, 520), edgy(rng, 520, 9)
    c = nb.ring64_gemm(a, b)
    rows = [0, 3, 11, 12, 63, 64, 65, 69]
    np.testing.assert_array_equal(c[rows], ref_bigint(a[rows], b))


@pytest.mark.parametrize("m,k,n", [(0, 0, 0), (0, 5, 3), (3, 5, 0), (0, 0, 4), (4, 0, 0)])
def test_empty_result(m: int, k: int, n: int) -> None:
    c = nb.ring64_gemm(np.zeros((m, k), np.uint64), np.zeros((k, n), np.uint64))
    assert c.shape == (m, n)
    assert c.dtype == np.uint64


@pytest.mark.parametrize("m,n", [(1, 1), (3, 5), (70, 9)])
def test_zero_inner_dimension_gives_zeros(m: int, n: int) -> None:
    c = nb.ring64_gemm(np.zeros((m, 0), np.uint64), np.zeros((0, n), np.uint64))
    np.testing.assert_array_equal(c, np.zeros((m, n), np.uint64))


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 26),
    k=st.integers(1, 20),
    n=st.integers(1, 34),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_small_shapes(m: int, k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = edgy(rng, m, k), edgy(rng, k, n)
    for _ in each_path():
        check(a, b)


# ---- values -------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 1 << 32, 1 << 63, MASK])
def test_constant_matrices(path: int, value: int) -> None:
    k = 300
    a = np.full((5, k), value, np.uint64)
    b = np.full((k, 6), value, np.uint64)
    expect = (value * value * k) & MASK
    np.testing.assert_array_equal(nb.ring64_gemm(a, b), np.full((5, 6), expect, np.uint64))


def test_wraparound_examples(path: int) -> None:
    a = np.array([[MASK, MASK]], np.uint64)  # -1, -1
    b = np.array([[MASK], [2]], np.uint64)  # -1, 2
    assert int(nb.ring64_gemm(a, b)[0, 0]) == MASK  # (-1)(-1) + (-1)(2) = -1 mod 2^64
    a = np.array([[1 << 63, 1 << 32]], np.uint64)
    b = np.array([[2], [1 << 32]], np.uint64)
    assert int(nb.ring64_gemm(a, b)[0, 0]) == 0  # 2^64 + 2^64 = 0 mod 2^64


def test_identity_and_permutation(path: int) -> None:
    rng = np.random.default_rng(11)
    a = rand(rng, 37, 37)
    eye = np.eye(37, dtype=np.uint64)
    np.testing.assert_array_equal(nb.ring64_gemm(a, eye), a)
    np.testing.assert_array_equal(nb.ring64_gemm(eye, a), a)
    idx = rng.permutation(37)
    np.testing.assert_array_equal(nb.ring64_gemm(eye[idx], a), a[idx])  # row permutation
    np.testing.assert_array_equal(nb.ring64_gemm(a, eye[:, idx]), a[:, idx])  # column permutation


# ---- layout -------------------------------------------------------------------


def test_non_contiguous_inputs(path: int) -> None:
    rng = np.random.default_rng(3)
    base_a = edgy(rng, 40, 70)
    base_b = edgy(rng, 70, 46)
    cases = [
        (base_a[:, ::2], base_b[::2, :]),  # strided columns / rows
        (base_b.T, base_a.T),  # transposed views
        (np.asfortranarray(base_a), np.asfortranarray(base_b)),
        (base_a[3:20:3, 1:68], base_b[1:68, ::-1]),  # slices and a negative stride
    ]
    for a, b in cases:
        assert not (a.flags.c_contiguous and b.flags.c_contiguous)
        check(a, b, ref=ref_numpy)
    a, b = base_a[:5, :9:2], base_b[:9:2, :3]
    check(a, b)  # big-int reference as well


# ---- errors -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.uint32, np.int32, object])
def test_wrong_dtype(dtype) -> None:
    good = np.ones((2, 2), np.uint64)
    bad = np.ones((2, 2), dtype=dtype)
    with pytest.raises(InvalidType):
        nb.ring64_gemm(bad, good)
    with pytest.raises(InvalidType):
        nb.ring64_gemm(good, bad)


def test_not_an_array() -> None:
    with pytest.raises(InvalidType):
        nb.ring64_gemm([[1, 2], [3, 4]], np.ones((2, 2), np.uint64))


@pytest.mark.parametrize(
    "sa,sb",
    [((4,), (4, 2)), ((2, 4), (4,)), ((1, 2, 4), (4, 2)), ((), (1, 1)), ((2, 2), (2, 2, 1))],
)
def test_wrong_ndim(sa, sb) -> None:
    with pytest.raises(InvalidInput):
        nb.ring64_gemm(np.ones(sa, np.uint64), np.ones(sb, np.uint64))


@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 2)), ((1, 0), (1, 1)), ((5, 5), (4, 5))])
def test_mismatched_inner_dimension(sa, sb) -> None:
    with pytest.raises(InvalidInput):
        nb.ring64_gemm(np.ones(sa, np.uint64), np.ones(sb, np.uint64))


def test_errors_are_value_and_type_errors() -> None:
    with pytest.raises(ValueError):
        nb.ring64_gemm(np.ones((2, 3), np.uint64), np.ones((2, 3), np.uint64))
    with pytest.raises(TypeError):
        nb.ring64_gemm(np.ones((2, 2), np.int64), np.ones((2, 2), np.uint64))


# ---- C API contract (status codes) ---------------------------------------------


def _p(arr: np.ndarray):
    return ffi.cast("uint64_t *", ffi.from_buffer(arr))


def test_c_api_aliasing_rejected() -> None:
    buf = np.ones(16, np.uint64)
    other = np.ones(16, np.uint64)
    assert lib.mpcai_ring64_gemm(_p(buf), _p(other), _p(buf), 4, 4, 4) == lib.MPCAI_ERR_ARG
    # C = buf[0:4] (2 x 2) overlaps B = buf[3:7] in one element
    assert lib.mpcai_ring64_gemm(_p(other), _p(buf[3:]), _p(buf), 2, 2, 2) == lib.MPCAI_ERR_ARG
    assert lib.mpcai_ring64_gemm(_p(buf[3:]), _p(other), _p(buf), 2, 2, 2) == lib.MPCAI_ERR_ARG
    np.testing.assert_array_equal(buf, np.ones(16, np.uint64))  # nothing written
    # adjacent but disjoint is fine
    c = buf[8:]
    assert lib.mpcai_ring64_gemm(_p(buf), _p(other), _p(c), 2, 4, 4) == lib.MPCAI_OK


def test_c_api_null_and_overflow() -> None:
    x = np.ones(4, np.uint64)
    assert lib.mpcai_ring64_gemm(ffi.NULL, _p(x), _p(x), 2, 2, 2) == lib.MPCAI_ERR_NULL
    assert lib.mpcai_ring64_gemm(_p(x), _p(x), ffi.NULL, 2, 2, 2) == lib.MPCAI_ERR_NULL
    # NULL is fine where nothing is read or written
    assert lib.mpcai_ring64_gemm(ffi.NULL, ffi.NULL, ffi.NULL, 0, 0, 0) == lib.MPCAI_OK
    assert lib.mpcai_ring64_gemm(ffi.NULL, ffi.NULL, ffi.NULL, 0, 5, 0) == lib.MPCAI_OK
    huge = 1 << 62
    assert lib.mpcai_ring64_gemm(_p(x), _p(x), _p(x), huge, huge, 1) == lib.MPCAI_ERR_LENGTH


# ---- every SIMD path against each other -------------------------------------------

PATH_SHAPES = [
    (1, 1, 1),
    (3, 7, 5),
    (17, 33, 9),
    (65, 130, 67),
    (129, 300, 70),
    (6, 520, 1030),
    (1, 300, 700),
    (3, 70, 300),
    (100, 270, 2060),
]


def test_scalar_and_simd_paths_bit_identical() -> None:
    # Meaningful when AVX2 is available (nb.simd_available()); otherwise only
    # the scalar path runs and the test still checks the reference.
    rng = np.random.default_rng(2024)
    cases = [
        (
            rng.integers(0, 1 << 64, (m, k), dtype=np.uint64),
            rng.integers(0, 1 << 64, (k, n), dtype=np.uint64),
        )
        for m, k, n in PATH_SHAPES
    ]
    outs = [[nb.ring64_gemm(a, b) for a, b in cases] for _ in each_path()]
    for (a, b), c0 in zip(cases, outs[0], strict=True):
        np.testing.assert_array_equal(c0, np.matmul(a, b))
    for other in outs[1:]:
        for c0, c1 in zip(outs[0], other, strict=True):
            np.testing.assert_array_equal(c0, c1)
