"""Shamir sharing over GF(2^61 - 1) (mpcai.sharing.shamir) and the numpy
references of the benchmark.

Every check compares against something independent of the code under test:
Python big-int arithmetic (Lagrange interpolation, polynomial evaluation),
the numpy references of benchmarks/_shamir.py (themselves checked against
Python ints here), or OpenSSL's ChaCha20 for the random coefficients.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mpcai.benchmarks import _shamir as bench

from mpcai import prg
from mpcai.errors import (
    DuplicateShares,
    InconsistentShares,
    InvalidInput,
    InvalidType,
    MpcaiError,
    NotEnoughShares,
)
from mpcai.sharing import shamir
from mpcai.sharing.shamir import Share

U64 = np.uint64
P = (1 << 61) - 1  # the Mersenne prime, written out independently of the code


def test_field_modulus_is_the_mersenne_prime() -> None:
    assert shamir.FIELD_P == P and prg.FIELD_P == P


def field_values(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.integers(0, P, size=shape, dtype=U64)
    if x.size:
        flat = x.reshape(-1)
        flat[: min(3, flat.size)] = [0, P - 1, 1][: min(3, flat.size)]
    return x


def py_interpolate_at_zero(points: list[tuple[int, int]]) -> int:
    """f(0) by Lagrange interpolation with Python ints (independent of the module)."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        num = den = 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (-xj) % P
                den = den * (xi - xj) % P
        total += yi * num * pow(den, P - 2, P)
    return total % P


# ---- round trips ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 30))
def test_any_t_subset_reconstructs(data: st.DataObject, n: int) -> None:
    t = data.draw(st.integers(1, n), label="t")
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    secret = data.draw(hnp.arrays(U64, shape, elements=st.integers(0, P - 1)))
    shares = shamir.share(secret, t, n)
    assert len(shares) == n and [s.x for s in shares] == list(range(1, n + 1))
    assert all(s.values.shape == secret.shape and s.values.dtype == U64 for s in shares)
    k = data.draw(st.integers(t, n), label="subset size")
    subset = data.draw(st.permutations(shares), label="order")[:k]
    got = shamir.reconstruct(subset, t)
    assert got.shape == secret.shape and np.array_equal(got, secret)
    # and the first element again with Python ints from exactly t shares
    if secret.size:
        pts = [(s.x, int(s.values.reshape(-1)[0])) for s in subset[:t]]
        assert py_interpolate_at_zero(pts) == int(secret.reshape(-1)[0])


def test_every_subset_of_size_at_least_t() -> None:
    rng = np.random.default_rng(1)
    secret = field_values(rng, 37)
    shares = shamir.share(secret, 3, 6)
    for k in range(3, 7):
        for subset in itertools.combinations(shares, k):
            assert np.array_equal(shamir.reconstruct(list(subset), 3), secret)


def test_custom_points_and_seed_are_deterministic() -> None:
    rng = np.random.default_rng(2)
    secret = field_values(rng, 2, 50)
    points = [5, 17, 1 << 40, P - 1, 2]
    seed = bytes(range(32))
    a = shamir.share(secret, 3, 5, points=points, seed=seed)
    b = shamir.share(secret, 3, 5, points=points, seed=seed)
    c = shamir.share(secret, 3, 5, points=points)
    assert [s.x for s in a] == points
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].values, c[0].values)
    for subset in itertools.combinations(a, 3):
        assert np.array_equal(shamir.reconstruct(list(subset), 3), secret)


def test_shares_match_independent_reference() -> None:
    """Same seed: the coefficients are the OpenSSL ChaCha20 field stream and
    the shares their big-int evaluations."""
    rng = np.random.default_rng(3)
    secret = field_values(rng, 40)
    seed = os.urandom(32)
    t, n = 4, 7
    shares = shamir.share(secret, t, n, seed=seed)
    r = bench.NumpyFieldPRG(seed).read(secret.size * (t - 1))
    for s in shares:
        for i in range(secret.size):
            coeffs = [int(secret[i])] + [int(r[i * (t - 1) + k]) for k in range(t - 1)]
            assert int(s.values[i]) == sum(c * pow(s.x, k, P) for k, c in enumerate(coeffs)) % P


