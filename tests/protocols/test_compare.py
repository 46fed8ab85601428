"""Two-party comparisons on XOR shares (protocols/inference/compare.py) against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from mpcai.protocols.inference import compare

from mpcai import prg
from mpcai.runtime import Party, run_local
from mpcai.sharing import ot


def _triples(n: int) -> tuple[ot.AndTriples, ot.AndTriples]:
    """Correct random AND triples, split between two parties (a test dealer)."""
    bits = np.unpackbits(prg.random_ring((6 * n + 63) // 64).view(np.uint8),
                         count=5 * n).reshape(5, n)
    a0, b0, a1, b1, c0 = bits
    c1 = ((a0 ^ a1) & (b0 ^ b1)) ^ c0
    return ot.AndTriples(a0, b0, c0), ot.AndTriples(a1, b1, c1)


def _run(fn: object, shares: list[object], n_and: int) -> list[np.ndarray]:
    t = _triples(n_and)

    async def party(p: Party, share: object) -> np.ndarray:
        gates = compare.XorGates(p, 1 - p.id, p.id, "t", t[p.id])
        out = await fn(gates, share)  # type: ignore[operator]
        assert gates.remaining == 0
        return out

    return list(run_local(2, party, args_per_party=[[shares[0]], [shares[1]]]))


def _share(y: np.ndarray) -> list[np.ndarray]:
    r = prg.random_ring(y.size)
    return [r, y - r]


EDGE = np.array([0, 1, 2**64 - 1, 2**63, 2**63 - 1, 2**63 + 1, 12345, 2**64 - 12345],
                dtype=np.uint64)


def test_sign_bits_any_value() -> None:
    y = np.concatenate([EDGE, prg.random_ring(200)])
    out = _run(lambda g, s: compare.sign_bits(g, s, 63), _share(y),
               y.size * compare.comparison_ands(63)[0])
    np.testing.assert_array_equal(out[0] ^ out[1], (y.view(np.int64) >= 0).astype(np.uint8))


@pytest.mark.parametrize("bits", [2, 20, 33, 62])
def test_in_range_bits_any_value(bits: int) -> None:
    half = 1 << (bits - 1)
    near = np.array([half - 1, half, half + 1, -half, -half - 1, -half + 1],
                    dtype=np.int64).view(np.uint64)
    small = (prg.random_ring(100) % np.uint64(4 * half)).view(np.int64) - 2 * half
    y = np.concatenate([EDGE, near, small.view(np.uint64), prg.random_ring(50),
                        near + np.uint64(1 << 63)])
    out = _run(lambda g, s: compare.in_range_bits(g, s, bits), _share(y),
               y.size * compare.range_ands(bits))
    s = y.view(np.int64)
    want = ((s >= -half) & (s < half)).astype(np.uint8)
    np.testing.assert_array_equal(out[0] ^ out[1], want)
    assert want.any() and not want.all()


def test_greater_and_and_reduce() -> None:
    a = prg.random_ring(64) >> np.uint64(54)
    b = prg.random_ring(64) >> np.uint64(54)
    out = _run(lambda g, s: compare.greater_bits(g, s, 10), [a, b],
               64 * compare.comparison_ands(10)[0])
    np.testing.assert_array_equal(out[0] ^ out[1], (a > b).astype(np.uint8))
    bits = np.ones((4, 7), dtype=np.uint8)
    bits[1, 3] = 0
    bits[3, 6] = 0
    r = np.unpackbits(prg.random_ring(1).view(np.uint8), count=28).reshape(4, 7)
    out = _run(lambda g, s: compare.and_reduce(g, s), [r, r ^ bits],
               4 * compare.and_reduce_ands(7)[0])
    np.testing.assert_array_equal(out[0] ^ out[1], [1, 0, 1, 0])


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 62, 63])
def test_greater_bits_every_tree_shape(bits: int) -> None:
    # odd and even widths at every level of the tree, equal and adjacent values
    top = (1 << bits) - 1
    a = prg.random_ring(40) >> np.uint64(64 - bits)
    b = np.concatenate([a[:10], (a[10:20] + np.uint64(1)) & np.uint64(top),
                        (a[20:30] - np.uint64(1)) & np.uint64(top),
                        prg.random_ring(10) >> np.uint64(64 - bits)])
    a = np.concatenate([a, np.array([0, top, 0, top], dtype=np.uint64)])
    b = np.concatenate([b, np.array([top, 0, 0, top], dtype=np.uint64)])
    out = _run(lambda g, s: compare.greater_bits(g, s, bits), [a, b],
               a.size * compare.comparison_ands(bits)[0])
    np.testing.assert_array_equal(out[0] ^ out[1], (a > b).astype(np.uint8))


def test_sign_bits_below_63_bits() -> None:
    half = 1 << 19
    y = np.concatenate([np.array([0, 1, -1, half - 1, -half + 1], dtype=np.int64),
                        (prg.random_ring(100) % np.uint64(2 * half - 1)).view(np.int64)
                        - (half - 1)]).view(np.uint64)
    out = _run(lambda g, s: compare.sign_bits(g, s, 20), _share(y),
               y.size * compare.comparison_ands(20)[0])
    np.testing.assert_array_equal(out[0] ^ out[1], (y.view(np.int64) >= 0).astype(np.uint8))


def test_bad_inputs_are_typed_errors() -> None:
    from mpcai.errors import InvalidInput, InvalidType

    # a value past `bits` used to be compared on its low bits only (17 > 3 at 4 bits: 1 > 3)
    with pytest.raises(InvalidInput, match="fit 4 bits"):
        _run(lambda g, s: compare.greater_bits(g, s, 4),
             [np.array([17], dtype=np.uint64), np.array([3], dtype=np.uint64)], 16)
    with pytest.raises(InvalidType):  # int64 shares: was numpy's untyped TypeError
        _run(lambda g, s: compare.sign_bits(g, s, 63), [np.ones(2, np.int64)] * 2, 400)
    with pytest.raises(InvalidInput):
        _run(lambda g, s: compare.and_reduce(g, s), [np.ones(3, np.uint8)] * 2, 4)
    # the empty AND is 1 (was an IndexError)
    out = _run(lambda g, s: compare.and_reduce(g, s), [np.zeros((3, 0), np.uint8)] * 2, 0)
    np.testing.assert_array_equal(out[0] ^ out[1], [1, 1, 1])
