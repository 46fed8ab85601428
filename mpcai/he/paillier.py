"""Paillier encryption with DJN randomness, CRT, packing and ``phe`` interop.

Paillier (Eurocrypt 1999) with ``g = n + 1``: ``Enc(m) = (1 + m n) * rho
mod n^2`` where ``rho`` is a random n-th residue.  Plaintexts are signed
integers ``|m| <= n // 3 - 1`` stored as ``m mod n`` (the convention of
python-paillier, ``phe``, so ciphertexts move between the two unchanged);
reals are fixed point, ``round(x * 2^f)`` with ``f`` fractional bits.

**Keys.**  ``n = p q`` with ``p``, ``q`` random primes of equal size from
:mod:`secrets`; n of at least :data:`MIN_KEY_BITS` (2048) bits, default
:data:`DEFAULT_KEY_BITS` (3072).  Smaller keys raise :class:`KeyTooSmall`
everywhere (generation, import, deserialisation); the only way around it is
the test hook :func:`_unsafe_keypair_for_tests`.  Decryption uses CRT
(two exponentiations modulo ``p^2`` and ``q^2``, with ``powmod_sec``).

**Randomness** (Damgård–Jurik–Nielsen, "A generalization of Paillier's
public-key system", PKC 2001 / IJIS 2010, section 4.2): the key owner picks
``x`` uniform in Z_n^*, sets ``h = -x^2 mod n`` and publishes
``h_s = h^n mod n^2``; an encryption uses ``rho = h_s^a mod n^2`` with ``a``
uniform in ``[0, 2^L)``.  Because ``h_s`` is fixed, ``h_s^a`` is a
fixed-base exponentiation: a table of ``h_s^(d 256^i)`` turns it into at
most ``L / 8`` multiplications (vs ~``1.2 k`` for ``r^n`` with a fresh
``r``).  Exponent length ``L`` (``randomness=``):

* ``"conservative"`` (default): ``L = ceil(k / 2)`` for a k-bit n, the
  length DJN propose.  Security: ``h_s^a`` is indistinguishable from a
  random n-th residue if the DCR assumption holds and short (k/2-bit)
  exponents in the group of n-th residues are as hard as full ones (the
  "short exponent" assumption DJN make; no attack better than factoring n
  is known).
* ``"short"``: ``L = 2 kappa`` with ``kappa`` = 112 for k < 3072 and 128 for
  k >= 3072 (NIST SP 800-57 strength of the modulus).  Faster (4-6x); rests
  on the stronger assumption that ``2 kappa``-bit exponents resist the
  ``2^kappa`` generic (kangaroo / baby-step giant-step) attacks and that
  nothing better exists in this group.  Use only where that is acceptable.

Encryption never uses the private key: :meth:`PrivateKey.encrypt` is the
public key's (CRT encryption modulo ``p^2`` and ``q^2`` with fixed-base
tables was dropped, see "Side channels").

A public key imported without ``h_s`` (a key made by ``phe`` has none; its
JWK format has no field for it) falls back to ``rho = r^n mod n^2`` with
``r`` uniform in Z_n^* — phe's own method, correct and secure but 10-15x
slower.  ``h_s`` is never derived by anyone but the key owner: a
:class:`PrivateKey` imported from phe draws a fresh ``h_s``, and our JWK
export carries it in an extra member ``"mpcai_hs"`` that phe ignores.
``h_s`` is trusted from the key owner: nobody else can check that it is an
n-th residue, so re-randomisation hides a ciphertext's history from the
key owner only if the owner made ``h_s`` honestly.

**Ciphertexts** (:class:`EncryptedNumber`, :class:`EncryptedArray`,
:class:`PackedCiphertext`) support ``+``, ``-``, unary ``-`` and ``*`` by a
plaintext int or float (fixed point; fractional bits add up).  Any
ciphertext from outside (constructor, ``deserialize``) is checked:
``0 < c < n^2`` and ``gcd(c, n) = 1``, else :class:`InvalidCiphertext`.
Homomorphic results are *not* fresh: ``serialize()`` and ``ciphertext()``
re-randomise (multiply by a fresh ``h_s^a``) any ciphertext that is not
fresh from encryption or re-randomisation, in place, before it is exported;
pass ``rerandomize=False`` only for a ciphertext that stays with its owner.
Out-of-range plaintexts raise :class:`~mpcai.errors.EncodingOverflow` at
encryption; a decryption that lands in the overflow band between
``n // 3`` and ``n - n // 3`` raises too.

**Packing** (:class:`PackingSpec`, :func:`encrypt_packed`): many fixed-point
values per plaintext.  Values with ``|round(x 2^f)| <= 2^(int_bits + f) - 1``
are stored in offset form ``v + 2^(int_bits + f)`` (non-negative), in slots
of ``int_bits + f + 1 + ceil(log2 K)`` bits rounded up to whole bytes
(at most 64), so the sum of up to ``K`` packed vectors never carries into
the next slot.  ``floor((k - 1) / slot_bits)`` slots fit in one plaintext.
A packed ciphertext counts its summands; adding past ``K`` raises
:class:`SlotOverflow`, as do values outside the range at encryption.

**Bulk and multi-core.**  :func:`encrypt_array`, :func:`decrypt_array`,
:func:`encrypt_packed`, :func:`decrypt_packed` take ``workers`` (default 1;
0 means every core).  Decryption with ``workers > 1`` runs in threads:
gmpy2 releases the GIL inside ``powmod_sec`` when its context allows it
(set only inside those threads).  gmpy2 keeps the GIL for the
multiplications of table-based encryption, so encryption with
``workers > 1`` uses a ``spawn`` process pool started for the call; each
worker rebuilds the key's table once (0.2 s at 2048 bits, 0.8 s at 3072),
so it pays off only for thousands of ciphertexts.  Only the public key
reaches the workers (over the pool's local pipe), also when a
:class:`PrivateKey` is passed.  As with any ``spawn`` pool, the main
module must be importable (``if __name__ == "__main__":``).

**Side channels.**  Constant time here means GMP's ``mpz_powm_sec``
(``gmpy2.powmod_sec``): time and memory access pattern depend only on the
limb counts of base, exponent and modulus.  It is used for every
exponentiation, inversion and reduction with a secret exponent or modulus:
decryption (``c^(p-1) mod p^2``, ``c^(q-1) mod q^2`` with ``c`` unreduced,
the products with ``h_p``, ``h_q`` reduced modulo ``p``, ``q``, the Garner
step modulo ``q``; single, array, packed and threaded bulk decryption
alike), and key set-up (``h_p``, ``h_q``, ``p^-1 mod q``,
``(p^2)^-1 mod q^2`` as Fermat/Euler powers instead of ``gmpy2.invert``;
``h_s = h^n`` modulo ``p^2``, ``q^2``); ``L(x) = (x - 1) / p`` is a 2-adic
exact division (a multiplication and a mask, no division by ``p``).  The
``r^n mod n^2`` of keys without ``h_s`` uses it too (secret base).  *Not*
constant time: (1) DJN encryption and re-randomisation: the fixed-base
table is indexed by the digits of the secret exponent ``a`` (whoever
learns ``a`` learns the plaintext), so an observer of cache or memory
accesses can learn it; the number and operand sizes of its
multiplications are fixed (zero digits are not skipped), and its modulus
``n^2`` is public.  (2) Ordinary ``mpz`` arithmetic on secret values:
multiplication, addition, subtraction and masks between the steps above,
and in encryption the reductions modulo the public ``n^2``
(``mpz_tdiv_r``, whose quotient corrections depend on the values).  Their
time depends on operand limb counts (a value whose top limb is zero is
shorter, probability ~2^-64) and, for subtraction, on a magnitude
comparison; GMP does not document them as side-channel silent.
(3) Checking and making keys: ``is_prime``, ``next_prime`` and ``gcd`` on
``p``, ``q`` at generation, import and deserialisation; ``random_unit``'s
gcd and rejection loop.  (4) Python
itself: object allocation, big-int conversions for serialisation, and
branches on plaintexts (range checks, the sign of a decrypted value).
(5) Homomorphic operations treat their scalars as public: ``c^k`` is
gmpy2's variable-time ``powmod`` and the sign of ``k`` picks a branch.
Cost (``mpcai bench he``, 2-core AMD EPYC): decryption runs at 0.7-0.85x
the speed of the previous variable-time CRT code, ``r^n`` 1.25-1.35x slower.

**Formats.**  ``serialize()``/``deserialize()`` give a compact binary form
(magic, version, key id, fixed-width big-endian integers; every length
checked); :meth:`PublicKey.to_jwk` / :meth:`PrivateKey.to_jwk` and
``from_jwk`` read and write phe's JWK JSON (``"kty": "DAJ"``,
``"alg": "PAI-GN1"``), and :meth:`EncryptedNumber.to_phe_json` phe's
``{"v": ..., "e": ...}`` ciphertexts (base-16 exponent ``e = -f / 4``).
phe's key objects are accepted wherever a key is passed (bulk functions,
ciphertext constructors, ``deserialize``, ``from_phe_json``) and converted by
:meth:`PublicKey.from_phe` / :meth:`PrivateKey.from_phe`; a
``phe.EncryptedNumber`` given to :meth:`PrivateKey.decrypt` by
:meth:`EncryptedNumber.from_phe`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
import struct
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Literal

import gmpy2
import numpy as np
from gmpy2 import mpz

from mpcai.encoding import DEFAULT_FRAC_BITS
from mpcai.errors import EncodingOverflow, InvalidInput, InvalidType

from ._paillier_math import (
    ONE,
    WINDOW_BITS,
    FixedBase,
    crt_pair,
    inverse_mod_2k,
    random_prime,
    random_unit,
    sec_exact_quotient,
    sec_inverse_mod_prime,
    sec_inverse_mod_prime_square,
    sec_mod,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "EncryptedArray",
    "EncryptedNumber",
    "InvalidCiphertext",
    "KeyTooSmall",
    "PackedCiphertext",
    "PackingSpec",
    "PrivateKey",
    "PublicKey",
    "SlotOverflow",
    "decrypt_array",
    "decrypt_packed",
    "encrypt_array",
    "encrypt_packed",
    "generate_keypair",
]

MIN_KEY_BITS: int = 2048
"""Smallest modulus accepted anywhere (except the unsafe test hook)."""

DEFAULT_KEY_BITS: int = 3072
"""Modulus size of :func:`generate_keypair` by default (128-bit strength)."""

_MAX_KEY_BITS = 16384
_MAX_COUNT = 1 << 28
_VERSION = 1

Randomness = Literal["conservative", "short"]


class KeyTooSmall(InvalidInput):
    """A Paillier modulus below :data:`MIN_KEY_BITS` bits was given or requested."""


class InvalidCiphertext(InvalidInput):
    """A ciphertext is not a unit of Z_{n^2} (0 < c < n^2, gcd(c, n) = 1) or has
    the wrong key, length or format."""


class SlotOverflow(EncodingOverflow):
    """A packed value is outside its slot's range, or a packed sum exceeds its
    declared number of summands K; nothing was written into a neighbouring slot."""


# --------------------------------------------------------------------------- helpers


def _int_arg(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, type(ONE))):
        raise InvalidType(f"{name} must be an int, not {type(value).__name__}")
    return int(value)


def _b64(x: int) -> str:
    raw = x.to_bytes((x.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(s: object, name: str) -> mpz:
    if not isinstance(s, str) or len(s) > 4 * _MAX_KEY_BITS // 6 + 4:
        raise InvalidInput(f"JWK member {name!r} must be a base64url string of bounded length")
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except ValueError as exc:
        raise InvalidInput(f"JWK member {name!r} is not base64url") from exc
    return mpz(int.from_bytes(raw, "big"))


def _nbytes(x: int) -> int:
    return (int(x).bit_length() + 7) // 8


def _key_bits_check(n: mpz, allow_small: bool) -> None:
    bits = n.bit_length()
    if bits > _MAX_KEY_BITS:
        raise InvalidInput(f"modulus of {bits} bits exceeds the {_MAX_KEY_BITS}-bit limit")
    if bits < MIN_KEY_BITS and not allow_small:
        raise KeyTooSmall(f"Paillier modulus of {bits} bits refused; at least {MIN_KEY_BITS}")


class _Reader:
    """Bounds-checked reader over a serialised blob."""

    def __init__(self, data: object, magic: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidType(f"expected bytes, not {type(data).__name__}")
        self.data = bytes(data)
        self.pos = 0
        if self.take(len(magic)) != magic:
            raise InvalidInput(f"not a serialised {magic.decode()} object (bad magic)")
        if self.unpack(">B")[0] != _VERSION:
            raise InvalidInput("unsupported serialisation version")

    def take(self, k: int) -> bytes:
        if k < 0 or self.pos + k > len(self.data):
            raise InvalidInput("serialised data is truncated")
        out = self.data[self.pos:self.pos + k]
        self.pos += k
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def big(self) -> mpz:
        (k,) = self.unpack(">H")
        if k > _MAX_KEY_BITS // 4:
            raise InvalidInput(f"integer of {k} bytes exceeds the limit")
        return mpz(int.from_bytes(self.take(k), "big"))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise InvalidInput(f"{len(self.data) - self.pos} trailing bytes in serialised data")


def _big(x: int) -> bytes:
    k = _nbytes(x)
    return struct.pack(">H", k) + int(x).to_bytes(k, "big")


# --------------------------------------------------------------------------- keys


class PublicKey:
    """A Paillier public key: modulus ``n`` and, when the owner published it,
    the DJN base ``h_s`` (``None`` for keys imported from phe)."""

    __slots__ = ("_table", "hs", "kappa", "max_int", "n", "n_bits", "nsquare")

    def __init__(self, n: int, hs: int | None = None, *, _allow_small: bool = False) -> None:
        n_m = mpz(_int_arg(n, "n"))
        _key_bits_check(n_m, _allow_small)
        if n_m % 2 == 0 or gmpy2.is_square(n_m):
            raise InvalidInput("n must be an odd product of two distinct primes")
        self.n = n_m
        self.nsquare = n_m * n_m
        self.n_bits = n_m.bit_length()
        self.max_int = n_m // 3 - 1
        self.kappa = 128 if self.n_bits >= 3072 else 112
        if hs is not None:
            hs_m = mpz(_int_arg(hs, "hs"))
            if not 0 < hs_m < self.nsquare or gmpy2.gcd(hs_m, n_m) != 1:
                raise InvalidInput("h_s must be a unit modulo n^2")
            self.hs: mpz | None = hs_m
        else:
            self.hs = None
        self._table: FixedBase | None = None

    # ---- identity
    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.n == other.n

    def __hash__(self) -> int:
        return hash(("paillier", int(self.n)))

    def __repr__(self) -> str:
        return f"PublicKey({self.n_bits} bits, id={self.key_id.hex()}, djn={self.hs is not None})"

    @property
    def key_id(self) -> bytes:
        """First 8 bytes of SHA-256 of n (big-endian); binds ciphertexts to a key."""
        return hashlib.sha256(int(self.n).to_bytes(_nbytes(self.n), "big")).digest()[:8]

    @property
    def ciphertext_bytes(self) -> int:
        """Width of one serialised ciphertext (bytes of n^2)."""
        return 2 * _nbytes(self.n)

    def exponent_bits(self, randomness: Randomness = "conservative") -> int:
        """Bit length ``L`` of the DJN exponent for this key (see module docstring)."""
        if randomness == "conservative":
            return -(-self.n_bits // 2)
        if randomness == "short":
            return 2 * self.kappa
        raise InvalidInput(f"randomness must be 'conservative' or 'short', not {randomness!r}")

    # ---- randomness
    def precompute(self, window_bits: int = WINDOW_BITS) -> None:
        """Build (or rebuild) the fixed-base table for ``h_s`` with ``window_bits``-bit digits.

        Encryption does this lazily with 8-bit windows (2048-bit key: 0.2 s,
        17 MB; 3072-bit: 0.6 s, 39 MB).  Wider windows trade memory for speed:
        ``2^w * ceil(L / w)`` residues of ``2 k`` bits, ``ceil(L / w) - 1``
        multiplications per encryption (window 10 at 2048 bits: 57 MB, ~20%
        faster).  No-op for keys without ``h_s``.
        """
        w = _int_arg(window_bits, "window_bits")
        if not 1 <= w <= 12:
            raise InvalidInput(f"window_bits must be in [1, 12], got {w}")
        if self.hs is not None:
            self._table = FixedBase(self.hs, self.nsquare, self.exponent_bits("conservative"), w)

    def _fixed_base(self) -> FixedBase:
        if self._table is None:
            self.precompute()
        assert self._table is not None
        return self._table

    def _obfuscator(self, randomness: Randomness = "conservative") -> mpz:
        """A fresh random n-th residue ``rho`` modulo n^2."""
        bits = self.exponent_bits(randomness)
        if self.hs is None:  # the base r is secret: constant-time powmod
            return gmpy2.powmod_sec(random_unit(self.n), self.n, self.nsquare)
        return self._fixed_base().pow(secrets.randbits(bits), bits)

    # ---- encryption
    def _encode(self, m: int) -> mpz:
        if not -self.max_int <= m <= self.max_int:
            raise EncodingOverflow(
                f"plaintext of {abs(m).bit_length()} bits outside |m| <= n // 3 - 1 "
                f"({self.max_int.bit_length()} bits)"
            )
        return mpz(m) % self.n

    def _raw_encrypt(self, residue: mpz, randomness: Randomness) -> mpz:
        nude = (1 + residue * self.n) % self.nsquare
        return nude * self._obfuscator(randomness) % self.nsquare

    def encrypt(self, value: int | float, *, frac_bits: int | None = None,
                randomness: Randomness = "conservative") -> EncryptedNumber:
        """Encrypt an int (exact; ``frac_bits`` 0 unless given) or a float
        (fixed point with ``frac_bits``, default 16)."""
        f, m = _encode_scalar(value, frac_bits)
        return EncryptedNumber._trusted(self, self._raw_encrypt(self._encode(m), randomness), f)

    def _encrypt_with_r(self, m: int, r: int) -> mpz:
        """phe's ``raw_encrypt(m, r)`` (``(1 + m n) r^n mod n^2``): known-answer tests only."""
        nude = (1 + self._encode(m) * self.n) % self.nsquare
        return nude * gmpy2.powmod(mpz(r), self.n, self.nsquare) % self.nsquare

    def _check_ciphertext(self, c: object) -> mpz:
        cm = mpz(_int_arg(c, "ciphertext"))
        if not 0 < cm < self.nsquare:
            raise InvalidCiphertext("ciphertext outside 0 < c < n^2")
        if gmpy2.gcd(cm, self.n) != 1:
            raise InvalidCiphertext("ciphertext shares a factor with n")
        return cm

    # ---- formats
    def serialize(self) -> bytes:
        """Compact binary form: ``b"PPK" | version | flags | n | [h_s]``."""
        flags = 1 if self.hs is not None else 0
        out = b"PPK" + bytes([_VERSION, flags]) + _big(self.n)
        return out + (_big(self.hs) if self.hs is not None else b"")

    @classmethod
    def deserialize(cls, data: bytes) -> PublicKey:
        """Inverse of :meth:`serialize`; checks sizes and refuses keys < 2048 bits."""
        r = _Reader(data, b"PPK")
        (flags,) = r.unpack(">B")
        if flags not in (0, 1):
            raise InvalidInput("unknown public-key flags")
        n = r.big()
        hs = r.big() if flags else None
        r.end()
        return cls(n, hs)

    def to_jwk(self, kid: str | None = None) -> dict[str, Any]:
        """phe's JWK public key (``alg "PAI-GN1"``) plus ``"mpcai_hs"`` when h_s is known."""
        jwk: dict[str, Any] = {"kty": "DAJ", "alg": "PAI-GN1", "key_ops": ["encrypt"],
                               "n": _b64(int(self.n)),
                               "kid": kid or f"mpcai Paillier public key {self.key_id.hex()}"}
        if self.hs is not None:
            jwk["mpcai_hs"] = _b64(int(self.hs))
        return jwk

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any] | str) -> PublicKey:
        """Read phe's JWK public key (a dict or its JSON text)."""
        obj = _json_obj(jwk)
        if obj.get("kty") != "DAJ" or obj.get("alg") != "PAI-GN1" or "n" not in obj:
            raise InvalidInput("not a Paillier JWK public key (kty DAJ, alg PAI-GN1, n)")
        hs = _unb64(obj["mpcai_hs"], "mpcai_hs") if "mpcai_hs" in obj else None
        return cls(_unb64(obj["n"], "n"), hs)

    @classmethod
    def from_phe(cls, key: Any) -> PublicKey:
        """Convert a ``phe.PaillierPublicKey`` (no ``h_s``: encryption uses phe's
        ``r^n`` randomness).  The bulk functions and ciphertext constructors accept
        phe public keys directly and call this."""
        import phe

        if not isinstance(key, phe.PaillierPublicKey):
            raise InvalidType(f"expected a phe.PaillierPublicKey, not {type(key).__name__}")
        if key.g != key.n + 1:
            raise InvalidInput("phe public key with g != n + 1 is not supported")
        return cls(key.n)