@pytest.mark.parametrize("threads", [2, 3, 64])
def test_threads_give_identical_shares(threads: int) -> None:
    rng = np.random.default_rng(threads)
    secret = field_values(rng, 3, 7001)  # long enough for several threads
    seed = os.urandom(32)
    one = shamir.share(secret, 4, 6, seed=seed)
    many = shamir.share(secret, 4, 6, seed=seed, threads=threads)
    assert [s.x for s in many] == [s.x for s in one]
    assert all(np.array_equal(a.values, b.values) for a, b in zip(one, many, strict=True))
    assert np.array_equal(shamir.reconstruct(many[1:5], 4), secret)
    short = field_values(rng, 5)
    assert np.array_equal(shamir.reconstruct(shamir.share(short, 2, 3, threads=threads), 2), short)


def test_threads_validated() -> None:
    secret = np.arange(10, dtype=U64)
    for bad in (0, 65, -1):
        with pytest.raises(InvalidInput, match="threads"):
            shamir.share(secret, 2, 3, threads=bad)
    with pytest.raises(InvalidType):
        shamir.share(secret, 2, 3, threads=2.0)  # type: ignore[arg-type]


def test_share_t_equals_one_and_t_equals_n() -> None:
    secret = np.array([0, 5, P - 1], dtype=U64)
    ones = shamir.share(secret, 1, 4)
    assert all(np.array_equal(s.values, secret) for s in ones)
    assert np.array_equal(shamir.reconstruct(ones[2:3], 1), secret)
    full = shamir.share(secret, 5, 5)
    assert np.array_equal(shamir.reconstruct(full, 5), secret)
    with pytest.raises(NotEnoughShares):
        shamir.reconstruct(full[:4], 5)


def test_other_integer_dtypes_accepted() -> None:
    for dtype in (np.uint8, np.int32, np.int64, np.uint32):
        secret = np.arange(10, dtype=dtype)
        shares = shamir.share(secret, 2, 3)
        assert np.array_equal(shamir.reconstruct(shares[1:], 2), np.arange(10, dtype=U64))


# ---- errors -------------------------------------------------------------------


def test_not_enough_and_duplicate_shares() -> None:
    shares = shamir.share(np.arange(8, dtype=U64), 3, 5)
    with pytest.raises(NotEnoughShares):
        shamir.reconstruct(shares[:2], 3)
    with pytest.raises(NotEnoughShares):
        shamir.reconstruct([], 1)
    with pytest.raises(DuplicateShares):
        shamir.reconstruct([shares[0], shares[1], shares[0]], 3)
    twin = Share(shares[1].x, shares[2].values)
    with pytest.raises(DuplicateShares):
        shamir.reconstruct([shares[0], shares[1], twin, shares[3]], 3)


@pytest.mark.parametrize("position", [0, 2, 3, 5])
def test_tampered_share_detected_with_more_than_t(position: int) -> None:
    rng = np.random.default_rng(position)
    secret = field_values(rng, 300)
    shares = shamir.share(secret, 3, 6)
    bad = shares[position].values.copy()
    bad[123] = (int(bad[123]) + 1) % P
    shares[position] = Share(shares[position].x, bad)
    with pytest.raises(InconsistentShares):
        shamir.reconstruct(shares, 3)
    with pytest.raises(InconsistentShares):
        shamir.reconstruct(shares[:4] if position < 4 else shares[2:], 3)


def test_tampered_share_undetectable_with_exactly_t() -> None:
    """Documented limitation: t values always fit some degree-(t-1) polynomial."""
    secret = np.array([42], dtype=U64)
    shares = shamir.share(secret, 3, 5)
    forged = Share(shares[0].x, np.array([(int(shares[0].values[0]) + 1) % P], dtype=U64))
    assert not np.array_equal(shamir.reconstruct([forged, shares[1], shares[2]], 3), secret)


