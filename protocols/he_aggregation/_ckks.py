"""The committee CKKS scheme of HE aggregation (``HEAggConfig(scheme="ckks")``).

Clients encrypt their integer values as reals under the committee's public
context (:class:`~mpcai.he.ckks.ThresholdContext`, preset ``"n8192-agg"``: 4,096
values per ciphertext); the aggregator adds the vectors; the ``t`` holders of a
decryption set ``S`` that the aggregator names *before* anyone decrypts release
flooded partial decryptions (:func:`~mpcai.he.ckks.partial_decrypt`), and their
combination (:func:`~mpcai.he.ckks.combine`) is rounded to the integer sums.
Three differences from threshold Paillier, absorbed by the roles (``set_bound``):

* a partial is valid for its set only (each holder weights its share by the set's
  Lagrange coefficient, then floods), so the sum carries ``S``, members outside
  ``S`` answer nothing, and a member of ``S`` that drops costs another request
  with another set;
* there are no proofs of correct decryption: :meth:`CKKSScheme.verify_partial` is
  structural (key, ciphertext digests, level, the sum's set), and
  :meth:`CKKSScheme.combine` refuses a result that is not within 0.25 of integers
  everywhere (honest flooding errors are ~1e-7): random or large tampering is
  caught, an added exact integer vector is not;
* serialised vectors are TenSEAL protobufs (zstd-compressed by TenSEAL), so a
  client message has a bounded, not a fixed, length;
* an RLWE ciphertext does not show its key: a client message names the committee
  key (its 16-byte id) so that a client set up with another key is rejected, but
  a ciphertext under another key (or any crafted one) with the right id is
  accepted, and spoils the sum: its decryption is then not a sum of integers and
  the round fails (:class:`~mpcai.errors.MisbehaviourDetected`), or, crafted,
  it can make the committee reveal its key (the package's threat model).

Only public ``mpcai`` names are used (the protocol layer's rule).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpcai.errors import InvalidCiphertext, InvalidInput, InvalidType, MisbehaviourDetected
from mpcai.he import ckks

from ._scheme import Scheme
from .config import CKKS_MAX_SUM, CKKS_MAX_VALUE, HEAggConfig

__all__ = ["INTEGRALITY_TOLERANCE", "PRESET", "CKKSScheme", "CKKSSum"]

PRESET = "n8192-agg"
"""The CKKS parameters the aggregation's bounds are stated for."""

INTEGRALITY_TOLERANCE = 0.25
"""A combined sum farther than this from an integer anywhere means a wrong partial."""

_INPUT_MAGIC = b"HCI1"  # then the committee key id (16 bytes), the vector
_SUM_MAGIC = b"HCS1"
_SUM_HEAD = struct.Struct("<4sIH")  # magic, summands, |S|; then S (u16 each), the vector
# PartialDecryption.serialize: magic (8) | key id (16) | holder, |S| (u16) | count (u32) |
# primes (u8) | N (u32) | sigma (f64) | parms id (4 u64); then S, digests (32 each), values
_PART_FIXED = 8 + 16 + 2 + 2 + 4 + 1 + 4 + 8 + 32
_PROTO_SLACK = 1024  # protobuf and SEAL headers per ciphertext (zstd cannot shrink residues)


@dataclass
class CKKSSum:
    """A CKKS vector, the number of fresh encryptions in it, and (once the aggregator has
    chosen it, or as received) the decryption set and a digest of the vector's bytes."""

    vec: ckks.CKKSVector
    summands: int
    holders: tuple[int, ...] = ()
    digest: bytes = b""


