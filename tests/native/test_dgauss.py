"""The table-inversion kernels (dgauss.c) behind mpcai.dp.discrete_gaussian, against the
numpy reference (dp._discrete_gaussian_reference, dp._invert) and a bisection over Python
ints, on every SIMD path."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from simd_paths import each_path

from mpcai import _bindings as nb
from mpcai import dp, prg
from mpcai.errors import InvalidInput, InvalidType

SEED = bytes(range(32))
SIGMAS = [0.05, 0.114, 0.6, 1.0, 2.0, 100.0, 1e4, dp.MAX_SIGMA]
MASK = (1 << 64) - 1


@pytest.mark.parametrize("sigma", SIGMAS)
def test_sampler_matches_the_numpy_reference_every_path(sigma: float) -> None:
    # sizes around a block (4 samples), a chunk (612) and an AVX-512 group (68)
    sizes = [1, 3, 4, 5, 67, 68, 69, 611, 612, 613, 5000]
    want = {n: dp._discrete_gaussian_reference(n, sigma, SEED) for n in sizes}
    for _ in each_path():
        for n in sizes:
            got = dp.discrete_gaussian(n, sigma, seed=SEED)
            assert got.dtype == np.int64 and got.shape == (n,)
            np.testing.assert_array_equal(got, want[n])


@pytest.mark.parametrize("sigma", [1.0, 1e4])
def test_threads_give_the_same_samples_every_path(sigma: float) -> None:
    n = 3 * (1 << 15) + 7  # three threads' worth (2^15 samples each at least), an odd tail
    seed = prg.derive_seed(SEED, "test/dgauss", str(sigma).encode())
    want = dp._discrete_gaussian_reference(n, sigma, seed)
    for _ in each_path():
        for threads in (1, 2, 3, 8):
            np.testing.assert_array_equal(dp.discrete_gaussian(n, sigma, seed, threads=threads),
                                          want)
    # the uniforms given as an array: the same
    t, hi, lo, bits, guide = dp._sampler(sigma)
    u = prg.ring_vector(seed, 2 * n)
    for threads in (1, 3):
        np.testing.assert_array_equal(nb.dgauss_invert(hi, lo, guide, bits, u, -t, threads), want)


def _boundary_uniforms(hi: np.ndarray, lo: np.ndarray, step: int = 1) -> list[int]:
    """Every step-th cumulative entry exactly, +-1 (128-bit, so -1 borrows from the high
    word when the low word is 0), the extremes of its high word (ties on the high word:
    low word 0 and 2^64 - 1), and 0, 2^128 - 1."""
    us = {0, (1 << 128) - 1}
    n = hi.size
    for j in [*range(0, n, step), n - 1]:
        h, v = int(hi[j]), int(lo[j])
        c = (h << 64) | v
        us.update(x for x in (c - 1, c, c + 1, h << 64, (h << 64) | MASK) if 0 <= x < 1 << 128)
    return sorted(us)


def _words(us: list[int]) -> np.ndarray:
    out = np.empty(2 * len(us), dtype=np.uint64)
    out[0::2] = [u >> 64 for u in us]
    out[1::2] = [u & MASK for u in us]
    return out


@pytest.mark.parametrize("sigma", [0.05, 0.114, 1.0, 2.0, 30.0])
def test_inversion_at_the_table_boundaries_is_integer_bisection(sigma: float) -> None:
    """Exactly at, one below and one above every entry, and ties on the high word: as a
    bisection over the 128-bit Python ints (capped at the last entry)."""
    t, hi, lo, bits, guide = dp._sampler(sigma)
    cum = [(int(h) << 64) | int(v) for h, v in zip(hi, lo, strict=True)]
    us = _boundary_uniforms(hi, lo)
    want = [min(bisect.bisect_right(cum, u), len(cum) - 1) - t for u in us]
    u = _words(us)
    assert nb.dgauss_invert(hi, lo, guide, bits, u, -t).tolist() == want
    assert (dp._invert(hi, lo, u[0::2], u[1::2]) - t).tolist() == want
    if sigma == 2.0:  # tail entries below 2^-64 share high words: the low words decide
        assert np.any(hi[1:] == hi[:-1])


@pytest.mark.parametrize("guide_bits", [1, 3, 8, 13, 20])
def test_any_guide_size_gives_the_same_indices(guide_bits: int) -> None:
    _, hi, lo = dp._table(40.0)
    guide = nb.dgauss_guide(hi, guide_bits)
    edges = np.arange(1 << guide_bits, dtype=np.uint64) << np.uint64(64 - guide_bits)
    want_guide = np.append(np.searchsorted(hi, edges, side="left"), hi.size)
    np.testing.assert_array_equal(guide, want_guide.astype(np.uint32))
    us = _boundary_uniforms(hi, lo)
    u = np.concatenate([_words(us), prg.ring_vector(SEED, 20_000)])
    want = dp._invert(hi, lo, u[0::2], u[1::2]).astype(np.int64)
    np.testing.assert_array_equal(nb.dgauss_invert(hi, lo, guide, guide_bits, u), want)


def test_the_largest_table_at_its_boundaries() -> None:
    t, hi, lo, bits, guide = dp._sampler(dp.MAX_SIGMA)
    assert bits == 20 and hi.size == 2 * t + 1
    u = _words(_boundary_uniforms(hi, lo, step=211))
    want = dp._invert(hi, lo, u[0::2], u[1::2]).astype(np.int64) - t
    np.testing.assert_array_equal(nb.dgauss_invert(hi, lo, guide, bits, u, -t, 2), want)


def test_a_wrong_guide_never_leaves_the_table() -> None:
    """The kernels check only that the guide is non-decreasing and ends at n: a wrong
    one gives wrong indices, never one outside [0, n)."""
    _, hi, lo = dp._table(5.0)
    guide = np.zeros(257, dtype=np.uint32)
    guide[-1] = hi.size
    guide[128:-1] = hi.size // 3
    got = nb.dgauss_invert(hi, lo, guide, 8, prg.ring_vector(SEED, 4000))
    assert got.min() >= 0 and got.max() <= hi.size - 1


def test_empty_inputs() -> None:
    _, hi, lo, bits, guide = dp._sampler(3.0)
    assert dp.discrete_gaussian(0, 3.0, seed=SEED).shape == (0,)
    assert nb.dgauss_sample(SEED, hi, lo, guide, bits, 0).shape == (0,)
    empty = np.zeros(0, dtype=np.uint64)
    assert nb.dgauss_invert(hi, lo, guide, bits, empty).shape == (0,)
    # a one-entry table: every uniform is index 0
    one = np.array([MASK], dtype=np.uint64)
    g1 = nb.dgauss_guide(one, 4)
    assert nb.dgauss_invert(one, one, g1, 4, prg.ring_vector(SEED, 64), 7).tolist() == [7] * 32


def test_bad_inputs_raise_typed_errors() -> None:
    _, hi, lo, bits, guide = dp._sampler(3.0)
    u = prg.ring_vector(SEED, 8)
    with pytest.raises(InvalidInput):  # an odd number of words
        nb.dgauss_invert(hi, lo, guide, bits, u[:7])
    with pytest.raises(InvalidInput):  # hi and lo of different lengths
        nb.dgauss_invert(hi, lo[:-1], guide, bits, u)
    with pytest.raises(InvalidInput):  # an empty table
        nb.dgauss_invert(hi[:0], lo[:0], guide, bits, u)
    with pytest.raises(InvalidInput):  # a guide of the wrong length
        nb.dgauss_invert(hi, lo, guide[:-1], bits, u)
    with pytest.raises(InvalidType):
        nb.dgauss_invert(hi, lo, guide.astype(np.uint64), bits, u)
    with pytest.raises(InvalidType):
        nb.dgauss_invert(hi.astype(np.int64), lo, guide, bits, u)
    with pytest.raises(InvalidInput):  # the guide does not end at the table's size (C)
        nb.dgauss_invert(hi[:-1], lo[:-1], guide, bits, u)
    bad = guide.copy()
    bad[5] = bad[6] + 1  # decreasing somewhere (C)
    with pytest.raises(InvalidInput):
        nb.dgauss_invert(hi, lo, bad, bits, u)
    for gb in (0, nb.DGAUSS_MAX_GUIDE_BITS + 1):
        with pytest.raises(InvalidInput):
            nb.dgauss_guide(hi, gb)
    with pytest.raises(InvalidInput):  # a decreasing table has no guide (C)
        nb.dgauss_guide(hi[::-1].copy(), 8)
    for threads in (0, nb.MAX_THREADS + 1):
        with pytest.raises(InvalidInput):
            nb.dgauss_sample(SEED, hi, lo, guide, bits, 4, threads=threads)
        with pytest.raises(InvalidInput):
            dp.discrete_gaussian(4, 3.0, SEED, threads=threads)
    with pytest.raises(InvalidInput):
        nb.dgauss_sample(SEED[:31], hi, lo, guide, bits, 4)
    with pytest.raises(InvalidInput):
        nb.dgauss_sample(SEED, hi, lo, guide, bits, -1)


def test_unaligned_tables_reach_c_aligned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unaligned views of the table, guide and uniforms (np.frombuffer at an odd offset:
    a uint64_t read there is undefined in C) are copied before the call: same samples."""
    real = nb._ptr

    def checked(arr: np.ndarray, ctype: str = "uint64_t *") -> object:
        assert arr.ctypes.data % arr.dtype.alignment == 0, "unaligned pointer passed to C"
        return real(arr, ctype)

    monkeypatch.setattr(nb, "_ptr", checked)

    def unaligned(a: np.ndarray) -> np.ndarray:
        view = np.frombuffer(bytearray(a.nbytes + 3), dtype=a.dtype, offset=3, count=a.size)
        view[:] = a
        assert not view.flags.aligned
        return view

    t, hi, lo, bits, guide = dp._sampler(2.0)
    u = prg.ring_vector(SEED, 2 * 100)
    want = dp._discrete_gaussian_reference(100, 2.0, SEED)
    uh, ul, ug = unaligned(hi), unaligned(lo), unaligned(guide)
    np.testing.assert_array_equal(nb.dgauss_invert(uh, ul, ug, bits, unaligned(u), -t), want)
    np.testing.assert_array_equal(nb.dgauss_sample(SEED, uh, ul, ug, bits, 100, -t), want)
    np.testing.assert_array_equal(nb.dgauss_guide(uh, bits), guide)
