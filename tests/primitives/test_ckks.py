"""CKKS over TenSEAL: results against numpy, key separation, limits, noise flooding."""

from __future__ import annotations

import math
import os
import stat
import struct
import sys
import tempfile
from typing import Any

import numpy as np
import pytest
import tenseal as ts

from mpcai.errors import (
    DecryptionBudgetExceeded,
    EncodingOverflow,
    InvalidInput,
    InvalidType,
    MissingSecretKey,
    MpcaiError,
    UnsupportedVersion,
    WireError,
)
from mpcai.he import _ckks_flood, _ckks_seal
from mpcai.he.ckks import (
    DEFAULT_DECRYPTION_BUDGET,
    DEFAULT_FLOOD_SECURITY_BITS,
    PRESETS,
    CKKSContext,
    CKKSVector,
)

# Documented error bounds (module docstring) for values of order 1.
FRESH_ERR = 1e-6
ONE_MUL_ERR = 1e-4
POLY_ERR = 1e-3


@pytest.fixture(scope="module")
def owner() -> CKKSContext:
    return CKKSContext.create("n8192", matvec_shapes=((784, 128), (64, 16)),
                              decryption_budget=1 << 20)


@pytest.fixture(scope="module")
def public(owner: CKKSContext) -> CKKSContext:
    return CKKSContext.deserialize(owner.public().serialize())


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# The HomomorphicEncryption.org security standard (Albrecht et al., "Homomorphic
# Encryption Security Standard", 2018), Table 1: the largest log2(q) of an RLWE
# modulus q with 128-bit classical security for ring degree n, uniform or ternary
# secret.  SEAL (whose secrets are ternary) carries the same numbers in
# native/src/seal/util/hestdparms.h, seal_he_std_parms_128_tc.
HE_STANDARD_128_BIT_MAX_LOG_Q = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438,
                                 32768: 881}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_meet_the_he_standard_128_bit_bound(name: str) -> None:
    """Each preset's modulus as SEAL built it (every prime, the key-switching one
    included), not as the preset declares it, against the standard's table."""
    ctx = CKKSContext.create(name, galois_keys=False)
    parms = ctx.tenseal_context.data.seal_context().key_context_data().parms()
    n = parms.poly_modulus_degree()
    q = math.prod(m.value() for m in parms.coeff_modulus())
    assert n in HE_STANDARD_128_BIT_MAX_LOG_Q, f"ring degree {n} is not in the standard's table"
    assert q.bit_length() <= HE_STANDARD_128_BIT_MAX_LOG_Q[n], (
        f"{name}: q has {q.bit_length()} bits, the 128-bit bound at n = {n} is "
        f"{HE_STANDARD_128_BIT_MAX_LOG_Q[n]}")
    # the bound deserialised contexts are checked against is the standard's
    assert ctx.preset.max_coeff_bits == HE_STANDARD_128_BIT_MAX_LOG_Q[n]
    assert ctx.preset.security_bits == 128


def test_n16384_preset_builds_and_round_trips() -> None:
    ctx = CKKSContext.create("n16384", galois_keys=False)
    assert ctx.slot_count == 8192 and ctx.preset.depth == 6
    x = np.linspace(-3, 3, 100)
    assert np.max(np.abs(ctx.decrypt(ctx.encrypt(x)) - x)) < FRESH_ERR


def test_encrypt_any_length_splits_into_ciphertexts(owner: CKKSContext, rng) -> None:
    x = rng.uniform(-10, 10, 10_000)
    v = owner.encrypt(x)
    assert v.size == len(v) == 10_000 and v.ciphertext_count == 3
    assert np.max(np.abs(owner.decrypt(v) - x)) < 1e-5


def test_vector_ops_match_numpy(owner: CKKSContext, rng) -> None:
    x, y, p = rng.uniform(-1, 1, (3, 1000))
    vx, vy = owner.encrypt(x), owner.encrypt(y)
    dec = owner.decrypt
    assert np.max(np.abs(dec(vx + vy) - (x + y))) < FRESH_ERR
    assert np.max(np.abs(dec(vx - vy) - (x - y))) < FRESH_ERR
    assert np.max(np.abs(dec(vx + p) - (x + p))) < FRESH_ERR
    assert np.max(np.abs(dec(2.5 - vx) - (2.5 - x))) < FRESH_ERR
    assert np.max(np.abs(dec(vx * vy) - x * y)) < ONE_MUL_ERR
    assert np.max(np.abs(dec(vx * p) - x * p)) < ONE_MUL_ERR
    assert np.max(np.abs(dec(vx * 3.0) - 3 * x)) < ONE_MUL_ERR
    assert abs(dec(vx.dot(vy))[0] - x @ y) < ONE_MUL_ERR
    assert abs(dec(vx.dot(p))[0] - x @ p) < ONE_MUL_ERR
    assert abs(dec(vx.sum())[0] - x.sum()) < ONE_MUL_ERR
    coeffs = [0.5, -1.0, 0.25, 0.125]
    assert np.max(np.abs(dec(vx.polyval(coeffs)) - np.polyval(coeffs[::-1], x))) < POLY_ERR


def test_mixed_levels_leave_the_higher_operand_untouched(owner: CKKSContext, rng) -> None:
    x, y = rng.uniform(-1, 1, (2, 64))
    hi = owner.encrypt(x)
    lo = owner.encrypt(y) * 1.0
    assert (hi.level, lo.level) == (2, 1)
    for out, want in [(lo + hi, x + y), (lo - hi, y - x), (hi - lo, x - y), (lo * hi, x * y)]:
        assert np.max(np.abs(owner.decrypt(out) - want)) < ONE_MUL_ERR
    # TenSEAL would have mod-switched `hi` down in place; it must still have two levels
    assert hi.tenseal().ciphertext()[0].coeff_modulus_size() == 3
    assert np.max(np.abs(owner.decrypt(hi * hi * 1.0) - x * x)) < POLY_ERR