class CKKSScheme(Scheme):
    """Committee CKKS (:mod:`mpcai.he.ckks`): integer values encrypted as reals, added
    homomorphically, decrypted by a set of ``t`` holders named in the sum."""

    set_bound = True

    def __init__(self, cfg: HEAggConfig, public_key: Any) -> None:
        if not isinstance(public_key, ckks.ThresholdContext):
            raise InvalidType("the CKKS scheme needs a ckks.ThresholdContext, not "
                              f"{type(public_key).__name__}")
        if (public_key.threshold, public_key.n_holders) != cfg.committee:
            raise InvalidInput(f"the key is {public_key.threshold} of {public_key.n_holders}, "
                               f"the configuration says committee={cfg.committee}")
        preset = public_key.context.preset
        if preset.name != PRESET:
            raise InvalidInput(f"CKKS aggregation needs a committee key of preset {PRESET!r}, "
                               f"not {preset.name!r}")
        if cfg.top >= min(CKKS_MAX_VALUE, preset.max_abs_value) \
                or cfg.n_clients * cfg.top >= CKKS_MAX_SUM:
            raise InvalidInput(f"values up to {cfg.top} from {cfg.n_clients} clients exceed "
                               "CKKS's range (values < 2^32, sums < 2^37)")
        super().__init__(cfg, public_key)
        self.tctx: ckks.ThresholdContext = public_key
        self.ctx = public_key.context
        self.count = -(-cfg.length // self.ctx.slot_count)
        primes = len(preset.coeff_mod_bit_sizes) - 1  # the special prime is not sent
        self.ct_bytes = 2 * primes * public_key.poly_modulus_degree * 8  # uncompressed
        self.part_values = self.count * primes * public_key.poly_modulus_degree * 8

    def ciphertexts(self) -> int:
        """CKKS ciphertexts per message (``ceil((dim + 2) / 4096)``)."""
        return self.count

    # ---- clients
    def encrypt(self, values: np.ndarray) -> bytes:
        # integers below 2^32 are exact as float64 and as CKKS plaintexts at scale 2^80
        return (_INPUT_MAGIC + self.tctx.key_id
                + self.ctx.encrypt(values.astype(np.float64)).serialize())

    # ---- the aggregator
    def input_bytes(self) -> int:
        """An upper bound: uncompressed ciphertexts plus protobuf and tag overhead."""
        return 4 + 16 + self._vector_bytes()

    def _vector_bytes(self) -> int:
        return self.count * (self.ct_bytes + _PROTO_SLACK) + 64

    def _load_vector(self, blob: object) -> ckks.CKKSVector:
        limit = self._vector_bytes()
        if not isinstance(blob, bytes) or len(blob) > limit:
            raise InvalidCiphertext(f"a CKKS vector of {self.cfg.length} values has at most "
                                    f"{limit} bytes")
        vec = ckks.CKKSVector.deserialize(self.ctx, blob, max_bytes=limit)
        if vec.size != self.cfg.length or vec.ciphertext_count != self.count:
            raise InvalidCiphertext(f"the vector has {vec.size} values in "
                                    f"{vec.ciphertext_count} ciphertexts, not "
                                    f"{self.cfg.length} in {self.count}")
        if vec.level != self.ctx.preset.depth:
            raise InvalidCiphertext("the vector is not at the fresh level")
        if vec.scale != 2.0 ** self.ctx.preset.scale_bits:  # else adding it would fail
            raise InvalidCiphertext(f"the vector's scale {vec.scale} is not the fresh scale")
        return vec

    def load_input(self, blob: bytes) -> CKKSSum:
        if not isinstance(blob, bytes) or not 20 < len(blob) <= self.input_bytes():
            raise InvalidCiphertext(f"a client's CKKS input has at most {self.input_bytes()} "
                                    "bytes")
        if blob[:4] != _INPUT_MAGIC or blob[4:20] != self.tctx.key_id:
            raise InvalidCiphertext("the input is not a CKKS vector under this committee key")
        return CKKSSum(self._load_vector(blob[20:]), 1)

    def add(self, a: CKKSSum, b: CKKSSum) -> CKKSSum:
        return CKKSSum(a.vec + b.vec, a.summands + b.summands)

    def _check_set(self, holders: object) -> tuple[int, ...]:
        if isinstance(holders, (str, bytes)) or not hasattr(holders, "__iter__"):
            raise InvalidType("a decryption set is a sequence of holder indices")
        s = tuple(sorted(int(h) for h in holders))  # type: ignore[attr-defined]
        if len(s) != self.cfg.threshold or len(set(s)) != len(s) \
                or not all(1 <= h <= self.cfg.committee_size for h in s):
            raise InvalidInput(f"a decryption set is {self.cfg.threshold} distinct holders of "
                               f"1..{self.cfg.committee_size}, got {s}")
        return s

    def dump_sum(self, total: CKKSSum, holders: tuple[int, ...] | None = None) -> bytes:
        s = self._check_set(holders if holders is not None
                            else range(1, self.cfg.threshold + 1))
        body = total.vec.serialize()
        total.holders = s
        total.digest = hashlib.sha256(body).digest()
        return (_SUM_HEAD.pack(_SUM_MAGIC, total.summands, len(s))
                + struct.pack(f"<{len(s)}H", *s) + body)

    # ---- committee members
    def load_sum(self, blob: bytes) -> tuple[CKKSSum, int]:
        t = self.cfg.threshold
        off = _SUM_HEAD.size + 2 * t
        limit = off + self._vector_bytes()
        if not isinstance(blob, bytes) or not off < len(blob) <= limit:
            raise InvalidInput(f"a CKKS sum has {off + 1} to {limit} bytes")
        magic, summands, m = _SUM_HEAD.unpack_from(blob)
        if magic != _SUM_MAGIC or m != t or not 1 <= summands <= self.cfg.n_clients:
            raise InvalidInput("malformed CKKS sum header")
        holders = self._check_set(struct.unpack_from(f"<{m}H", blob, _SUM_HEAD.size))
        body = blob[off:]
        vec = self._load_vector(body)
        return CKKSSum(vec, summands, holders, hashlib.sha256(body).digest()), summands

    def decryption_set(self, total: CKKSSum) -> tuple[int, ...]:
        return total.holders

    def sum_digest(self, total: CKKSSum) -> bytes:
        return total.digest

    def holder_index(self, share: Any) -> int:
        if not isinstance(share, ckks.KeyShare):
            raise InvalidType(f"a committee member needs a ckks.KeyShare, not "
                              f"{type(share).__name__}")
        if share.context.key_id != self.tctx.key_id:
            raise InvalidInput("the key share belongs to another committee key")
        return share.index

    def partial_decrypt(self, share: ckks.KeyShare, total: CKKSSum) -> bytes | None:
        """The flooded partial decryption for the sum's set, or ``None`` outside it.  The
        a-priori noise bound is the declared number of summands, which the member role
        has checked against the participant list."""
        if share.index not in total.holders:
            return None
        return ckks.partial_decrypt(share, total.vec, total.holders,
                                    summands=total.summands).serialize()

    # ---- the aggregator again
    def load_partial(self, blob: bytes, total: CKKSSum) -> tuple[int, ckks.PartialDecryption]:
        m = len(total.holders)
        exact = _PART_FIXED + 2 * m + 32 * self.count + self.part_values
        if not isinstance(blob, bytes) or len(blob) != exact:
            raise InvalidInput(f"a partial decryption of this sum has {exact} bytes")
        part = ckks.PartialDecryption.deserialize(self.tctx, blob, max_bytes=exact)
        return part.holder, part

    def verify_partial(self, total: CKKSSum, partial: ckks.PartialDecryption) -> bool:
        """Structural only (no proofs exist for these partials): the key, the sum's
        ciphertexts, the level, and the set the sum named."""
        return (partial.holders == total.holders and partial.holder in total.holders
                and ckks.check_partial(self.tctx, total.vec, partial))

    def combine(self, total: CKKSSum, partials: list[ckks.PartialDecryption]) -> np.ndarray:
        x = ckks.combine(self.tctx, total.vec, partials)
        r = np.rint(x)
        worst = float(np.max(np.abs(x - r))) if x.size else 0.0
        if not math.isfinite(worst) or worst > INTEGRALITY_TOLERANCE:
            raise MisbehaviourDetected(
                f"the combined sum is {worst:.3g} away from integers (honest flooding errors "
                "are ~1e-7): a partial decryption of the set was wrong, or a client's "
                "ciphertext was not a fresh encryption under the committee key",
                [int(p.holder) for p in partials])
        if float(np.max(np.abs(r))) >= CKKS_MAX_SUM:
            raise MisbehaviourDetected("the combined sum is beyond CKKS's range",
                                       [int(p.holder) for p in partials])
        return r.astype(np.int64)
