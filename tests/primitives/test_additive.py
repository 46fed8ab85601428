"""Additive sharing over Z_2^64 against plaintext arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcai import encoding, prg
from mpcai.errors import InvalidInput, InvalidType
from mpcai.sharing import additive

u64 = hnp.arrays(np.uint64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6))


@settings(max_examples=100, deadline=None)
@given(x=u64, n=st.integers(2, 12))
def test_reconstruct_share_roundtrip(x: np.ndarray, n: int) -> None:
    shares = additive.share(x, n)
    assert len(shares) == n and all(s.shape == x.shape for s in shares)
    np.testing.assert_array_equal(additive.reconstruct(shares), x)


@settings(max_examples=60, deadline=None)
@given(a=hnp.arrays(np.uint64, 10), b=hnp.arrays(np.uint64, 10), n=st.integers(2, 6),
       c=st.integers(-(2**70), 2**70))
def test_linear_operations(a: np.ndarray, b: np.ndarray, n: int, c: int) -> None:
    sa, sb = additive.share(a, n), additive.share(b, n)
    mod = 1 << 64
    ai, bi = [int(v) for v in a], [int(v) for v in b]
    got = additive.reconstruct([additive.add(x, y) for x, y in zip(sa, sb, strict=True)])
    assert got.tolist() == [(x + y) % mod for x, y in zip(ai, bi, strict=True)]
    got = additive.reconstruct([additive.sub(x, y) for x, y in zip(sa, sb, strict=True)])
    assert got.tolist() == [(x - y) % mod for x, y in zip(ai, bi, strict=True)]
    got = additive.reconstruct([additive.mul_public(x, c) for x in sa])
    assert got.tolist() == [(x * c) % mod for x in ai]
    got = additive.reconstruct([additive.add_public(x, c, i) for i, x in enumerate(sa)])
    assert got.tolist() == [(x + c) % mod for x in ai]
    got = additive.reconstruct([additive.neg(x) for x in sa])
    assert got.tolist() == [(-x) % mod for x in ai]


def test_fixed_point_workflow_three_hospitals() -> None:
    counts = [np.array([12.5, -3.0, 1e4]), np.array([0.25, 7.0, 2.0]), np.array([1.0, 1.0, -1.0])]
    shared = [additive.share(encoding.encode_fixed(c), 3) for c in counts]
    # party j sums the j-th share of every input
    sums = [additive.add(additive.add(shared[0][j], shared[1][j]), shared[2][j]) for j in range(3)]
    total = encoding.decode_fixed(additive.reconstruct(sums))
    np.testing.assert_allclose(total, np.sum(counts, axis=0), atol=3 * 2.0**-17)


def test_shares_look_uniform() -> None:
    x = np.zeros(50_000, dtype=np.uint64)
    s0 = additive.share(x, 2)[0]
    # each bit of a uniform uint64 is set half the time
    bits = np.unpackbits(s0.view(np.uint8)).mean()
    assert abs(bits - 0.5) < 0.01


def test_seeded_shares_expand_to_the_same_sharing() -> None:
    x = np.arange(12, dtype=np.uint64).reshape(3, 4)
    seeds, last = additive.share_seeded(x, 4)
    assert len(seeds) == 3 and all(len(s) == 32 for s in seeds)
    shares = [additive.expand_seeded(s, x.shape) for s in seeds] + [last]
    np.testing.assert_array_equal(additive.reconstruct(shares), x)


def test_expand_seeded_validates_the_shape() -> None:
    seed = bytes(range(32))
    stream = prg.ring_vector(seed, 12)  # the PRG words the share stands for
    np.testing.assert_array_equal(additive.expand_seeded(seed, 12), stream)
    for shape in ((3, 4), (np.int64(3), 4)):
        np.testing.assert_array_equal(additive.expand_seeded(seed, shape), stream.reshape(3, 4))
    assert additive.expand_seeded(seed, ()).shape == ()
    assert additive.expand_seeded(seed, (2, 0)).shape == (2, 0)
    for bad, kind, msg in ((True, InvalidType, "shape must be an int, not bool"),
                           ((2, True), InvalidType, r"shape\[1\] must be an int, not bool"),
                           (2.0, InvalidType, "shape must be an int, not float"),
                           ([3, 4], InvalidType, "shape must be an int or a tuple of ints"),
                           (-1, InvalidInput, "shape must be at least 0, got -1"),
                           ((3, -4), InvalidInput, r"shape\[1\] must be at least 0, got -4")):
        with pytest.raises(kind, match=msg):
            additive.expand_seeded(seed, bad)  # type: ignore[arg-type]


def test_int64_input_is_twos_complement() -> None:
    x = np.array([-5, 5], dtype=np.int64)
    got = additive.reconstruct(additive.share(x, 3))
    assert got.view(np.int64).tolist() == [-5, 5]


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(InvalidType, match="encode_fixed"):
        additive.share(np.array([1.5]), 3)
    with pytest.raises(InvalidInput):
        additive.share(np.zeros(3, dtype=np.uint64), 1)
    with pytest.raises(InvalidType):
        additive.share([1, 2], 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        additive.reconstruct([])
    with pytest.raises(InvalidInput):
        additive.reconstruct([np.zeros(2, np.uint64), np.zeros(3, np.uint64)])
    with pytest.raises(InvalidInput):
        additive.add(np.zeros(2, np.uint64), np.zeros(3, np.uint64))
    with pytest.raises(InvalidType):
        additive.mul_public(np.zeros(2, np.uint64), 1.5)
