"""Three-party replicated sharing against plaintext arithmetic (Python ints, numpy int64).

The three parties are simulated in one process: each step function gets only what its
party holds or received, and the messages of each round are passed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcai import prg
from mpcai.errors import InconsistentShares, InvalidInput, InvalidType
from mpcai.sharing import replicated as rep

MOD = 1 << 64
RNG = np.random.default_rng(7)  # data only
u64 = hnp.arrays(np.uint64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6))


def sharers() -> list[rep.ZeroSharer]:
    """Party i holds k_i (shared with i - 1) and k_{i+1} (shared with i + 1)."""
    k = [prg.new_seed() for _ in range(3)]
    return [rep.ZeroSharer(i, k[i], k[(i + 1) % 3]) for i in range(3)]


def ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def rand_u64(*shape: int) -> np.ndarray:
    return RNG.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)


def reshare(z: list[np.ndarray], boolean: bool = False) -> list:
    """The reshare round: party i sends z_i to party i - 1."""
    f = rep.from_xor if boolean else rep.from_additive
    return [f(i, z[i], z[(i + 1) % 3]) for i in range(3)]


# ---- sharing and linear operations ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(x=u64)
def test_any_two_shares_reconstruct(x: np.ndarray) -> None:
    s = rep.share(x)
    assert [t.party for t in s] == [0, 1, 2]
    for pair in ((0, 1), (1, 2), (0, 2), (2, 0)):
        np.testing.assert_array_equal(rep.reconstruct([s[pair[0]], s[pair[1]]]), x)
    np.testing.assert_array_equal(rep.reconstruct(s), x)
    b = rep.share_bits(x)
    np.testing.assert_array_equal(rep.reconstruct_bits([b[2], b[1]]), x)


def test_each_party_holds_its_component_and_the_next() -> None:
    s = rep.share(rand_u64(5))
    for i in range(3):
        np.testing.assert_array_equal(s[i].b, s[(i + 1) % 3].a)


def test_one_share_is_fresh_randomness() -> None:
    x = np.zeros(64, dtype=np.uint64)
    s1, s2 = rep.share(x), rep.share(x)
    assert not np.array_equal(s1[0].a, s2[0].a)
    assert not np.array_equal(s1[0].a, s1[0].b)


def test_inconsistent_or_duplicate_shares_are_refused() -> None:
    s = rep.share(rand_u64(4))
    bad = rep.RepShare(1, s[1].a + np.uint64(1), s[1].b)
    with pytest.raises(InconsistentShares):
        rep.reconstruct([s[0], bad, s[2]])
    with pytest.raises(InvalidInput):
        rep.reconstruct([s[0], s[0]])
    with pytest.raises(InvalidInput):
        rep.reconstruct([s[0]])
    with pytest.raises(InvalidType):
        rep.reconstruct([s[0], rep.share_bits(rand_u64(4))[1]])


def test_share_types_check_their_arguments() -> None:
    with pytest.raises(InvalidType):
        rep.RepShare(0, np.zeros(3), np.zeros(3, dtype=np.uint64))
    with pytest.raises(InvalidInput):
        rep.RepShare(3, np.zeros(3, dtype=np.uint64), np.zeros(3, dtype=np.uint64))
    with pytest.raises(InvalidInput):
        rep.BinShare(0, np.zeros(3, dtype=np.uint64), np.zeros(4, dtype=np.uint64))
    s = rep.share(rand_u64(3))
    with pytest.raises(InvalidInput):
        rep.add(s[0], s[1])
    with pytest.raises(InvalidType):
        rep.mul_public(s[0], 1.5)
    with pytest.raises(InvalidType):
        rep.matmul_public(s[0], s[0])


@settings(max_examples=50, deadline=None)
@given(a=hnp.arrays(np.uint64, 7), b=hnp.arrays(np.uint64, 7), c=st.integers(-(2**70), 2**70))
def test_linear_operations(a: np.ndarray, b: np.ndarray, c: int) -> None:
    sa, sb = rep.share(a), rep.share(b)
    ai, bi = ints(a), ints(b)

    def rec(f: object) -> list[int]:
        return ints(rep.reconstruct([f(i) for i in range(3)]))  # type: ignore[operator]

    pairs = list(zip(ai, bi, strict=True))
    assert rec(lambda i: rep.add(sa[i], sb[i])) == [(x + y) % MOD for x, y in pairs]
    assert rec(lambda i: rep.sub(sa[i], sb[i])) == [(x - y) % MOD for x, y in pairs]
    assert rec(lambda i: rep.neg(sa[i])) == [(-x) % MOD for x in ai]
    assert rec(lambda i: rep.mul_public(sa[i], c)) == [(x * c) % MOD for x in ai]
    assert rec(lambda i: rep.add_public(sa[i], c)) == [(x + c) % MOD for x in ai]
    assert rec(lambda i: rep.mul_public(sa[i], b)) == [(x * y) % MOD for x, y in pairs]


def test_add_public_changes_component_zero_only() -> None:
    s = rep.share(rand_u64(3))
    t = [rep.add_public(s[i], 5) for i in range(3)]
    np.testing.assert_array_equal(t[1].a, s[1].a)
    np.testing.assert_array_equal(t[1].b, s[1].b)
    np.testing.assert_array_equal(t[0].a, s[0].a + np.uint64(5))
    np.testing.assert_array_equal(t[2].b, s[2].b + np.uint64(5))


def test_matmul_public_both_sides() -> None:
    x, c = rand_u64(3, 4), rand_u64(4, 2)
    s = rep.share(x)
    ref = (x.astype(object) @ c.astype(object)) % MOD
    got = rep.reconstruct([rep.matmul_public(s[i], c) for i in range(3)])
    assert ints(got) == ints(ref)
    st_ = rep.share(x.T.copy())
    got = rep.reconstruct([rep.matmul_public(c.T, st_[i]) for i in (0, 1)])
    assert ints(got) == ints((c.T.astype(object) @ x.T.astype(object)) % MOD)


def test_boolean_linear_operations() -> None:
    a, b, c = rand_u64(9), rand_u64(9), rand_u64(9)
    sa, sb = rep.share_bits(a), rep.share_bits(b)
    got = rep.reconstruct_bits([rep.xor(sa[i], sb[i]) for i in range(3)])
    np.testing.assert_array_equal(got, a ^ b)
    got = rep.reconstruct_bits([rep.xor_public(sa[i], c) for i in range(3)])
    np.testing.assert_array_equal(got, a ^ c)
    got = rep.reconstruct_bits([rep.and_public(sa[i], c) for i in range(3)])
    np.testing.assert_array_equal(got, a & c)


def test_trivial_sharing_puts_the_value_in_one_component() -> None:
    v = rand_u64(5)
    for j in range(3):
        s = [rep.trivial(i, j, v) for i in range(3)]
        np.testing.assert_array_equal(rep.reconstruct(s), v)
        b = [rep.trivial(i, j, v, boolean=True) for i in range(3)]
        np.testing.assert_array_equal(rep.reconstruct_bits(b), v)


# ---- correlated randomness ------------------------------------------------------------


def test_zero_shares_sum_to_zero_and_never_repeat() -> None:
    zs = sharers()
    draws = []
    for shape in [(5,), (2, 3), (5,)]:
        alpha = [z.next(shape) for z in zs]
        assert ints(alpha[0] + alpha[1] + alpha[2]) == [0] * math.prod(shape)
        beta = [z.next_bits(shape) for z in zs]
        assert ints(beta[0] ^ beta[1] ^ beta[2]) == [0] * math.prod(shape)
        assert np.any(alpha[0] != 0)
        draws.append(alpha[0])
    assert not np.array_equal(draws[0], draws[2])  # same shape, later counter
    assert zs[0].counters == (6, 6)


def test_common_randomness_is_shared_by_the_right_pair() -> None:
    zs = sharers()
    for i in range(3):
        nxt = zs[i].common_next(4)
        np.testing.assert_array_equal(zs[(i + 1) % 3].common_prev(4), nxt)
    # the third party's seeds give something else
    r01 = zs[0].common_next(4)
    assert not np.array_equal(zs[2].common_next(4), r01)
    assert not np.array_equal(zs[2].common_prev(4), r01)


def test_rotated_roles_multiply_and_share_counters() -> None:
    """Party i playing role i - s: the same seeds give a valid zero sharing and product."""
    x, y = rand_u64(6), rand_u64(6)
    for s in (1, 2):
        zs = sharers()
        roles = [zs[i].as_role((i - s) % 3) for i in range(3)]
        sx, sy = rep.share(x), rep.share(y)  # role r's share is sx[r]
        z = [rep.mul_local(sx[r], sy[r], roles[(r + s) % 3]) for r in range(3)]
        assert ints(z[0] + z[1] + z[2]) == [
            (a * b) % MOD for a, b in zip(ints(x), ints(y), strict=True)
        ]
        assert zs[0].counters == (1, 1)  # the view advanced the party's own counters
        alpha = [z_.next(3) for z_ in zs]  # and the unrotated sharers stay in step
        assert ints(alpha[0] + alpha[1] + alpha[2]) == [0, 0, 0]


def test_zero_sharer_checks_its_seeds() -> None:
    k = prg.new_seed()
    with pytest.raises(InvalidInput):
        rep.ZeroSharer(0, k, k)
    with pytest.raises(InvalidInput):
        rep.ZeroSharer(0, k, b"short")
    s = rep.share(rand_u64(3))
    with pytest.raises(InvalidInput):
        rep.mul_local(s[0], s[0], rep.ZeroSharer(1, k, prg.new_seed()))


# ---- multiplication ---------------------------------------------------------------------


def test_mul_and_reshare_is_the_product() -> None:
    x, y = rand_u64(6, 2), rand_u64(6, 2)
    zs, sx, sy = sharers(), rep.share(x), rep.share(y)
    z = [rep.mul_local(sx[i], sy[i], zs[i]) for i in range(3)]
    ref = [(a * b) % MOD for a, b in zip(ints(x), ints(y), strict=True)]
    assert ints(z[0] + z[1] + z[2]) == ref
    assert ints(rep.reconstruct(reshare(z))) == ref


def test_matmul_local_is_the_ring_product() -> None:
    x, y = rand_u64(5, 7), rand_u64(7, 3)
    zs, sx, sy = sharers(), rep.share(x), rep.share(y)
    z = reshare([rep.matmul_local(sx[i], sy[i], zs[i]) for i in range(3)])
    ref = (x.astype(object) @ y.astype(object)) % MOD
    assert ints(rep.reconstruct(z)) == ints(ref)


def test_and_local_is_the_bitwise_and() -> None:
    x, y = rand_u64(11), rand_u64(11)
    zs, sx, sy = sharers(), rep.share_bits(x), rep.share_bits(y)
    z = reshare([rep.and_local(sx[i], sy[i], zs[i]) for i in range(3)], boolean=True)
    np.testing.assert_array_equal(rep.reconstruct_bits(z), x & y)


def test_product_shares_hide_the_inputs() -> None:
    """The message party 2 sends (z_2) changes with fresh zero shares for equal inputs."""
    x, y = rand_u64(8), rand_u64(8)
    sx, sy = rep.share(x), rep.share(y)
    z2 = [rep.mul_local(sx[2], sy[2], sharers()[2]) for _ in range(2)]
    assert not np.array_equal(z2[0], z2[1])


# ---- truncation --------------------------------------------------------------------------


def additive_shares(z: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """z_0, z_1 uniform (seeded, for reproducible failure counts), z_2 the rest."""
    z0 = rng.integers(0, 2**64, size=z.shape, dtype=np.uint64)
    z1 = rng.integers(0, 2**64, size=z.shape, dtype=np.uint64)
    return [z0, z1, z.view(np.uint64) - z0 - z1]


def truncate(z: list[np.ndarray], f: int, zs: list[rep.ZeroSharer]) -> list[rep.RepShare]:
    """The two rounds of Pi_trunc1 with the messages passed by hand."""
    shape = z[0].shape
    y0 = rep.trunc_p0_round1(z[0], f)  # round 1: party 0 -> party 2
    z2_at_p1 = z[2]  # round 1: party 2 -> party 1
    r1 = zs[1].common_next(shape)
    r2 = zs[2].common_prev(shape)
    y1, share1 = rep.trunc_p1_round2(z[1], z2_at_p1, r1, f)  # round 2: party 1 -> party 0
    return [rep.trunc_p0_finish(y0, y1), share1, rep.trunc_p2_finish(r2, y0)]


def ulp_errors(z: np.ndarray, y: np.ndarray, f: int) -> np.ndarray:
    """result - floor(z / 2^f), in ulps (int64, exact mod 2^64)."""
    return y.view(np.int64) - (z >> np.int64(f))


def test_truncation_is_within_one_ulp_below_2_pow_40() -> None:
    rng = np.random.default_rng(2024)
    f = 16
    z = rng.integers(-(2**40) + 1, 2**40, size=1_000_000, dtype=np.int64)
    out = truncate(additive_shares(z, rng), f, sharers())
    err = ulp_errors(z, rep.reconstruct(out), f)
    assert np.all(np.abs(err) <= 1)
    np.testing.assert_array_equal(rep.reconstruct([out[0], out[2]]), rep.reconstruct(out))


def test_truncation_failure_rate_near_2_pow_60_matches_the_bound() -> None:
    rng = np.random.default_rng(99)
    f, n = 13, 200_000
    z = np.where(rng.integers(0, 2, size=n) == 1, 2**60, -(2**60)).astype(np.int64)
    err = ulp_errors(z, rep.reconstruct(truncate(additive_shares(z, rng), f, sharers())), f)
    failures = int(np.count_nonzero(np.abs(err) > 1))
    p = 2.0**60 / 2.0**64  # exact failure rate for |z| = 2^60: z_0 in a window of |z|
    sd = math.sqrt(n * p * (1 - p))
    assert abs(failures - n * p) < 5 * sd, (failures, n * p)
    assert failures / n <= rep.truncation_failure_probability(60)
    # a failure is off by about 2^(64 - f), not by a little
    bad = np.abs(err[np.abs(err) > 1])
    assert np.all(np.abs(bad - 2 ** (64 - f)) <= 1)


def test_truncation_of_a_product_of_fixed_point_shares() -> None:
    f = 12
    a = RNG.uniform(-50, 50, size=200)
    b = RNG.uniform(-50, 50, size=200)
    ea = np.round(a * 2**f).astype(np.int64).view(np.uint64)
    eb = np.round(b * 2**f).astype(np.int64).view(np.uint64)
    zs, sa, sb = sharers(), rep.share(ea), rep.share(eb)
    z = [rep.mul_local(sa[i], sb[i], zs[i]) for i in range(3)]
    y = rep.reconstruct(truncate(z, f, zs)).view(np.int64)
    exact = ea.view(np.int64) * eb.view(np.int64)  # |a b| 2^24 < 2^63
    assert np.all(np.abs(y - exact / 2.0**f) <= 1)


def test_failure_probability_bound() -> None:
    assert rep.truncation_failure_probability(60) == 2.0**-3
    assert rep.truncation_failure_probability(40, 1_000_000) == pytest.approx(1e6 * 2.0**-23)
    assert rep.truncation_failure_probability(63, 10) == 1.0
    with pytest.raises(InvalidInput):
        rep.truncation_failure_probability(65)


# ---- bit slicing, MSB, bit to arithmetic ----------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 200])
def test_bitslice_roundtrip_and_layout(n: int) -> None:
    w = rand_u64(n)
    rows = rep.bitslice(w)
    assert rows.shape == (64, -(-n // 64))
    for e in range(min(n, 70)):
        for j in (0, 5, 63):
            assert (int(rows[j, e // 64]) >> (e % 64)) & 1 == (int(w[e]) >> j) & 1
    np.testing.assert_array_equal(rep.unbitslice(rows, n), w)
    low = rep.unbitslice(rows[:1], n)
    np.testing.assert_array_equal(low, w & np.uint64(1))


def and_round(
    left: list[rep.BinShare], right: list[rep.BinShare], zs: list[rep.ZeroSharer]
) -> list[rep.BinShare]:
    return reshare([rep.and_local(left[i], right[i], zs[i]) for i in range(3)], boolean=True)


def msb(x: np.ndarray) -> np.ndarray:
    """The 3-party MSB extraction with the messages passed by hand; returns the MSB bits."""
    zs, s = sharers(), rep.share(x)
    v1, v_0, y_0 = rep.msb_inputs(0, s[0], zs[0])  # round 1: v_1 party 0 -> party 1
    _, v_1, y_1 = rep.msb_inputs(1, s[1], zs[1], v1)
    _, v_2, y_2 = rep.msb_inputs(2, s[2], zs[2])
    v, y = [v_0, v_1, v_2], [y_0, y_1, y_2]
    ins = [rep.carry_and_inputs(v[i], y[i]) for i in range(3)]
    g = and_round([t[0] for t in ins], [t[1] for t in ins], zs)
    gp = [rep.carry_start(v[i], y[i], g[i]) for i in range(3)]
    gg, pp, p63 = [t[0] for t in gp], [t[1] for t in gp], [t[2] for t in gp]
    for _ in range(rep.CARRY_LEVELS):
        ins = [rep.carry_level_inputs(gg[i], pp[i]) for i in range(3)]
        t = and_round([u[0] for u in ins], [u[1] for u in ins], zs)
        nxt = [rep.carry_level_combine(gg[i], pp[i], t[i]) for i in range(3)]
        gg, pp = [u[0] for u in nxt], [u[1] for u in nxt]
    bits = [rep.msb_finish(gg[i], p63[i]) for i in range(3)]
    return rep.unbitslice(rep.reconstruct_bits(bits), x.size)


def test_msb_against_the_sign() -> None:
    edge = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**62, 2**63 + 1, 2**32], dtype=np.uint64)
    x = np.concatenate([edge, rand_u64(300)])
    expected = (x >> np.uint64(63)).astype(np.uint64)
    np.testing.assert_array_equal(msb(x), expected)


def test_msb_of_values_near_zero() -> None:
    x = np.arange(-100, 100, dtype=np.int64).view(np.uint64)
    np.testing.assert_array_equal(msb(x), (np.arange(-100, 100) < 0).astype(np.uint64))


def test_msb_sends_the_documented_bits() -> None:
    # rows ANDed: the generate layer, then each tree level
    v = rep.BinShare(0, np.zeros((63, 1), np.uint64), np.zeros((63, 1), np.uint64))
    rows, gg, pp = 63, v, v
    for _ in range(rep.CARRY_LEVELS):
        left, _ = rep.carry_level_inputs(gg, pp)
        rows += left.shape[0]
        t = rep.BinShare(0, np.zeros(left.shape, np.uint64), np.zeros(left.shape, np.uint64))
        gg, pp = rep.carry_level_combine(gg, pp, t)
    assert gg.shape[0] == 1
    assert rows == rep.MSB_AND_BITS == 181


@pytest.mark.parametrize("flip", [False, True])
def test_b2a_gives_the_bit_as_a_ring_element(flip: bool) -> None:
    bits = RNG.integers(0, 2, size=50, dtype=np.uint64) | (rand_u64(50) & ~np.uint64(1))
    zs, s = sharers(), rep.share_bits(bits)
    msg, share0 = rep.b2a_p0_round1(s[0], zs[0], flip)  # round 1: party 0 -> party 1
    pad, d0 = rep.b2a_p2_round1(s[2], zs[2])  # round 1: party 2 -> party 1
    d1 = rep.b2a_p1_round1(s[1], zs[1])
    d2, share1 = rep.b2a_p1_round2(s[1], d1, msg, pad)  # round 2: party 1 -> party 2
    share2 = rep.b2a_p2_finish(d2, d0)
    got = rep.reconstruct([share0, share1, share2])
    np.testing.assert_array_equal(got, (bits & np.uint64(1)) ^ np.uint64(int(flip)))


def test_b2a_message_hides_the_bit() -> None:
    """Party 1's view (two masked choices and one pad) differs between runs on one bit."""
    bits = np.ones(16, dtype=np.uint64)
    views = []
    for _ in range(2):
        zs, s = sharers(), rep.share_bits(bits)
        views.append(rep.b2a_p0_round1(s[0], zs[0])[0])
    assert not np.array_equal(views[0], views[1])
