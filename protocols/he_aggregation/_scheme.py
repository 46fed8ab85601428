"""The encryption scheme of HE aggregation behind one small private interface.

What the roles need of a scheme with a committee key: encrypt one client's
integer vector into one message; read a client's message (its exact length
checked before anything is parsed) and add two ciphertexts; write the sum
for the committee and read it back there; a member's partial decryption;
read (length-checked) and verify a partial; combine ``t`` verified partials
into the integer slot sums.  :class:`PaillierScheme` implements it on the
threshold Paillier of :mod:`mpcai.he.paillier`, ``CKKSScheme`` (``_ckks.py``) on
the committee CKKS of :mod:`mpcai.he.ckks`; :func:`scheme_for` picks the class
by ``cfg.scheme``.

A scheme whose partials are valid for one decryption set only (``set_bound``:
CKKS, whose holders weight their share by the set's Lagrange coefficient before
flooding) gets the set the aggregator chose through ``dump_sum(total, holders)``,
carries it inside the sum, returns ``None`` from ``partial_decrypt`` for a member
outside it, and reads partials against it (``load_partial(blob, total)``).
Paillier ignores the set: every member answers once and any ``t`` valid
partials combine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from mpcai.errors import InvalidCiphertext, InvalidInput, InvalidType
from mpcai.he import paillier

from .config import HEAggConfig

__all__ = ["PaillierScheme", "Scheme", "scheme_for"]


class Scheme(ABC):
    """One HE aggregation's scheme: the committee's public key and the slot layout.

    Ciphertexts and partials are opaque to the roles; every ``load_*`` raises
    a typed error (:class:`~mpcai.errors.InvalidInput` or a subclass) on
    anything malformed, never parses more than the expected length, and the
    roles treat that as a dropout or a cheater.
    """

    #: partials are valid only for the decryption set named in the sum (module docstring)
    set_bound: bool = False

    def __init__(self, cfg: HEAggConfig, public_key: Any) -> None:
        self.cfg = cfg
        self.public_key = public_key

    # ---- clients
    @abstractmethod
    def encrypt(self, values: np.ndarray) -> bytes:
        """One client's message: ``values`` (``cfg.length`` uint64 below ``2^int_bits``)."""

    # ---- the aggregator
    @abstractmethod
    def input_bytes(self) -> int:
        """The largest length of an honest client message (exact for Paillier; an upper
        bound for CKKS, whose serialisation is compressed)."""

    @abstractmethod
    def load_input(self, blob: bytes) -> Any:
        """A client's ciphertext, checked (length, key, layout, one summand)."""

    @abstractmethod
    def add(self, a: Any, b: Any) -> Any:
        """The ciphertext of the sum."""

    @abstractmethod
    def dump_sum(self, total: Any, holders: tuple[int, ...] | None = None) -> bytes:
        """The sum as sent to the committee (re-randomised as the scheme requires; the
        object is updated to what was sent, so partials refer to it).  ``holders``: the
        decryption set (holder indices) of a ``set_bound`` scheme, written into the sum
        and remembered by ``total``; other schemes ignore it."""

    # ---- committee members
    @abstractmethod
    def load_sum(self, blob: bytes) -> tuple[Any, int]:
        """The sum a member receives and its declared number of summands."""

    @abstractmethod
    def partial_decrypt(self, share: Any, total: Any) -> bytes | None:
        """Member ``share``'s partial decryption of ``total`` (with its proof where the
        scheme has one), or ``None`` when the member is outside the sum's decryption set
        (``set_bound`` schemes: it answers nothing)."""

    def decryption_set(self, total: Any) -> tuple[int, ...]:
        """The holder indices the sum names (``set_bound`` schemes; else empty)."""
        return ()

    def sum_digest(self, total: Any) -> bytes:
        """A digest of the sum's ciphertexts, so that a member asked again (another set)
        can check that it is the same sum (``set_bound`` schemes; else empty)."""
        return b""

    @abstractmethod
    def holder_index(self, share: Any) -> int:
        """The key holder index of a member's share (checked to be one of this key)."""

    # ---- the aggregator again
    @abstractmethod
    def load_partial(self, blob: bytes, total: Any) -> tuple[int, Any]:
        """``(holder index, partial)`` from a member's answer about ``total`` (as last
        dumped), length-checked."""

    @abstractmethod
    def verify_partial(self, total: Any, partial: Any) -> bool:
        """Whether ``partial`` is correct for ``total`` (its proof holds; for a scheme
        without proofs, whether it is well formed for ``total`` and its set)."""

    @abstractmethod
    def combine(self, total: Any, partials: list[Any]) -> np.ndarray:
        """The exact integer slot sums (int64) from ``t`` verified partials (a scheme
        without proofs raises :class:`~mpcai.errors.MisbehaviourDetected` when the
        result shows that a partial was wrong)."""