def test_no_level_left_is_a_typed_error(owner: CKKSContext) -> None:
    v = owner.encrypt(np.ones(4)) * 1.0 * 1.0
    assert v.level == 0
    with pytest.raises(InvalidInput, match="level"):
        _ = v * 2.0


def test_matvec_784x128_matches_numpy(owner: CKKSContext, rng) -> None:
    x = rng.uniform(-1, 1, 784)
    w = rng.uniform(-1, 1, (784, 128))
    y = owner.encrypt(x).matmul(owner.prepare_matrix(w))
    assert y.size == 128 and y.level == 1
    assert np.max(np.abs(owner.decrypt(y) - x @ w)) < ONE_MUL_ERR


@pytest.mark.slow
def test_matvec_error_no_worse_than_tenseal_mm(owner: CKKSContext, rng) -> None:
    # encryption noise is random: compare the mean of the max errors over several trials
    ours, theirs = [], []
    for _ in range(5):
        x = rng.uniform(-1, 1, 64)
        w = rng.uniform(-1, 1, (64, 16))
        ours.append(np.max(np.abs(owner.decrypt(owner.encrypt(x) @ w) - x @ w)))
        tv = ts.ckks_vector(owner.tenseal_context, x.tolist())
        theirs.append(np.max(np.abs(np.array(tv.mm(w.tolist()).decrypt()) - x @ w)))
    assert np.mean(ours) <= np.mean(theirs)


@pytest.mark.parametrize("shape", [(100, 10), (7, 3), (300, 1)])
def test_matvec_odd_shapes(owner: CKKSContext, rng, shape: tuple[int, int]) -> None:
    x = rng.uniform(-1, 1, shape[0])
    w = rng.uniform(-1, 1, shape)
    y = owner.encrypt(x) @ owner.prepare_matrix(w)
    assert np.max(np.abs(owner.decrypt(y) - x @ w)) < ONE_MUL_ERR


def test_matvec_chains_and_splits_wide_outputs(owner: CKKSContext, rng) -> None:
    x = rng.uniform(-1, 1, 64)
    w1 = rng.uniform(-1, 1, (64, 16)) / 8
    w2 = rng.uniform(-1, 1, (16, 5))
    # the first product leaves partial sums beyond slot 16; the second must ignore them
    y = (owner.encrypt(x) @ w1) @ w2
    assert np.max(np.abs(owner.decrypt(y) - (x @ w1) @ w2)) < ONE_MUL_ERR
    x3 = rng.uniform(-1, 1, 3800)
    w3 = rng.uniform(-1, 1, (3800, 300)) / 16
    y3 = owner.encrypt(x3) @ w3  # two column blocks, two ciphertexts
    assert y3.size == len(y3) == 300
    # counted against the ciphertexts in the blob (one noise estimate each)
    assert y3.ciphertext_count == len(owner.estimate_noise(y3)) == 2
    with pytest.raises(InvalidInput, match="fits one ciphertext"):
        _ = y3 @ np.ones((300, 4))  # would read only the first block
    assert np.max(np.abs(owner.decrypt(y3) - x3 @ w3)) < ONE_MUL_ERR
    # column blocks combine with scalars and with the same layout, not with flat vectors
    assert np.max(np.abs(owner.decrypt(y3 * 2.0 + y3) - 3 * (x3 @ w3))) < ONE_MUL_ERR
    assert abs(owner.decrypt(y3.sum())[0] - (x3 @ w3).sum()) < 1e-3
    with pytest.raises(InvalidInput):
        _ = y3 + np.ones(300)
    with pytest.raises(InvalidInput):
        _ = y3 + owner.encrypt(np.ones(300))
    again = CKKSVector.deserialize(owner, y3.compact().serialize())
    assert again.ciphertext_count == 2
    assert np.max(np.abs(owner.decrypt(again) - x3 @ w3)) < ONE_MUL_ERR
    with pytest.raises(InvalidInput):
        _ = again * np.ones(300)


def test_public_context_computes_but_cannot_decrypt(owner: CKKSContext, public: CKKSContext,
                                                    rng) -> None:
    assert owner.has_secret_key and not public.has_secret_key
    x = rng.uniform(-1, 1, 784)
    w = rng.uniform(-1, 1, (784, 128))
    v = CKKSVector.deserialize(public, public.encrypt(x).serialize())
    y = v @ public.prepare_matrix(w)
    with pytest.raises(MissingSecretKey):
        public.decrypt(y)
    with pytest.raises(MissingSecretKey):
        public.decrypt_flooded(y, noise_bound=1e-6)
    back = CKKSVector.deserialize(owner, y.serialize())
    assert np.max(np.abs(owner.decrypt(back) - x @ w)) < ONE_MUL_ERR


def test_public_context_without_product_keys_asks_the_owner(owner: CKKSContext) -> None:
    bare = CKKSContext.deserialize(CKKSContext.create(galois_keys=False).public().serialize())
    with pytest.raises(MissingSecretKey):
        bare.encrypt(np.ones(5)) @ np.ones((5, 2))


@pytest.mark.slow
def test_secret_key_is_serialised_only_when_asked(owner: CKKSContext) -> None:
    default = CKKSContext.deserialize(owner.serialize())
    assert not default.has_secret_key
    full = CKKSContext.deserialize(owner.serialize(save_secret_key=True), secret_key=True)
    assert full.has_secret_key
    x = np.arange(5.0)
    assert np.max(np.abs(full.decrypt(full.encrypt(x)) - x)) < FRESH_ERR
    with pytest.raises(MissingSecretKey):
        default.serialize(save_secret_key=True)


