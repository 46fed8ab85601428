"""Threshold Paillier (mpcai.he.paillier._threshold) against plaintext Python integers.

Small keys come from the unsafe test hook (fresh 512-bit moduli of safe primes);
one test runs a 2048-bit key made from the fixed safe primes below, which are
checked for primality when this module loads.
"""

from __future__ import annotations

import itertools
import struct

import gmpy2
import numpy as np
import pytest

from mpcai.errors import (
    DuplicateShares,
    InvalidCiphertext,
    InvalidInput,
    InvalidType,
    KeyTooSmall,
    MisbehaviourDetected,
    NotEnoughShares,
    SlotOverflow,
)
from mpcai.he import paillier as P
from mpcai.he.paillier import _threshold as T

# two 1024-bit safe primes (p = 2p' + 1), published here: a 2048-bit key for tests only
P1024 = int(
    "e202d4ac2c5a5bcf81b524eb598b92c0beb8a9ba14af6e8d566bddc8234b7f28379d89984a4ee7b6d9d3a4b2"
    "e5271490c99569cc9ad9ae585205a049e1d92bc26f80fb657d5422fb7c326e0af26075f96b11d5157a4251d9"
    "75c488c54422ebf6713ce8cf375b47b3ba94f6624735e93c68bfe7f396a353edb9bdc01602ccbb8b", 16)
Q1024 = int(
    "e9edb0284cc1b2eca89cdfe8a988f4436998cf0dd8e731157e9f3725f7033a264b28758dc40a83e0ce2dd203"
    "084eaec7c0472340228a0be9dd725fab9fd62171b1986c4608e630931c9387eaf3443187129e1e72a061c035"
    "7086b930937c89f7280be8f875e96925f77979f7e932876c87aeaba38c79f1523fb57a8f11aad263", 16)