class PaillierScheme(Scheme):
    """Threshold Paillier: packed integer slots (:class:`~mpcai.he.paillier.PackingSpec`
    with no fractional bits), ciphertexts multiplied to add, Damgård–Jurik partial
    decryptions with batched proofs."""

    # PackedCiphertext.serialize: b"PPC" | version | key id (8) | int_bits, frac_bits (u16) |
    # K, summands (u32) | size (u64) | ciphertexts (fixed width)
    _PACKED_HEADER = 3 + 1 + 8 + 2 * 2 + 2 * 4 + 8
    # PartialDecryption.serialize: b"PTD" | version | key id (8) | index (u16) | count (u32) |
    # digest (32) | challenge (32) | response (u16 length | bytes) | values (fixed width)
    _PARTIAL_HEADER = 3 + 1 + 8 + 2 + 4 + 32 + 32 + 2

    def __init__(self, cfg: HEAggConfig, public_key: Any) -> None:
        if not isinstance(public_key, paillier.ThresholdPublicKey):
            raise InvalidType("the Paillier scheme needs a paillier.ThresholdPublicKey, not "
                              f"{type(public_key).__name__}")
        if (public_key.threshold, public_key.n_holders) != cfg.committee:
            raise InvalidInput(f"the key is {public_key.threshold} of {public_key.n_holders}, "
                               f"the configuration says committee={cfg.committee}")
        super().__init__(cfg, public_key)
        self.tpk: paillier.ThresholdPublicKey = public_key
        self.spec = cfg.spec
        slots = self.spec.slot_count(public_key.public_key)
        if slots < 1:
            raise InvalidInput("the key is too small for one slot")
        self.count = -(-cfg.length // slots)
        self.width = public_key.public_key.ciphertext_bytes

    def ciphertexts(self) -> int:
        """Paillier ciphertexts per message (``ceil((dim + 2) / slots)``)."""
        return self.count

    def encrypt(self, values: np.ndarray) -> bytes:
        # integers below 2^53 (checked by the configuration) are exact as float64
        ct = paillier.encrypt_packed(self.tpk, values.astype(np.float64), self.spec,
                                     randomness=self.cfg.randomness)
        return ct.serialize()  # fresh from encryption: not re-randomised again

    def input_bytes(self) -> int:
        return self._PACKED_HEADER + self.count * self.width

    def _load_packed(self, blob: object) -> paillier.PackedCiphertext:
        if not isinstance(blob, bytes) or len(blob) != self.input_bytes():
            raise InvalidCiphertext(f"a packed sum of {self.cfg.length} values under this key "
                                    f"has {self.input_bytes()} bytes")
        ct = paillier.PackedCiphertext.deserialize(self.tpk, blob)
        if ct.spec != self.spec or ct.size != self.cfg.length:
            raise InvalidCiphertext("the packed vector has another slot layout or size")
        return ct

    def load_input(self, blob: bytes) -> paillier.PackedCiphertext:
        ct = self._load_packed(blob)
        if ct.summands != 1:
            raise InvalidCiphertext("a client's input must be one vector, not a sum")
        return ct

    def add(self, a: paillier.PackedCiphertext, b: paillier.PackedCiphertext
            ) -> paillier.PackedCiphertext:
        return a + b

    def dump_sum(self, total: paillier.PackedCiphertext,
                 holders: tuple[int, ...] | None = None) -> bytes:
        return total.serialize()  # a homomorphic result: re-randomised (in place) first

    def load_sum(self, blob: bytes) -> tuple[paillier.PackedCiphertext, int]:
        ct = self._load_packed(blob)
        return ct, ct.summands

    def holder_index(self, share: Any) -> int:
        if not isinstance(share, paillier.KeyShare):
            raise InvalidType(f"a committee member needs a paillier.KeyShare, not "
                              f"{type(share).__name__}")
        if share.public_key != self.tpk:
            raise InvalidInput("the key share belongs to another threshold key")
        return share.index

    def partial_decrypt(self, share: paillier.KeyShare, total: paillier.PackedCiphertext
                        ) -> bytes:
        return paillier.partial_decrypt(share, total, workers=self.cfg.workers).serialize()

    def load_partial(self, blob: bytes, total: Any = None
                     ) -> tuple[int, paillier.PartialDecryption]:
        lo = self._PARTIAL_HEADER + self.count * self.width
        hi = lo + (self.tpk.response_bits + 7) // 8
        if not isinstance(blob, bytes) or not lo <= len(blob) <= hi:
            raise InvalidInput(f"a partial decryption of this sum has {lo} to {hi} bytes")
        part = paillier.PartialDecryption.deserialize(self.tpk, blob)
        if part.count != self.count:
            raise InvalidInput("the partial decryption covers another number of ciphertexts")
        return part.index, part

    def verify_partial(self, total: paillier.PackedCiphertext,
                       partial: paillier.PartialDecryption) -> bool:
        return paillier.verify_partial(self.tpk, total, partial)

    def combine(self, total: paillier.PackedCiphertext,
                partials: list[paillier.PartialDecryption]) -> np.ndarray:
        sums = paillier.combine(self.tpk, total, partials, verify=False)  # verified already
        assert isinstance(sums, np.ndarray)
        return sums.astype(np.int64)  # exact: below 2^53 (the configuration checks it)


def scheme_for(cfg: HEAggConfig, public_key: Any) -> Scheme:
    """The scheme ``cfg.scheme`` names, over ``public_key``."""
    if cfg.scheme == "ckks":
        from ._ckks import CKKSScheme  # TenSEAL loads only when CKKS is used

        return CKKSScheme(cfg, public_key)
    return PaillierScheme(cfg, public_key)
