"""Committee (threshold) CKKS: sums decrypted by any t of n holders against numpy, refusal
and garbage below t, the flooding width measured exactly, bounded parsing, mismatches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mpcai.errors import (
    DecryptionBudgetExceeded,
    DuplicateShares,
    InvalidInput,
    InvalidType,
    MisbehaviourDetected,
    NotEnoughShares,
    WireError,
)
from mpcai.he import _ckks_seal
from mpcai.he import _ckks_threshold as th
from mpcai.he.ckks import (
    DEFAULT_FLOOD_SECURITY_BITS,
    CKKSContext,
    KeyShare,
    PartialDecryption,
    ThresholdContext,
    check_partial,
    combine,
    deal_threshold_keys,
    partial_decrypt,
)

N_HOLDERS, T = 5, 3
K = 6  # summands of the test sums


@pytest.fixture(scope="module")
def committee() -> tuple[ThresholdContext, list[KeyShare]]:
    return deal_threshold_keys(N_HOLDERS, T, decryption_budget=256)


@pytest.fixture(scope="module")
def data() -> list[np.ndarray]:
    rng = np.random.default_rng(11)  # data only, never key material
    return [rng.uniform(-100, 100, 5000) for _ in range(K)]  # two ciphertexts each


@pytest.fixture(scope="module")
def total(committee, data):
    ctx = committee[0].context
    vec = ctx.encrypt(data[0])
    for x in data[1:]:
        vec = vec + ctx.encrypt(x)
    return vec


def _decrypt(committee, vec, holders, summands=K):
    tctx, shares = committee
    parts = [partial_decrypt(shares[i - 1], vec, holders, summands=summands) for i in holders]
    return combine(tctx, vec, parts), parts


# ---- helpers that recompute what a holder releases, in Python integers -----------------


def _raw_polys(tctx: ThresholdContext, vec) -> list[np.ndarray]:
    """Each ciphertext's (c_0, c_1) as (2, primes, N) uint64, read from SEAL."""
    _, raws, _ = _ckks_seal.parse_vector_proto(vec._v.serialize())
    out = []
    for raw in raws:
        ct = _ckks_seal.load_ciphertext(tctx._raw.mirror, raw)
        arr = ct.dyn_array()
        n = arr.size()
        out.append(np.fromiter(map(arr.at, range(n)), dtype=np.uint64, count=n)
                   .reshape(2, -1, tctx.poly_modulus_degree))
    return out


def _moduli(tctx: ThresholdContext) -> tuple[int, ...]:
    return tctx._raw.levels[tctx._raw.first_parms_id]


def _honest_part(tctx, share, holders, c0, c1) -> np.ndarray:
    """c_0 + lambda_i s_i c_1 (mod q_j, NTT form) with no flood: a corrupt holder's release."""
    rows = []
    for j, q in enumerate(_moduli(tctx)):
        lam = th._lagrange_at_zero(holders, share.index, q)
        prod = share._rows[j].astype(object) * lam % q * c1[j].astype(object) % q
        rows.append(((c0[j].astype(object) + prod) % q).astype(np.uint64))
    return np.stack(rows)