def test_blobs_are_length_checked_before_parsing(owner: CKKSContext) -> None:
    blob = owner.public().serialize()
    with pytest.raises(WireError, match="exceeds"):
        CKKSContext.deserialize(blob, max_bytes=len(blob) - 1)
    with pytest.raises(WireError):
        CKKSContext.deserialize(b"MPCKCTX1" + b"\x00" * 100)
    with pytest.raises(WireError):
        CKKSContext.deserialize(blob[:1000])
    with pytest.raises(WireError):
        CKKSContext.deserialize(b"garbage")
    vblob = owner.encrypt(np.ones(10)).serialize()
    with pytest.raises(WireError, match="exceeds"):
        CKKSVector.deserialize(owner, vblob, max_bytes=1000)
    with pytest.raises(WireError):
        CKKSVector.deserialize(owner, vblob[: len(vblob) // 2])
    with pytest.raises(WireError):
        CKKSVector.deserialize(owner, b"MPCKVEC1" + b"\xff" * 64)
    with pytest.raises(InvalidType, match="data must be bytes, not str"):
        CKKSVector.deserialize(owner, "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidType, match="data must be bytes, not str"):
        CKKSContext.deserialize("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidType, match="max_bytes must be an int"):
        CKKSContext.deserialize(blob, max_bytes=1e9)  # type: ignore[arg-type]


def test_bad_inputs_raise_typed_errors(owner: CKKSContext) -> None:
    v = owner.encrypt(np.ones(8))
    with pytest.raises(InvalidInput):
        owner.encrypt(np.ones((2, 2)))
    with pytest.raises(InvalidInput):
        owner.encrypt(np.array([]))
    with pytest.raises(EncodingOverflow):
        owner.encrypt(np.array([1.0, np.nan]))
    with pytest.raises(EncodingOverflow):
        owner.encrypt(np.array([1e9]))
    with pytest.raises(InvalidType):
        owner.encrypt(np.array(["a"]))
    with pytest.raises(InvalidInput):
        _ = v + owner.encrypt(np.ones(9))
    with pytest.raises(InvalidInput):
        _ = v * np.ones(7)
    with pytest.raises(InvalidInput):
        _ = v @ np.ones((9, 2))
    with pytest.raises(InvalidInput):
        CKKSContext.create("n1024")
    other = CKKSContext.create(galois_keys=False)
    with pytest.raises(InvalidInput):
        owner.decrypt(other.encrypt(np.ones(8)))
    with pytest.raises(InvalidInput):
        _ = v + other.encrypt(np.ones(8))
    with pytest.raises(InvalidInput):
        owner.decrypt_flooded(v, noise_bound=-1.0)
    assert issubclass(MissingSecretKey, MpcaiError) and issubclass(MissingSecretKey, ValueError)
    assert issubclass(DecryptionBudgetExceeded, MpcaiError)


def test_flooding_noise_measured_gives_the_promised_kl_divergence(rng) -> None:
    """The noise actually released, measured: its standard deviation per ciphertext is
    the width the context reports, and the KL divergence it buys, ``k B^2 / (2 std^2)``
    for ``k`` values of a ciphertext whose errors are at most ``B`` (the module
    docstring's statement), is ``2^-s / Q`` whatever ``k``, the budget ``Q`` and ``s``.

    Fails if the noise is missing, added twice, of the wrong scale, or does not grow
    as ``sqrt(Q k) 2^(s/2)``: a vector of 4096 + 64 values (one full ciphertext, one
    of 64 values) under budgets 1, 4 and 32 and s = 40 and 20.  Tolerances are five
    standard errors of a sample variance, ``5 sqrt(2 / samples)`` relative.
    """
    bound = 2.0 ** -20  # a-priori error bound: above every fresh slot's error (~1e-8)
    for budget, security_bits, releases in ((1, 40, 1), (4, 20, 2), (32, 40, 16)):
        ctx = CKKSContext.create(galois_keys=False, decryption_budget=budget)
        sizes = (ctx.slot_count, 64) if releases > 1 else (ctx.slot_count,)
        x = rng.uniform(-1, 1, sum(sizes))
        v = ctx.encrypt(x)
        assert v.ciphertext_count == len(sizes)
        noise, sigma = [], []
        for _ in range(releases):
            released, width = ctx.decrypt_flooded(v, noise_bound=bound,
                                                  security_bits=security_bits,
                                                  return_sigma=True)
            noise.append(released - x)
            sigma.append(width)
        assert ctx.decryptions_left == budget - releases * len(sizes)
        noise_by_ct = np.split(np.stack(noise), np.cumsum(sizes)[:-1], axis=1)
        sigma_by_ct = np.split(np.stack(sigma), np.cumsum(sizes)[:-1], axis=1)
        for k, e, w in zip(sizes, noise_by_ct, sigma_by_ct, strict=True):
            n = e.size
            tol = 5 * math.sqrt(2 / n)
            var = float(np.mean(e * e))  # the mean is 0: the exact values are known
            assert np.all(w == w.flat[0]), "one width for every value of a ciphertext"
            assert abs(var / w.flat[0] ** 2 - 1) < tol, (budget, security_bits, k)
            assert abs(var / ctx.flooding_sigma(bound, security_bits, size=k) ** 2 - 1) < tol
            kl = k * bound**2 / (2 * var)
            assert abs(kl * budget * 2.0**security_bits - 1) < tol, (budget, security_bits, k)
            assert abs(float(np.mean(e))) < 5 * math.sqrt(var / n)


def _delta(ctx: CKKSContext) -> float:
    """TenSEAL's nominal-scale factor after one rescale: 2^scale_bits / (dropped prime)."""
    top = ctx.tenseal_context.data.seal_context().first_context_data().parms().coeff_modulus()[-1]
    return ctx.preset.scale_bits and 2.0 ** ctx.preset.scale_bits / float(top.value())


def test_monomial_product_is_exact_and_reads_the_imaginary_noise(rng) -> None:
    ctx = CKKSContext.create(galois_keys=False)
    x = rng.uniform(-1, 1, ctx.slot_count)
    v = ctx.encrypt(x)
    _, cts, scale = _ckks_seal.parse_vector_proto(v.tenseal().serialize())
    once = _ckks_seal.times_monomial(ctx.tenseal_context, ctx._mirror, cts[0], scale)
    _, cts2, _ = _ckks_seal.parse_vector_proto(once.serialize())
    twice = _ckks_seal.times_monomial(ctx.tenseal_context, ctx._mirror, cts2[0], scale)
    # X^(N/2) squared is X^N = -1: exactly minus the original decryption, no new noise
    assert np.array_equal(np.array(twice.decrypt()), -ctx.decrypt(v))
    # a fresh encryption's imaginary noise has the RMS of its real-part error (numpy reference)
    rms = ctx.estimate_noise(v)[0]
    real_err = np.sqrt(np.mean((ctx.decrypt(v) - x) ** 2))
    assert 0.9 < rms / real_err < 1.1
    # a product: its real-part error is that noise plus the public nominal-scale factor
    p = v * v
    err = ctx.decrypt(p) - x * x * _delta(ctx)
    assert 0.9 < ctx.estimate_noise(p)[0] / np.sqrt(np.mean(err**2)) < 1.1
    assert ctx.decryptions_left == DEFAULT_DECRYPTION_BUDGET  # estimating is not a release


def _imaginary_errors(ctx: CKKSContext, vec: CKKSVector) -> np.ndarray:
    """All slots' imaginary parts, read by rotating them into the real parts (X^(N/2))."""
    _, cts, scale = _ckks_seal.parse_vector_proto(vec.tenseal().serialize())
    return np.array(_ckks_seal.times_monomial(ctx.tenseal_context, ctx._mirror, cts[0],
                                              scale).decrypt())


@pytest.mark.slow
def test_flooded_dot_product_keeps_ten_bits_at_the_default_security() -> None:
    """Dot products of two 4096-value vectors in [-1, 1], released with the default
    s = 40 and a budget of Q = 4 decryptions per key (the default Q = 16 costs half a bit
    more and falls to 9.9 bits for a rare key, as the module docstring says).

    The released slot's error has a key-dependent deterministic part (SEAL's
    uncentred key-switching digits), so the assumption ``|error| <= B`` is
    checked on several fresh keys.  Precision is measured against R =
    sqrt(4096) / 3, the RMS of such a dot product: the released error's
    standard deviation must be at most 2^-10 * R (10 bits).
    """
    rng = np.random.default_rng(11)
    d, s, q = 4096, DEFAULT_FLOOD_SECURITY_BITS, 4
    r = math.sqrt(d) / 3
    for _ in range(4):  # fresh keys: the deterministic part of the error differs per key
        hp = CKKSContext.create("n16384-hp", decryption_budget=q)
        assert hp.decryptions_left == q
        for _ in range(3):
            a, b = rng.uniform(-1, 1, (2, d))
            dot = hp.encrypt(a).dot(hp.encrypt(b))
            peak = float(np.max(np.abs(_imaginary_errors(hp, dot))))
            assert hp.estimate_noise(dot, peak=True)[0] == peak
            released, sigma = hp.decrypt_flooded(dot, return_sigma=True)
            # the documented width: B = 2^ceil(log2(8 max_j |Im e_j|)),
            # sigma = 2^((s-1)/2) * B * sqrt(Q)
            bound = 2.0 ** math.ceil(math.log2(8 * peak))
            assert sigma[0] == pytest.approx(2.0 ** ((s - 1) / 2) * bound * math.sqrt(q))
            # the statement's assumption against numpy: the key-dependent error is within B
            noise = hp.decrypt(dot)[0] - (a @ b) * _delta(hp)
            assert abs(noise) <= bound, f"|error| = {abs(noise) / bound:.2f} B"
            assert sigma[0] <= 2.0 ** -10 * r, f"{math.log2(r / sigma[0]):.1f} bits"
            # the release is the value plus noise of that width (6 sigma: p ~ 2e-9)
            assert abs(released[0] - a @ b) <= 6 * sigma[0]
        assert hp.decryptions_left == q - 3


def test_flooding_noise_has_the_promised_width_and_follows_the_estimate(rng) -> None:
    ctx = CKKSContext.create(galois_keys=False, decryption_budget=4)
    s, q, k = DEFAULT_FLOOD_SECURITY_BITS, 4, ctx.slot_count
    x = rng.uniform(-1, 1, k)
    quiet = ctx.encrypt(x)
    loud = quiet * 64.0  # 64 times the noise (and the values)
    widths = []
    for v, want in ((quiet, x), (loud, 64 * x * _delta(ctx))):
        peak = float(np.max(np.abs(_imaginary_errors(ctx, v))))
        promised = 2.0 ** ((s - 1) / 2) * 2.0 ** math.ceil(math.log2(8 * peak)) * math.sqrt(q * k)
        err = ctx.decrypt_flooded(v) - want
        assert abs(err.std() / promised - 1) < 0.06  # 4096 samples: 1.1% standard error
        assert abs(err.mean()) < 5 * promised / math.sqrt(k)
        widths.append(promised)
    assert 32 <= widths[1] / widths[0] <= 128
    # the case (n8192, s = 40, budget 16, fresh values in [-1, 1]) gave RMS 2.1e6
    assert widths[0] * 2 < 32  # 2^3.5 ~ 11 with this budget of 4; see the module docstring


def test_flooded_decryption_adds_the_declared_gaussian(rng) -> None:
    ctx = CKKSContext.create(galois_keys=False, decryption_budget=8)
    s = 40
    target_sigma = 8.0  # its bound (6e-8) must exceed every slot's measured error (~1e-8)
    bound = target_sigma / (2.0 ** ((s - 1) / 2) * math.sqrt(8 * ctx.slot_count))
    assert ctx.flooding_sigma(bound, s) == pytest.approx(target_sigma)
    x = rng.uniform(-1, 1, ctx.slot_count)
    v = ctx.encrypt(x)
    noise = np.concatenate([ctx.decrypt_flooded(v, noise_bound=bound, security_bits=s) - x
                            for _ in range(4)])
    n = noise.size  # 16384 samples
    assert abs(noise.mean()) < 5 * target_sigma / math.sqrt(n)
    assert abs(noise.std() / target_sigma - 1) < 0.05
    within = np.mean(np.abs(noise) < target_sigma)
    assert abs(within - 0.6827) < 0.02
    assert abs(np.mean(noise**4) / noise.var() ** 2 - 3.0) < 0.3  # Gaussian kurtosis
    # two releases of the same ciphertext get independent noise
    assert np.corrcoef(noise[:4096], noise[4096:8192])[0, 1] < 0.1
    assert ctx.decryptions_left == 4
    # a bound below the measured noise is refused, and the attempt is spent
    with pytest.raises(InvalidInput, match="below the measured noise"):
        ctx.decrypt_flooded(v, noise_bound=1e-12)
    assert ctx.decryptions_left == 3


def test_decryption_budget_is_enforced_per_key(rng) -> None:
    ctx = CKKSContext.create(galois_keys=False, decryption_budget=3)
    short, long_ = ctx.encrypt(np.ones(4)), ctx.encrypt(np.ones(5000))  # 1 and 2 ciphertexts
    ctx.decrypt_flooded(short, security_bits=20)
    ctx.decrypt_flooded(long_, noise_bound=1e-6, security_bits=20)
    assert ctx.decryptions_left == 0
    with pytest.raises(DecryptionBudgetExceeded):
        ctx.decrypt_flooded(short, security_bits=20)
    # the budget travels with a secret-key blob and is not reset by reloading
    again = CKKSContext.deserialize(ctx.serialize(save_secret_key=True), secret_key=True)
    assert again.decryptions_left == 0
    with pytest.raises(DecryptionBudgetExceeded):
        again.decrypt_flooded(short, security_bits=20)
    ctx.decrypt(short)  # the owner's own view is not budgeted


def test_standard_normal_moments() -> None:
    z = _ckks_flood.standard_normal(100_001)
    assert z.size == 100_001 and np.all(np.isfinite(z))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_compact_shrinks_the_blob_and_decrypts_the_same(owner: CKKSContext, rng) -> None:
    x = rng.uniform(-1, 1, 5000)
    v = owner.encrypt(x)
    small = v.compact()
    assert small.level == 0 and small.size == 5000
    assert len(small.serialize()) < 0.5 * len(v.serialize())
    back = CKKSVector.deserialize(owner, small.serialize())
    assert np.max(np.abs(owner.decrypt(back) - x)) < FRESH_ERR
    assert v.level == 2  # the original is untouched
    y = (owner.encrypt(x[:784]) @ rng.uniform(-1, 1, (784, 128))).compact()
    assert y.level == 0 and y.size == 128


# -- the bridge to sealapi: scratch files, streams, versions --------------------


def _round_trip(ctx: CKKSContext, rng) -> None:
    """Every kind of object that crosses through a file: parameters (create), Galois
    keys (add_matvec_keys, deserialize), ciphertexts both ways (matmul, compact, estimates)."""
    x = rng.uniform(-1, 1, 64)
    w = rng.uniform(-1, 1, (64, 16))
    ctx.add_matvec_keys(64, 16)
    again = CKKSContext.deserialize(ctx.serialize(save_secret_key=True), secret_key=True)
    y = (again.encrypt(x) @ w).compact()
    assert np.max(np.abs(again.decrypt(y) - x @ w)) < ONE_MUL_ERR
    assert again.estimate_noise(y)[0] < 1e-6


def _isolated_scratch(monkeypatch, tmp_path, shm: str) -> str:
    monkeypatch.delenv(_ckks_seal.TMPDIR_ENV, raising=False)
    monkeypatch.setattr(_ckks_seal, "SHM_DIR", shm)
    monkeypatch.setattr(_ckks_seal, "_private", {})
    fallback = tmp_path / "tmp"
    fallback.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    return str(fallback)


def _only_empty_private_dir(parent: str) -> None:
    entries = os.listdir(parent)
    assert len(entries) == 1 and entries[0].startswith("mpcai-ckks-"), entries
    private = os.path.join(parent, entries[0])
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    assert os.listdir(private) == []  # every scratch file was removed


def test_scratch_falls_back_when_shm_is_missing(monkeypatch, tmp_path, rng) -> None:
    fallback = _isolated_scratch(monkeypatch, tmp_path, str(tmp_path / "no-shm"))
    _round_trip(CKKSContext.create(galois_keys=False), rng)
    _only_empty_private_dir(fallback)


def test_scratch_falls_back_when_shm_is_too_small(monkeypatch, tmp_path, rng) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    fallback = _isolated_scratch(monkeypatch, tmp_path, str(shm))
    real = os.statvfs

    class Small:
        f_bavail, f_frsize = 1024, 4096  # 4 MiB: less than the headroom alone

    monkeypatch.setattr(os, "statvfs", lambda p: Small() if str(p) == str(shm) else real(p))
    _round_trip(CKKSContext.create(galois_keys=False), rng)
    assert os.listdir(shm) == []
    _only_empty_private_dir(fallback)
    # with room, /dev/shm's stand-in is used instead
    monkeypatch.setattr(os, "statvfs", real)
    _round_trip(CKKSContext.create(galois_keys=False), rng)
    _only_empty_private_dir(str(shm))


def test_scratch_directory_from_the_environment(monkeypatch, tmp_path, rng) -> None:
    _isolated_scratch(monkeypatch, tmp_path, str(tmp_path / "no-shm"))
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    monkeypatch.setenv(_ckks_seal.TMPDIR_ENV, str(chosen))
    _round_trip(CKKSContext.create(galois_keys=False), rng)
    _only_empty_private_dir(str(chosen))
    assert os.listdir(tmp_path / "tmp") == []
    monkeypatch.setenv(_ckks_seal.TMPDIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(InvalidInput, match=_ckks_seal.TMPDIR_ENV):
        CKKSContext.create(galois_keys=False)


def test_nothing_is_written_to_stdout_and_sys_stdout_is_untouched(owner: CKKSContext, capfd,
                                                                  rng) -> None:
    before = sys.stdout
    swapped: list[str] = []

    def watch(frame, event, arg) -> None:  # the sys.setprofile signature
        if sys.stdout is not before:  # checked at every call and return, C calls included
            swapped.append(event)

    x = rng.uniform(-1, 1, 10_000)  # three ciphertexts: TenSEAL's constructor would warn
    w = rng.uniform(-1, 1, (3800, 300)) / 16  # two column blocks: two ciphertexts
    sys.setprofile(watch)
    try:
        v = owner.encrypt(x)
        y = owner.encrypt(x[:3800]) @ w
        p = v.polyval([0.5, 1.0, -0.25])  # TenSEAL's polyval warns for several ciphertexts
    finally:
        sys.setprofile(None)
    assert not swapped and sys.stdout is before
    assert len(v.tenseal().ciphertext()) == 3 and len(y.tenseal().ciphertext()) == 2
    assert np.max(np.abs(owner.decrypt(v) - x)) < 1e-5
    assert np.max(np.abs(owner.decrypt(y) - x[:3800] @ w)) < ONE_MUL_ERR
    assert np.max(np.abs(owner.decrypt(p) - (0.5 + x - 0.25 * x * x))) < ONE_MUL_ERR
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_unsupported_tenseal_version_is_a_typed_error(monkeypatch) -> None:
    for ok in ("0.3.18", "0.3.19", ts.__version__):
        _ckks_seal.check_tenseal_version(ok)
    # 0.3.14-0.3.17 bundle SEAL 4.1, whose zstd decompression of a peer's object is unbounded
    for bad in ("0.3.13", "0.3.14", "0.3.17", "0.4.0", "1.0.0", "0.3", "dev"):
        with pytest.raises(UnsupportedVersion, match="tenseal"):
            _ckks_seal.check_tenseal_version(bad)
    assert issubclass(UnsupportedVersion, MpcaiError) and issubclass(UnsupportedVersion,
                                                                     RuntimeError)
    monkeypatch.setattr(ts, "__version__", "0.2.9")
    with pytest.raises(UnsupportedVersion, match=r"0\.2\.9"):
        CKKSContext.create(galois_keys=False)


# ---- decompression bombs: SEAL objects that take far more memory loaded than sent ------

_SEAL_HEAD = struct.Struct("<HBBBBHQ")


def _zero_ciphertext_body(ctx: CKKSContext) -> bytes:
    """What SEAL writes, before compression, for a ciphertext of two zero polynomials at
    the top level, in NTT form (checked against SEAL's own output once: zstd is no
    dependency)."""
    ref = _ckks_seal.load_ciphertext(ctx._mirror, _ckks_seal.parse_vector_proto(
        ctx.encrypt(np.zeros(4)).serialize()[8:])[1][0])
    n = 2 * ctx.preset.poly_modulus_degree * ref.coeff_modulus_size()
    return (struct.pack("<4QBQQQdQ", *ref.parms_id(), 1, 2, ctx.preset.poly_modulus_degree,
                        ref.coeff_modulus_size(), ref.scale, 1)
            + _SEAL_HEAD.pack(0xA15E, 16, 4, 3, 0, 0, 16 + 8 + 8 * n)
            + struct.pack("<Q", n) + bytes(8 * n))


def _zstd_frame(content: bytes, declared: int, *, single: bool = True,
                rle: bool = True) -> bytes:
    """A zstd frame by hand: a raw block for the head, RLE blocks for the zeros after it
    (a 128 KiB block of zeros in 4 bytes; raw blocks if not ``rle``), declaring
    ``declared`` bytes of content."""
    head = content.rstrip(b"\0") if rle else b""
    zeros = len(content) - len(head)
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0x80 | (0x20 if single else 0)]) + (b"" if single else b"\x58")
    out += struct.pack("<I", declared)
    blocks: list[tuple[int, bytes | int]] = [(0, head)] if rle else [
        (0, content[i:i + (128 << 10)]) for i in range(0, len(content), 128 << 10)]
    while zeros and rle:
        n = min(zeros, 128 << 10)
        zeros -= n
        blocks.append((1, n))
    for i, (kind, x) in enumerate(blocks):
        last = int(i == len(blocks) - 1)
        if kind == 0:
            assert isinstance(x, bytes)
            out += (last | len(x) << 3).to_bytes(3, "little") + x
        else:
            out += (last | 1 << 1 | int(x) << 3).to_bytes(3, "little") + b"\0"
    return bytes(out)


def _seal_object(frame: bytes, mode: int = 2) -> bytes:
    return _SEAL_HEAD.pack(0xA15E, 16, 4, 3, mode, 0, 16 + len(frame)) + frame


def _vector_of(ctx: CKKSContext, cts: list[bytes]) -> bytes:
    return b"MPCKVEC1" + _ckks_seal.vector_proto([1] * len(cts), cts, 2.0**40)


@pytest.mark.parametrize("single", [True, False])
def test_a_vector_of_zero_ciphertexts_is_refused_before_loading(owner: CKKSContext,
                                                                 single: bool) -> None:
    body = _zero_ciphertext_body(owner)
    ok = _seal_object(_zstd_frame(body, len(body), single=single))
    assert len(ok) < 200 and _ckks_seal.seal_loaded_size(ok) == 16 + len(body)  # 393 kB
    # 300 of them: 40 kB sent, 118 MB held by SEAL (the fuzzer's 262 kB took 1.15 GB)
    with pytest.raises(WireError, match="decompression bomb"):
        CKKSVector.deserialize(owner, _vector_of(owner, [ok] * 300))
    # a size that is no two-polynomial ciphertext's: refused before SEAL
    for declared in (1, 100, len(body) - 1, len(body) + 8):
        liar = _seal_object(_zstd_frame(body, declared, single=single))
        with pytest.raises(WireError, match="no ciphertext of two polynomials"):
            CKKSVector.deserialize(owner, _vector_of(owner, [liar]))
    # sent at full size (raw blocks), the same zeros are a ciphertext like any other
    full = _seal_object(_zstd_frame(body, len(body), single=single, rle=False))
    assert len(full) > len(body)
    assert CKKSVector.deserialize(owner, _vector_of(owner, [full])).ciphertext_count == 1
    # metadata claiming 16 polynomials (SEAL reserves them before reading: at most 8x
    # the declared two) or a frame shorter than it declares: SEAL refuses them
    meta = _ckks_seal._CT_META
    sixteen = meta.pack(*meta.unpack_from(body)[:5], 16, *meta.unpack_from(body)[6:]) + \
        body[meta.size:]
    for content in (sixteen, body[:-8]):
        liar = _seal_object(_zstd_frame(content, len(body), single=single, rle=False))
        with pytest.raises(WireError, match="TenSEAL rejected"):
            CKKSVector.deserialize(owner, _vector_of(owner, [liar]))
    # an uncompressed ciphertext's metadata is read: it must match its size
    plain = _seal_object(sixteen, mode=0)
    with pytest.raises(WireError, match="metadata"):
        CKKSVector.deserialize(owner, _vector_of(owner, [plain]))
    CKKSVector.deserialize(owner, _vector_of(owner, [_seal_object(body, mode=0)]))


def test_seal_objects_whose_loaded_size_is_unknown_are_refused(owner: CKKSContext) -> None:
    body = _zero_ciphertext_body(owner)[:100]
    frame = _zstd_frame(body, len(body))
    bad = {
        "zlib": _seal_object(frame, mode=1),
        "no content size": _seal_object(frame[:4] + b"\x00\x58" + frame[9:]),
        "trailing bytes": _seal_object(frame + b"\0"),
        "a second frame": _seal_object(frame + frame),
        "cut": _seal_object(frame[:-2]),
        "not zstd": _seal_object(b"\x00" * len(frame)),
        "size field": _seal_object(frame)[:-1],
    }
    for why, blob in bad.items():
        with pytest.raises(ValueError):
            _ckks_seal.seal_loaded_size(blob)
        with pytest.raises(WireError, match=r"SEAL|zstd"):
            CKKSVector.deserialize(owner, _vector_of(owner, [blob]))
        assert why


def test_a_context_with_a_bomb_for_galois_or_relinearisation_keys_is_refused(
        owner: CKKSContext) -> None:
    from mpcai.he import ckks as ckks_mod

    blob = owner.public().serialize()
    hdr = ckks_mod._CTX_HEADER
    ts_len = hdr.unpack_from(blob)[-1]
    ts_bytes, rest = blob[hdr.size:hdr.size + ts_len], blob[hdr.size + ts_len:]
    bomb = _seal_object(_zstd_frame(bytes(64), 1 << 30))  # 1 GiB declared, in 100 bytes
    # the Galois keys of matrix products, after TenSEAL's context
    (n_steps,) = struct.unpack_from("<I", rest)
    evil = blob[:hdr.size + ts_len] + rest[:4 + 4 * n_steps] + bomb
    with pytest.raises(WireError, match=r"Galois keys.*decompression bomb"):
        CKKSContext.deserialize(evil)
    # TenSEAL's relinearisation keys (field 4 of the public part, field 2 of the context)

    outer = _ckks_seal._proto_fields(ts_bytes, _ckks_seal._CONTEXT_FIELDS)
    parts = []
    for num, val in outer:
        if num == 2:
            assert isinstance(val, bytes)
            inner = [(n, bomb if n == 4 else v) for n, v in _ckks_seal._proto_fields(
                val, _ckks_seal._PUBLIC_FIELDS)]
            assert any(n == 4 for n, _ in inner)
            val = _proto(inner)
        parts.append((num, val))
    forged = _proto(parts)
    evil = blob[:hdr.size - 8] + struct.pack("<Q", len(forged)) + forged + rest
    with pytest.raises(WireError, match=r"CKKS context.*decompression bomb"):
        CKKSContext.deserialize(evil)


def test_vector_sizes_past_the_slots_are_refused(owner: CKKSContext) -> None:
    # TenSEAL trusts them: slots + 1 read past the slots when decrypting, 2^32 - 1 wrapped
    # its total to -1 (and the layout list built from it never ended)
    sizes, cts, scale = _ckks_seal.parse_vector_proto(
        owner.encrypt(np.ones(5)).serialize()[8:])
    assert sizes == [5]
    for bad in ([0], [owner.slot_count + 1], [2**32 - 1], [2**31 - 1], [5, 5]):
        blob = b"MPCKVEC1" + _ckks_seal.vector_proto(bad, cts, scale)
        with pytest.raises(WireError, match="sizes"):
            CKKSVector.deserialize(owner, blob)
    ok = b"MPCKVEC1" + _ckks_seal.vector_proto([owner.slot_count], cts, scale)
    assert CKKSVector.deserialize(owner, ok).size == owner.slot_count


def _proto(fields: list[tuple[int, object]], tag2: bytes | None = None) -> bytes:
    """Protobuf fields (bytes, ints as varints, floats as doubles); ``tag2`` replaces
    field 2's tag."""
    out = b""
    for n, v in fields:
        if isinstance(v, bytes):
            tag = tag2 if n == 2 and tag2 else _ckks_seal._varint(n << 3 | 2)
            out += tag + _ckks_seal._varint(len(v)) + v
        elif isinstance(v, float):
            out += _ckks_seal._varint(n << 3 | 1) + struct.pack("<d", v)
        else:
            out += _ckks_seal._varint(n << 3) + _ckks_seal._varint(int(v))  # type: ignore[call-overload]
    return out


def _context_split(blob: bytes) -> tuple[bytes, bytes, bytes]:
    from mpcai.he import ckks as ckks_mod

    hdr = ckks_mod._CTX_HEADER
    ts_len = hdr.unpack_from(blob)[-1]
    return blob[:hdr.size], blob[hdr.size:hdr.size + ts_len], blob[hdr.size + ts_len:]


def _with_ts(head: bytes, ts_bytes: bytes, rest: bytes) -> bytes:
    return head[:-8] + struct.pack("<Q", len(ts_bytes)) + ts_bytes + rest


def test_a_peers_context_is_checked_before_tenseal_reads_it(monkeypatch) -> None:
    from mpcai.he import ckks as ckks_mod

    small = CKKSContext.create("n8192", galois_keys=False)
    big = CKKSContext.create("n16384", galois_keys=False)
    head, ts_bytes, rest = _context_split(small.public().serialize())
    _, big_ts, _ = _context_split(big.public().serialize())
    _, secret_ts, _ = _context_split(small.serialize(save_secret_key=True))
    # field 2 (the public part) under a tag of 5 bytes, 2^32 + 0x12: protobuf keeps 32 bits
    # of it (field 2 to TenSEAL), a reader of the whole varint saw another field
    assert ts_bytes.count(b"\x12") >= 1
    fields = _ckks_seal._proto_fields(ts_bytes, _ckks_seal._CONTEXT_FIELDS)
    assert _proto(fields) == ts_bytes  # the test's encoder is TenSEAL's
    smuggled = _proto(fields, tag2=b"\x92\x80\x80\x80\x10")
    public = dict(_ckks_seal._proto_fields(dict(fields)[2], _ckks_seal._PUBLIC_FIELDS))

    def with_scale(scale: float | None) -> bytes:
        pub = [(n, v) for n, v in public.items() if n != 3]
        if scale is not None:
            pub.append((3, scale))
        return _proto([(n, _proto(pub) if n == 2 else v) for n, v in fields])
    forged = {
        # N = 16384 parameters under the n8192 preset: SEAL would build their NTT tables
        "another preset's parameters": (_with_ts(head, big_ts, rest), "do not match preset"),
        "a smuggled field tag": (_with_ts(head, smuggled, rest), "unexpected protobuf field"),
        # a secret key in a context that says it has none: TenSEAL makes keys as it loads
        "a private part": (_with_ts(head, secret_ts, rest), "private part"),
        # TenSEAL's global_scale raised a builtin ValueError for these
        "a negative scale": (_with_ts(head, with_scale(-2.0**40), rest), "scale"),
        "a NaN scale": (_with_ts(head, with_scale(math.nan), rest), "scale"),
        "no scale": (_with_ts(head, with_scale(None), rest), "scale"),
        "a repeated field": (_with_ts(head, ts_bytes + ts_bytes[:0] + _ckks_seal._varint(
            4 << 3) + b"\x00" + _ckks_seal._varint(4 << 3) + b"\x00", rest),
            "unexpected protobuf field"),
    }

    def never(*_: object) -> None:
        raise AssertionError("TenSEAL read a context that should have been refused first")

    monkeypatch.setattr(ckks_mod.ts, "context_from", never)
    for why, (blob, match) in forged.items():
        with pytest.raises(WireError, match=match):
            CKKSContext.deserialize(blob)
        assert why
    monkeypatch.undo()
    assert CKKSContext.deserialize(small.public().serialize()).slot_count == 4096
    assert CKKSContext.deserialize(small.serialize(save_secret_key=True),
                                   secret_key=True).has_secret_key


def test_a_vector_mixing_levels_or_scales_is_refused(owner: CKKSContext) -> None:
    # each ciphertext valid alone; together they failed only when added (or decrypted)
    vec = owner.encrypt(np.ones(owner.slot_count + 3))
    sizes, cts, scale = _ckks_seal.parse_vector_proto(vec.serialize()[8:])
    mirror = owner._mirror

    def edited(edit: Any) -> bytes:
        ct = _ckks_seal.load_ciphertext(mirror, cts[1])
        edit(ct)
        return _ckks_seal.seal_bytes(ct)

    def lower(ct: Any) -> None:
        mirror.evaluator.mod_switch_to_next_inplace(ct)

    def set_scale(value: float) -> Any:
        def edit(ct: Any) -> None:
            ct.scale = value
        return edit

    for edit in (lower, set_scale(math.nan), set_scale(math.inf), set_scale(2.0**41),
                 set_scale(0.5), set_scale(2.0**200)):
        blob = b"MPCKVEC1" + _ckks_seal.vector_proto(sizes, [cts[0], edited(edit)], scale)
        with pytest.raises(WireError, match="one level and one scale"):
            CKKSVector.deserialize(owner, blob)
    same = b"MPCKVEC1" + _ckks_seal.vector_proto(sizes, [cts[0], edited(lambda ct: None)],
                                                 scale)
    assert CKKSVector.deserialize(owner, same).scale == 2.0**40


def test_a_secret_context_needs_secret_key_true(owner: CKKSContext) -> None:
    from mpcai.errors import MessageRejected

    blob = owner.serialize(save_secret_key=True)
    with pytest.raises(MessageRejected, match="secret_key=True"):
        CKKSContext.deserialize(blob)
    assert CKKSContext.deserialize(blob, secret_key=True).has_secret_key
    with pytest.raises(InvalidType):
        CKKSContext.deserialize(blob, secret_key="yes")  # type: ignore[arg-type]
