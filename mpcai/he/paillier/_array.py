"""Arrays of Paillier ciphertexts, one per element: :class:`EncryptedArray`,
:func:`encrypt_array`, :func:`decrypt_array`.

Elements share one ``frac_bits``; the bulk functions take ``workers`` (see
:mod:`._bulk`).  See :mod:`mpcai.he.paillier` for the scheme and the formats.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from mpcai.encoding import DEFAULT_FRAC_BITS
from mpcai.errors import EncodingOverflow, InvalidCiphertext, InvalidInput, InvalidType
from mpcai.validation import check_int

from ._bulk import bulk_decrypt, bulk_encrypt
from ._formats import MAX_COUNT, VERSION, Reader
from ._keys import PrivateKey, PublicKey, Randomness
from ._number import MAX_FRAC_BITS, encode_scalar
from ._phe import key_arg, pub_arg, pub_of


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
    """An array of Paillier ciphertexts (one per element) with common ``frac_bits``.

    :attr:`size` (also ``len()``) counts the values, :attr:`shape` arranges
    them; :attr:`ciphertext_count` equals :attr:`size` (one ciphertext each).
    """

    __slots__ = ("_cs", "_fresh", "frac_bits", "public_key", "shape")

    def __init__(self, public_key: PublicKey, ciphertexts: Sequence[int],
                 shape: tuple[int, ...] | None = None, frac_bits: int = 0) -> None:
        public_key = pub_arg(public_key)  # a phe public key is converted
        self.public_key = public_key
        self._cs = [public_key._check_ciphertext(c) for c in ciphertexts]
        self.shape = (len(self._cs),) if shape is None else tuple(int(s) for s in shape)
        if math.prod(self.shape) != len(self._cs):
            raise InvalidInput(f"shape {self.shape} does not hold {len(self._cs)} ciphertexts")
        self.frac_bits = check_int(frac_bits, "frac_bits", lo=0, hi=MAX_FRAC_BITS)
        self._fresh = False

    @classmethod
    def _trusted(cls, pub: PublicKey, cs: list[mpz], shape: tuple[int, ...], f: int,
                 fresh: bool) -> EncryptedArray:
        obj = cls.__new__(cls)
        obj.public_key, obj._cs, obj.shape, obj.frac_bits, obj._fresh = pub, cs, shape, f, fresh
        return obj

    @property
    def size(self) -> int:
        """Number of plaintext values (the product of :attr:`shape`)."""
        return len(self._cs)

    @property
    def ciphertext_count(self) -> int:
        """Number of Paillier ciphertexts: one per value, so :attr:`size`."""
        return len(self._cs)

    def __len__(self) -> int:
        """:attr:`size`: every value, whatever the number of dimensions (unlike numpy)."""
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
        f, k = encode_scalar(scalar, None)
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
        head = (b"PCA" + bytes([VERSION]) + pub.key_id + struct.pack(">HB", self.frac_bits,
                len(self.shape)) + b"".join(struct.pack(">I", s) for s in self.shape))
        return head + b"".join(int(c).to_bytes(w, "big") for c in self._cs)

    @classmethod
    def deserialize(cls, public_key: PublicKey, data: bytes) -> EncryptedArray:
        """Inverse of :meth:`serialize`; checks the key id, length and every ciphertext."""
        public_key = pub_arg(public_key)
        r = Reader(data, b"PCA")
        if r.take(8) != public_key.key_id:
            raise InvalidCiphertext("ciphertexts were made under another public key")
        f, ndim = r.unpack(">HB")
        shape = tuple(r.unpack(">I")[0] for _ in range(ndim))
        count = math.prod(shape)
        w = public_key.ciphertext_bytes
        if count > MAX_COUNT or len(data) - r.pos != count * w:
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
    f = check_int(frac_bits, "frac_bits", lo=0, hi=MAX_FRAC_BITS)
    key = key_arg(key)
    pub = pub_of(key)
    ints, shape = _fixed_ints(values, f)
    residues = [pub._encode(m) for m in ints]
    cs = bulk_encrypt(key, residues, randomness, workers)
    return EncryptedArray._trusted(pub, cs, shape, f, True)


def decrypt_array(key: PrivateKey, encrypted: EncryptedArray, *, workers: int = 1) -> np.ndarray:
    """``float64`` array of the plaintexts (``m / 2^frac_bits``), in the original shape.

    ``key`` may be a ``phe.PaillierPrivateKey``: it is converted with
    :meth:`PrivateKey.from_phe` once per phe key object (the conversion is kept in
    a weak mapping while that object lives).  A public key raises
    :class:`~mpcai.errors.InvalidType`."""
    if not isinstance(encrypted, EncryptedArray):
        raise InvalidType(f"expected an EncryptedArray, not {type(encrypted).__name__}")
    key = key_arg(key, private=True)
    assert isinstance(key, PrivateKey)
    if encrypted.public_key != key.public_key:
        raise InvalidCiphertext("ciphertexts were made under another public key")
    scale = 1 << encrypted.frac_bits
    ms = [key._signed(r) / scale for r in bulk_decrypt(key, encrypted._cs, workers)]
    return np.array(ms, dtype=np.float64).reshape(encrypted.shape)
