"""The ternary sketch kernel (sketch.c) against the pure-Python reference, every SIMD path."""

from __future__ import annotations

import secrets

import native_reference as ref
import numpy as np
import pytest
from simd_paths import PATHS, each_path

from mpcai import _bindings as nb
from mpcai import prg
from mpcai.errors import InvalidInput, InvalidType

SEED = bytes(range(32))


def _vec(d: int, seed: int) -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(8 * d), dtype=np.uint64).copy() if seed < 0 else (
        prg.ring_vector(bytes([seed]) * 32, d))


@pytest.mark.parametrize("d", [0, 1, 255, 256, 257, 600, 9 * 256 + 3, 17 * 256 + 100])
def test_matches_reference_every_path(d: int) -> None:
    x = _vec(d, 7)
    want = ref.ternary_sketch(x, SEED, 5)
    for _ in each_path():
        got = prg.ternary_sketch(x, SEED, 5)
        assert got.dtype == np.uint64 and got.shape == (5,)
        np.testing.assert_array_equal(got, want)


def test_long_rows_every_path_and_threads() -> None:
    # a few chunks of 153 blocks, several groups of 9 and 17: paths against each other,
    # and the first rows against the reference matrix (int64 products, small inputs)
    d = 153 * 256 * 2 + 17 * 256 + 77
    x = _vec(d, 3)
    small = (x & np.uint64(0xFFFF)).astype(np.int64) - (1 << 15)
    r = ref.ternary_matrix(SEED, 2, d)
    want2 = (r @ small).astype(np.uint64)
    outs = []
    for _ in each_path():
        np.testing.assert_array_equal(prg.ternary_sketch(small.astype(np.uint64), SEED, 2), want2)
        outs.append(prg.ternary_sketch(x, SEED, 9))
        outs.append(prg.ternary_sketch(x, SEED, 9, threads=3))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    assert len(outs) == 2 * len(PATHS)


def test_entry_distribution_and_independence() -> None:
    r = ref.ternary_matrix(b"\x05" * 32, 8, 4096)
    counts = np.array([(r == v).mean() for v in (-1, 0, 1)])
    np.testing.assert_allclose(counts, [0.25, 0.5, 0.25], atol=0.01)
    assert not np.array_equal(r[0], r[1])  # rows differ (their nonces do)


def test_linear_over_shares() -> None:
    x = _vec(1000, 11)
    x0 = prg.random_ring(1000)
    x1 = x - x0
    s = prg.new_seed()
    np.testing.assert_array_equal(
        prg.ternary_sketch(x0, s, 16) + prg.ternary_sketch(x1, s, 16), prg.ternary_sketch(x, s, 16))


def test_bad_arguments() -> None:
    x = np.zeros(10, dtype=np.uint64)
    with pytest.raises(InvalidInput):
        prg.ternary_sketch(x, b"short", 3)
    with pytest.raises(InvalidType):
        prg.ternary_sketch(x.astype(np.int64), SEED, 3)
    with pytest.raises(InvalidInput):
        prg.ternary_sketch(x.reshape(2, 5), SEED, 3)
    with pytest.raises(InvalidInput):
        prg.ternary_sketch(x, SEED, -1)
    with pytest.raises(InvalidInput):
        prg.ternary_sketch(x, SEED, 3, threads=0)
    assert prg.ternary_sketch(x, SEED, 0).shape == (0,)
    assert nb.SKETCH_MAX_DIM == 1 << 40
