"""Threshold Paillier: the decryption key shared among ``l`` holders, any ``t`` of them decrypt.

The scheme is Damgård–Jurik's threshold variant for ``s = 1`` ("A
Generalisation, a Simplification and Some Applications of Paillier's
Probabilistic Public-Key System", PKC 2001, section 4; the Paillier case is
Fouque–Poupard–Stern, "Sharing Decryption in the Context of Voting or
Lotteries", FC 2000), with Shoup's integer Lagrange coefficients (Δ = l!).

**Set-up by a trusted dealer** (:func:`deal_threshold_keys`).  The dealer
draws safe primes ``p = 2p' + 1``, ``q = 2q' + 1``, sets ``n = pq``,
``m = p'q'`` and the secret ``d`` with ``d = 0 mod m`` and ``d = 1 mod n``,
and shares ``d`` with a random polynomial ``f`` of degree ``t - 1`` over
``Z_{nm}``: holder ``i`` (``1..l``) gets ``s_i = f(i) mod nm``.  It
publishes ``n``, the DJN base ``h_s`` (made honestly from ``p``, ``q``, as
the owner of an ordinary key does, so clients encrypt with the fast
fixed-base randomness), a random square ``v`` of ``Z_{n^2}^*`` and the
verification keys ``v_i = v^(Δ s_i) mod n^2``, then must forget ``p``,
``q`` and ``d``.  The dealer sees every secret: whoever runs it can decrypt
everything; there is no distributed key generation here.  Python cannot
erase memory: run the dealer in a short-lived process.

**Encryption** is ordinary Paillier under :attr:`ThresholdPublicKey.public_key`
(``g = n + 1``): :func:`~mpcai.he.paillier.encrypt_packed`,
:meth:`PublicKey.encrypt <mpcai.he.paillier.PublicKey.encrypt>` and every
other function taking a public key accept a :class:`ThresholdPublicKey`.

**Partial decryption** (:func:`partial_decrypt`): holder ``i`` publishes
``c_i = c^(2 Δ s_i) mod n^2`` for each ciphertext ``c`` (``powmod_sec``: the
exponent is the secret share), with a proof that it used its share.
**Combination** (:func:`combine`): any ``t`` holders ``S`` give
``c' = prod c_i^(2 λ_i) = c^(4 Δ^2 d) = 1 + 4 Δ^2 M n mod n^2`` with
``λ_i = Δ prod_{j in S, j != i} j / (j - i)`` (an integer), so
``M = L(c') (4 Δ^2)^-1 mod n``.  Fewer than ``t`` partials raise
:class:`~mpcai.errors.NotEnoughShares`; a packed ciphertext's slots are
decoded as :func:`~mpcai.he.paillier.decrypt_packed` does.

**Proofs of correct decryption**: a non-interactive Chaum–Pedersen proof
(Fiat–Shamir over SHA-256) that ``log_{C^4}(C_i^2) = log_v(v_i)`` (both
``Δ s_i``), over squares as Damgård–Jurik do (``Z_{n^2}^*`` has elements of
order 2; squaring removes them, and a partial multiplied by -1 decrypts the
same).  One proof covers all the ciphertexts of a call: ``C = prod c_j^(ρ_j)``
and ``C_i = prod c_{ij}^(ρ_j)`` with 128-bit ``ρ_j`` hashed from the
ciphertexts and the partials (the small-exponent batch test of Bellare–
Garay–Rabin, 1998).  A wrong partial among them passes with probability
about 2^-128: the group of squares has order ``n p' q'``, with no prime
factor below 2^128.  The response is ``z = r + e Δ s_i`` over the integers,
``r`` of ``|Δ nm| + 256 + 128`` bits (128 bits of statistical hiding).
:func:`verify_partial` checks it; :func:`combine` verifies every partial it
is given and raises :class:`~mpcai.errors.MisbehaviourDetected` naming the
holders whose proofs fail (``misbehaving``).

**Side channels.**  ``powmod_sec`` for every exponentiation with a secret
exponent (``c^(2 Δ s_i)``, ``v^(Δ s_i)``, the proof's ``C^(4r)``,
``v^r``); the response ``r + e Δ s_i`` and the dealer's polynomial are plain
``mpz`` arithmetic, whose time depends on operand limb counts (see "Side
channels" in :mod:`mpcai.he.paillier`).  Verification and combination use
public values only (variable-time ``powmod``).

**Cost** (2048-bit n): a partial decryption is one exponentiation modulo
``n^2`` with a ~4100-bit exponent per ciphertext (no CRT: no holder knows
``p``, ``q``): 28 ms on a 2-core EPYC, ~7x an ordinary CRT decryption's
3.9 ms; the batched proof adds
two such exponentiations and two 128-bit multi-exponentiations over the
ciphertexts per call.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import gmpy2
import numpy as np
from gmpy2 import mpz

from mpcai.errors import (
    DuplicateShares,
    InvalidCiphertext,
    InvalidInput,
    InvalidType,
    KeyTooSmall,
    MisbehaviourDetected,
    NotEnoughShares,
)
from mpcai.validation import check_int

from ._bulk import _worker_count
from ._formats import MAX_COUNT, MAX_KEY_BITS, VERSION, Reader, big
from ._keys import DEFAULT_KEY_BITS, MIN_KEY_BITS, PrivateKey, PublicKey
from ._math import ONE, random_unit
from ._number import EncryptedNumber
from ._packing import PackedCiphertext, decode_slots

__all__ = [
    "KeyShare",
    "PartialDecryption",
    "ThresholdPublicKey",
    "combine",
    "deal_threshold_keys",
    "partial_decrypt",
    "verify_partial",
]

MAX_HOLDERS = 256
"""Largest number of key holders (Δ = l! enters every exponent: 256! has 1684 bits)."""

STAT_BITS = 128
"""Statistical hiding of the proof's response ``z = r + e Δ s_i``."""

