"""One Paillier ciphertext (:class:`EncryptedNumber`) and the encoding of scalars.

A plaintext is an int (exact) or a float in fixed point, ``round(x 2^f)``
with ``f`` fractional bits (:func:`encode_scalar`); the same encoding turns
the public scalars of homomorphic products into integers.  See
:mod:`mpcai.he.paillier` for the scheme and the formats.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from mpcai.encoding import DEFAULT_FRAC_BITS
from mpcai.errors import EncodingOverflow, InvalidCiphertext, InvalidInput, InvalidType
from mpcai.validation import check_int

from ._formats import MAX_KEY_BITS, VERSION, Reader, json_obj
from ._keys import PublicKey, Randomness
from ._math import ONE
from ._phe import pub_arg

MAX_FRAC_BITS = 1024
"""Largest ``frac_bits`` of a plaintext or ciphertext."""


def encode_scalar(value: object, frac_bits: int | None) -> tuple[int, int]:
    """(frac_bits, integer encoding) of an int or float plaintext.

    An int is exact (``frac_bits`` 0 unless given, then shifted), a float is
    ``round(x 2^f)`` with ``f = frac_bits`` (default 16)."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidType("plaintext must be an int or float, not bool")
    if isinstance(value, (int, np.integer, type(ONE))):
        f = 0 if frac_bits is None else check_int(frac_bits, "frac_bits", lo=0, hi=MAX_FRAC_BITS)
        return f, int(value) << f
    if isinstance(value, (float, np.floating)):
        f = DEFAULT_FRAC_BITS if frac_bits is None else check_int(
            frac_bits, "frac_bits", lo=0, hi=MAX_FRAC_BITS)
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
        public_key = pub_arg(public_key)  # a phe public key is converted
        self.public_key = public_key
        self._c = public_key._check_ciphertext(ciphertext)
        self.frac_bits = check_int(frac_bits, "frac_bits", lo=0, hi=MAX_FRAC_BITS)
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
        f, m = encode_scalar(other, None if as_default else self.frac_bits)
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
        f, k = encode_scalar(scalar, None)
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
        return (b"PCT" + bytes([VERSION]) + pub.key_id + struct.pack(">H", self.frac_bits)
                + c.to_bytes(pub.ciphertext_bytes, "big"))

    @classmethod
    def deserialize(cls, public_key: PublicKey, data: bytes) -> EncryptedNumber:
        """Inverse of :meth:`serialize`; checks the key id and the ciphertext."""
        public_key = pub_arg(public_key)
        r = Reader(data, b"PCT")
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
        return {"v": str(mpz(self.ciphertext(rerandomize))), "e": -(self.frac_bits // 4)}

    @classmethod
    def from_phe_json(cls, public_key: PublicKey, obj: dict[str, Any] | str) -> EncryptedNumber:
        """Read phe's ``{"v", "e"}``; ``e > 0`` is folded into the plaintext (c^(16^e))."""
        d = json_obj(obj)
        v, e = d.get("v"), d.get("e")
        if not isinstance(v, str) or len(v) > 2 * MAX_KEY_BITS // 3 + 2 \
                or not (v.isascii() and v.isdigit()):  # "²".isdigit() is True
            raise InvalidCiphertext("phe ciphertext 'v' must be a decimal string")
        e = check_int(e, "phe exponent e", lo=-256, hi=256)
        ct = cls(public_key, int(mpz(v)), 4 * -e if e < 0 else 0)  # no 4300-digit limit
        return ct * (16 ** e) if e > 0 else ct

    @classmethod
    def from_phe(cls, encrypted: Any) -> EncryptedNumber:
        """Convert a ``phe.EncryptedNumber`` (its key, ciphertext and base-16 exponent,
        as :meth:`from_phe_json`); the phe object is not changed (not obfuscated)."""
        import phe

        if not isinstance(encrypted, phe.EncryptedNumber):
            raise InvalidType(f"expected a phe.EncryptedNumber, not {type(encrypted).__name__}")
        return cls.from_phe_json(encrypted.public_key,
                                 {"v": str(mpz(encrypted.ciphertext(be_secure=False))),
                                  "e": encrypted.exponent})

