"""Paillier keys: :class:`PublicKey`, :class:`PrivateKey`, :func:`generate_keypair`.

Key sizes (:data:`MIN_KEY_BITS` floor, :data:`DEFAULT_KEY_BITS`), DJN
randomness (the fixed-base table of ``h_s``), CRT decryption with
``powmod_sec``, and each key's binary and JWK forms; see :mod:`mpcai.he.paillier`.
:meth:`PublicKey.encrypt` and :meth:`PrivateKey.decrypt` use
:class:`~mpcai.he.paillier.EncryptedNumber`, which is defined on top of this
module (:mod:`._number` imports it), so they import it when called.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any, Literal

import gmpy2
from gmpy2 import mpz

from mpcai.errors import EncodingOverflow, InvalidCiphertext, InvalidInput, InvalidType, KeyTooSmall
from mpcai.validation import check_int

from ._formats import MAX_KEY_BITS, VERSION, Reader, b64, big, json_obj, nbytes, unb64
from ._math import (
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

if TYPE_CHECKING:
    from ._number import EncryptedNumber

MIN_KEY_BITS: int = 2048
"""Smallest modulus accepted anywhere (except the unsafe test hook)."""

DEFAULT_KEY_BITS: int = 3072
"""Modulus size of :func:`generate_keypair` by default (128-bit strength)."""

Randomness = Literal["conservative", "short"]
"""Length of the DJN exponent: ``"conservative"`` (k/2 bits) or ``"short"`` (2 kappa bits)."""


def check_key_bits(n: mpz, allow_small: bool) -> None:
    """Refuse a modulus above :data:`~._formats.MAX_KEY_BITS` or, unless
    ``allow_small``, below :data:`MIN_KEY_BITS` (:class:`~mpcai.errors.KeyTooSmall`)."""
    bits = n.bit_length()
    if bits > MAX_KEY_BITS:
        raise InvalidInput(f"modulus of {bits} bits exceeds the {MAX_KEY_BITS}-bit limit")
    if bits < MIN_KEY_BITS and not allow_small:
        raise KeyTooSmall(f"Paillier modulus of {bits} bits refused; at least {MIN_KEY_BITS}")


class PublicKey:
    """A Paillier public key: modulus ``n`` and, when the owner published it,
    the DJN base ``h_s`` (``None`` for keys imported from phe)."""

    __slots__ = ("_table", "hs", "kappa", "max_int", "n", "n_bits", "nsquare")

    def __init__(self, n: int, hs: int | None = None, *, _allow_small: bool = False) -> None:
        n_m = mpz(check_int(n, "n"))
        check_key_bits(n_m, _allow_small)
        if n_m % 2 == 0 or gmpy2.is_square(n_m):
            raise InvalidInput("n must be an odd product of two distinct primes")
        self.n = n_m
        self.nsquare = n_m * n_m
        self.n_bits = n_m.bit_length()
        self.max_int = n_m // 3 - 1
        self.kappa = 128 if self.n_bits >= 3072 else 112
        if hs is not None:
            hs_m = mpz(check_int(hs, "hs"))
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
        return hashlib.sha256(int(self.n).to_bytes(nbytes(self.n), "big")).digest()[:8]

    @property
    def ciphertext_bytes(self) -> int:
        """Width of one serialised ciphertext (bytes of n^2)."""
        return 2 * nbytes(self.n)

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
        w = check_int(window_bits, "window_bits", lo=1, hi=12)
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
        from ._number import EncryptedNumber, encode_scalar  # the ciphertext builds on the key

        f, m = encode_scalar(value, frac_bits)
        return EncryptedNumber._trusted(self, self._raw_encrypt(self._encode(m), randomness), f)

    def _encrypt_with_r(self, m: int, r: int) -> mpz:
        """phe's ``raw_encrypt(m, r)`` (``(1 + m n) r^n mod n^2``): known-answer tests only."""
        nude = (1 + self._encode(m) * self.n) % self.nsquare
        return nude * gmpy2.powmod(mpz(r), self.n, self.nsquare) % self.nsquare

    def _signed(self, residue: mpz) -> int:
        """The signed plaintext of a decrypted residue in ``[0, n)`` (phe's convention);
        shared by :class:`PrivateKey` and threshold decryption."""
        if residue <= self.max_int:
            return int(residue)
        if residue >= self.n - self.max_int:
            return int(residue - self.n)
        raise EncodingOverflow("decrypted value is in the overflow band (|m| > n // 3 - 1)")

    def _check_ciphertext(self, c: object) -> mpz:
        cm = mpz(check_int(c, "ciphertext"))
        if not 0 < cm < self.nsquare:
            raise InvalidCiphertext("ciphertext outside 0 < c < n^2")
        if gmpy2.gcd(cm, self.n) != 1:
            raise InvalidCiphertext("ciphertext shares a factor with n")
        return cm

    # ---- formats
    def serialize(self) -> bytes:
        """Compact binary form: ``b"PPK" | version | flags | n | [h_s]``."""
        flags = 1 if self.hs is not None else 0
        out = b"PPK" + bytes([VERSION, flags]) + big(self.n)
        return out + (big(self.hs) if self.hs is not None else b"")

    @classmethod
    def deserialize(cls, data: bytes) -> PublicKey:
        """Inverse of :meth:`serialize`; checks sizes and refuses keys < 2048 bits."""
        r = Reader(data, b"PPK")
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
                               "n": b64(int(self.n)),
                               "kid": kid or f"mpcai Paillier public key {self.key_id.hex()}"}
        if self.hs is not None:
            jwk["mpcai_hs"] = b64(int(self.hs))
        return jwk

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any] | str) -> PublicKey:
        """Read phe's JWK public key (a dict or its JSON text)."""
        obj = json_obj(jwk)
        if obj.get("kty") != "DAJ" or obj.get("alg") != "PAI-GN1" or "n" not in obj:
            raise InvalidInput("not a Paillier JWK public key (kty DAJ, alg PAI-GN1, n)")
        hs = unb64(obj["mpcai_hs"], "mpcai_hs") if "mpcai_hs" in obj else None
        return cls(unb64(obj["n"], "n"), hs)

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
        p_m, q_m = mpz(check_int(p, "p")), mpz(check_int(q, "q"))
        if q_m < p_m:
            p_m, q_m = q_m, p_m
        if p_m == q_m or p_m < 3:
            raise InvalidInput("p and q must be distinct odd primes")
        n = p_m * q_m
        check_key_bits(n, _allow_small)
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
            hs = mpz(check_int(hs, "hs"))
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
        return self.public_key._signed(residue)

    def decrypt(self, encrypted: EncryptedNumber) -> int | float:
        """An int when ``frac_bits == 0``, else the float ``m / 2^frac_bits``.  A
        ``phe.EncryptedNumber`` is converted (:meth:`EncryptedNumber.from_phe`)."""
        from ._number import EncryptedNumber  # the ciphertext builds on the key

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
        return b"PSK" + bytes([VERSION]) + big(self.p) + big(self.q) + big(self.public_key.hs)

    @classmethod
    def deserialize(cls, data: bytes) -> PrivateKey:
        """Inverse of :meth:`serialize`; refuses keys < 2048 bits."""
        r = Reader(data, b"PSK")
        p, q, hs = r.big(), r.big(), r.big()
        r.end()
        return cls(p, q, hs)

    def to_jwk(self, kid: str | None = None) -> dict[str, Any]:
        """phe's JWK private key: ``{"kty", "key_ops", "p", "q", "pub", "kid"}``."""
        return {"kty": "DAJ", "key_ops": ["decrypt"], "p": b64(int(self.p)),
                "q": b64(int(self.q)), "pub": self.public_key.to_jwk(),
                "kid": kid or f"mpcai Paillier private key {self.public_key.key_id.hex()}"}

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any] | str) -> PrivateKey:
        """Read phe's JWK private key; keeps ``h_s`` from ``pub.mpcai_hs`` or draws a new one."""
        obj = json_obj(jwk)
        ops = obj.get("key_ops", [])
        if obj.get("kty") != "DAJ" or not isinstance(ops, list) or "decrypt" not in ops \
                or "p" not in obj or "q" not in obj or "pub" not in obj:
            raise InvalidInput("not a Paillier JWK private key (kty DAJ, decrypt, p, q, pub)")
        pub = PublicKey.from_jwk(obj["pub"])
        key = cls(unb64(obj["p"], "p"), unb64(obj["q"], "q"), pub.hs)
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
    bits = check_int(n_bits, "n_bits")
    if bits < MIN_KEY_BITS:
        raise KeyTooSmall(f"Paillier modulus of {bits} bits refused; at least {MIN_KEY_BITS}")
    if bits % 2 or bits > MAX_KEY_BITS:
        raise InvalidInput(f"n_bits must be even and at most {MAX_KEY_BITS}, got {bits}")
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