def _json_obj(jwk: object) -> dict[str, Any]:
    if isinstance(jwk, str):
        if len(jwk) > 64 * 1024:
            raise InvalidInput("JWK text too long")
        try:
            jwk = json.loads(jwk)
        except json.JSONDecodeError as exc:
            raise InvalidInput("JWK is not valid JSON") from exc
    if not isinstance(jwk, dict):
        raise InvalidType("a JWK must be a dict or JSON text of an object")
    return jwk


class PrivateKey:
    """A Paillier private key (``p < q``) with CRT precomputation; holds its
    :attr:`public_key` (whose ``h_s`` it generated).

    Every exponentiation, inversion and reduction modulo ``p``, ``q``,
    ``p^2``, ``q^2`` uses ``gmpy2.powmod_sec`` (see "Side channels" in the
    module docstring); checking ``p`` and ``q`` (primality, gcd) does not.
    """

    __slots__ = ("_p_div", "_q_div", "hp", "hq", "p", "p2_inv", "p_inv", "psquare",
                 "public_key", "q", "qsquare")

    def __init__(self, p: int, q: int, hs: int | None = None, *,
                 _allow_small: bool = False) -> None:
        p_m, q_m = mpz(_int_arg(p, "p")), mpz(_int_arg(q, "q"))
        if q_m < p_m:
            p_m, q_m = q_m, p_m
        if p_m == q_m or p_m < 3:
            raise InvalidInput("p and q must be distinct odd primes")
        n = p_m * q_m
        _key_bits_check(n, _allow_small)
        if not (gmpy2.is_prime(p_m, 30) and gmpy2.is_prime(q_m, 30)):
            raise InvalidInput("p and q must be primes")
        if not _allow_small and p_m.bit_length() != q_m.bit_length():
            raise InvalidInput("p and q must have the same bit length")
        if gmpy2.gcd(n, (p_m - 1) * (q_m - 1)) != 1:
            raise InvalidInput("gcd(n, (p - 1)(q - 1)) must be 1")
        self.p, self.q = p_m, q_m
        self.psquare, self.qsquare = p_m * p_m, q_m * q_m
        self.p_inv = sec_inverse_mod_prime(p_m, q_m)
        self.p2_inv = sec_inverse_mod_prime_square(self.psquare, q_m)
        # exact division by p (q) of x - 1 for x = 1 mod p (q), without dividing by a secret
        self._p_div = (inverse_mod_2k(p_m, p_m.bit_length()), (ONE << p_m.bit_length()) - 1)
        self._q_div = (inverse_mod_2k(q_m, q_m.bit_length()), (ONE << q_m.bit_length()) - 1)
        # h = L((n+1)^(p-1) mod p^2)^-1 mod p (Paillier section 7), likewise for q
        self.hp = sec_inverse_mod_prime(
            self._lp(gmpy2.powmod_sec(n + 1, p_m - 1, self.psquare)), p_m)
        self.hq = sec_inverse_mod_prime(
            self._lq(gmpy2.powmod_sec(n + 1, q_m - 1, self.qsquare)), q_m)
        if hs is None:
            x = random_unit(n)
            h = n - gmpy2.powmod_sec(x, 2, n)  # -x^2 mod n (x is a unit, so x^2 != 0)
            hs = self._crt_n2(gmpy2.powmod_sec(h, n, self.psquare),
                              gmpy2.powmod_sec(h, n, self.qsquare))
        else:
            hs = mpz(_int_arg(hs, "hs"))
            # the owner can check what nobody else can: h_s is an n-th residue (encrypts 0)
            if not 0 < hs < n * n or gmpy2.gcd(hs, n) != 1 or self._decrypt_residue(hs) != 0:
                raise InvalidInput("h_s is not an n-th residue modulo n^2")
        self.public_key = PublicKey(n, hs, _allow_small=_allow_small)

    def __repr__(self) -> str:
        return f"PrivateKey(for {self.public_key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and (self.p, self.q) == (other.p, other.q)

    def __hash__(self) -> int:
        return hash(("paillier-sk", int(self.p), int(self.q)))

    def _crt_n2(self, xp: mpz, xq: mpz) -> mpz:
        return crt_pair(xp, xq, self.psquare, self.qsquare, self.p2_inv)

    def _lp(self, x: mpz) -> mpz:
        """Paillier's ``L(x) = (x - 1) / p`` for ``x = 1 mod p``, ``x < p^2``."""
        return sec_exact_quotient(x - 1, *self._p_div)

    def _lq(self, x: mpz) -> mpz:
        return sec_exact_quotient(x - 1, *self._q_div)

    # ---- encryption: the public key's, so that p and q are not involved
    def precompute(self, window_bits: int = WINDOW_BITS) -> None:
        """Same as :meth:`PublicKey.precompute` on :attr:`public_key`."""
        self.public_key.precompute(window_bits)

    def _raw_encrypt(self, residue: mpz, randomness: Randomness) -> mpz:
        return self.public_key._raw_encrypt(residue, randomness)

    def encrypt(self, value: int | float, *, frac_bits: int | None = None,
                randomness: Randomness = "conservative") -> EncryptedNumber:
        """Same as :meth:`PublicKey.encrypt` on :attr:`public_key`.

        Encryption does not use CRT modulo ``p^2`` and ``q^2``: fixed-base
        tables keyed by the secret moduli mean ordinary (variable-time) ``mpz``
        reductions modulo ``p^2``, ``q^2`` for every encryption.  They were
        1.2-1.7x faster than this; CRT with ``powmod_sec`` would be ~6x slower
        (``mpcai bench he`` measures both).
        """
        return self.public_key.encrypt(value, frac_bits=frac_bits, randomness=randomness)

    # ---- decryption
    def decrypt_raw(self, ciphertext: int) -> mpz:
        """The plaintext residue in ``[0, n)`` of a raw ciphertext integer (CRT)."""
        c = self.public_key._check_ciphertext(ciphertext)
        return self._decrypt_residue(c)

    def _decrypt_residue(self, c: mpz) -> mpz:
        """``m mod n`` of a unit ``c`` of Z_{n^2}: ``m_p = L(c^(p-1) mod p^2) h_p mod p``,
        likewise for q, joined by Garner; every step on a secret is ``powmod_sec``
        (``c`` enters unreduced: GMP reduces it modulo ``p^2`` side-channel silently)."""
        p, q = self.p, self.q
        mp = sec_mod(self._lp(gmpy2.powmod_sec(c, p - 1, self.psquare)) * self.hp, p)
        mq = sec_mod(self._lq(gmpy2.powmod_sec(c, q - 1, self.qsquare)) * self.hq, q)
        return crt_pair(mp, mq, p, q, self.p_inv)

    def _decrypt_many(self, cts: list[mpz]) -> list[mpz]:
        """Like :meth:`_decrypt_residue` over a list, with the GIL released inside
        GMP (``powmod_sec`` releases it when the thread's context allows it)."""
        with gmpy2.context(allow_release_gil=True):
            return [self._decrypt_residue(c) for c in cts]

    def _signed(self, residue: mpz) -> int:
        pub = self.public_key
        if residue <= pub.max_int:
            return int(residue)
        if residue >= pub.n - pub.max_int:
            return int(residue - pub.n)
        raise EncodingOverflow("decrypted value is in the overflow band (|m| > n // 3 - 1)")

    def decrypt(self, encrypted: EncryptedNumber) -> int | float:
        """An int when ``frac_bits == 0``, else the float ``m / 2^frac_bits``.  A
        ``phe.EncryptedNumber`` is converted (:meth:`EncryptedNumber.from_phe`)."""
        if not isinstance(encrypted, EncryptedNumber):
            import phe

            if not isinstance(encrypted, phe.EncryptedNumber):
                raise InvalidType(f"expected an EncryptedNumber, not {type(encrypted).__name__}")
            encrypted = EncryptedNumber.from_phe(encrypted)
        if encrypted.public_key != self.public_key:
            raise InvalidCiphertext("ciphertext was made under another public key")
        m = self._signed(self._decrypt_residue(encrypted._c))
        return m if encrypted.frac_bits == 0 else m / (1 << encrypted.frac_bits)

    # ---- formats
    def serialize(self) -> bytes:
        """Compact binary form ``b"PSK" | version | p | q | h_s`` — secret: keep it private."""
        return b"PSK" + bytes([_VERSION]) + _big(self.p) + _big(self.q) + _big(self.public_key.hs)

    @classmethod
    def deserialize(cls, data: bytes) -> PrivateKey:
        """Inverse of :meth:`serialize`; refuses keys < 2048 bits."""
        r = _Reader(data, b"PSK")
        p, q, hs = r.big(), r.big(), r.big()
        r.end()
        return cls(p, q, hs)

    def to_jwk(self, kid: str | None = None) -> dict[str, Any]:
        """phe's JWK private key: ``{"kty", "key_ops", "p", "q", "pub", "kid"}``."""
        return {"kty": "DAJ", "key_ops": ["decrypt"], "p": _b64(int(self.p)),
                "q": _b64(int(self.q)), "pub": self.public_key.to_jwk(),
                "kid": kid or f"mpcai Paillier private key {self.public_key.key_id.hex()}"}

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any] | str) -> PrivateKey:
        """Read phe's JWK private key; keeps ``h_s`` from ``pub.mpcai_hs`` or draws a new one."""
        obj = _json_obj(jwk)
        if obj.get("kty") != "DAJ" or "decrypt" not in obj.get("key_ops", ()) \
                or "p" not in obj or "q" not in obj or "pub" not in obj:
            raise InvalidInput("not a Paillier JWK private key (kty DAJ, decrypt, p, q, pub)")
        pub = PublicKey.from_jwk(obj["pub"])
        key = cls(_unb64(obj["p"], "p"), _unb64(obj["q"], "q"), pub.hs)
        if key.public_key.n != pub.n:
            raise InvalidInput("p * q does not match the public modulus")
        return key

    @classmethod
    def from_phe(cls, key: Any) -> PrivateKey:
        """Convert a ``phe.PaillierPrivateKey``; draws a fresh ``h_s`` (as
        :meth:`from_jwk` does for a key without one), 40 ms at 2048 bits, 115 ms at
        3072.  The bulk functions accept phe private keys directly (converted once
        per phe key object, see :func:`decrypt_array`)."""
        import phe

        if not isinstance(key, phe.PaillierPrivateKey):
            raise InvalidType(f"expected a phe.PaillierPrivateKey, not {type(key).__name__}")
        sk = cls(key.p, key.q)
        if sk.public_key.n != key.public_key.n:
            raise InvalidInput("p * q does not match the phe public key's modulus")
        return sk