def test_input_validation() -> None:
    ok = np.arange(4, dtype=U64)
    with pytest.raises(InvalidType):
        shamir.share(ok.astype(np.float64), 2, 3)
    with pytest.raises(InvalidType):
        shamir.share([1, 2, 3], 2, 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidType):
        shamir.share(ok.astype(bool), 2, 3)
    with pytest.raises(InvalidInput):
        shamir.share(np.array([1, -1], dtype=np.int64), 2, 3)
    for bad in (P, 1 << 61, (1 << 64) - 1):
        with pytest.raises(InvalidInput):
            shamir.share(np.array([0, bad], dtype=U64), 2, 3)
    for t, n in ((0, 3), (4, 3), (1, 0)):
        with pytest.raises(InvalidInput):
            shamir.share(ok, t, n)
    with pytest.raises(InvalidType):
        shamir.share(ok, True, 3)
    for points in ([1, 2, 2], [0, 1, 2], [1, 2], [1, 2, P]):
        with pytest.raises(InvalidInput):
            shamir.share(ok, 2, 3, points=points)
    with pytest.raises(InvalidInput):
        shamir.share(ok, 2, 3, seed=bytes(16))
    with pytest.raises(InvalidType):
        shamir.share(ok, 2, 3, seed="x" * 32)  # type: ignore[arg-type]
    shares = shamir.share(ok, 2, 3)
    with pytest.raises(InvalidInput):
        shamir.reconstruct([shares[0], Share(2, np.arange(5, dtype=U64))], 2)
    with pytest.raises(InvalidInput):
        shamir.reconstruct([shares[0], Share(2, np.array([0, 1, 2, P], dtype=U64))], 2)
    with pytest.raises(InvalidInput):
        shamir.reconstruct([*shares[:2], Share(3, np.array([0, 1, 2, P], dtype=U64))], 2)
    with pytest.raises(InvalidType):
        shamir.reconstruct([shares[0], (2, ok)], 2)  # type: ignore[list-item]
    with pytest.raises(InvalidType):
        shamir.reconstruct(shares[0], 1)  # type: ignore[arg-type]
    for x in (0, P, -1):
        with pytest.raises(InvalidInput, match=rf"Share.x must be in \[1, {P - 1}\], got {x}"):
            Share(x, ok)
    with pytest.raises(InvalidType):
        Share(True, ok)
    with pytest.raises(InvalidType):
        Share(1, ok.astype(np.int64))
    with pytest.raises(InvalidType):
        Share(1, [1, 2])  # type: ignore[arg-type]
    assert Share(np.int64(3), ok).x == 3


def test_errors_are_mpcai_and_value_errors() -> None:
    for cls in (NotEnoughShares, DuplicateShares, InconsistentShares, InvalidInput):
        assert issubclass(cls, MpcaiError) and issubclass(cls, ValueError)
    with pytest.raises(ValueError):
        shamir.reconstruct([], 1)


# ---- linearity and privacy -------------------------------------------------------


def test_linearity() -> None:
    rng = np.random.default_rng(4)
    a, b = field_values(rng, 3, 11), field_values(rng, 3, 11)
    sa, sb = shamir.share(a, 3, 5), shamir.share(b, 3, 5)
    summed = [shamir.add(x, y) for x, y in zip(sa, sb, strict=True)]
    got = shamir.reconstruct(summed[1:4], 3)
    assert [int(v) for v in got.reshape(-1)] == [
        (int(x) + int(y)) % P for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True)
    ]
    for c in (0, 1, 7, P - 1, -3, 1 << 70):
        scaled = [shamir.mul_public(s, c) for s in sa]
        got = shamir.reconstruct(scaled[::2], 3)
        assert [int(v) for v in got.reshape(-1)] == [c * int(x) % P for x in a.reshape(-1)]
    diff = [shamir.sub(x, y) for x, y in zip(sa, sb, strict=True)]
    got = shamir.reconstruct(diff[2:], 3)
    assert [int(v) for v in got.reshape(-1)] == [
        (int(x) - int(y)) % P for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True)
    ]
    with pytest.raises(InvalidInput):
        shamir.add(sa[0], sb[1])
    with pytest.raises(InvalidInput):
        shamir.sub(sa[0], sb[1])


