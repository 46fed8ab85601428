"""Beaver products, SecureML truncation and single-use dealt correlations against
plaintext arithmetic (Python integers modulo 2^64, numpy int64 shifts)."""

from __future__ import annotations

import numpy as np
import pytest

from mpcai import encoding, prg
from mpcai.errors import InvalidInput, InvalidType, TripleReuse
from mpcai.runtime import wire
from mpcai.sharing import additive, beaver

MOD = 1 << 64
RNG_SEED = 20240613


def _rand_u64(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, MOD, size=shape, dtype=np.uint64)


def _py(a: np.ndarray) -> np.ndarray:
    """The array as Python integers (object dtype), for an independent reference."""
    return np.array(a.tolist(), dtype=object).reshape(a.shape)


def _ref_matmul(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    prod = _py(a).dot(_py(b)) if a.shape[1] else np.zeros((a.shape[0], b.shape[1]), dtype=object)
    return [[int(v) % MOD for v in row] for row in prod]


def _ref_mul(a: np.ndarray, b: np.ndarray) -> list[int]:
    return [(x * y) % MOD for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True)]


def _expand_all(dealt: list[beaver.DealtShare]) -> list[beaver.Correlation]:
    return [beaver.expand(d) for d in dealt]


# ---- (a) exact products --------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shape", [(17,), (4, 5), (), (0, 3)])
def test_elementwise_product_reconstructs_to_plaintext_product(
    n: int, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(RNG_SEED)
    x, y = _rand_u64(rng, shape), _rand_u64(rng, shape)
    xs, ys = additive.share(x, n), additive.share(y, n)
    triples = _expand_all(beaver.deal_triples(shape, n))
    opened = [beaver.mul_open(xi, yi, t) for xi, yi, t in zip(xs, ys, triples, strict=True)]
    d = additive.reconstruct([o[0] for o in opened])
    e = additive.reconstruct([o[1] for o in opened])
    zs = [beaver.mul_close(d, e, t, i) for i, t in enumerate(triples)]
    z = additive.reconstruct(zs)
    assert z.shape == shape and z.dtype == np.uint64
    assert z.ravel().tolist() == _ref_mul(x, y)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dims", [(5, 7, 3), (1, 1, 1), (6, 0, 2)])
def test_matrix_product_reconstructs_to_plaintext_product(
    n: int, dims: tuple[int, int, int]
) -> None:
    m, k, c = dims
    rng = np.random.default_rng(RNG_SEED + 1)
    x, y = _rand_u64(rng, (m, k)), _rand_u64(rng, (k, c))
    xs, ys = additive.share(x, n), additive.share(y, n)
    triples = _expand_all(beaver.deal_matrix_triples(m, k, c, n))
    opened = [beaver.matmul_open(xi, yi, t) for xi, yi, t in zip(xs, ys, triples, strict=True)]
    d = additive.reconstruct([o[0] for o in opened])
    e = additive.reconstruct([o[1] for o in opened])
    z = additive.reconstruct([beaver.matmul_close(d, e, t, i) for i, t in enumerate(triples)])
    assert z.shape == (m, c)
    assert z.tolist() == _ref_matmul(x, y)


@pytest.mark.parametrize("n", [2, 3])
def test_square_reconstructs_to_plaintext_square(n: int) -> None:
    rng = np.random.default_rng(RNG_SEED + 2)
    x = _rand_u64(rng, (3, 11))
    xs = additive.share(x, n)
    pairs = _expand_all(beaver.deal_square_pairs((3, 11), n))
    d = additive.reconstruct([beaver.square_open(xi, p) for xi, p in zip(xs, pairs, strict=True)])
    z = additive.reconstruct([beaver.square_close(d, p, i) for i, p in enumerate(pairs)])
    assert z.ravel().tolist() == _ref_mul(x, x)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_dealt_correlations_satisfy_their_relation(n: int) -> None:
    t = [c.take() for c in _expand_all(beaver.deal_triples((9,), n))]
    a, b, c = (additive.reconstruct([s[i] for s in t]) for i in range(3))
    assert c.tolist() == _ref_mul(a, b)
    mt = [c.take() for c in _expand_all(beaver.deal_matrix_triples(4, 6, 3, n))]
    a, b, c = (additive.reconstruct([s[i] for s in mt]) for i in range(3))
    assert (a.shape, b.shape, c.shape) == ((4, 6), (6, 3), (4, 3))
    assert c.tolist() == _ref_matmul(a, b)
    sq = [c.take() for c in _expand_all(beaver.deal_square_pairs(8, n))]
    a, a2 = (additive.reconstruct([s[i] for s in sq]) for i in range(2))
    assert a2.tolist() == _ref_mul(a, a)
    masks = [c.take()[0] for c in _expand_all(beaver.deal_ring_masks((2, 3), n))]
    assert all(r.shape == (2, 3) and r.dtype == np.uint64 for r in masks)
    assert len({r.tobytes() for r in masks}) == n  # independent streams


@pytest.mark.parametrize("n", [2, 3])
def test_local_dealer_gives_every_party_shares_of_the_same_sequence(n: int) -> None:
    rng = np.random.default_rng(RNG_SEED + 3)
    providers = beaver.LocalDealer(n, seed=bytes(range(32))).providers()
    assert [p.party_index for p in providers] == list(range(n))
    assert all(p.n_parties == n for p in providers)
    # a sequence: triple, matrix triple, square, triple again
    x, y = _rand_u64(rng, (6,)), _rand_u64(rng, (6,))
    for _ in range(2):
        ts = [p.triple(6) for p in providers]
        xs, ys = additive.share(x, n), additive.share(y, n)
        op = [beaver.mul_open(a, b, t) for a, b, t in zip(xs, ys, ts, strict=True)]
        d = additive.reconstruct([o[0] for o in op])
        e = additive.reconstruct([o[1] for o in op])
        z = additive.reconstruct([beaver.mul_close(d, e, t, i) for i, t in enumerate(ts)])
        assert z.tolist() == _ref_mul(x, y)
        mts = [p.matrix_triple(3, 4, 2) for p in providers]
        parts = [m.take() for m in mts]
        a, b, c = (additive.reconstruct([s[i] for s in parts]) for i in range(3))
        assert c.tolist() == _ref_matmul(a, b)
        sq = [p.square((2, 2)).take() for p in providers]
        a, a2 = (additive.reconstruct([s[i] for s in sq]) for i in range(2))
        assert a2.ravel().tolist() == _ref_mul(a, a)
        assert all(p.ring_mask(3).shape == (3,) for p in providers)


def test_local_dealer_counter_is_per_party_not_per_provider_object() -> None:
    dealer = beaver.LocalDealer(2)
    first, second = dealer.provider(0).triple(4), dealer.provider(0).triple(4)
    a1, a2 = first.take()[0], second.take()[0]
    assert not np.array_equal(a1, a2)  # correlations #0 and #1, not #0 twice


def test_local_dealer_refuses_parties_asking_for_different_sequences() -> None:
    p0, p1 = beaver.LocalDealer(2).providers()
    p0.triple((3,))
    with pytest.raises(InvalidInput, match="correlation #0"):
        p1.triple((4,))
    with pytest.raises(InvalidInput, match="correlation #0"):
        p1.square((3,))
    t1 = p1.triple((3,))  # the matching request still works
    assert t1.shape == (3,)


def test_ring_matmul_matches_python_integers() -> None:
    rng = np.random.default_rng(RNG_SEED + 4)
    a, b = _rand_u64(rng, (3, 5)), _rand_u64(rng, (5, 4))
    assert beaver.ring_matmul(a, b).tolist() == _ref_matmul(a, b)
    assert beaver.ring_matmul(a.view(np.int64), b).tolist() == _ref_matmul(a, b)


# ---- (b) fixed point ------------------------------------------------------------------


@pytest.mark.parametrize("f", [8, 12, 14])
def test_fixed_point_product_truncates_to_within_one_ulp(f: int) -> None:
    rng = np.random.default_rng(RNG_SEED + 5)
    count = 1000
    xf, yf = rng.uniform(-8, 8, count), rng.uniform(-8, 8, count)
    x, y = encoding.encode_fixed(xf, f), encoding.encode_fixed(yf, f)
    # well inside the bound: |X * Y| < 2^(2f + 6), so all truncations succeed but with
    # probability <= 2^-20 (the random shares below come from the OS)
    assert beaver.truncation_failure_probability(2 * f + 6, count) <= 2.0**-20
    xs, ys = additive.share(x, 2), additive.share(y, 2)
    ts = _expand_all(beaver.deal_triples(x.shape, 2))
    op = [beaver.mul_open(a, b, t) for a, b, t in zip(xs, ys, ts, strict=True)]
    d = additive.reconstruct([o[0] for o in op])
    e = additive.reconstruct([o[1] for o in op])
    zs = [beaver.mul_close(d, e, t, i) for i, t in enumerate(ts)]
    z = additive.reconstruct([beaver.truncate(s, f, i) for i, s in enumerate(zs)])
    # exact reference on the encoded integers: floor(X * Y / 2^f), result is it or it + 1
    xi, yi = x.view(np.int64).tolist(), y.view(np.int64).tolist()
    ref = [(a * b) >> f for a, b in zip(xi, yi, strict=True)]
    got = z.view(np.int64).tolist()
    assert all(g - r in (0, 1) for g, r in zip(got, ref, strict=True))
    # and against the real product: round(x*y*2^f)/2^f within 1 ulp plus the encoding error
    ulp = 2.0**-f
    dec = encoding.decode_fixed(z, f)
    tol = ulp * (1 + (np.abs(xf) + np.abs(yf)) / 2 + 1)
    assert np.all(np.abs(dec - np.round(xf * yf / ulp) * ulp) <= tol)


# ---- (c) truncation failure rate ------------------------------------------------------


def _truncation_outcome(x_signed: np.ndarray, f: int, mask_seed: bytes) -> np.ndarray:
    """For each element: True where the two truncated shares miss floor(x/2^f) by more
    than the allowed +1.  Shares: x_0 uniform (ChaCha20 from a fixed seed), x_1 = x - x_0."""
    x = x_signed.view(np.uint64)
    x0 = prg.ring_vector(mask_seed, x.size).reshape(x.shape)
    x1 = x - x0
    z = beaver.truncate(x0, f, 0) + beaver.truncate(x1, f, 1)
    floor = (x_signed >> f).view(np.uint64)  # arithmetic shift = floor division
    diff = z - floor
    return (diff != 0) & (diff != 1)


def test_truncation_fails_at_the_rate_theory_predicts_for_large_values() -> None:
    rng = np.random.default_rng(RNG_SEED + 6)
    count, f = 200_000, 16
    mag = rng.integers(1 << 62, 1 << 63, size=count, dtype=np.int64)  # |x| in [2^62, 2^63)
    sign = rng.choice(np.array([-1, 1], dtype=np.int64), size=count)
    x = mag * sign
    seed = prg.derive_seed(bytes(32), "test/beaver/mc")
    failed = _truncation_outcome(x, f, seed)
    # theory: the uniform share x_0 wraps around x with probability |x| / 2^64 exactly
    p = mag.astype(np.float64) / 2.0**64  # per element, in [1/4, 1/2)
    expected, sigma = p.sum(), np.sqrt((p * (1 - p)).sum())
    assert 0.25 <= expected / count < 0.5
    assert abs(int(failed.sum()) - expected) <= 5 * sigma
    # and exactly the predicted elements fail: x > 0 and x_0 < x, or x < 0 and x_0 >= 2^64 + x
    x0 = prg.ring_vector(seed, count)
    xu = x.view(np.uint64)
    wraps = np.where(x > 0, x0 < xu, x0 >= xu)
    np.testing.assert_array_equal(failed, wraps)
    # the bound of the helper covers the worst element
    assert p.max() <= beaver.truncation_failure_probability(63)


def test_truncation_never_fails_on_a_million_values_below_2_to_40() -> None:
    rng = np.random.default_rng(RNG_SEED + 7)
    count = 1_000_000
    x = rng.integers(-(1 << 40) + 1, 1 << 40, size=count, dtype=np.int64)
    # bound: 10^6 * 2^(40-64) ~ 0.06, mean |x| gives ~0.03 expected failures
    assert beaver.truncation_failure_probability(40, count) == pytest.approx(count * 2.0**-24)
    failed = _truncation_outcome(x, 13, prg.derive_seed(bytes(32), "test/beaver/small"))
    assert int(failed.sum()) == 0


def test_failure_probability_helpers_match_hand_computed_values() -> None:
    assert beaver.truncation_failure_probability(40) == 2.0**-24
    assert beaver.truncation_failure_probability(61, count=4) == 0.5
    assert beaver.truncation_failure_probability(63, count=4) == 1.0
    assert beaver.truncation_failure_probability(20, count=0) == 0.0
    assert beaver.truncation_failure_probability(10, ring_bits=32) == 2.0**-22
    assert beaver.value_bits_bound(2.0**-40, 1 << 20) == 4
    assert beaver.value_bits_bound(2.0**-20) == 44
    assert beaver.value_bits_bound(0.3, 3) == 60  # 3 * 2^-4 <= 0.3 < 3 * 2^-3
    assert beaver.value_bits_bound(1.0) == 64
    with pytest.raises(InvalidInput):
        beaver.value_bits_bound(2.0**-70)
    with pytest.raises(InvalidInput):
        beaver.value_bits_bound(0.0)


# ---- (d) single use ---------------------------------------------------------------------


def _fresh(kind: str) -> beaver.Correlation:
    dealt = {
        "triple": lambda: beaver.deal_triples(3, 2),
        "matrix_triple": lambda: beaver.deal_matrix_triples(2, 3, 2, 2),
        "square": lambda: beaver.deal_square_pairs(3, 2),
        "ring_mask": lambda: beaver.deal_ring_masks(3, 2),
    }[kind]()
    return beaver.expand(dealt[0])


def _open(c: beaver.Correlation) -> object:
    if isinstance(c, beaver.Triple):
        z = np.zeros(c.shape, np.uint64)
        return beaver.mul_open(z, z, c)
    if isinstance(c, beaver.MatrixTriple):
        m, k, n = c.dims
        return beaver.matmul_open(np.zeros((m, k), np.uint64), np.zeros((k, n), np.uint64), c)
    assert isinstance(c, beaver.SquarePair)
    return beaver.square_open(np.zeros(c.shape, np.uint64), c)


def _close(c: beaver.Correlation) -> object:
    if isinstance(c, beaver.Triple):
        z = np.zeros(c.shape, np.uint64)
        return beaver.mul_close(z, z, c, 0)
    if isinstance(c, beaver.MatrixTriple):
        m, k, n = c.dims
        return beaver.matmul_close(np.zeros((m, k), np.uint64), np.zeros((k, n), np.uint64), c, 0)
    assert isinstance(c, beaver.SquarePair)
    return beaver.square_close(np.zeros(c.shape, np.uint64), c, 0)


@pytest.mark.parametrize("kind", ["triple", "matrix_triple", "square"])
def test_second_use_of_a_correlation_raises_triple_reuse(kind: str) -> None:
    c = _fresh(kind)
    assert not c.used
    _open(c)
    assert c.used
    with pytest.raises(TripleReuse):
        _open(c)
    with pytest.raises(TripleReuse):
        c.take()
    _close(c)
    with pytest.raises(TripleReuse):
        _close(c)
    with pytest.raises(TripleReuse):
        _open(c)
    c2 = _fresh(kind)
    c2.take()
    for use in (c2.take, lambda: _open(c2), lambda: _close(c2)):
        with pytest.raises(TripleReuse):
            use()


def test_ring_mask_is_taken_once() -> None:
    r = _fresh("ring_mask")
    r.take()
    with pytest.raises(TripleReuse):
        r.take()


@pytest.mark.parametrize("kind", ["triple", "matrix_triple", "square"])
def test_closing_an_unopened_correlation_is_refused_and_does_not_consume_it(kind: str) -> None:
    c = _fresh(kind)
    with pytest.raises(InvalidInput, match="not opened"):
        _close(c)
    _open(c)
    _close(c)


def test_bad_input_does_not_consume_the_triple() -> None:
    t = _fresh("triple")
    with pytest.raises(InvalidInput):
        beaver.mul_open(np.zeros(4, np.uint64), np.zeros(3, np.uint64), t)
    with pytest.raises(InvalidType):
        beaver.mul_open(np.zeros(3), np.zeros(3, np.uint64), t)
    assert not t.used
    beaver.mul_open(np.zeros(3, np.uint64), np.zeros(3, np.uint64), t)
    with pytest.raises(InvalidInput, match="party"):
        beaver.mul_close(np.zeros(3, np.uint64), np.zeros(3, np.uint64), t, 1)
    beaver.mul_close(np.zeros(3, np.uint64), np.zeros(3, np.uint64), t, 0)


# ---- (e) the dealer's messages ------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_only_the_last_party_gets_an_array_and_the_byte_counts(n: int) -> None:
    dealt = beaver.deal_matrix_triples(100, 64, 32, n)
    assert [d.party_index for d in dealt] == list(range(n))
    assert all(len(d.seed) == 32 for d in dealt)
    assert len({d.seed for d in dealt}) == n
    assert all(d.correction is None for d in dealt[:-1])
    last = dealt[-1].correction
    assert last is not None and last.shape == (100, 32) and last.dtype == np.uint64
    assert [d.nbytes for d in dealt] == [32] * (n - 1) + [32 + 100 * 32 * 8]
    for d in dealt:
        w = d.to_wire()
        assert set(w) <= {"kind", "dims", "party", "n_parties", "seed", "correction"}
        assert w["kind"] == "matrix_triple" and w["dims"] == [100, 64, 32]
        assert ("correction" in w) == (d.party_index == n - 1)
        assert len(wire.encode_payload(w)) < d.nbytes + 200
    for kind_deal, has_corr in (
        (beaver.deal_triples((5, 2), n), True),
        (beaver.deal_square_pairs(7, n), True),
        (beaver.deal_ring_masks(7, n), False),
    ):
        assert all(d.correction is None for d in kind_deal[:-1])
        assert (kind_deal[-1].correction is not None) == has_corr
        assert all(len(d.seed) == 32 for d in kind_deal)


def test_wire_form_roundtrips_through_the_codec() -> None:
    rng = np.random.default_rng(RNG_SEED + 8)
    x, y = _rand_u64(rng, (3, 4)), _rand_u64(rng, (4, 2))
    dealt = beaver.deal_matrix_triples(3, 4, 2, 2)
    back = [
        beaver.DealtShare.from_wire(wire.decode_payload(wire.encode_payload(d.to_wire())))
        for d in dealt
    ]
    ts = _expand_all(back)
    xs, ys = additive.share(x, 2), additive.share(y, 2)
    op = [beaver.matmul_open(a, b, t) for a, b, t in zip(xs, ys, ts, strict=True)]
    d = additive.reconstruct([o[0] for o in op])
    e = additive.reconstruct([o[1] for o in op])
    z = additive.reconstruct([beaver.matmul_close(d, e, t, i) for i, t in enumerate(ts)])
    assert z.tolist() == _ref_matmul(x, y)


@pytest.mark.parametrize("n", [2, 3])
def test_no_dealt_share_shows_the_relation_on_its_own(n: int) -> None:
    parts = [c.take() for c in _expand_all(beaver.deal_triples(64, n))]
    for a, b, c in parts:
        assert c.tolist() != _ref_mul(a, b)  # nobody's c is its own a * b
        assert len({a.tobytes(), b.tobytes(), c.tobytes()}) == 3  # no stream reused
    # n - 1 parties together do not hold a triple either
    a, b, c = (additive.reconstruct([s[i] for s in parts[:-1]]) for i in range(3))
    assert c.tolist() != _ref_mul(a, b)
    sq = [p.take() for p in _expand_all(beaver.deal_square_pairs(64, n))]
    assert all(a2.tolist() != _ref_mul(a, a) for a, a2 in sq)


def test_seeded_dealing_is_deterministic_and_seed_bound() -> None:
    s1, s2 = bytes(32), bytes(range(32))
    one = beaver.deal_triples(5, 3, seed=s1)
    again = beaver.deal_triples(5, 3, seed=s1)
    other = beaver.deal_triples(5, 3, seed=s2)
    assert [d.seed for d in one] == [d.seed for d in again]
    assert one[-1].correction.tolist() == again[-1].correction.tolist()
    assert {d.seed for d in one}.isdisjoint({d.seed for d in other})
    # another shape under the same seed gives other streams
    assert {d.seed for d in one}.isdisjoint({d.seed for d in beaver.deal_triples(6, 3, seed=s1)})


def test_malformed_wire_shares_are_refused() -> None:
    dealt = beaver.deal_triples(4, 2)
    w0, w1 = dealt[0].to_wire(), dealt[1].to_wire()
    bad: list[tuple[object, type[Exception]]] = [
        ([w0], InvalidType),
        ({k: v for k, v in w0.items() if k != "seed"}, InvalidInput),
        ({**w0, "extra": 1}, InvalidInput),
        ({**w0, "kind": "dcf"}, InvalidInput),
        ({**w0, "seed": b"x" * 31}, InvalidInput),
        ({**w0, "dims": "4"}, InvalidType),
        ({**w0, "dims": [True]}, InvalidType),
        ({**w0, "party": 2}, InvalidInput),
        ({**w0, "correction": w1["correction"]}, InvalidInput),
        ({k: v for k, v in w1.items() if k != "correction"}, InvalidType),
        ({**w1, "correction": w1["correction"].view(np.int64)}, InvalidType),
        ({**w1, "correction": np.zeros(5, np.uint64)}, InvalidInput),
        ({**w0, "kind": "matrix_triple"}, InvalidInput),
    ]
    for obj, exc in bad:
        with pytest.raises(exc):
            beaver.DealtShare.from_wire(obj)


# ---- (f) bad inputs ------------------------------------------------------------------------


def test_bad_arguments_give_typed_errors() -> None:
    u = np.zeros((2, 2), np.uint64)
    with pytest.raises(InvalidInput):
        beaver.Triple(u, u, np.zeros(3, np.uint64), 0)
    with pytest.raises(InvalidType):
        beaver.Triple(u, u, np.zeros((2, 2), np.float64), 0)
    with pytest.raises(InvalidInput):
        beaver.MatrixTriple(np.zeros((2, 3), np.uint64), u, u, 0)
    with pytest.raises(InvalidInput):
        beaver.SquarePair(u, np.zeros(4, np.uint64), 0)
    with pytest.raises(InvalidType):
        beaver.mul_open(u, u, _fresh("square"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        beaver.matmul_open(np.zeros((2, 2), np.uint64), u, _fresh("matrix_triple"))
    with pytest.raises(InvalidInput):
        beaver.deal_triples(-1, 2)
    with pytest.raises(InvalidType):
        beaver.deal_triples([3], 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        beaver.deal_triples(3, 1)
    with pytest.raises(InvalidType):
        beaver.deal_matrix_triples(2, 2.0, 2, 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        beaver.deal_triples(3, 2, seed=b"short")
    with pytest.raises(InvalidType):
        beaver.expand({"kind": "triple"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        beaver.ring_matmul(np.zeros((2, 3), np.uint64), u)
    with pytest.raises(InvalidType):
        beaver.ring_matmul(np.zeros((2, 2), np.int32), u)
    with pytest.raises(InvalidInput):
        beaver.LocalDealer(2).provider(2)
    with pytest.raises(InvalidType):
        beaver.LocalDealerProvider(object(), 0)  # type: ignore[arg-type]


def test_truncate_refuses_bad_arguments() -> None:
    s = np.zeros(3, np.uint64)
    with pytest.raises(InvalidInput, match="2 parties"):
        beaver.truncate(s, 8, 2)
    with pytest.raises(InvalidInput):
        beaver.truncate(s, 63, 0)
    with pytest.raises(InvalidInput):
        beaver.truncate(s, -1, 0)
    with pytest.raises(InvalidType):
        beaver.truncate(s.astype(np.float64), 8, 0)
    with pytest.raises(InvalidType):
        beaver.truncate(s, 8, True)