def generate_keypair(n_bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair with an ``n_bits``-bit modulus (>= 2048, even) and a fresh h_s."""
    bits = _int_arg(n_bits, "n_bits")
    if bits < MIN_KEY_BITS:
        raise KeyTooSmall(f"Paillier modulus of {bits} bits refused; at least {MIN_KEY_BITS}")
    if bits % 2 or bits > _MAX_KEY_BITS:
        raise InvalidInput(f"n_bits must be even and at most {_MAX_KEY_BITS}, got {bits}")
    while True:
        p, q = random_prime(bits // 2), random_prime(bits // 2)
        # |p - q| must not be tiny (Fermat factoring); with random primes this never loops
        if abs(p - q).bit_length() > bits // 2 - 100:
            key = PrivateKey(p, q)
            return key.public_key, key


def _unsafe_keypair_for_tests(p: int | None = None, q: int | None = None,
                              n_bits: int | None = None) -> tuple[PublicKey, PrivateKey]:
    """UNSAFE, tests only: a key pair of any size (e.g. phe's n = 126869 = 293 * 433,
    or fresh small primes of ``n_bits // 2`` bits).  Never use for real data."""
    if p is None or q is None:
        assert n_bits is not None
        p, q = random_prime(n_bits // 2), random_prime(n_bits // 2)
        while q == p:
            q = random_prime(n_bits // 2)
    key = PrivateKey(p, q, _allow_small=True)
    return key.public_key, key


# --------------------------------------------------------------------------- scalars


def _check_frac(f: object) -> int:
    fb = _int_arg(f, "frac_bits")
    if not 0 <= fb <= 1024:
        raise InvalidInput(f"frac_bits must be in [0, 1024], got {fb}")
    return fb


def _encode_scalar(value: object, frac_bits: int | None) -> tuple[int, int]:
    """(frac_bits, integer encoding) of an int or float plaintext."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidType("plaintext must be an int or float, not bool")
    if isinstance(value, (int, np.integer, type(ONE))):
        f = 0 if frac_bits is None else _check_frac(frac_bits)
        return f, int(value) << f
    if isinstance(value, (float, np.floating)):
        f = DEFAULT_FRAC_BITS if frac_bits is None else _check_frac(frac_bits)
        x = float(value)
        if not math.isfinite(x):
            raise EncodingOverflow("cannot encrypt NaN or infinity")
        try:
            return f, round(math.ldexp(x, f))
        except OverflowError as exc:
            raise EncodingOverflow(f"{x!r} with {f} fractional bits overflows") from exc
    raise InvalidType(f"plaintext must be an int or float, not {type(value).__name__}")


# --------------------------------------------------------------------------- ciphertexts


class EncryptedNumber:
    """One Paillier ciphertext of a signed fixed-point value with ``frac_bits``."""

    __slots__ = ("_c", "_fresh", "frac_bits", "public_key")

    def __init__(self, public_key: PublicKey, ciphertext: int, frac_bits: int = 0) -> None:
        public_key = _pub_arg(public_key)  # a phe public key is converted
        self.public_key = public_key
        self._c = public_key._check_ciphertext(ciphertext)
        self.frac_bits = _check_frac(frac_bits)
        self._fresh = False

    @classmethod
    def _trusted(cls, pub: PublicKey, c: mpz, frac_bits: int, fresh: bool = True
                 ) -> EncryptedNumber:
        obj = cls.__new__(cls)
        obj.public_key, obj._c, obj.frac_bits, obj._fresh = pub, c, frac_bits, fresh
        return obj

    def __repr__(self) -> str:
        return f"EncryptedNumber(frac_bits={self.frac_bits}, key={self.public_key.key_id.hex()})"

    @property
    def is_fresh(self) -> bool:
        """True right after encryption or re-randomisation (safe to export as is)."""
        return self._fresh

    def rerandomize(self, randomness: Randomness = "conservative") -> EncryptedNumber:
        """Multiply in a fresh ``h_s^a`` (in place); returns ``self``."""
        pub = self.public_key
        self._c = self._c * pub._obfuscator(randomness) % pub.nsquare
        self._fresh = True
        return self

    def ciphertext(self, rerandomize: bool | None = None) -> int:
        """The ciphertext as an int; re-randomised first (in place) unless it is
        fresh, or ``rerandomize=False`` (only for a value that stays with its owner)."""
        if rerandomize or (rerandomize is None and not self._fresh):
            self.rerandomize()
        return int(self._c)

    # ---- arithmetic
    def _coerce(self, other: object) -> EncryptedNumber:
        if isinstance(other, EncryptedNumber):
            if other.public_key != self.public_key:
                raise InvalidCiphertext("cannot combine ciphertexts under different keys")
            return other
        as_default = isinstance(other, (float, np.floating)) and self.frac_bits == 0
        f, m = _encode_scalar(other, None if as_default else self.frac_bits)
        pub = self.public_key
        if f < self.frac_bits:
            m <<= self.frac_bits - f
            f = self.frac_bits
        nude = (1 + pub._encode(m) * pub.n) % pub.nsquare
        return EncryptedNumber._trusted(pub, nude, f, fresh=False)

    def _scaled(self, f: int) -> mpz:
        return gmpy2.powmod(self._c, 1 << (f - self.frac_bits), self.public_key.nsquare) \
            if f > self.frac_bits else self._c

    def __add__(self, other: object) -> EncryptedNumber:
        o = self._coerce(other)
        f = max(self.frac_bits, o.frac_bits)
        c = self._scaled(f) * o._scaled(f) % self.public_key.nsquare
        return EncryptedNumber._trusted(self.public_key, c, f, fresh=False)

    __radd__ = __add__

    def __neg__(self) -> EncryptedNumber:
        c = gmpy2.invert(self._c, self.public_key.nsquare)
        return EncryptedNumber._trusted(self.public_key, c, self.frac_bits, fresh=False)

    def __sub__(self, other: object) -> EncryptedNumber:
        return self + (-self._coerce(other))

    def __rsub__(self, other: object) -> EncryptedNumber:
        return (-self) + other

    def __mul__(self, scalar: object) -> EncryptedNumber:
        if isinstance(scalar, EncryptedNumber):
            raise InvalidType("Paillier cannot multiply two ciphertexts")
        f, k = _encode_scalar(scalar, None)
        pub = self.public_key
        if abs(k) > pub.max_int:
            raise EncodingOverflow("scalar exceeds the plaintext range")
        base = self._c if k >= 0 else gmpy2.invert(self._c, pub.nsquare)
        c = gmpy2.powmod(base, abs(k), pub.nsquare)
        return EncryptedNumber._trusted(pub, c, self.frac_bits + f, fresh=False)

    __rmul__ = __mul__

    # ---- formats
    def serialize(self, rerandomize: bool | None = None) -> bytes:
        """``b"PCT" | version | key id (8) | frac_bits (u16) | c (fixed width)``;
        re-randomised first as in :meth:`ciphertext`."""
        c = self.ciphertext(rerandomize)
        pub = self.public_key
        return (b"PCT" + bytes([_VERSION]) + pub.key_id + struct.pack(">H", self.frac_bits)
                + c.to_bytes(pub.ciphertext_bytes, "big"))

    @classmethod
    def deserialize(cls, public_key: PublicKey, data: bytes) -> EncryptedNumber:
        """Inverse of :meth:`serialize`; checks the key id and the ciphertext."""
        public_key = _pub_arg(public_key)
        r = _Reader(data, b"PCT")
        if r.take(8) != public_key.key_id:
            raise InvalidCiphertext("ciphertext was made under another public key")
        (f,) = r.unpack(">H")
        c = int.from_bytes(r.take(public_key.ciphertext_bytes), "big")
        r.end()
        return cls(public_key, c, f)

    def to_phe_json(self, rerandomize: bool | None = None) -> dict[str, Any]:
        """phe's CLI form ``{"v": str(c), "e": exponent}`` (base 16: needs frac_bits % 4 == 0)."""
        if self.frac_bits % 4:
            raise InvalidInput("phe exponents are base 16: frac_bits must be a multiple of 4")
        return {"v": str(self.ciphertext(rerandomize)), "e": -(self.frac_bits // 4)}

    @classmethod
    def from_phe_json(cls, public_key: PublicKey, obj: dict[str, Any] | str) -> EncryptedNumber:
        """Read phe's ``{"v", "e"}``; ``e > 0`` is folded into the plaintext (c^(16^e))."""
        d = _json_obj(obj)
        v, e = d.get("v"), d.get("e")
        if not isinstance(v, str) or len(v) > 2 * _MAX_KEY_BITS // 3 + 2 or not v.isdigit():
            raise InvalidCiphertext("phe ciphertext 'v' must be a decimal string")
        e = _int_arg(e, "e")
        if not -256 <= e <= 256:
            raise InvalidInput(f"phe exponent {e} outside [-256, 256]")
        ct = cls(public_key, int(v), 4 * -e if e < 0 else 0)
        return ct * (16 ** e) if e > 0 else ct

    @classmethod
    def from_phe(cls, encrypted: Any) -> EncryptedNumber:
        """Convert a ``phe.EncryptedNumber`` (its key, ciphertext and base-16 exponent,
        as :meth:`from_phe_json`); the phe object is not changed (not obfuscated)."""
        import phe

        if not isinstance(encrypted, phe.EncryptedNumber):
            raise InvalidType(f"expected a phe.EncryptedNumber, not {type(encrypted).__name__}")
        return cls.from_phe_json(encrypted.public_key,
                                 {"v": str(encrypted.ciphertext(be_secure=False)),
                                  "e": encrypted.exponent})


# --------------------------------------------------------------------------- process pool


def _workers(workers: object) -> int:
    w = _int_arg(workers, "workers")
    if w < 0:
        raise InvalidInput("workers must be >= 0 (0 = every core)")
    return (os.cpu_count() or 1) if w == 0 else w


def _pool(w: int, initargs: tuple[str, bytes]) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(w, mp_context=get_context("spawn"), initializer=_worker_init,
                               initargs=initargs)


_WORKER_KEY: list[Any] = []


def _worker_init(kind: str, blob: bytes) -> None:
    if kind != "pk":
        raise InvalidInput("encryption workers take a public key only")
    _WORKER_KEY[:] = [PublicKey.deserialize(blob)]


def _worker_encrypt(residues: list[int], randomness: Randomness) -> list[int]:
    key = _WORKER_KEY[0]
    return [int(key._raw_encrypt(mpz(m), randomness)) for m in residues]


def _map_chunks(w: int, initargs: tuple[str, bytes], fn: Callable[..., list[int]],
                items: list[int], *args: Any) -> list[mpz]:
    size = max(1, -(-len(items) // (4 * w)))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    out: list[mpz] = []
    with _pool(w, initargs) as pool:
        for part in pool.map(fn, chunks, *[[a] * len(chunks) for a in args]):
            out.extend(mpz(x) for x in part)
    return out


def _bulk_encrypt(key: PublicKey | PrivateKey, residues: list[mpz], randomness: Randomness,
                  workers: int) -> list[mpz]:
    if not isinstance(key, (PublicKey, PrivateKey)):
        raise InvalidType(f"key must be a PublicKey or PrivateKey, not {type(key).__name__}")
    pub = _pub_of(key)  # encryption needs the public key only (see PrivateKey.encrypt)
    pub.exponent_bits(randomness)  # validates ``randomness``
    w = _workers(workers)
    if w <= 1 or len(residues) < 2:
        return [pub._raw_encrypt(m, randomness) for m in residues]
    return _map_chunks(w, ("pk", pub.serialize()), _worker_encrypt,
                       [int(m) for m in residues], randomness)


def _bulk_decrypt(key: PrivateKey, cts: list[mpz], workers: int) -> list[mpz]:
    if not isinstance(key, PrivateKey):
        raise InvalidType(f"decryption needs a PrivateKey, not {type(key).__name__}")
    w = _workers(workers)
    if w <= 1 or len(cts) < 2:
        return [key._decrypt_residue(c) for c in cts]
    # gmpy2 releases the GIL inside powmod_base_list when the context allows it,
    # so threads suffice: no process start-up, no key shipped to another process.
    size = -(-len(cts) // w)
    chunks = [cts[i:i + size] for i in range(0, len(cts), size)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(key._decrypt_many, chunks))
    return [m for part in parts for m in part]


_PHE_PRIVATE: weakref.WeakKeyDictionary[Any, PrivateKey] = weakref.WeakKeyDictionary()
"""phe private key -> its conversion, kept only while the phe key object lives."""

_KEY_TYPES = ("a PublicKey or PrivateKey (phe keys are converted; explicitly: "
              "PublicKey.from_phe, PrivateKey.from_phe, from_jwk)")


def _key_arg(key: object, *, private: bool = False) -> PublicKey | PrivateKey:
    """``key`` as one of ours: a ``phe.PaillierPublicKey`` is converted with
    :meth:`PublicKey.from_phe` (microseconds), a ``phe.PaillierPrivateKey`` with
    :meth:`PrivateKey.from_phe` once per phe key object (cached in a weak mapping,
    so the conversion dies with the phe key).  ``private``: the key must be able to
    decrypt; a public key raises :class:`InvalidType` saying so."""
    if isinstance(key, PrivateKey):
        return key
    if isinstance(key, PublicKey) and not private:
        return key
    import phe

    if isinstance(key, phe.PaillierPrivateKey):
        sk = _PHE_PRIVATE.get(key)
        if sk is None:
            sk = _PHE_PRIVATE[key] = PrivateKey.from_phe(key)
        return sk
    if isinstance(key, (PublicKey, phe.PaillierPublicKey)):
        if private:
            raise InvalidType(f"decryption needs the private key, not a {type(key).__name__}")
        return PublicKey.from_phe(key)
    raise InvalidType(f"key must be {_KEY_TYPES}, not {type(key).__name__}")


def _pub_arg(public_key: object) -> PublicKey:
    """``public_key`` as our :class:`PublicKey` (a phe public key is converted)."""
    if isinstance(public_key, PublicKey):
        return public_key
    import phe

    if isinstance(public_key, phe.PaillierPublicKey):
        return PublicKey.from_phe(public_key)
    raise InvalidType(f"public_key must be a PublicKey or a phe.PaillierPublicKey "
                      f"(PublicKey.from_phe converts), not {type(public_key).__name__}")


def _pub_of(key: object) -> PublicKey:
    k = _key_arg(key)
    return k.public_key if isinstance(k, PrivateKey) else k


# --------------------------------------------------------------------------- arrays


def _fixed_ints(values: object, frac_bits: int) -> tuple[list[int], tuple[int, ...]]:
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidType(f"values must be a real numeric array, not dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):
        return [int(v) << frac_bits for v in arr.ravel().tolist()], arr.shape
    if not np.all(np.isfinite(arr)):
        raise EncodingOverflow("cannot encrypt NaN or infinite values")
    scaled = np.rint(arr.astype(np.float64) * 2.0 ** frac_bits)
    return [int(v) for v in scaled.ravel().tolist()], arr.shape


class EncryptedArray:
    """An array of Paillier ciphertexts (one per element) with common ``frac_bits``."""

    __slots__ = ("_cs", "_fresh", "frac_bits", "public_key", "shape")

    def __init__(self, public_key: PublicKey, ciphertexts: Sequence[int],
                 shape: tuple[int, ...] | None = None, frac_bits: int = 0) -> None:
        public_key = _pub_arg(public_key)  # a phe public key is converted
        self.public_key = public_key
        self._cs = [public_key._check_ciphertext(c) for c in ciphertexts]
        self.shape = (len(self._cs),) if shape is None else tuple(int(s) for s in shape)
        if math.prod(self.shape) != len(self._cs):
            raise InvalidInput(f"shape {self.shape} does not hold {len(self._cs)} ciphertexts")
        self.frac_bits = _check_frac(frac_bits)
        self._fresh = False

    @classmethod
    def _trusted(cls, pub: PublicKey, cs: list[mpz], shape: tuple[int, ...], f: int,
                 fresh: bool) -> EncryptedArray:
        obj = cls.__new__(cls)
        obj.public_key, obj._cs, obj.shape, obj.frac_bits, obj._fresh = pub, cs, shape, f, fresh
        return obj

    def __len__(self) -> int:
        return len(self._cs)

    def __repr__(self) -> str:
        return f"EncryptedArray(shape={self.shape}, frac_bits={self.frac_bits})"

    def _other(self, other: EncryptedArray) -> None:
        if not isinstance(other, EncryptedArray):
            raise InvalidType("can only combine an EncryptedArray with an EncryptedArray")
        if other.public_key != self.public_key or other.shape != self.shape \
                or other.frac_bits != self.frac_bits:
            raise InvalidInput("arrays differ in key, shape or frac_bits")

    def __add__(self, other: EncryptedArray) -> EncryptedArray:
        self._other(other)
        n2 = self.public_key.nsquare
        cs = [a * b % n2 for a, b in zip(self._cs, other._cs, strict=True)]
        return EncryptedArray._trusted(self.public_key, cs, self.shape, self.frac_bits, False)

    def __neg__(self) -> EncryptedArray:
        n2 = self.public_key.nsquare
        cs = [gmpy2.invert(c, n2) for c in self._cs]
        return EncryptedArray._trusted(self.public_key, cs, self.shape, self.frac_bits, False)

    def __sub__(self, other: EncryptedArray) -> EncryptedArray:
        return self + (-other)

    def __mul__(self, scalar: int | float) -> EncryptedArray:
        """Multiply every element by a public int, or a float (fixed point with
        16 fractional bits, which add to the array's ``frac_bits``)."""
        f, k = _encode_scalar(scalar, None)
        pub = self.public_key
        if abs(k) > pub.max_int:
            raise EncodingOverflow("scalar exceeds the plaintext range")
        cs = self._cs if k >= 0 else [gmpy2.invert(c, pub.nsquare) for c in self._cs]
        cs = [gmpy2.powmod(c, abs(k), pub.nsquare) for c in cs]
        return EncryptedArray._trusted(pub, cs, self.shape, self.frac_bits + f, False)

    __rmul__ = __mul__

    def rerandomize(self, randomness: Randomness = "conservative") -> EncryptedArray:
        """Re-randomise every element in place; returns ``self``."""
        pub = self.public_key
        self._cs = [c * pub._obfuscator(randomness) % pub.nsquare for c in self._cs]
        self._fresh = True
        return self

    def serialize(self, rerandomize: bool | None = None) -> bytes:
        """``b"PCA" | version | key id | frac_bits | ndim | dims | ciphertexts``;
        re-randomised first unless fresh (or ``rerandomize=False``)."""
        if rerandomize or (rerandomize is None and not self._fresh):
            self.rerandomize()
        pub = self.public_key
        w = pub.ciphertext_bytes
        head = (b"PCA" + bytes([_VERSION]) + pub.key_id + struct.pack(">HB", self.frac_bits,
                len(self.shape)) + b"".join(struct.pack(">I", s) for s in self.shape))
        return head + b"".join(int(c).to_bytes(w, "big") for c in self._cs)

    @classmethod
    def deserialize(cls, public_key: PublicKey, data: bytes) -> EncryptedArray:
        """Inverse of :meth:`serialize`; checks the key id, length and every ciphertext."""
        public_key = _pub_arg(public_key)
        r = _Reader(data, b"PCA")
        if r.take(8) != public_key.key_id:
            raise InvalidCiphertext("ciphertexts were made under another public key")
        f, ndim = r.unpack(">HB")
        shape = tuple(r.unpack(">I")[0] for _ in range(ndim))
        count = math.prod(shape)
        w = public_key.ciphertext_bytes
        if count > _MAX_COUNT or len(data) - r.pos != count * w:
            raise InvalidCiphertext("ciphertext array has the wrong length")
        body = r.take(count * w)
        cs = [int.from_bytes(body[i:i + w], "big") for i in range(0, count * w, w)]
        return cls(public_key, cs, shape, f)


def encrypt_array(key: PublicKey | PrivateKey, values: np.ndarray,
                  frac_bits: int = DEFAULT_FRAC_BITS, *,
                  randomness: Randomness = "conservative", workers: int = 1) -> EncryptedArray:
    """One ciphertext per element of ``values`` (floats: fixed point with
    ``frac_bits``; ints: exact, scaled by ``2^frac_bits``).  A
    :class:`PrivateKey` encrypts with its public key.  phe keys
    (``phe.PaillierPublicKey`` / ``PaillierPrivateKey``) are accepted and converted
    (:meth:`PublicKey.from_phe`, :meth:`PrivateKey.from_phe`)."""
    f = _check_frac(frac_bits)
    key = _key_arg(key)
    pub = _pub_of(key)
    ints, shape = _fixed_ints(values, f)
    residues = [pub._encode(m) for m in ints]
    cs = _bulk_encrypt(key, residues, randomness, workers)
    return EncryptedArray._trusted(pub, cs, shape, f, True)


def decrypt_array(key: PrivateKey, encrypted: EncryptedArray, *, workers: int = 1) -> np.ndarray:
    """``float64`` array of the plaintexts (``m / 2^frac_bits``), in the original shape.

    ``key`` may be a ``phe.PaillierPrivateKey``: it is converted with
    :meth:`PrivateKey.from_phe` once per phe key object (the conversion is kept in
    a weak mapping while that object lives).  A public key raises
    :class:`~mpcai.errors.InvalidType`."""
    if not isinstance(encrypted, EncryptedArray):
        raise InvalidType(f"expected an EncryptedArray, not {type(encrypted).__name__}")
    key = _key_arg(key, private=True)
    assert isinstance(key, PrivateKey)
    if encrypted.public_key != key.public_key:
        raise InvalidCiphertext("ciphertexts were made under another public key")
    scale = 1 << encrypted.frac_bits
    ms = [key._signed(r) / scale for r in _bulk_decrypt(key, encrypted._cs, workers)]
    return np.array(ms, dtype=np.float64).reshape(encrypted.shape)


# --------------------------------------------------------------------------- packing


@dataclass(frozen=True)
class PackingSpec:
    """Slot layout for packed fixed-point vectors.

    Values must satisfy ``|round(x 2^frac_bits)| <= 2^(int_bits + frac_bits) - 1``;
    up to ``max_summands`` (K) packed vectors may be added.  Slot width is
    ``int_bits + frac_bits + 1 + ceil(log2 K)`` rounded up to whole bytes:
    one bit for the offset (sign) and ``ceil(log2 K)`` bits of headroom.
    """

    int_bits: int = 8
    frac_bits: int = DEFAULT_FRAC_BITS
    max_summands: int = 100

    def __post_init__(self) -> None:
        for name in ("int_bits", "frac_bits", "max_summands"):
            _int_arg(getattr(self, name), name)
        if self.int_bits < 0 or self.frac_bits < 0 or self.max_summands < 1:
            raise InvalidInput("int_bits, frac_bits must be >= 0 and max_summands >= 1")
        if self.slot_bits > 64:
            raise InvalidInput(f"slot of {self.slot_bits} bits exceeds 64; reduce int_bits, "
                               "frac_bits or max_summands")

    @property
    def value_bits(self) -> int:
        """Magnitude bits of an encoded value (``int_bits + frac_bits``)."""
        return self.int_bits + self.frac_bits

    @property
    def slot_bits(self) -> int:
        """Slot width in bits (a multiple of 8, at most 64)."""
        raw = self.value_bits + 1 + (self.max_summands - 1).bit_length()
        return -(-raw // 8) * 8

    def slots(self, public_key: PublicKey) -> int:
        """Slots per ciphertext under ``public_key``: ``floor((k - 1) / slot_bits)``."""
        return (_pub_arg(public_key).n_bits - 1) // self.slot_bits


class PackedCiphertext:
    """A packed fixed-point vector: ``len(values)`` slots over several ciphertexts,
    holding the sum of ``summands`` vectors (at most ``spec.max_summands``)."""

    __slots__ = ("_cs", "_fresh", "length", "public_key", "spec", "summands")

    def __init__(self, public_key: PublicKey, ciphertexts: Sequence[int], length: int,
                 spec: PackingSpec, summands: int = 1) -> None:
        public_key = _pub_arg(public_key)  # a phe public key is converted
        self.public_key, self.spec = public_key, spec
        self.length = _int_arg(length, "length")
        self.summands = _int_arg(summands, "summands")
        if not 1 <= self.summands <= spec.max_summands:
            raise SlotOverflow(f"summands {self.summands} outside [1, {spec.max_summands}]")
        k = spec.slots(public_key)
        if k < 1 or len(ciphertexts) != -(-self.length // k):
            raise InvalidCiphertext(f"{len(ciphertexts)} ciphertexts cannot hold {length} slots")
        self._cs = [public_key._check_ciphertext(c) for c in ciphertexts]
        self._fresh = False

    @classmethod
    def _trusted(cls, pub: PublicKey, cs: list[mpz], length: int, spec: PackingSpec,
                 summands: int, fresh: bool) -> PackedCiphertext:
        obj = cls.__new__(cls)
        obj.public_key, obj._cs, obj.length, obj.spec = pub, cs, length, spec
        obj.summands, obj._fresh = summands, fresh
        return obj

    def __repr__(self) -> str:
        return (f"PackedCiphertext(length={self.length}, ciphertexts={len(self._cs)}, "
                f"summands={self.summands}/{self.spec.max_summands})")

    @property
    def num_ciphertexts(self) -> int:
        """Number of Paillier ciphertexts holding the slots."""
        return len(self._cs)

    @property
    def additions(self) -> int:
        """Additions absorbed so far (``summands - 1``)."""
        return self.summands - 1

    def __add__(self, other: PackedCiphertext) -> PackedCiphertext:
        if not isinstance(other, PackedCiphertext):
            raise InvalidType("can only add a PackedCiphertext to a PackedCiphertext")
        if other.public_key != self.public_key or other.spec != self.spec \
                or other.length != self.length:
            raise InvalidInput("packed vectors differ in key, spec or length")
        s = self.summands + other.summands
        if s > self.spec.max_summands:
            raise SlotOverflow(f"sum of {s} packed vectors exceeds the declared "
                               f"K = {self.spec.max_summands}")
        n2 = self.public_key.nsquare
        cs = [a * b % n2 for a, b in zip(self._cs, other._cs, strict=True)]
        return PackedCiphertext._trusted(self.public_key, cs, self.length, self.spec, s, False)

    def rerandomize(self, randomness: Randomness = "conservative") -> PackedCiphertext:
        """Re-randomise every ciphertext in place; returns ``self``."""
        pub = self.public_key
        self._cs = [c * pub._obfuscator(randomness) % pub.nsquare for c in self._cs]
        self._fresh = True
        return self

    def serialize(self, rerandomize: bool | None = None) -> bytes:
        """``b"PPC" | version | key id | int_bits, frac_bits (u16) | K, summands (u32) |
        length (u64) | ciphertexts``; re-randomised first unless fresh."""
        if rerandomize or (rerandomize is None and not self._fresh):
            self.rerandomize()
        pub, s = self.public_key, self.spec
        w = pub.ciphertext_bytes
        head = (b"PPC" + bytes([_VERSION]) + pub.key_id
                + struct.pack(">HHIIQ", s.int_bits, s.frac_bits, s.max_summands, self.summands,
                              self.length))
        return head + b"".join(int(c).to_bytes(w, "big") for c in self._cs)

    @classmethod
    def deserialize(cls, public_key: PublicKey, data: bytes) -> PackedCiphertext:
        """Inverse of :meth:`serialize`; checks the key id, spec, counts and ciphertexts."""
        public_key = _pub_arg(public_key)
        r = _Reader(data, b"PPC")
        if r.take(8) != public_key.key_id:
            raise InvalidCiphertext("ciphertexts were made under another public key")
        ib, fb, k, summands, length = r.unpack(">HHIIQ")
        spec = PackingSpec(ib, fb, k)
        w = public_key.ciphertext_bytes
        count = (len(data) - r.pos) // w
        if count > _MAX_COUNT or len(data) - r.pos != count * w:
            raise InvalidCiphertext("packed ciphertext has the wrong length")
        body = r.take(count * w)
        cs = [int.from_bytes(body[i:i + w], "big") for i in range(0, count * w, w)]
        return cls(public_key, cs, length, spec, summands)


def _slot_dtype_bytes(arr: np.ndarray, slot_bytes: int) -> bytes:
    """Little-endian ``slot_bytes``-wide images of uint64 values, concatenated."""
    if slot_bytes == 8:
        return arr.astype("<u8").tobytes()
    as_bytes = arr.astype("<u8").view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(as_bytes[:, :slot_bytes]).tobytes()


def encrypt_packed(key: PublicKey | PrivateKey, values: np.ndarray,
                   spec: PackingSpec | None = None, *, randomness: Randomness = "conservative",
                   workers: int = 1) -> PackedCiphertext:
    """Encrypt a 1-D real vector, ``spec.slots(pub)`` values per ciphertext.

    Raises :class:`SlotOverflow` if any value is outside the slot range
    (nothing is clipped) and :class:`EncodingOverflow` on NaN/infinity.  phe keys
    are accepted as in :func:`encrypt_array`.
    """
    spec = PackingSpec() if spec is None else spec
    if not isinstance(spec, PackingSpec):
        raise InvalidType("spec must be a PackingSpec")
    key = _key_arg(key)
    pub = _pub_of(key)
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidType("values must be a 1-D real numeric array")
    x = arr.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise EncodingOverflow("cannot encrypt NaN or infinite values")
    v = np.rint(x * 2.0 ** spec.frac_bits)
    bound = float((1 << spec.value_bits) - 1)
    if v.size and float(np.max(np.abs(v))) > bound:
        raise SlotOverflow(f"|x| up to {float(np.max(np.abs(x))):g} exceeds the slot range "
                           f"{bound / 2.0 ** spec.frac_bits:g} (int_bits={spec.int_bits})")
    k = spec.slots(pub)
    if k < 1:
        raise InvalidInput("key too small for one slot")
    count = -(-arr.size // k)
    offset = np.uint64(1 << spec.value_bits)
    enc = np.zeros(count * k, dtype=np.uint64)
    enc[:arr.size] = v.astype(np.int64).view(np.uint64) + offset
    sb = spec.slot_bits // 8
    raw = _slot_dtype_bytes(enc, sb)
    step = k * sb
    residues = [mpz(int.from_bytes(raw[i:i + step], "little")) for i in range(0, len(raw), step)]
    cs = _bulk_encrypt(key, residues, randomness, workers)
    return PackedCiphertext._trusted(pub, cs, int(arr.size), spec, 1, True)


def decrypt_packed(key: PrivateKey, packed: PackedCiphertext, *, workers: int = 1) -> np.ndarray:
    """The ``float64`` vector of slot sums (``sum of the summands' values``).

    Raises :class:`SlotOverflow` if a slot holds a value no honest sum of
    ``packed.summands`` vectors can produce (corruption or a false count).  phe
    private keys are accepted as in :func:`decrypt_array`.
    """
    if not isinstance(packed, PackedCiphertext):
        raise InvalidType(f"expected a PackedCiphertext, not {type(packed).__name__}")
    key = _key_arg(key, private=True)
    assert isinstance(key, PrivateKey)
    if packed.public_key != key.public_key:
        raise InvalidCiphertext("ciphertexts were made under another public key")
    spec = packed.spec
    k = spec.slots(key.public_key)
    sb = spec.slot_bits // 8
    step = k * sb
    residues = _bulk_decrypt(key, packed._cs, workers)
    limit = mpz(1) << (k * spec.slot_bits)
    if any(r >= limit for r in residues):
        raise SlotOverflow("packed plaintext exceeds its slots (corrupted or wrong spec)")
    raw = b"".join(int(r).to_bytes(step, "little") for r in residues)
    cols = np.frombuffer(raw, dtype=np.uint8).reshape(-1, sb)
    if sb == 8:
        slots = cols.copy().view("<u8").ravel()
    else:
        padded = np.zeros((cols.shape[0], 8), dtype=np.uint8)
        padded[:, :sb] = cols
        slots = padded.view("<u8").ravel()
    slots = slots[:packed.length].astype(np.uint64)
    s = packed.summands
    lo = s
    hi = s * ((1 << (spec.value_bits + 1)) - 1)
    if slots.size and (int(slots.min()) < lo or int(slots.max()) > hi):
        raise SlotOverflow("a slot holds a value outside the range of its declared sum")
    signed = (slots - np.uint64(s << spec.value_bits)).view(np.int64)
    return signed.astype(np.float64) / 2.0 ** spec.frac_bits