@pytest.mark.parametrize("shape", [(3, 11), (), (0,)])
def test_neg_and_add_public(shape: tuple[int, ...]) -> None:
    """Reconstructed against (-secret) mod p and (secret + c) mod p in Python ints; all
    five shares are used once, so a share off the shifted polynomial (e.g. ``c`` added
    by one party only, as in additive sharing) raises InconsistentShares."""
    rng = np.random.default_rng(5)
    a = field_values(rng, *shape)
    sa = shamir.share(a, 3, 5)
    flat = [int(x) for x in a.reshape(-1)]
    negated = [shamir.neg(s) for s in sa]
    assert all(n.x == s.x for n, s in zip(negated, sa, strict=True))
    got = shamir.reconstruct(negated, 3)
    assert got.shape == shape
    assert [int(v) for v in got.reshape(-1)] == [(-x) % P for x in flat]
    assert shamir.add(sa[0], negated[0]).values.shape == shape  # 0-d stays 0-d
    for c in (0, 1, 7, P - 1, P, -3, 1 << 70):
        shifted = [shamir.add_public(s, c) for s in sa]
        for subset in (shifted, shifted[2:], shifted[::2]):
            got = shamir.reconstruct(subset, 3)
            assert [int(v) for v in got.reshape(-1)] == [(x + c) % P for x in flat]
    with pytest.raises(InvalidType):
        shamir.neg(a)  # type: ignore[arg-type]
    with pytest.raises(InvalidType):
        shamir.add_public(a, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidType, match="c must be an int"):
        shamir.add_public(sa[0], 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidType, match="c must be an int"):
        shamir.add_public(sa[0], True)


