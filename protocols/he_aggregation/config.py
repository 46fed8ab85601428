"""Configuration of HE aggregation: the parameters and their checks.

Each client's update is clipped to ``[-clip, clip]``, quantised to
``[0, 2^bits - 1]`` (:func:`mpcai.encoding.quantize`) and multiplied by its
integer weight; the weight and the client's count of clipped values ride
along as two more values.  Every value is below ``2^int_bits`` with
``int_bits`` the bit length of ``(2^bits - 1) * max_weight``; the packed slots
hold the sum of ``n_clients`` of them without carrying into the next slot.  A
configuration whose sums could reach 2^53 (beyond float64's exact integers) is
refused when it is built; below that bound every slot fits in 56 bits, so no
sum can carry into the next slot.  With ``scheme="ckks"`` the bounds are those of
the ``"n8192-agg"`` preset: every value a client sends below 2^32 and every sum
below 2^37 (:data:`CKKS_MAX_SUM`), beyond which the decrypted sum is wrong.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from mpcai.encoding import CLIP_RANGE, MAX_QUANT_BITS
from mpcai.errors import InvalidInput, InvalidType
from mpcai.he.paillier import PackingSpec
from mpcai.validation import check_int, check_real

__all__ = ["CKKS_MAX_SUM", "CKKS_MAX_VALUE", "CLIPPED_COUNT_CAP", "HEAggConfig", "Stage",
           "decrypt_tag"]

CLIPPED_COUNT_CAP: int = (1 << 16) - 1
"""A client's count of clipped values saturates here (and at the slot's top value)."""

MAX_COMMITTEE: int = 256
"""Largest committee (the threshold key's holder limit)."""

CKKS_MAX_VALUE: int = 1 << 32
"""CKKS: every value a client encrypts stays below this (preset ``"n8192-agg"``)."""

CKKS_MAX_SUM: int = 1 << 37
"""CKKS: every slot sum stays below this (the 120-bit modulus holds the scaled sum, its
error and the floods of the committee)."""


class Stage(enum.Enum):
    """The two messages of a round, also their tags: clients send ``input`` to the
    aggregator; the aggregator sends the sum to the committee and each member
    answers under ``decrypt``."""

    INPUT = "input"
    DECRYPT = "decrypt"


def decrypt_tag(attempt: int) -> str:
    """The tag of the aggregator's ``attempt``-th decryption request (1, 2, ...) and of
    the answers to it: ``"decrypt"``, then ``"decrypt/2"``, ...  (tags are single use;
    only a ``set_bound`` scheme, CKKS, asks more than once)."""
    return Stage.DECRYPT.value if attempt == 1 else f"{Stage.DECRYPT.value}/{attempt}"


@dataclass(frozen=True)
class HEAggConfig:
    """Parameters of one HE aggregation.

    Party ids: the aggregator is 0, clients ``1..n_clients``, committee member
    ``i`` (holder ``i`` of the threshold key, ``1..committee[1]``) is party
    ``n_clients + i``.

    Attributes:
        n_clients: the number of clients.
        dim: the number of values in every update (the committee refuses sums
            of any other length).
        committee: ``(t, l)``: any ``t`` of the ``l`` key holders decrypt; fewer
            learn nothing.
        clip: updates are clipped (or refused) outside ``[-clip, clip]``.
        bits: quantisation levels ``2^bits - 1`` over the clipping range.
        max_weight: the largest per-client weight (e.g. sample count).
        out_of_range: ``"clip"`` values beyond ``clip`` (counted and reported) or
            ``"raise"``.
        min_clients: the fewest clients whose inputs the aggregator will have
            decrypted (and committee members decrypt, as declared by the
            aggregator); fewer gives :class:`~mpcai.errors.NotEnoughSurvivors`.
        timeout: seconds the aggregator waits for the clients' inputs (from its
            start: the deadline of the one round).
        decrypt_timeout: seconds the aggregator waits for partial decryptions
            (each member decrypts the whole sum: ~28 ms per ciphertext at 2048
            bits, ``ceil((dim + 2) / slots)`` ciphertexts; CKKS: per decryption set
            asked, ~7 ms per 4,096 values).
        workers: threads per committee member for its partial decryption (Paillier).
        scheme: the encryption scheme: ``"paillier"`` (threshold Paillier) or
            ``"ckks"`` (committee CKKS, :mod:`mpcai.he.ckks`; sums below 2^37).
        randomness: the DJN exponent length of the clients' encryptions
            (``"conservative"`` or ``"short"``, see :mod:`mpcai.he.paillier`; Paillier
            only).
    """

    n_clients: int
    dim: int
    committee: tuple[int, int] = (2, 3)
    clip: float = 1.0
    bits: int = 16
    max_weight: int = 1
    out_of_range: Literal["clip", "raise"] = "clip"
    min_clients: int = 2
    timeout: float = 60.0
    decrypt_timeout: float = 600.0
    workers: int = 1
    scheme: Literal["paillier", "ckks"] = "paillier"
    randomness: Literal["conservative", "short"] = "conservative"

    def __post_init__(self) -> None:
        n = check_int(self.n_clients, "n_clients", lo=1)
        object.__setattr__(self, "dim", check_int(self.dim, "dim", lo=1, hi=1 << 28))
        if isinstance(self.committee, (str, bytes)) or not hasattr(self.committee, "__len__") \
                or len(self.committee) != 2:
            raise InvalidType("committee must be a pair (t, l)")
        l_ = check_int(self.committee[1], "committee size l", lo=1, hi=MAX_COMMITTEE)
        t = check_int(self.committee[0], f"committee threshold t (of l = {l_})", lo=1, hi=l_)
        object.__setattr__(self, "committee", (t, l_))
        object.__setattr__(self, "min_clients",
                           check_int(self.min_clients, "min_clients", lo=1, hi=n))
        object.__setattr__(self, "bits", check_int(self.bits, "bits", lo=1, hi=MAX_QUANT_BITS))
        object.__setattr__(self, "max_weight", check_int(self.max_weight, "max_weight", lo=1))
        object.__setattr__(self, "clip", check_real(self.clip, "clip", lo=CLIP_RANGE[0],
                                                    hi=CLIP_RANGE[1]))
        if self.out_of_range not in ("clip", "raise"):
            raise InvalidInput("out_of_range must be 'clip' or 'raise'")
        for name in ("timeout", "decrypt_timeout"):
            object.__setattr__(self, name, check_real(getattr(self, name), name, positive=True))
        object.__setattr__(self, "workers", check_int(self.workers, "workers", lo=0, hi=256))
        if self.scheme not in ("paillier", "ckks"):
            raise InvalidInput(f"scheme must be 'paillier' or 'ckks', not {self.scheme!r}")
        if self.randomness not in ("conservative", "short"):
            raise InvalidInput("randomness must be 'conservative' or 'short'")
        # the largest sum of a slot: every client at the top level with the largest weight
        worst = n * self.top
        if worst >= 1 << 53:
            raise InvalidInput(
                f"unsafe: {n} clients x weight {self.max_weight} x {self.levels} "
                f"(2^{self.bits} - 1) can reach {worst} >= 2^53, beyond exact float64 sums; "
                "lower bits or max_weight")
        if self.scheme == "ckks" and (self.top >= CKKS_MAX_VALUE or worst >= CKKS_MAX_SUM):
            raise InvalidInput(
                f"unsafe for CKKS: {n} clients x weight {self.max_weight} x {self.levels} "
                f"(2^{self.bits} - 1) can reach {worst}; CKKS sums must stay below 2^37 "
                "(and each value below 2^32); lower bits or max_weight")
        # below 2^53 the slot (int_bits + 1 + ceil(log2 n) bits) is at most 56 bits wide
        assert self.spec.slot_bits <= 56

    @property
    def threshold(self) -> int:
        """``t``, how many committee members decrypt."""
        return self.committee[0]

    @property
    def committee_size(self) -> int:
        """``l``, the number of committee members (key holders)."""
        return self.committee[1]

    @property
    def levels(self) -> int:
        """Largest quantised value, ``2^bits - 1``."""
        return (1 << self.bits) - 1

    @property
    def top(self) -> int:
        """Largest value a client sends: ``levels * max_weight``."""
        return self.levels * self.max_weight

    @property
    def int_bits(self) -> int:
        """Bits of the largest value a client sends."""
        return self.top.bit_length()

    @property
    def clipped_cap(self) -> int:
        """Where each client's clipped count saturates (it must fit a slot value)."""
        return min(CLIPPED_COUNT_CAP, (1 << self.int_bits) - 1)

    @property
    def spec(self) -> PackingSpec:
        """The slot layout: integers (no fractional bits) of ``int_bits`` bits, sums of
        up to ``n_clients``."""
        return PackingSpec(int_bits=self.int_bits, frac_bits=0, max_summands=self.n_clients)

    @property
    def length(self) -> int:
        """Values per client message: the update, the clipped count, the weight."""
        return self.dim + 2

    def client_ids(self) -> list[int]:
        """The clients' party ids, ``1..n_clients``."""
        return list(range(1, self.n_clients + 1))

    def member_ids(self) -> list[int]:
        """The committee members' party ids, ``n_clients + 1 .. n_clients + l``
        (member ``i`` holds key share ``i``)."""
        return list(range(self.n_clients + 1, self.n_clients + self.committee_size + 1))