CHALLENGE_BITS = 256
"""Fiat–Shamir challenge length (SHA-256)."""

BATCH_BITS = 128
"""Length of the random coefficients of the batched proof."""

_DOMAIN = b"mpcai/threshold-paillier/v1"


# --------------------------------------------------------------------------- safe primes

_SIEVE: list[int] = []


def _small_odd_primes(limit: int = 1 << 16) -> list[int]:
    if not _SIEVE:
        flags = np.ones(limit, dtype=bool)
        flags[:2] = False
        for i in range(2, math.isqrt(limit) + 1):
            if flags[i]:
                flags[i * i::i] = False
        _SIEVE[:] = [int(x) for x in np.nonzero(flags)[0][1:]]
    return _SIEVE


def random_safe_prime(bits: int, window: int = 1 << 14) -> mpz:
    """A random safe prime ``p = 2p' + 1`` (``p'`` prime) of exactly ``bits`` bits,
    its two top bits set (so the product of two is exactly ``2 bits`` bits).

    A random start ``p'_0`` from :mod:`secrets`; the ``window`` candidates
    ``p'_0 + 2k`` are sieved by the odd primes below 2^16 (both ``p'`` and
    ``2p' + 1``), then a base-2 Fermat test on ``p`` and 40 Miller–Rabin rounds on
    each.  1024-bit safe primes take ~1 s on a 2-core EPYC, 1536-bit ~4 s.
    """
    if bits < 8:
        raise InvalidInput("safe primes of fewer than 8 bits are not supported")
    primes = _small_odd_primes()
    while True:
        q0 = mpz(secrets.randbits(bits - 1)) | (mpz(3) << (bits - 3)) | 1
        ok = np.ones(window, dtype=bool)
        for r in primes:
            if r >= q0:
                break
            a = int(q0 % r)
            half = (r + 1) // 2  # 2^-1 mod r
            ok[(-a * half) % r::r] = False  # r | p'
            ok[(((r - 1) // 2 - a) * half) % r::r] = False  # r | 2p' + 1
        for k in np.nonzero(ok)[0].tolist():
            q = q0 + 2 * k
            p = 2 * q + 1
            if gmpy2.powmod(2, p - 1, p) != 1:
                continue
            if p.bit_length() == bits and gmpy2.is_prime(q, 40) and gmpy2.is_prime(p, 40):
                return p


# --------------------------------------------------------------------------- helpers


def _put(x: mpz, width: int) -> bytes:
    return int(x).to_bytes(width, "big")


def _multi_pow(bases: Sequence[mpz], exps: Sequence[int], mod: mpz) -> mpz:
    """``prod bases[j]^exps[j] mod mod`` for public exponents below 2^BATCH_BITS
    (Pippenger's bucket method with 8-bit windows: ~``16 (L + 512)`` multiplications
    for ``L`` bases, against ~``192 L`` for separate exponentiations)."""
    if len(bases) < 32:
        acc = ONE
        for b, e in zip(bases, exps, strict=True):
            acc = acc * gmpy2.powmod(b, e, mod) % mod
        return acc
    windows = BATCH_BITS // 8
    digits = [e.to_bytes(windows, "little") for e in exps]
    acc = ONE
    for w in range(windows - 1, -1, -1):
        if w != windows - 1:
            for _ in range(8):
                acc = acc * acc % mod
        buckets: list[mpz | None] = [None] * 256
        for b, d in zip(bases, digits, strict=True):
            k = d[w]
            if k:
                cur = buckets[k]
                buckets[k] = b if cur is None else cur * b % mod
        running: mpz | None = None
        total: mpz | None = None
        for k in range(255, 0, -1):
            bk = buckets[k]
            if bk is not None:
                running = bk if running is None else running * bk % mod
            if running is not None:
                total = running if total is None else total * running % mod
        if total is not None:
            acc = acc * total % mod
    return acc


def _lagrange_at_zero(indices: Sequence[int], delta: int) -> list[int]:
    """``Δ prod_{j != i} j / (j - i)`` for each ``i`` of ``indices`` (integers)."""
    out = []
    for i in indices:
        num, den = delta, 1
        for j in indices:
            if j != i:
                num *= j
                den *= j - i
        q, r = divmod(num, den)
        assert r == 0  # Δ = l! clears every denominator
        out.append(q)
    return out


# --------------------------------------------------------------------------- keys


class ThresholdPublicKey:
    """The public side of a threshold Paillier key: the ordinary
    :attr:`public_key` clients encrypt with (``n``, DJN ``h_s``), the
    :attr:`threshold` ``t`` of :attr:`n_holders` ``l``, and the proof-verification
    base ``v`` with one key ``v_i = v^(Δ s_i)`` per holder."""

    __slots__ = ("_inv_4delta2", "delta", "n_holders", "public_key", "threshold",
                 "verification_base", "verification_keys")

    def __init__(self, n: int, hs: int, threshold: int, n_holders: int,
                 verification_base: int, verification_keys: Sequence[int], *,
                 _allow_small: bool = False) -> None:
        pub = PublicKey(n, hs, _allow_small=_allow_small)
        if pub.hs is None:
            raise InvalidInput("a threshold public key needs the dealer's h_s")
        self.n_holders = check_int(n_holders, "n_holders", lo=1, hi=MAX_HOLDERS)
        self.threshold = check_int(threshold, "threshold", lo=1, hi=self.n_holders)
        n2 = pub.nsquare
        v = mpz(check_int(verification_base, "verification_base"))
        if not 1 < v < n2 or gmpy2.gcd(v, pub.n) != 1:
            raise InvalidInput("the verification base must be a unit of Z_{n^2} other than 1")
        vks = list(verification_keys)
        if len(vks) != self.n_holders:
            raise InvalidInput(f"{len(vks)} verification keys for {self.n_holders} holders")
        keys = []
        for i, vk in enumerate(vks, start=1):
            x = mpz(check_int(vk, f"verification key {i}"))
            if not 0 < x < n2 or gmpy2.gcd(x, pub.n) != 1:
                raise InvalidInput(f"verification key {i} is not a unit of Z_{{n^2}}")
            keys.append(x)
        self.delta = mpz(math.factorial(self.n_holders))
        four_d2 = 4 * self.delta * self.delta
        if gmpy2.gcd(four_d2, pub.n) != 1:
            raise InvalidInput("n has a factor below the number of holders")
        self.public_key = pub
        self.verification_base = v
        self.verification_keys: tuple[mpz, ...] = tuple(keys)
        self._inv_4delta2 = gmpy2.invert(four_d2, pub.n)

    @property
    def n(self) -> mpz:
        """The modulus."""
        return self.public_key.n

    @property
    def key_id(self) -> bytes:
        """The public key's id (first 8 bytes of SHA-256 of n)."""
        return self.public_key.key_id

    @property
    def response_bits(self) -> int:
        """Largest bit length of an honest proof response ``z = r + e Δ s_i``."""
        return self._r_bits() + 1

    def _r_bits(self) -> int:
        # s_i < nm < n^2 / 4; e < 2^CHALLENGE_BITS
        return (2 * self.public_key.n_bits + self.delta.bit_length() + CHALLENGE_BITS
                + STAT_BITS)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ThresholdPublicKey) and self.n == other.n
                and self.threshold == other.threshold
                and self.verification_base == other.verification_base
                and self.verification_keys == other.verification_keys)

    def __hash__(self) -> int:
        return hash(("paillier-threshold", int(self.n), self.threshold))

    def __repr__(self) -> str:
        return (f"ThresholdPublicKey({self.threshold} of {self.n_holders}, "
                f"{self.public_key.n_bits} bits, id={self.key_id.hex()})")

    def serialize(self) -> bytes:
        """``b"PTK" | version | t, l (u16) | n | h_s | v | v_1 .. v_l``."""
        pub = self.public_key
        assert pub.hs is not None
        return (b"PTK" + bytes([VERSION]) + struct.pack(">HH", self.threshold, self.n_holders)
                + big(pub.n) + big(pub.hs) + big(self.verification_base)
                + b"".join(big(x) for x in self.verification_keys))

    @classmethod
    def deserialize(cls, data: bytes) -> ThresholdPublicKey:
        """Inverse of :meth:`serialize`; refuses keys below 2048 bits and more than
        ``MAX_HOLDERS`` holders (checked before the keys are read)."""
        return cls._read(data, allow_small=False)

    @classmethod
    def _read(cls, data: bytes, allow_small: bool) -> ThresholdPublicKey:
        r = Reader(data, b"PTK")
        t, count = r.unpack(">HH")
        if not 1 <= t <= count <= MAX_HOLDERS:
            raise InvalidInput(f"threshold {t} of {count} holders is outside 1 <= t <= l <= "
                               f"{MAX_HOLDERS}")
        n, hs, v = r.big(), r.big(), r.big()
        vks = [r.big() for _ in range(count)]
        r.end()
        return cls(n, hs, t, count, v, vks, _allow_small=allow_small)


class KeyShare:
    """Holder :attr:`index`'s share ``s_i`` of the decryption key, with the
    :attr:`public_key` it belongs to.  Secret: keep it private."""

    __slots__ = ("_exp", "_share", "index", "public_key")

    def __init__(self, public_key: ThresholdPublicKey, index: int, share: int, *,
                 check: bool = True) -> None:
        if not isinstance(public_key, ThresholdPublicKey):
            raise InvalidType("public_key must be a ThresholdPublicKey")
        self.public_key = public_key
        self.index = check_int(index, "index", lo=1, hi=public_key.n_holders)
        s = mpz(check_int(share, "share"))
        if not 0 <= s < public_key.public_key.nsquare:
            raise InvalidInput("the key share is out of range")
        self._share = s
        self._exp = 2 * public_key.delta * s  # the exponent of a partial decryption
        if check:
            v = public_key.verification_base
            n2 = public_key.public_key.nsquare
            if gmpy2.powmod_sec(v, public_key.delta * s, n2) \
                    != public_key.verification_keys[self.index - 1]:
                raise InvalidInput(f"the key share does not match holder {self.index}'s "
                                   "verification key")

    def __repr__(self) -> str:
        return f"KeyShare(holder {self.index} of {self.public_key!r})"

    def serialize(self) -> bytes:
        """``b"PKS" | version | index (u16) | s_i | public key (u32 length | blob)``
        — secret: keep it private."""
        pk = self.public_key.serialize()
        return (b"PKS" + bytes([VERSION]) + struct.pack(">H", self.index) + big(self._share)
                + struct.pack(">I", len(pk)) + pk)

    @classmethod
    def deserialize(cls, data: bytes) -> KeyShare:
        """Inverse of :meth:`serialize`; checks the share against its verification key."""
        return cls._read(data, allow_small=False)

    @classmethod
    def _read(cls, data: bytes, allow_small: bool) -> KeyShare:
        r = Reader(data, b"PKS")
        (index,) = r.unpack(">H")
        s = r.big()
        (k,) = r.unpack(">I")
        pk = ThresholdPublicKey._read(r.take(k), allow_small)
        r.end()
        return cls(pk, index, s)


# --------------------------------------------------------------------------- partial decryptions


class PartialDecryption:
    """Holder :attr:`index`'s partial decryptions ``c^(2 Δ s_i)`` of :attr:`count`
    ciphertexts (named by their SHA-256 :attr:`digest`), with one proof
    (:attr:`challenge`, :attr:`response`) that the holder used its share."""

    __slots__ = ("challenge", "digest", "index", "public_key", "response", "values")

    def __init__(self, public_key: ThresholdPublicKey, index: int, values: Sequence[int],
                 digest: bytes, challenge: bytes, response: int) -> None:
        if not isinstance(public_key, ThresholdPublicKey):
            raise InvalidType("public_key must be a ThresholdPublicKey")
        self.public_key = public_key
        self.index = check_int(index, "index", lo=1, hi=public_key.n_holders)
        pub = public_key.public_key
        self.values = [pub._check_ciphertext(x) for x in values]
        if not 1 <= len(self.values) <= MAX_COUNT:
            raise InvalidInput(f"a partial decryption holds 1 to {MAX_COUNT} values")
        if not (isinstance(digest, bytes) and len(digest) == 32
                and isinstance(challenge, bytes) and len(challenge) == CHALLENGE_BITS // 8):
            raise InvalidInput("digest and challenge must be 32 bytes each")
        z = mpz(check_int(response, "response"))
        if not 0 <= z < ONE << public_key.response_bits:
            raise InvalidInput("the proof response is out of range")
        self.digest, self.challenge, self.response = digest, challenge, z

    @classmethod
    def _trusted(cls, tpk: ThresholdPublicKey, index: int, values: list[mpz], digest: bytes,
                 challenge: bytes, response: mpz) -> PartialDecryption:
        obj = cls.__new__(cls)
        obj.public_key, obj.index, obj.values = tpk, index, values
        obj.digest, obj.challenge, obj.response = digest, challenge, response
        return obj

    @property
    def count(self) -> int:
        """How many ciphertexts this partially decrypts."""
        return len(self.values)

    def __repr__(self) -> str:
        return f"PartialDecryption(holder {self.index}, {self.count} ciphertexts)"

    def serialize(self) -> bytes:
        """``b"PTD" | version | key id (8) | index (u16) | count (u32) | digest (32) |
        challenge (32) | response (u16 length | bytes) | values (fixed width)``."""
        pub = self.public_key.public_key
        w = pub.ciphertext_bytes
        return (b"PTD" + bytes([VERSION]) + pub.key_id
                + struct.pack(">HI", self.index, len(self.values)) + self.digest
                + self.challenge + big(self.response)
                + b"".join(_put(x, w) for x in self.values))

    @classmethod
    def deserialize(cls, public_key: ThresholdPublicKey, data: bytes) -> PartialDecryption:
        """Inverse of :meth:`serialize`: checks the key id, the holder index, the
        length against the count before reading any value, the response's length and
        every value (a unit of ``Z_{n^2}``)."""
        if not isinstance(public_key, ThresholdPublicKey):
            raise InvalidType("public_key must be a ThresholdPublicKey")
        pub = public_key.public_key
        r = Reader(data, b"PTD")
        if r.take(8) != pub.key_id:
            raise InvalidCiphertext("partial decryption made under another key")
        index, count = r.unpack(">HI")
        if not 1 <= index <= public_key.n_holders:
            raise InvalidInput(f"holder index {index} outside 1..{public_key.n_holders}")
        digest = r.take(32)
        challenge = r.take(CHALLENGE_BITS // 8)
        (k,) = r.unpack(">H")
        if k > (public_key.response_bits + 7) // 8:
            raise InvalidInput("the proof response is too long")
        z = mpz(int.from_bytes(r.take(k), "big"))
        w = pub.ciphertext_bytes
        if not 1 <= count <= MAX_COUNT or len(r.data) - r.pos != count * w:
            raise InvalidInput(f"a partial decryption of {count} values must have "
                               f"{count * w} bytes of values, not {len(r.data) - r.pos}")
        body = r.take(count * w)
        values = [int.from_bytes(body[j:j + w], "big") for j in range(0, count * w, w)]
        return cls(public_key, index, values, digest, challenge, z)


# --------------------------------------------------------------------------- the operations


def _ciphertexts(tpk: ThresholdPublicKey, encrypted: object) -> list[mpz]:
    if not isinstance(tpk, ThresholdPublicKey):
        raise InvalidType(f"expected a ThresholdPublicKey, not {type(tpk).__name__}")
    if isinstance(encrypted, EncryptedNumber):
        cs = [encrypted._c]
    elif isinstance(encrypted, PackedCiphertext):
        cs = encrypted._cs
    else:
        raise InvalidType("threshold decryption takes an EncryptedNumber or a "
                          f"PackedCiphertext, not {type(encrypted).__name__}")
    if encrypted.public_key != tpk.public_key:
        raise InvalidCiphertext("ciphertexts were made under another public key")
    return cs


def _digest(tpk: ThresholdPublicKey, cs: Sequence[mpz]) -> bytes:
    pub = tpk.public_key
    w = pub.ciphertext_bytes
    h = hashlib.sha256(_DOMAIN + b"/ciphertexts" + pub.key_id + struct.pack(">Q", len(cs)))
    for c in cs:
        h.update(_put(c, w))
    return h.digest()


def _batch(tpk: ThresholdPublicKey, index: int, digest: bytes, cs: Sequence[mpz],
           values: Sequence[mpz]) -> tuple[bytes, mpz, mpz]:
    """The transcript hash ``h0`` and the batched pair ``(C^4, C_i^2)``."""
    pub = tpk.public_key
    w, n2 = pub.ciphertext_bytes, pub.nsquare
    h = hashlib.sha256(_DOMAIN + b"/partials" + pub.key_id + struct.pack(">H", index) + digest)
    for x in values:
        h.update(_put(x, w))
    h0 = h.digest()
    if len(cs) == 1:
        big_c, big_ci = cs[0], values[0]
    else:
        stream = hashlib.shake_256(h0 + b"/rho").digest(len(cs) * BATCH_BITS // 8)
        step = BATCH_BITS // 8
        rho = [int.from_bytes(stream[j:j + step], "little")
               for j in range(0, len(stream), step)]
        big_c = _multi_pow(cs, rho, n2)
        big_ci = _multi_pow(values, rho, n2)
    return h0, gmpy2.powmod(big_c, 4, n2), big_ci * big_ci % n2


def _challenge(tpk: ThresholdPublicKey, index: int, h0: bytes, c4: mpz, ci2: mpz, a: mpz,
               b: mpz) -> bytes:
    w = tpk.public_key.ciphertext_bytes
    parts = (c4, ci2, tpk.verification_base, tpk.verification_keys[index - 1], a, b)
    return hashlib.sha256(_DOMAIN + b"/challenge" + h0
                          + b"".join(_put(x, w) for x in parts)).digest()


def _partials(share: KeyShare, cs: list[mpz]) -> list[mpz]:
    n2, e = share.public_key.public_key.nsquare, share._exp
    with gmpy2.context(allow_release_gil=True):
        return [gmpy2.powmod_sec(c, e, n2) for c in cs]


def partial_decrypt(share: KeyShare, encrypted: EncryptedNumber | PackedCiphertext, *,
                    workers: int = 1) -> PartialDecryption:
    """Holder ``share.index``'s partial decryption of ``encrypted`` (an
    :class:`~mpcai.he.paillier.EncryptedNumber` or a
    :class:`~mpcai.he.paillier.PackedCiphertext`), with its proof.

    ``workers`` threads share the exponentiations (0: every core; ``powmod_sec``
    releases the GIL).  A partial decryption reveals nothing about the plaintext
    on its own; any ``threshold`` of them reveal it to whoever holds them.
    """
    if not isinstance(share, KeyShare):
        raise InvalidType(f"expected a KeyShare, not {type(share).__name__}")
    tpk = share.public_key
    cs = _ciphertexts(tpk, encrypted)
    w = _worker_count(workers)
    if w <= 1 or len(cs) < 2:
        values = _partials(share, cs)
    else:
        size = -(-len(cs) // w)
        chunks = [cs[i:i + size] for i in range(0, len(cs), size)]
        with ThreadPoolExecutor(len(chunks)) as pool:
            values = [x for part in pool.map(lambda ch: _partials(share, ch), chunks)
                      for x in part]
    digest = _digest(tpk, cs)
    h0, c4, ci2 = _batch(tpk, share.index, digest, cs, values)
    n2 = tpk.public_key.nsquare
    r = mpz(secrets.randbits(tpk._r_bits()))
    a = gmpy2.powmod_sec(c4, r, n2)
    b = gmpy2.powmod_sec(tpk.verification_base, r, n2)
    e = _challenge(tpk, share.index, h0, c4, ci2, a, b)
    z = r + mpz(int.from_bytes(e, "big")) * tpk.delta * share._share
    return PartialDecryption._trusted(tpk, share.index, values, digest, e, z)


def _verify(tpk: ThresholdPublicKey, cs: Sequence[mpz], digest: bytes,
            partial: PartialDecryption) -> bool:
    if partial.public_key != tpk or len(partial.values) != len(cs) \
            or not hmac.compare_digest(partial.digest, digest):
        return False
    n2 = tpk.public_key.nsquare
    h0, c4, ci2 = _batch(tpk, partial.index, digest, cs, partial.values)
    e = mpz(int.from_bytes(partial.challenge, "big"))
    z = partial.response
    a = gmpy2.powmod(c4, z, n2) * gmpy2.powmod(ci2, -e, n2) % n2
    vi = tpk.verification_keys[partial.index - 1]
    b = gmpy2.powmod(tpk.verification_base, z, n2) * gmpy2.powmod(vi, -e, n2) % n2
    return hmac.compare_digest(_challenge(tpk, partial.index, h0, c4, ci2, a, b),
                               partial.challenge)


def verify_partial(public_key: ThresholdPublicKey, encrypted: EncryptedNumber | PackedCiphertext,
                   partial: PartialDecryption) -> bool:
    """Whether ``partial`` is holder ``partial.index``'s correct partial decryption of
    ``encrypted`` (its proof checks against that holder's verification key).

    False for a wrong value, a wrong proof, another holder's index, or a partial
    of other ciphertexts; a wrong key or type raises.
    """
    cs = _ciphertexts(public_key, encrypted)
    if not isinstance(partial, PartialDecryption):
        raise InvalidType(f"expected a PartialDecryption, not {type(partial).__name__}")
    return _verify(public_key, cs, _digest(public_key, cs), partial)


def combine(public_key: ThresholdPublicKey, encrypted: EncryptedNumber | PackedCiphertext,
            partials: Iterable[PartialDecryption], *, verify: bool = True
            ) -> int | float | np.ndarray:
    """The plaintext of ``encrypted`` from the partial decryptions of at least
    ``threshold`` distinct holders: an int or float for an
    :class:`~mpcai.he.paillier.EncryptedNumber` (as
    :meth:`PrivateKey.decrypt <mpcai.he.paillier.PrivateKey.decrypt>`), the
    ``float64`` slot sums for a :class:`~mpcai.he.paillier.PackedCiphertext` (as
    :func:`~mpcai.he.paillier.decrypt_packed`).

    With ``verify`` (the default) every partial given is verified first, and
    any that fails raises :class:`~mpcai.errors.MisbehaviourDetected` whose
    ``misbehaving`` lists those holders (to go on with the others, filter with
    :func:`verify_partial` and pass the rest).  Fewer than ``threshold``
    partials raise :class:`~mpcai.errors.NotEnoughShares`, two of one holder
    :class:`~mpcai.errors.DuplicateShares`.  The lowest ``threshold`` indices
    are combined.
    """
    cs = _ciphertexts(public_key, encrypted)
    tpk = public_key
    given = list(partials)
    for p in given:
        if not isinstance(p, PartialDecryption):
            raise InvalidType(f"expected PartialDecryption objects, not {type(p).__name__}")
    seen: set[int] = set()
    for p in given:
        if p.index in seen:
            raise DuplicateShares(f"two partial decryptions from holder {p.index}")
        seen.add(p.index)
    t = tpk.threshold
    if len(given) < t:
        raise NotEnoughShares(f"{len(given)} partial decryptions given, {t} needed "
                              f"({t} of {tpk.n_holders} holders)")
    digest = _digest(tpk, cs)
    if verify:
        bad = sorted(p.index for p in given if not _verify(tpk, cs, digest, p))
    else:  # cheap checks only
        bad = sorted(p.index for p in given if p.public_key != tpk
                     or len(p.values) != len(cs) or p.digest != digest)
    if bad:
        raise MisbehaviourDetected(f"partial decryptions of holders {bad} fail their proofs "
                                   "of correct decryption", bad)
    use = sorted(given, key=lambda p: p.index)[:t]
    lambdas = _lagrange_at_zero([p.index for p in use], int(tpk.delta))
    pub = tpk.public_key
    n, n2 = pub.n, pub.nsquare
    residues = []
    for j in range(len(cs)):
        num, den = ONE, ONE
        for p, lam in zip(use, lambdas, strict=True):
            if lam > 0:
                num = num * gmpy2.powmod(p.values[j], 2 * lam, n2) % n2
            elif lam < 0:
                den = den * gmpy2.powmod(p.values[j], -2 * lam, n2) % n2
        c = num * gmpy2.invert(den, n2) % n2
        if c % n != 1:
            raise MisbehaviourDetected("the partial decryptions do not combine to a "
                                       "decryption (unverified partials were wrong)",
                                       [p.index for p in use])
        residues.append((c - 1) // n * tpk._inv_4delta2 % n)
    if isinstance(encrypted, EncryptedNumber):
        m = pub._signed(residues[0])
        return m if encrypted.frac_bits == 0 else m / (1 << encrypted.frac_bits)
    return decode_slots(encrypted, residues)


# --------------------------------------------------------------------------- the dealer


def _deal(p: mpz, q: mpz, n_holders: int, threshold: int, allow_small: bool
          ) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    l_ = check_int(n_holders, "n_holders", lo=1, hi=MAX_HOLDERS)
    t = check_int(threshold, "threshold", lo=1, hi=l_)
    p, q = mpz(p), mpz(q)
    pp, qq = (p - 1) // 2, (q - 1) // 2
    if p == q or not all(gmpy2.is_prime(x, 40) for x in (p, q, pp, qq)):
        raise InvalidInput("p and q must be distinct safe primes (p = 2p' + 1, p' prime)")
    if min(pp, qq) <= l_:
        raise InvalidInput("the primes must exceed the number of holders")
    # the dealer makes h_s as a key owner does (PrivateKey draws it from p and q)
    pub = PrivateKey(p, q, _allow_small=allow_small).public_key
    n, n2 = pub.n, pub.nsquare
    m = pp * qq
    nm = n * m
    d = m * gmpy2.invert(m, n) % nm  # d = 0 mod m, d = 1 mod n
    coeffs = [d] + [mpz(secrets.randbelow(int(nm))) for _ in range(t - 1)]
    shares = []
    for i in range(1, l_ + 1):
        acc = mpz(0)
        for a in reversed(coeffs):
            acc = (acc * i + a) % nm
        shares.append(acc)
    r = random_unit(n2)
    v = gmpy2.powmod_sec(r, 2, n2)
    delta = mpz(math.factorial(l_))
    vks = [gmpy2.powmod_sec(v, delta * s, n2) for s in shares]
    assert pub.hs is not None
    tpk = ThresholdPublicKey(n, pub.hs, t, l_, v, vks, _allow_small=allow_small)
    return tpk, [KeyShare(tpk, i, s, check=False) for i, s in enumerate(shares, start=1)]


def deal_threshold_keys(n_holders: int, threshold: int, key_bits: int = DEFAULT_KEY_BITS
                        ) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    """A trusted dealer's threshold key: the public key and one :class:`KeyShare` per
    holder (``shares[i - 1]`` is holder ``i``'s), any ``threshold`` of ``n_holders``
    decrypting.

    ``key_bits`` (>= 2048, even; default 3072): the modulus, a product of two
    safe primes of ``key_bits / 2`` bits (2048 bits: ~2 s, 3072: ~8 s on a
    2-core EPYC).  The dealer knows the factorisation and every share: run it
    where its trust is acceptable, give each holder its share privately, and
    let the process end.
    """
    bits = check_int(key_bits, "key_bits")
    if bits < MIN_KEY_BITS:
        raise KeyTooSmall(f"Paillier modulus of {bits} bits refused; at least {MIN_KEY_BITS}")
    if bits % 2 or bits > MAX_KEY_BITS:
        raise InvalidInput(f"key_bits must be even and at most {MAX_KEY_BITS}, got {bits}")
    check_int(n_holders, "n_holders", lo=1, hi=MAX_HOLDERS)
    check_int(threshold, "threshold", lo=1, hi=n_holders)
    while True:
        p, q = random_safe_prime(bits // 2), random_safe_prime(bits // 2)
        if abs(p - q).bit_length() > bits // 2 - 100:
            return _deal(p, q, n_holders, threshold, allow_small=False)


def _unsafe_threshold_keys_for_tests(n_holders: int, threshold: int, *, p: int | None = None,
                                     q: int | None = None, n_bits: int | None = None
                                     ) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    """UNSAFE, tests only: a threshold key of any size (fresh safe primes of
    ``n_bits // 2`` bits) or from given (e.g. published) safe primes ``p``, ``q``."""
    if p is None or q is None:
        assert n_bits is not None
        p = random_safe_prime(n_bits // 2)
        q = random_safe_prime(n_bits // 2)
        while q == p:
            q = random_safe_prime(n_bits // 2)
    return _deal(mpz(p), mpz(q), n_holders, threshold, allow_small=True)