def test_default_seed_comes_from_prg_new_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``seed`` the coefficients come from prg.new_seed (the one OS-seed source)."""
    secret = np.arange(6, dtype=U64)
    fixed = bytes(range(32))
    monkeypatch.setattr(prg, "new_seed", lambda: fixed)
    got = shamir.share(secret, 3, 4)
    want = shamir.share(secret, 3, 4, seed=fixed)
    assert all(np.array_equal(g.values, w.values) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("t", [2, 3])
def test_t_minus_one_shares_look_uniform_for_any_secret(t: int) -> None:
    """With t - 1 shares the share values are uniform whatever the secret: the
    top 4 bits of each of them (and of their sum) pass a chi-square test for
    two very different secrets (fixed seeds, so the test is deterministic)."""
    size = 40_000
    for k, value in enumerate((0, P - 1)):
        secret = np.full(size, value, dtype=U64)
        shares = shamir.share(secret, t, 5, seed=bytes([k + 10 * t]) * 32)[: t - 1]
        samples = [s.values for s in shares]
        if t > 2:
            samples.append(shamir.field_add(shares[0].values, shares[1].values))
        for v in samples:
            counts = np.bincount((v >> U64(57)).astype(np.int64), minlength=16)
            expected = size * (1 << 57) / P  # bins 0..14 full, bin 15 short by 1/2^57
            chi2 = float(((counts - expected) ** 2 / expected).sum())
            assert chi2 < 60, (value, counts)  # 15 d.o.f.: P(chi2 > 60) ~ 1e-7


# ---- byte strings ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\0", b"x", bytes(7), bytes(8), b"\0\0abc\0\0", b"abcdefg",
     bytes(range(200, 232)), bytes(32)],
)
def test_bytes_round_trip(data: bytes) -> None:
    shares = shamir.share_bytes(data, 3, 5)
    assert shamir.reconstruct_bytes(shares[2:], 3) == data
    assert shamir.reconstruct_bytes(shares, 3) == data


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 6))
def test_bytes_round_trip_property(data: bytes, t: int) -> None:
    shares = shamir.share_bytes(data, t, t + 2)
    assert shamir.reconstruct_bytes(shares[-t:], t) == data


def test_bytes_errors() -> None:
    with pytest.raises(InvalidType, match="secret must be bytes, not str"):
        shamir.share_bytes("text", 2, 3)  # type: ignore[arg-type]
    shares = shamir.share_bytes(os.urandom(32), 2, 3)
    noise = np.random.default_rng(8).integers(1, P, shares[0].values.shape, dtype=U64)
    forged = Share(shares[0].x, shamir.field_add(shares[0].values, noise))
    with pytest.raises(InconsistentShares):
        shamir.reconstruct_bytes([forged, shares[1]], 2)  # random length: not an encoding
    with pytest.raises(InconsistentShares):
        shamir.reconstruct_bytes([forged, *shares[1:]], 2)
    assert shamir.reconstruct_bytes(shamir.share_bytes(bytearray(b"ab"), 1, 1), 1) == b"ab"


# ---- field helpers -------------------------------------------------------------


def test_to_from_field() -> None:
    v = np.array([0, 1, -1, 5, -(2**60), 2**60 - 1, -(2**63), 2**63 - 1], dtype=np.int64)
    f = shamir.to_field(v)
    assert f.dtype == U64
    assert [int(x) for x in f] == [int(x) % P for x in v]
    small = v[np.abs(v.astype(object)) <= (P - 1) // 2]
    assert np.array_equal(shamir.from_field(shamir.to_field(small)), small)
    assert [int(x) for x in shamir.to_field(np.array([P, 2**64 - 1], dtype=U64))] == [
        0,
        (2**64 - 1) % P,
    ]
    assert shamir.from_field(np.array([(P - 1) // 2, (P + 1) // 2], dtype=U64)).tolist() == [
        (P - 1) // 2,
        -((P - 1) // 2),
    ]
    with pytest.raises(InvalidInput):
        shamir.from_field(np.array([P], dtype=U64))
    with pytest.raises(InvalidType):
        shamir.to_field(np.array([1.5]))
    with pytest.raises(InvalidType):
        shamir.from_field(np.array([1], dtype=np.int64))


def test_lagrange_weights_interpolate() -> None:
    xs = [3, 8, 1, 1 << 50]
    coeffs = [11, P - 2, 5, 1 << 59]

    def f(x: int) -> int:
        return sum(c * pow(x, k, P) for k, c in enumerate(coeffs)) % P

    for at in (0, 2, 8, P - 1):
        w = [int(v) for v in shamir.lagrange_weights(xs, at)]
        assert sum(wi * f(x) for wi, x in zip(w, xs, strict=True)) % P == f(at)
    with pytest.raises(DuplicateShares):
        shamir.lagrange_weights([1, 2, 1])


# ---- the numpy references of the benchmark -----------------------------------------


def test_numpy_mul_reference() -> None:
    rng = np.random.default_rng(5)
    a, b = field_values(rng, 2001), field_values(rng, 2001)
    edge = np.array([0, 1, P - 1, P - 2, 1 << 60, (1 << 32) - 1, 1 << 32], dtype=U64)
    a[: edge.size], b[: edge.size] = edge, edge[::-1]
    a[-1] = b[-1] = P - 1
    got = bench.np_mul(a, b, chunk=300)
    assert [int(v) for v in got] == [int(x) * int(y) % P for x, y in zip(a, b, strict=True)]


def test_numpy_lincomb_reference() -> None:
    rng = np.random.default_rng(6)
    rows = [field_values(rng, 555) for _ in range(7)]
    rows[0][:] = P - 1
    weights = [P - 1, 1, 0, 1 << 60, 12345, P - 2, 7]
    got = bench.np_lagrange_lincomb(rows, weights, chunk=100)
    exp = [sum(w * int(r[i]) for w, r in zip(weights, rows, strict=True)) % P for i in range(555)]
    assert [int(v) for v in got] == exp


@pytest.mark.parametrize("points", [list(range(1, 21)), [3, 1, 4], [7, 100000, 2]])
@pytest.mark.parametrize("degree", [0, 1, 4, 9, 12])
def test_numpy_poly_eval_reference(points: list[int], degree: int) -> None:
    rng = np.random.default_rng(degree)
    coeffs = field_values(rng, degree + 1, 45)
    coeffs[:, :3] = P - 1
    got = bench.np_poly_eval(coeffs, points, chunk=16)
    for j, x in enumerate(points):
        exp = [
            sum(int(coeffs[k, i]) * pow(x, k, P) for k in range(degree + 1)) % P for i in range(45)
        ]
        assert [int(v) for v in got[j]] == exp


def test_numpy_share_and_reconstruct_reference() -> None:
    rng = np.random.default_rng(7)
    secret = field_values(rng, 1000)
    seed = os.urandom(32)
    ref = bench.np_share(secret, 4, 9, seed, chunk=300)
    assert np.array_equal(bench.np_share(secret, 4, 9, seed, chunk=256, horner=True), ref)
    r = [int(v) for v in bench.NumpyFieldPRG(seed).read(secret.size * 3)]
    for i in (0, 1, 299, 300, 999):
        coeffs = [int(secret[i]), *r[3 * i : 3 * i + 3]]
        for j in range(9):
            exp = sum(c * pow(j + 1, k, P) for k, c in enumerate(coeffs)) % P
            assert int(ref[j, i]) == exp
    assert np.array_equal(bench.np_reconstruct(list(ref[2:6]), [3, 4, 5, 6]), secret)
    ours = shamir.share(secret, 4, 9, seed=seed)
    assert all(np.array_equal(s.values, ref[j]) for j, s in enumerate(ours))


def test_numpy_prg_reference_matches_words() -> None:
    seed = bytes(range(32))
    got = bench.NumpyFieldPRG(seed)
    first, second = got.read(5), got.read(3)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), None).encryptor().update(bytes(64))
    words = [int.from_bytes(stream[8 * i : 8 * i + 8], "little") & P for i in range(8)]
    assert [int(v) for v in [*first, *second]] == words


def test_benchmark_quick_runs() -> None:
    records = bench.run(reps=1, quick=True)
    assert records
    for rec in records:
        assert {"name", "ours_s", "baseline_name", "baseline_s", "ratio"} <= rec.keys()
        assert rec["ratio"] == pytest.approx(rec["baseline_s"] / rec["ours_s"])


# ---------------------------------------------------------------- error correction


def _python_shares(secret: list[int], t: int, xs: list[int], seed: int) -> list[Share]:
    """Shares built with Python ints only: f_j(X) = secret_j + sum_k c_jk X^k."""
    import random

    rnd = random.Random(seed)  # test data, not key material
    coeffs = [[s] + [rnd.randrange(P) for _ in range(t - 1)] for s in secret]
    return [Share(x, np.array([sum(c * pow(x, k, P) for k, c in enumerate(cj)) % P
                               for cj in coeffs], dtype=U64)) for x in xs]


@settings(max_examples=80, deadline=None)
@given(t=st.integers(1, 8), extra=st.integers(0, 9), size=st.integers(1, 6),
       data=st.data())
def test_robust_reconstruction_corrects_up_to_half_the_excess(t: int, extra: int, size: int,
                                                              data: st.DataObject) -> None:
    m = t + extra
    xs = data.draw(st.lists(st.integers(1, 10**6), min_size=m, max_size=m, unique=True))
    secret = data.draw(st.lists(st.integers(0, P - 1), min_size=size, max_size=size))
    shares = _python_shares(secret, t, xs, data.draw(st.integers(0, 2**32)))
    e = extra // 2
    n_bad = data.draw(st.integers(0, e))
    bad = data.draw(st.lists(st.sampled_from(xs), min_size=n_bad, max_size=n_bad, unique=True))
    corrupted = []
    for s in shares:
        vals = s.values.copy()
        if s.x in bad:  # change a random non-empty subset of the elements
            cols = data.draw(st.sets(st.integers(0, size - 1), min_size=1))
            for c in cols:
                vals[c] = (int(vals[c]) + data.draw(st.integers(1, P - 1))) % P
        corrupted.append(Share(s.x, vals))
    got, found = shamir.reconstruct_robust(corrupted, t)
    assert [int(v) for v in got] == secret
    assert found == sorted(bad)


def test_robust_reconstruction_refuses_what_it_cannot_correct() -> None:
    t, xs = 3, [1, 2, 3, 4, 5, 6]  # e = 1
    shares = _python_shares([42, 7], t, xs, 1)
    two_bad = [Share(s.x, (s.values + U64(1)) % U64(P)) if s.x in (2, 5) else s
               for s in shares]
    with pytest.raises(InconsistentShares, match="cannot correct"):
        shamir.reconstruct_robust(two_bad, t)
    one_extra = [Share(s.x, (s.values + U64(1)) % U64(P)) if s.x == 2 else s
                 for s in shares[:4]]  # t + 1 shares: detectable, not correctable
    with pytest.raises(InconsistentShares, match="t \\+ 2"):
        shamir.reconstruct_robust(one_extra, t)
    with pytest.raises(NotEnoughShares):
        shamir.reconstruct_robust(shares[:2], t)


def test_robust_bytes_names_the_liar() -> None:
    key = os.urandom(32)
    parts = shamir.share_bytes(key, 3, 7, points=[11, 12, 13, 14, 15, 16, 17])
    parts[4] = Share(parts[4].x, (parts[4].values + U64(5)) % U64(P))
    assert shamir.reconstruct_bytes_robust(parts, 3) == (key, [15])
    with pytest.raises(InconsistentShares):
        shamir.reconstruct_bytes(parts, 3)


def test_bytes_share_size_matches_share_bytes() -> None:
    for nbytes in range(0, 40):
        got = shamir.share_bytes(bytes(range(nbytes)), 2, 3)[0].values.size
        assert shamir.bytes_share_size(nbytes) == got == 1 + -(-nbytes // 7)
    with pytest.raises(InvalidInput):
        shamir.bytes_share_size(-1)