def _centred_coefficients(tctx, ntt_rows: np.ndarray) -> np.ndarray:
    """The integer polynomial whose NTT rows are ``ntt_rows`` (consistent over the primes)."""
    coeffs = tctx._raw.from_ntt(ntt_rows, tctx._raw.first_parms_id)
    out = []
    for j, q in enumerate(_moduli(tctx)):
        c = coeffs[j].astype(object)
        out.append(np.where(c > q // 2, c - q, c))
    assert all(np.array_equal(out[0], o) for o in out[1:]), "residues of one integer polynomial"
    return np.array(out[0], dtype=np.float64)


def _secret_key(committee) -> np.ndarray:
    """s from t shares (Lagrange at 0), NTT rows: what t holders together hold."""
    tctx, shares = committee
    holders = tuple(range(1, T + 1))
    rows = []
    for j, q in enumerate(_moduli(tctx)):
        acc = np.zeros(tctx.poly_modulus_degree, dtype=object)
        for i in holders:
            lam = th._lagrange_at_zero(holders, i, q)
            acc = (acc + shares[i - 1]._rows[j].astype(object) * lam) % q
        rows.append(acc.astype(np.uint64))
    return np.stack(rows)


# ---- decryption by the committee ----------------------------------------------------------


def test_any_t_of_n_holders_decrypt_the_sum_within_the_stated_error(committee, data, total):
    tctx, _ = committee
    want = np.sum(data, axis=0)
    std = tctx.value_error_std(tctx.fresh_noise_bound(K))
    errors = []
    for holders in itertools.combinations(range(1, N_HOLDERS + 1), T):
        out, parts = _decrypt(committee, total, holders)
        assert out.shape == want.shape and out.dtype == np.float64
        assert all(p.count == 2 and p.holders == holders for p in parts)
        errors.append(out - want)
    err = np.concatenate(errors)  # 10 sets x 5000 values
    assert np.max(np.abs(err)) < 7 * std  # P(a 7-sigma value among 50k) ~ 1e-7
    assert 1e-9 < std < 1e-7  # N = 8192, K = 6, Q = 256: ~1.1e-8
    # larger sets decrypt too, with one flood per holder
    for holders in ((1, 2, 3, 4), (1, 2, 3, 4, 5)):
        out, _ = _decrypt(committee, total, holders)
        assert np.max(np.abs(out - want)) < 7 * tctx.value_error_std(
            tctx.fresh_noise_bound(K), holders=len(holders))


def test_released_values_carry_the_promised_gaussian(committee, data, total):
    """The error of the combined values, measured against numpy: standard deviation
    ``sigma sqrt(t N / 2) / 2^80`` within five standard errors of a sample variance,
    mean zero, Gaussian kurtosis.  Fails if a holder's flood is missing, doubled, or of
    the wrong scale (a missing one would show as 2/3 of the variance)."""
    tctx, _ = committee
    want = np.sum(data, axis=0)
    err = np.concatenate([_decrypt(committee, total, s)[0] - want
                          for s in ((1, 2, 3), (2, 4, 5), (1, 3, 5), (3, 4, 5))])
    std = tctx.value_error_std(tctx.fresh_noise_bound(K))
    n = err.size  # 20000
    assert abs(float(np.mean(err * err)) / std**2 - 1) < 5 * math.sqrt(2 / n)
    assert abs(float(np.mean(err))) < 5 * std / math.sqrt(n)
    assert abs(float(np.mean(err**4)) / float(np.mean(err**2)) ** 2 - 3) < 0.3


def test_each_holder_floods_alone_with_the_width_of_the_statement(committee, total):
    """A holder's flood, recovered exactly from its partial (D_i - c_0 - lambda_i s_i c_1
    in Python integers, back from NTT form): integer coefficients of standard deviation
    ``sigma`` whose KL divergence for the bound B is ``2^-s / D``, independent between
    holders and between two releases of one holder."""
    tctx, shares = committee
    holders = (1, 2, 4)
    bound = tctx.fresh_noise_bound(K)
    sigma = tctx.flooding_sigma(bound)
    assert sigma == pytest.approx(2 ** ((DEFAULT_FLOOD_SECURITY_BITS - 1) / 2) * bound
                                  * math.sqrt(tctx.releases * tctx.poly_modulus_degree))
    polys = _raw_polys(tctx, total)
    floods = {}
    for release, holder in ((0, 1), (1, 1), (0, 2)):
        part = partial_decrypt(shares[holder - 1], total, holders, summands=K)
        assert part.sigma == sigma
        e = []
        for k, (c0, c1) in enumerate(polys):
            noise = np.stack([(part.values[k, j].astype(object)
                               - _honest_part(tctx, shares[holder - 1], holders, c0, c1)[j]
                               .astype(object)) % q for j, q in enumerate(_moduli(tctx))])
            e.append(_centred_coefficients(tctx, noise.astype(np.uint64)))
        floods[release, holder] = np.concatenate(e)
    n = floods[0, 1].size  # 16384 coefficients
    for e in floods.values():
        assert np.all(e == np.round(e))
        var = float(np.mean(e * e))
        assert abs(var / sigma**2 - 1) < 5 * math.sqrt(2 / n)
        assert abs(float(np.mean(e))) < 5 * sigma / math.sqrt(n)
        assert abs(float(np.mean(e**4)) / var**2 - 3) < 0.3  # Gaussian, not e.g. uniform
        kl = tctx.poly_modulus_degree * bound**2 / (2 * var)  # one ciphertext, N values
        assert abs(kl * tctx.releases * 2.0**DEFAULT_FLOOD_SECURITY_BITS - 1) < 5 * math.sqrt(
            2 / n)
    assert abs(np.corrcoef(floods[0, 1], floods[1, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(floods[0, 1], floods[0, 2])[0, 1]) < 0.05


def test_one_honest_holder_floods_enough_when_the_others_add_nothing(committee, data, total):
    """t - 1 corrupt holders release c_0 + lambda s_j c_1 with no noise: the result's error
    is the honest holder's flood alone, of the single-holder width."""
    tctx, shares = committee
    holders = (2, 3, 5)
    polys = _raw_polys(tctx, total)
    want = np.sum(data, axis=0)
    errs = []
    for _ in range(2):
        honest = partial_decrypt(shares[2], total, holders, summands=K)  # holder 3
        corrupt = [PartialDecryption(tctx.key_id, j, holders, honest.parms_id, honest.digests,
                                     np.stack([_honest_part(tctx, shares[j - 1], holders, c0, c1)
                                               for c0, c1 in polys]), 1e-300)
                   for j in (2, 5)]
        errs.append(combine(tctx, total, [corrupt[0], honest, corrupt[1]]) - want)
    err = np.concatenate(errs)
    std1 = tctx.value_error_std(tctx.fresh_noise_bound(K), holders=1)
    assert abs(float(np.mean(err * err)) / std1**2 - 1) < 5 * math.sqrt(2 / err.size)


def test_fewer_than_t_holders_are_refused_and_their_shares_decrypt_to_garbage(committee, data,
                                                                               total):
    tctx, shares = committee
    with pytest.raises(NotEnoughShares):
        partial_decrypt(shares[0], total, (1, 2), summands=K)
    parts = [partial_decrypt(shares[i - 1], total, (1, 2, 3), summands=K) for i in (1, 2, 3)]
    with pytest.raises(NotEnoughShares):
        combine(tctx, total, parts[:2])
    # t - 1 holders pooling their shares (Lagrange at 0 over their own two points) get a
    # value independent of s: the "decryption" is uniform modulo q, i.e. huge numbers
    _, _, cts, digests = tctx._vector(total)
    sigma = tctx.flooding_sigma(tctx.fresh_noise_bound(K))
    two = [th._release(shares[i - 1], cts, digests, (1, 2), sigma) for i in (1, 2)]
    sizes = [4096, 904]
    garbage = th._combine_set(tctx, cts, sizes, two)
    want = np.sum(data, axis=0)
    assert np.median(np.abs(garbage - want)) > 1e6


def test_the_bound_holds_for_fresh_encryptions_as_derived(committee):
    """The a-priori bound's premise, measured with the key (t shares): s is ternary, and a
    fresh error has |E_k| <= N/2 and standard deviation sqrt((1 + 2N/3) / 12) ~ 21: SEAL
    divides the key-level encryption by the special prime (without that it would be ~340)."""
    tctx, _ = committee
    s = _secret_key(committee)
    n = tctx.poly_modulus_degree
    assert set(np.unique(_centred_coefficients(tctx, s))) <= {-1.0, 0.0, 1.0}
    ctx = tctx.context
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, ctx.slot_count)  # every slot: TenSEAL replicates shorter inputs
    vecs = [ctx.encrypt(x) for _ in range(3)]
    total = vecs[0] + vecs[1] + vecs[2]
    # Delta m as TenSEAL encoded it (same encoder, parameters and scale)
    pt = th.sa.Plaintext()
    tctx._raw.mirror.encoder.encode(x.tolist(), list(tctx._raw.first_parms_id),
                                    2.0**ctx.preset.scale_bits, pt)
    m = tctx._raw.read(pt)
    for vec, summands in ((vecs[0], 1), (total, 3)):
        c0, c1 = _raw_polys(tctx, vec)[0]
        rows = np.stack([((c0[j].astype(object) + s[j].astype(object) * c1[j].astype(object)
                           - summands * m[j].astype(object)) % q).astype(np.uint64)
                         for j, q in enumerate(_moduli(tctx))])
        e = _centred_coefficients(tctx, rows)
        assert np.max(np.abs(e)) <= tctx.fresh_noise_bound(summands)
        predicted = math.sqrt(summands * (1 + 2 * n / 3) / 12)
        assert 0.8 < float(np.std(e)) / predicted < 1.25


def test_budget_is_per_holder_and_travels_with_the_share(data):
    tctx, shares = deal_threshold_keys(3, 2, decryption_budget=3)
    vec = tctx.context.encrypt(data[0])  # two ciphertexts
    partial_decrypt(shares[0], vec, (1, 2), summands=1)
    assert shares[0].decryptions_left == 1 and shares[1].decryptions_left == 3
    with pytest.raises(DecryptionBudgetExceeded):
        partial_decrypt(shares[0], vec, (1, 3), summands=1)
    assert shares[0].decryptions_left == 1  # nothing spent, nothing released
    again = KeyShare.deserialize(tctx, shares[0].serialize())
    assert again.decryptions_left == 1 and again.index == 1
    with pytest.raises(DecryptionBudgetExceeded):
        partial_decrypt(again, vec, (1, 2), summands=1)
    # the width is set for D = Q (n - t + 1) releases
    assert tctx.releases == 3 * 2


def test_bad_arguments_are_typed_errors(committee, total):
    tctx, shares = committee
    with pytest.raises(InvalidInput, match="exactly one"):
        partial_decrypt(shares[0], total, (1, 2, 3))
    with pytest.raises(InvalidInput, match="exactly one"):
        partial_decrypt(shares[0], total, (1, 2, 3), summands=1, coeff_noise_bound=10.0)
    with pytest.raises(InvalidInput, match="not in the decryption set"):
        partial_decrypt(shares[0], total, (2, 3, 4), summands=1)
    with pytest.raises(DuplicateShares):
        partial_decrypt(shares[0], total, (1, 1, 2), summands=1)
    with pytest.raises(InvalidInput):
        partial_decrypt(shares[0], total, (1, 2, 9), summands=1)
    with pytest.raises(InvalidType):
        partial_decrypt(shares[0], np.ones(3), (1, 2, 3), summands=1)
    with pytest.raises(InvalidType):
        partial_decrypt(tctx, total, (1, 2, 3), summands=1)
    other = CKKSContext.create("n8192-agg", galois_keys=False)
    with pytest.raises(InvalidInput, match="another key"):
        partial_decrypt(shares[0], other.encrypt(np.ones(3)), (1, 2, 3), summands=1)
    # one 60-bit prime cannot hold the 2^80 scale: SEAL refuses to mod-switch there, and
    # where it can (preset n8192, scale 2^40) the floods do not fit: refused before spending
    with pytest.raises(InvalidInput, match="scale out of bounds"):
        total.compact()
    small, small_shares = deal_threshold_keys(3, 2, preset="n8192")
    low = small.context.encrypt(np.ones(10)).compact()
    with pytest.raises(InvalidInput, match="cannot hold"):
        partial_decrypt(small_shares[0], low, (1, 2), summands=1)
    assert small_shares[0].decryptions_left == small.decryption_budget
    with pytest.raises(InvalidInput):
        deal_threshold_keys(3, 4)
    with pytest.raises(InvalidInput):
        deal_threshold_keys(3, 2, preset="nope")


# ---- what combine detects ------------------------------------------------------------------


def test_partials_for_another_ciphertext_or_set_are_detected(committee, data, total):
    tctx, shares = committee
    other = tctx.context.encrypt(data[0])
    holders = (1, 2, 3)
    parts = [partial_decrypt(shares[i - 1], total, holders, summands=K) for i in holders]
    assert all(check_partial(tctx, total, p) for p in parts)
    wrong = partial_decrypt(shares[1], other, holders, summands=1)
    assert not check_partial(tctx, total, wrong)
    with pytest.raises(MisbehaviourDetected) as info:
        combine(tctx, total, [parts[0], wrong, parts[2]])
    assert info.value.misbehaving == [2]
    # holder 3 answers for another set: no set is complete
    elsewhere = partial_decrypt(shares[2], total, (1, 3, 4), summands=K)
    with pytest.raises(NotEnoughShares):
        combine(tctx, total, [parts[0], parts[1], elsewhere])
    with pytest.raises(DuplicateShares):
        combine(tctx, total, [*parts, parts[1]])
    # a partial claiming a holder outside its set
    liar = PartialDecryption(tctx.key_id, 4, holders, parts[0].parms_id, parts[0].digests,
                             parts[0].values, parts[0].sigma)
    with pytest.raises(MisbehaviourDetected):
        combine(tctx, total, [*parts, liar])
    # one made in memory with the wrong shape is named, not a crash
    short = PartialDecryption(tctx.key_id, 2, holders, parts[1].parms_id, parts[1].digests,
                              parts[1].values[:, :1], parts[1].sigma)
    with pytest.raises(MisbehaviourDetected) as info:
        combine(tctx, total, [parts[0], short, parts[2]])
    assert info.value.misbehaving == [2]


def test_two_sets_are_checked_against_each_other(committee, data, total):
    """With more than t holders, two sets decrypt independently: a holder lying in one set
    only is caught; one lying the same way in every set it is in is not (documented)."""
    tctx, shares = committee
    want = np.sum(data, axis=0)
    a, b = (1, 2, 3), (3, 4, 5)
    pa = [partial_decrypt(shares[i - 1], total, a, summands=K) for i in a]
    pb = [partial_decrypt(shares[i - 1], total, b, summands=K) for i in b]
    out = combine(tctx, total, pa + pb)  # consistent: the mean of both
    std = tctx.value_error_std(tctx.fresh_noise_bound(K))
    assert np.max(np.abs(out - want)) < 7 * std
    # holder 1 adds a shift (the constant polynomial 2^70: 2^-10 in every slot) in set a only
    moduli = _moduli(tctx)
    shift = np.array([[(1 << 70) % q] * tctx.poly_modulus_degree for q in moduli],
                     dtype=np.uint64)
    bad = pa[0].values.copy()
    for k in range(bad.shape[0]):
        th._add_rows(bad[k], shift, moduli)
    cheat = PartialDecryption(tctx.key_id, 1, a, pa[0].parms_id, pa[0].digests, bad,
                              pa[0].sigma)
    assert check_partial(tctx, total, cheat)  # well formed: no proof to fail
    with pytest.raises(MisbehaviourDetected, match="differ"):
        combine(tctx, total, [cheat, *pa[1:], *pb])
    # reporting a huge width does not widen the tolerance (the median is used)
    loud = PartialDecryption(tctx.key_id, 1, a, pa[0].parms_id, pa[0].digests, bad, 1e30)
    with pytest.raises(MisbehaviourDetected, match="differ"):
        combine(tctx, total, [loud, *pa[1:], *pb])
    # alone, the same cheat goes through: the result is off by 2^70 / 2^80 per value
    off = combine(tctx, total, [cheat, *pa[1:]]) - want
    assert np.all(np.abs(off - 2.0**-10) < 7 * std)
    # holder 3, in both sets, shifting both the same way: not detected, both results move
    c3a = PartialDecryption(tctx.key_id, 3, a, pa[2].parms_id, pa[2].digests,
                            pa[2].values.copy(), pa[2].sigma)
    c3b = PartialDecryption(tctx.key_id, 3, b, pb[0].parms_id, pb[0].digests,
                            pb[0].values.copy(), pb[0].sigma)
    for p in (c3a, c3b):
        for k in range(p.values.shape[0]):
            th._add_rows(p.values[k], shift, moduli)
    moved = combine(tctx, total, [pa[0], pa[1], c3a, c3b, pb[1], pb[2]]) - want
    assert np.all(np.abs(moved - 2.0**-10) < 7 * std)


# ---- serialisation --------------------------------------------------------------------------


def test_round_trips_give_the_same_decryption(committee, data, total):
    tctx, shares = committee
    again = ThresholdContext.deserialize(tctx.serialize())
    assert (again.n_holders, again.threshold, again.decryption_budget) == (5, 3, 256)
    assert again.key_id == tctx.key_id and not again.context.has_secret_key
    share = KeyShare.deserialize(tctx, shares[3].serialize())
    assert share.index == 4 and np.array_equal(share._rows, shares[3]._rows)
    holders = (2, 4, 5)
    parts = [partial_decrypt(shares[i - 1], total, holders, summands=K) for i in holders]
    blobs = [p.serialize() for p in parts]
    assert len(blobs[0]) == th._PART_HEAD.size + 6 + 64 + 2 * 2 * 8192 * 8  # 262 kB
    loaded = [PartialDecryption.deserialize(tctx, b) for b in blobs]
    assert np.array_equal(combine(tctx, total, loaded), combine(tctx, total, parts))
    # the sum as the holders would receive it, re-read into the public context
    from mpcai.he.ckks import CKKSVector
    received = CKKSVector.deserialize(again.context, total.serialize())
    assert check_partial(again, received, loaded[0])
    out = combine(again, received, [PartialDecryption.deserialize(again, b) for b in blobs])
    assert np.max(np.abs(out - np.sum(data, axis=0))) < 1e-6


def test_key_share_parsing_is_bounded_and_checked(committee):
    tctx, shares = committee
    blob = shares[0].serialize()
    assert len(blob) == th._SHARE_HEAD.size + 2 * 8 + 2 * 8192 * 8
    cases = {
        "truncated": blob[:-1],
        "extended": blob + b"\x00",
        "header only": blob[:th._SHARE_HEAD.size],
        "magic": b"X" + blob[1:],
        "key id": blob[:8] + bytes(16) + blob[24:],
        "index 0": blob[:28] + (0).to_bytes(2, "little") + blob[30:],
        "prime": blob[:th._SHARE_HEAD.size] + bytes(8) + blob[th._SHARE_HEAD.size + 8:],
    }
    # a value equal to its prime
    q0 = _moduli(tctx)[0]
    off = th._SHARE_HEAD.size + 16
    cases["value >= q"] = blob[:off] + q0.to_bytes(8, "little") + blob[off + 8:]
    for name, bad in cases.items():
        with pytest.raises(WireError):
            KeyShare.deserialize(tctx, bad)
        assert name
    with pytest.raises(WireError, match="exceeds"):
        KeyShare.deserialize(tctx, blob, max_bytes=len(blob) - 1)
    other, _ = deal_threshold_keys(5, 3)
    with pytest.raises(WireError, match="another key"):
        KeyShare.deserialize(other, blob)
    with pytest.raises(InvalidType):
        KeyShare.deserialize(tctx, "text")


def test_partial_parsing_is_bounded_and_checked(committee, total):
    tctx, shares = committee
    holders = (1, 2, 3)
    blob = partial_decrypt(shares[0], total, holders, summands=K).serialize()
    head = th._PART_HEAD.size
    cases = {
        "truncated": blob[:-8],
        "extended": blob + bytes(8),
        "short header": blob[:head - 1],
        "magic": b"Y" + blob[1:],
        "key id": blob[:8] + bytes(16) + blob[24:],
        "holder outside": blob[:24] + (4).to_bytes(2, "little") + blob[26:],
        "set too small": blob[:26] + (2).to_bytes(2, "little") + blob[28:],
        "count": blob[:28] + (3).to_bytes(4, "little") + blob[32:],
        "sigma": blob[:37] + np.float64(np.nan).tobytes() + blob[45:],
        "parms id": blob[:45] + bytes(32) + blob[77:],
        "unsorted set": blob[:head] + b"\x02\x00\x01\x00\x03\x00" + blob[head + 6:],
    }
    q1 = _moduli(tctx)[1]
    off = head + 6 + 64 + 8192 * 8  # first value of the second prime
    cases["value >= q"] = blob[:off] + q1.to_bytes(8, "little") + blob[off + 8:]
    for name, bad in cases.items():
        with pytest.raises(WireError):
            PartialDecryption.deserialize(tctx, bad)
        assert name
    with pytest.raises(WireError, match="exceeds"):
        PartialDecryption.deserialize(tctx, blob, max_bytes=len(blob) - 1)


def test_threshold_context_parsing_refuses_secret_keys_and_bad_headers(committee):
    tctx, _ = committee
    blob = tctx.serialize()
    with pytest.raises(WireError):
        ThresholdContext.deserialize(blob[:12])
    with pytest.raises(WireError):
        ThresholdContext.deserialize(blob[:8] + (2).to_bytes(2, "little")
                                     + (3).to_bytes(2, "little") + blob[12:])  # t > n
    with pytest.raises(WireError, match="exceeds"):
        ThresholdContext.deserialize(blob, max_bytes=100)
    owner = CKKSContext.create("n8192-agg", galois_keys=False)
    with_sk = blob[:th._TCTX_HEAD.size] + owner.serialize(save_secret_key=True)
    with pytest.raises(WireError, match="secret key"):
        ThresholdContext.deserialize(with_sk)
    with pytest.raises(InvalidInput, match="secret key"):
        ThresholdContext(owner, 3, 2, 4)


def test_floods_come_from_the_csprng_not_numpy_random(committee, total, monkeypatch):
    _, shares = committee

    def refuse(*args, **kwargs):
        raise AssertionError("numpy.random used for a flood")

    for name in ("normal", "standard_normal", "default_rng", "random", "randint"):
        monkeypatch.setattr(np.random, name, refuse)
    p = partial_decrypt(shares[4], total, (3, 4, 5), summands=K)
    assert p.values.shape == (2, 2, 8192)
