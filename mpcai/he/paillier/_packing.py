"""Packed fixed-point vectors: many values per Paillier plaintext.

:class:`PackingSpec` (the slot layout), :class:`PackedCiphertext`,
:func:`encrypt_packed`, :func:`decrypt_packed`; see "Packing" in
:mod:`mpcai.he.paillier`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gmpy2 import mpz

from mpcai.encoding import DEFAULT_FRAC_BITS
from mpcai.errors import (
    EncodingOverflow,
    InvalidCiphertext,
    InvalidInput,
    InvalidType,
    SlotOverflow,
)
from mpcai.validation import check_int

from ._bulk import bulk_decrypt, bulk_encrypt
from ._formats import MAX_COUNT, VERSION, Reader
from ._keys import PrivateKey, PublicKey, Randomness
from ._phe import key_arg, pub_arg, pub_of


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
        check_int(self.int_bits, "int_bits", lo=0)
        check_int(self.frac_bits, "frac_bits", lo=0)
        check_int(self.max_summands, "max_summands", lo=1)
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

    def slot_count(self, public_key: PublicKey) -> int:
        """Slots per ciphertext under ``public_key``: ``floor((k - 1) / slot_bits)``.

        A method, not a property like :attr:`CKKSContext.slot_count
        <mpcai.he.ckks.CKKSContext.slot_count>`: a spec is only the slot layout,
        and the number of slots also depends on the modulus size ``k`` of the
        key it is used with (one spec serves keys of every size).
        """
        return (pub_arg(public_key).n_bits - 1) // self.slot_bits


class PackedCiphertext:
    """A packed fixed-point vector: :attr:`size` values (slots; also ``len()``) over
    :attr:`ciphertext_count` ciphertexts, holding the sum of ``summands`` vectors (at most
    ``spec.max_summands``)."""

    __slots__ = ("_cs", "_fresh", "public_key", "size", "spec", "summands")

    def __init__(self, public_key: PublicKey, ciphertexts: Sequence[int], size: int,
                 spec: PackingSpec, summands: int = 1) -> None:
        public_key = pub_arg(public_key)  # a phe public key is converted
        self.public_key, self.spec = public_key, spec
        self.size = check_int(size, "size", lo=0)
        self.summands = check_int(summands, "summands")
        if not 1 <= self.summands <= spec.max_summands:
            raise SlotOverflow(f"summands {self.summands} outside [1, {spec.max_summands}]")
        k = spec.slot_count(public_key)
        if k < 1 or len(ciphertexts) != -(-self.size // k):
            raise InvalidCiphertext(f"{len(ciphertexts)} ciphertexts cannot hold {size} slots")
        self._cs = [public_key._check_ciphertext(c) for c in ciphertexts]
        self._fresh = False

    @classmethod
    def _trusted(cls, pub: PublicKey, cs: list[mpz], size: int, spec: PackingSpec,
                 summands: int, fresh: bool) -> PackedCiphertext:
        obj = cls.__new__(cls)
        obj.public_key, obj._cs, obj.size, obj.spec = pub, cs, size, spec
        obj.summands, obj._fresh = summands, fresh
        return obj

    def __repr__(self) -> str:
        return (f"PackedCiphertext(size={self.size}, ciphertexts={len(self._cs)}, "
                f"summands={self.summands}/{self.spec.max_summands})")

    @property
    def ciphertext_count(self) -> int:
        """Number of Paillier ciphertexts holding the slots (``ceil(size / slot_count)``)."""
        return len(self._cs)

    def __len__(self) -> int:
        """:attr:`size`, the number of values."""
        return self.size

    @property
    def additions(self) -> int:
        """Additions absorbed so far (``summands - 1``)."""
        return self.summands - 1

    def __add__(self, other: PackedCiphertext) -> PackedCiphertext:
        if not isinstance(other, PackedCiphertext):
            raise InvalidType("can only add a PackedCiphertext to a PackedCiphertext")
        if other.public_key != self.public_key or other.spec != self.spec \
                or other.size != self.size:
            raise InvalidInput("packed vectors differ in key, spec or size")
        s = self.summands + other.summands
        if s > self.spec.max_summands:
            raise SlotOverflow(f"sum of {s} packed vectors exceeds the declared "
                               f"K = {self.spec.max_summands}")
        n2 = self.public_key.nsquare
        cs = [a * b % n2 for a, b in zip(self._cs, other._cs, strict=True)]
        return PackedCiphertext._trusted(self.public_key, cs, self.size, self.spec, s, False)

    def rerandomize(self, randomness: Randomness = "conservative") -> PackedCiphertext:
        """Re-randomise every ciphertext in place; returns ``self``."""
        pub = self.public_key
        self._cs = [c * pub._obfuscator(randomness) % pub.nsquare for c in self._cs]
        self._fresh = True
        return self

    def serialize(self, rerandomize: bool | None = None) -> bytes:
        """``b"PPC" | version | key id | int_bits, frac_bits (u16) | K, summands (u32) |
        size (u64) | ciphertexts``; re-randomised first unless fresh."""
        if rerandomize or (rerandomize is None and not self._fresh):
            self.rerandomize()
        pub, s = self.public_key, self.spec
        w = pub.ciphertext_bytes
        head = (b"PPC" + bytes([VERSION]) + pub.key_id
                + struct.pack(">HHIIQ", s.int_bits, s.frac_bits, s.max_summands, self.summands,
                              self.size))
        return head + b"".join(int(c).to_bytes(w, "big") for c in self._cs)

    @classmethod
    def deserialize(cls, public_key: PublicKey, data: bytes) -> PackedCiphertext:
        """Inverse of :meth:`serialize`; checks the key id, spec, counts and ciphertexts."""
        public_key = pub_arg(public_key)
        r = Reader(data, b"PPC")
        if r.take(8) != public_key.key_id:
            raise InvalidCiphertext("ciphertexts were made under another public key")
        ib, fb, k, summands, size = r.unpack(">HHIIQ")
        spec = PackingSpec(ib, fb, k)
        w = public_key.ciphertext_bytes
        count = (len(data) - r.pos) // w
        if count > MAX_COUNT or len(data) - r.pos != count * w:
            raise InvalidCiphertext("packed ciphertext has the wrong length")
        body = r.take(count * w)
        cs = [int.from_bytes(body[i:i + w], "big") for i in range(0, count * w, w)]
        return cls(public_key, cs, size, spec, summands)


def _slot_dtype_bytes(arr: np.ndarray, slot_bytes: int) -> bytes:
    """Little-endian ``slot_bytes``-wide images of uint64 values, concatenated."""
    if slot_bytes == 8:
        return arr.astype("<u8").tobytes()
    as_bytes = arr.astype("<u8").view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(as_bytes[:, :slot_bytes]).tobytes()


def encrypt_packed(key: PublicKey | PrivateKey, values: np.ndarray,
                   spec: PackingSpec | None = None, *, randomness: Randomness = "conservative",
                   workers: int = 1) -> PackedCiphertext:
    """Encrypt a 1-D real vector, ``spec.slot_count(pub)`` values per ciphertext.

    Raises :class:`~mpcai.errors.SlotOverflow` if any value is outside the slot range
    (nothing is clipped) and :class:`~mpcai.errors.EncodingOverflow` on NaN/infinity.  phe keys
    are accepted as in :func:`encrypt_array`.
    """
    spec = PackingSpec() if spec is None else spec
    if not isinstance(spec, PackingSpec):
        raise InvalidType("spec must be a PackingSpec")
    key = key_arg(key)
    pub = pub_of(key)
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
    k = spec.slot_count(pub)
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
    cs = bulk_encrypt(key, residues, randomness, workers)
    return PackedCiphertext._trusted(pub, cs, int(arr.size), spec, 1, True)


def decrypt_packed(key: PrivateKey, packed: PackedCiphertext, *, workers: int = 1) -> np.ndarray:
    """The ``float64`` vector of slot sums (``sum of the summands' values``).

    Raises :class:`~mpcai.errors.SlotOverflow` if a slot holds a value no honest sum of
    ``packed.summands`` vectors can produce (corruption or a false count).  phe
    private keys are accepted as in :func:`decrypt_array`.
    """
    if not isinstance(packed, PackedCiphertext):
        raise InvalidType(f"expected a PackedCiphertext, not {type(packed).__name__}")
    key = key_arg(key, private=True)
    assert isinstance(key, PrivateKey)
    if packed.public_key != key.public_key:
        raise InvalidCiphertext("ciphertexts were made under another public key")
    return decode_slots(packed, bulk_decrypt(key, packed._cs, workers))


def decode_slots(packed: PackedCiphertext, residues: list[mpz]) -> np.ndarray:
    """The slot sums of ``packed`` from its plaintext residues (one per ciphertext, in
    ``[0, n)``), checked against the range of ``packed.summands`` honest vectors; shared
    by :func:`decrypt_packed` and threshold decryption (``_threshold.combine``)."""
    spec = packed.spec
    k = spec.slot_count(packed.public_key)
    sb = spec.slot_bits // 8
    step = k * sb
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
    slots = slots[:packed.size].astype(np.uint64)
    s = packed.summands
    lo = s
    hi = s * ((1 << (spec.value_bits + 1)) - 1)
    if slots.size and (int(slots.min()) < lo or int(slots.max()) > hi):
        raise SlotOverflow("a slot holds a value outside the range of its declared sum")
    signed = (slots - np.uint64(s << spec.value_bits)).view(np.int64)
    return signed.astype(np.float64) / 2.0 ** spec.frac_bits