for _p in (P1024, Q1024):
    assert _p.bit_length() == 1024 and gmpy2.is_prime(_p, 40) and gmpy2.is_prime(_p // 2, 40)


@pytest.fixture(scope="module")
def key35() -> tuple[P.ThresholdPublicKey, list[P.KeyShare]]:
    return T._unsafe_threshold_keys_for_tests(5, 3, n_bits=512)


def test_safe_primes_are_safe_and_of_exact_size() -> None:
    for bits in (64, 200, 256):
        p = T.random_safe_prime(bits)
        assert p.bit_length() == bits and p >> (bits - 2) == 3
        assert gmpy2.is_prime(p, 40) and gmpy2.is_prime((p - 1) // 2, 40)


@pytest.mark.parametrize(("t", "n"), [(1, 1), (1, 3), (2, 3), (3, 5), (5, 5)])
def test_every_t_subset_and_larger_ones_decrypt_scalars(t: int, n: int) -> None:
    tpk, shares = T._unsafe_threshold_keys_for_tests(n, t, n_bits=256)
    values = [0, 1, -1, 123456789, -(tpk.public_key.max_int)]
    for m in values:
        c = tpk.public_key.encrypt(m)
        parts = [P.partial_decrypt(s, c) for s in shares]
        for size in range(t, n + 1):
            for subset in itertools.combinations(parts, size):
                assert P.combine(tpk, c, subset) == m
    c = tpk.public_key.encrypt(-2.75, frac_bits=8) + 1.5
    parts = [P.partial_decrypt(s, c) for s in shares[:t]]
    assert P.combine(tpk, c, parts) == -1.25


def test_packed_sums_equal_the_plaintext_integer_sums(key35) -> None:
    tpk, shares = key35
    spec = P.PackingSpec(int_bits=20, frac_bits=0, max_summands=7)
    rows = [np.arange(300, dtype=np.int64) * (k + 1) - 1000 * k for k in range(7)]
    total = P.encrypt_packed(tpk, rows[0], spec)  # the threshold key encrypts as is
    for r in rows[1:]:
        total = total + P.encrypt_packed(tpk.public_key, r, spec)
    assert total.ciphertext_count > 1
    want = np.sum(rows, axis=0)
    for subset in itertools.combinations(shares, 3):
        parts = [P.partial_decrypt(s, total) for s in subset]
        out = P.combine(tpk, total, parts)
        assert out.dtype == np.float64 and np.array_equal(out, want.astype(np.float64))


def test_t_minus_one_partials_are_refused_and_duplicates_too(key35) -> None:
    tpk, shares = key35
    c = tpk.public_key.encrypt(42)
    parts = [P.partial_decrypt(s, c) for s in shares]
    for subset in itertools.combinations(parts, 2):
        with pytest.raises(NotEnoughShares):
            P.combine(tpk, c, subset)
    with pytest.raises(NotEnoughShares):
        P.combine(tpk, c, [])
    with pytest.raises(DuplicateShares):
        P.combine(tpk, c, [parts[0], parts[1], parts[0]])


def _copy(p: P.PartialDecryption, **changes: object) -> P.PartialDecryption:
    fields = {"index": p.index, "values": list(p.values), "digest": p.digest,
              "challenge": p.challenge, "response": p.response, **changes}
    return P.PartialDecryption(p.public_key, **fields)  # type: ignore[arg-type]


def test_tampered_partials_are_detected_and_named(key35) -> None:
    tpk, shares = key35
    pub = tpk.public_key
    spec = P.PackingSpec(int_bits=16, frac_bits=0, max_summands=2)
    x = np.arange(40)
    ct = P.encrypt_packed(tpk, x, spec)
    parts = [P.partial_decrypt(s, ct) for s in shares]
    assert all(P.verify_partial(tpk, ct, p) for p in parts)
    good = parts[0]
    shifted = list(good.values)
    shifted[-1] = shifted[-1] * (1 + pub.n) % pub.nsquare  # a wrong value (plaintext + 1)
    tampered = {
        "wrong value": _copy(good, values=shifted),
        "wrong response": _copy(good, response=good.response + 1),
        "wrong challenge": _copy(good, challenge=bytes(32)),
        "swapped index": _copy(good, index=4),  # holder 1's partial claimed by holder 4
        "other ciphertexts": P.partial_decrypt(shares[0], P.encrypt_packed(tpk, x, spec)),
    }
    for name, bad in tampered.items():
        assert not P.verify_partial(tpk, ct, bad), name
        others = [p for p in parts if p.index != bad.index][:2]
        with pytest.raises(MisbehaviourDetected) as info:
            P.combine(tpk, ct, [bad, *others])
        assert info.value.misbehaving == [bad.index], name
        # the culprit dropped, another holder's partial completes the decryption
        rest = [p for p in parts if p.index != bad.index][:3]
        assert np.array_equal(P.combine(tpk, ct, rest), x)
    # -c_i decrypts the same (combination squares every partial, as Damgård–Jurik), but the
    # proof's transcript binds the exact values, so it fails verification all the same
    neg = _copy(good, values=[pub.nsquare - v for v in good.values])
    assert not P.verify_partial(tpk, ct, neg)
    assert np.array_equal(P.combine(tpk, ct, [neg, parts[1], parts[2]], verify=False), x)
    # unverified garbage is caught where it shows: a slot out of range
    junk = _copy(good, values=[v * v % pub.nsquare for v in good.values])
    with pytest.raises((MisbehaviourDetected, SlotOverflow)):
        P.combine(tpk, ct, [junk, parts[1], parts[2]], verify=False)


def test_partials_and_shares_check_their_keys(key35) -> None:
    tpk, shares = key35
    other, other_shares = T._unsafe_threshold_keys_for_tests(5, 3, n_bits=512)
    c = tpk.public_key.encrypt(5)
    with pytest.raises(InvalidCiphertext):
        P.partial_decrypt(other_shares[0], c)
    with pytest.raises(InvalidCiphertext):
        P.combine(other, c, [])
    with pytest.raises(InvalidType):
        P.partial_decrypt(tpk, c)  # type: ignore[arg-type]
    with pytest.raises(InvalidType):
        P.combine(tpk, 5, [])  # type: ignore[arg-type]
    with pytest.raises(InvalidType):  # the threshold key cannot decrypt alone
        P.decrypt_packed(tpk, P.encrypt_packed(tpk, np.zeros(3)))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):  # a share that does not match its verification key
        P.KeyShare(tpk, 2, shares[0]._share)
    assert "share" not in repr(shares[0]).lower().replace("keyshare", "")


def test_threads_give_the_same_partials(key35) -> None:
    tpk, shares = key35
    ct = P.encrypt_packed(tpk, np.arange(200), P.PackingSpec(int_bits=16, frac_bits=0))
    one = P.partial_decrypt(shares[2], ct)
    two = P.partial_decrypt(shares[2], ct, workers=2)
    assert one.values == two.values and P.verify_partial(tpk, ct, two)


def test_dealer_refuses_small_keys_and_bad_thresholds() -> None:
    with pytest.raises(KeyTooSmall):
        P.deal_threshold_keys(3, 2, key_bits=1024)
    with pytest.raises(InvalidInput):
        P.deal_threshold_keys(3, 2, key_bits=2049)
    for n, t in ((3, 4), (3, 0), (0, 0), (T.MAX_HOLDERS + 1, 2)):
        with pytest.raises(InvalidInput):
            P.deal_threshold_keys(n, t, key_bits=2048)
    with pytest.raises(InvalidInput):  # not safe primes
        T._unsafe_threshold_keys_for_tests(3, 2, p=1000003, q=1000033)


# --------------------------------------------------------------------------- formats


def test_round_trips_and_the_key_size_floor(key35) -> None:
    tpk, shares = key35
    blob = tpk.serialize()
    with pytest.raises(KeyTooSmall):  # the public path keeps the 2048-bit floor
        P.ThresholdPublicKey.deserialize(blob)
    with pytest.raises(KeyTooSmall):
        P.KeyShare.deserialize(shares[1].serialize())
    assert P.ThresholdPublicKey._read(blob, allow_small=True) == tpk
    share = P.KeyShare._read(shares[1].serialize(), allow_small=True)
    assert share.index == 2 and share.public_key == tpk
    c = tpk.public_key.encrypt(-77)
    part = P.partial_decrypt(share, c)
    back = P.PartialDecryption.deserialize(tpk, part.serialize())
    assert back.values == part.values and back.index == 2
    assert P.combine(tpk, c, [back, P.partial_decrypt(shares[0], c),
                              P.partial_decrypt(shares[4], c)]) == -77


def _bad_blobs(blob: bytes, magic: bytes) -> dict[str, bytes]:
    return {
        "truncated": blob[:-1],
        "half": blob[:len(blob) // 2],
        "header only": blob[:4],
        "empty": b"",
        "oversized": blob + b"\x00",
        "wrong magic": b"XXX" + blob[3:],
        "wrong version": magic + bytes([blob[3] + 1]) + blob[4:],
    }


def test_bounded_parsing_of_every_format(key35) -> None:
    tpk, shares = key35
    ct = P.encrypt_packed(tpk, np.arange(30), P.PackingSpec(int_bits=8, frac_bits=0))
    part = P.partial_decrypt(shares[0], ct)
    cases = {
        "public key": (lambda b: P.ThresholdPublicKey._read(b, allow_small=True),
                       tpk.serialize(), b"PTK"),
        "key share": (lambda b: P.KeyShare._read(b, allow_small=True),
                      shares[0].serialize(), b"PKS"),
        "partial": (lambda b: P.PartialDecryption.deserialize(tpk, b), part.serialize(),
                    b"PTD"),
    }
    for what, (read, blob, magic) in cases.items():
        read(blob)
        for name, bad in _bad_blobs(blob, magic).items():
            with pytest.raises(InvalidInput):
                read(bad)
            assert name  # (each case must raise)
        with pytest.raises(InvalidType):
            read("not bytes")
        assert what
    pk_blob = tpk.serialize()
    # a holder count beyond the limit is refused before any key is read
    huge = pk_blob[:4] + struct.pack(">HH", 2, T.MAX_HOLDERS + 1) + pk_blob[8:]
    with pytest.raises(InvalidInput, match="holders"):
        P.ThresholdPublicKey._read(huge, allow_small=True)
    # a partial claiming 2^31 values with a short body: refused by length, not allocated
    pblob = part.serialize()
    head = 4 + 8
    claimed = pblob[:head] + struct.pack(">HI", 1, 1 << 31) + pblob[head + 6:]
    with pytest.raises(InvalidInput, match="bytes of values"):
        P.PartialDecryption.deserialize(tpk, claimed)
    for index in (0, 6):
        with pytest.raises(InvalidInput, match="holder index"):
            P.PartialDecryption.deserialize(
                tpk, pblob[:head] + struct.pack(">H", index) + pblob[head + 2:])
    # a response longer than any honest one
    pos = head + 6 + 32 + 32
    (k,) = struct.unpack(">H", pblob[pos:pos + 2])
    long_z = pblob[:pos] + struct.pack(">H", k + 64) + b"\x01" * (k + 64) + pblob[pos + 2 + k:]
    with pytest.raises(InvalidInput, match="response"):
        P.PartialDecryption.deserialize(tpk, long_z)
    # a value that is not a unit of Z_{n^2}
    w = tpk.public_key.ciphertext_bytes
    zero = pblob[:-w] + bytes(w)
    with pytest.raises(InvalidCiphertext):
        P.PartialDecryption.deserialize(tpk, zero)
    other, _ = T._unsafe_threshold_keys_for_tests(5, 3, n_bits=512)
    with pytest.raises(InvalidCiphertext, match="another key"):
        P.PartialDecryption.deserialize(other, pblob)


def test_2048_bit_end_to_end_with_fixed_safe_primes() -> None:
    tpk0, shares0 = T._unsafe_threshold_keys_for_tests(5, 3, p=P1024, q=Q1024)
    tpk = P.ThresholdPublicKey.deserialize(tpk0.serialize())  # the floor admits it
    shares = [P.KeyShare.deserialize(s.serialize()) for s in shares0]
    assert tpk.public_key.n_bits == 2048 and tpk == tpk0
    spec = P.PackingSpec(int_bits=16, frac_bits=0, max_summands=3)
    rows = [np.arange(200) * (k + 1) for k in range(3)]
    blobs = [P.encrypt_packed(tpk, r, spec).serialize() for r in rows]
    total = P.PackedCiphertext.deserialize(tpk, blobs[0])
    for b in blobs[1:]:
        total = total + P.PackedCiphertext.deserialize(tpk, b)
    sent = P.PackedCiphertext.deserialize(tpk, total.serialize())  # re-randomised on export
    parts = [P.PartialDecryption.deserialize(tpk, P.partial_decrypt(s, sent).serialize())
             for s in (shares[4], shares[1], shares[2])]
    assert np.array_equal(P.combine(tpk, sent, parts), np.sum(rows, axis=0))
