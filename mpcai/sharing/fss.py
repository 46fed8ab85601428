"""Function secret sharing: distributed comparison functions and the one-round ReLU.

A **distributed comparison function** (DCF) for a secret threshold ``alpha``
and payload ``beta`` is a pair of keys; at any public point ``x`` the two
parties' evaluations add up (mod 2^64) to ``beta`` if ``x < alpha`` and to
0 otherwise, and each key alone reveals nothing about ``alpha`` or
``beta``.  The construction is Fig. 3 of Boyle, Chandran, Gilboa, Gupta,
Ishai, Kumar and Rathee, "Function Secret Sharing for Mixed-Mode and
Fixed-Point Secure Computation" (EUROCRYPT 2021), with ChaCha20 as the
length-doubling PRG; key generation and evaluation are C kernels
(``csrc/fss.c``), 16 keys at a time on AVX-512, bit-identical on every path.

The **ReLU gate** (:func:`deal_relu`) is what private inference uses: a
dealer who never sees any input hands party 0 and party 1 a :class:`ReluKey`
each, for a whole tensor of ReLUs.  Online, each party adds its share of a
random mask ``r`` to its share of ``y`` (:meth:`ReluKey.mask`) and the two
exchange the results, which opens ``y_hat = y + r`` (one round, one ring
element per element and party); then :meth:`ReluKey.relu` returns each
party's additive share of ``max(y, 0)`` (``y`` read as a signed 64-bit
integer), and :meth:`ReluKey.drelu` the share of ``[y >= 0]``, with no
further interaction.  The comparison is exact over the whole ring: there is
no range assumption on ``y``.

How: write ``r = m_r 2^63 + r_lo`` and ``y_hat = m 2^63 + y_lo``.  The sign
bit of ``y = y_hat - r`` is ``m xor m_r xor c`` with the borrow
``c = [y_lo < r_lo]``, which one 63-bit DCF with threshold ``r_lo``
evaluates at the public ``y_lo``.  Its payload ``((1 - 2 m_r), (1 - 2 m_r) r)``
gives shares of ``e = m_r xor c`` and ``e r`` with the dealer's shares of
``m_r`` and ``m_r r``; ``b = [y >= 0]`` is ``1 - e`` or ``e`` by the public
``m``, and ``relu(y) = b (y_hat - r) = y_hat [b] - [b r]``.

Each key is **single use**: opening two different values under the same
mask would reveal their difference, so a second :meth:`ReluKey.mask` raises
:class:`~mpcai.errors.TripleReuse`.

Size: the dealer sends each party 2,048 bytes of correction words per ReLU
(common to both keys) and party 1 also 24 bytes of share corrections; party
0's shares come from a 32-byte seed (:meth:`ReluKey.to_wire`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpcai import _bindings, prg
from mpcai.errors import InvalidInput, InvalidType, TripleReuse
from mpcai.sharing.additive import _ring_array as _u64
from mpcai.validation import check_bytes, check_int

__all__ = [
    "DcfKey",
    "ReluKey",
    "dcf_eval",
    "dcf_key_bytes",
    "dcf_keygen",
    "deal_relu",
]

_SEED_BYTES = 16
_MAX_KEYS = 1 << 28
_RELU_BITS = 63
_LOW = np.uint64((1 << 63) - 1)


def dcf_key_bytes(n_bits: int, width: int = 1) -> int:
    """Bytes of correction words per DCF key (the same for both parties)."""
    return _bindings.dcf_key_bytes(n_bits, width)


@dataclass(frozen=True)
class DcfKey:
    """One party's keys for a batch of DCFs (``seeds`` is theirs, ``cw`` common)."""

    party: int
    n_bits: int
    width: int
    #: ``m x 16`` bytes, this party's seed per key
    seeds: np.ndarray
    #: ``m x dcf_key_bytes(n_bits, width)`` bytes of correction words
    cw: np.ndarray

    @property
    def count(self) -> int:
        """The number of DCFs in the batch."""
        return int(self.seeds.shape[0])


def _seed_rows(seed: bytes, label: str, m: int) -> np.ndarray:
    words = prg.ring_vector(prg.derive_seed(seed, label), 2 * m)
    return words.view(np.uint8).reshape(m, _SEED_BYTES)


def dcf_keygen(
    alpha: np.ndarray, beta: np.ndarray, n_bits: int, *, threads: int = 1
) -> tuple[DcfKey, DcfKey]:
    """Keys for ``m`` DCFs: ``f_k(x) = beta[k]`` if ``x < alpha[k]`` else 0.

    ``alpha`` is a ``uint64`` vector of ``m`` thresholds below ``2^n_bits``
    (``1 <= n_bits <= 64``); ``beta`` is ``m`` payloads (``uint64``, shape
    ``(m,)`` or ``(m, width)`` with ``width`` 1 or 2).  Fresh seeds from the
    OS.  Returns the keys of party 0 and party 1.
    """
    alpha = _u64(alpha, "alpha")
    if alpha.ndim != 1:
        raise InvalidInput(f"alpha must be a vector, got shape {alpha.shape}")
    beta = _u64(beta, "beta")
    if beta.ndim == 1:
        beta = beta.reshape(-1, 1)
    if beta.ndim != 2 or beta.shape[0] != alpha.size or beta.shape[1] not in (1, 2):
        raise InvalidInput(
            f"beta must have shape ({alpha.size},) or ({alpha.size}, 1 or 2), got {beta.shape}"
        )
    n_bits = check_int(n_bits, "n_bits", lo=1, hi=64)
    check_int(alpha.size, "number of keys", lo=0, hi=_MAX_KEYS)
    if n_bits < 64 and alpha.size and int(alpha.max()) >> n_bits:
        raise InvalidInput(f"every alpha must be below 2^{n_bits}")
    seed = prg.new_seed()
    s0 = _seed_rows(seed, "fss/dcf/s0", alpha.size)
    s1 = _seed_rows(seed, "fss/dcf/s1", alpha.size)
    cw = _bindings.dcf_gen(n_bits, alpha, np.ascontiguousarray(beta), s0, s1, threads)
    w = int(beta.shape[1])
    return DcfKey(0, n_bits, w, s0, cw), DcfKey(1, n_bits, w, s1, cw)


def dcf_eval(key: DcfKey, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """This party's shares of ``f_k(x[k])`` for every key: ``uint64``, shape ``(m, width)``."""
    if not isinstance(key, DcfKey):
        raise InvalidType(f"key must be a DcfKey, not {type(key).__name__}")
    x = _u64(x, "x").reshape(-1)
    if x.size != key.count:
        raise InvalidInput(f"x has {x.size} points for {key.count} keys")
    if key.n_bits < 64 and x.size and int(x.max()) >> key.n_bits:
        raise InvalidInput(f"every point must be below 2^{key.n_bits}")
    return _bindings.dcf_eval(key.party, key.n_bits, key.width, key.seeds, key.cw, x, threads)


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)):
        raise InvalidType(f"shape must be an int or a tuple of ints, not {type(shape).__name__}")
    out = tuple(check_int(d, f"shape[{i}]", lo=0) for i, d in enumerate(shape))
    check_int(math.prod(out), "number of ReLUs", lo=0, hi=_MAX_KEYS)
    return out


class ReluKey:
    """One party's key for a tensor of one-round ReLUs (see the module docstring).

    Made by :func:`deal_relu` (the dealer) or :meth:`from_wire` (the party).
    :meth:`mask` may be called once; :meth:`relu` / :meth:`drelu` then take
    the opened ``y_hat`` (the sum of both parties' masked shares).
    """

    __slots__ = ("_corr", "_cw", "_parts", "_party", "_seed", "_shape", "_used")

    def __init__(
        self,
        party: int,
        shape: tuple[int, ...],
        seed: bytes,
        cw: np.ndarray,
        corrections: np.ndarray | None,
    ) -> None:
        self._party = check_int(party, "party", lo=0, hi=1)
        self._shape = _shape(shape)
        self._seed = check_bytes(seed, "seed", size=prg.SEED_BYTES)
        m = math.prod(self._shape)
        key_bytes = dcf_key_bytes(_RELU_BITS, 2)
        if not isinstance(cw, np.ndarray) or cw.dtype != np.uint8:
            raise InvalidType("cw must be a uint8 numpy array")
        if cw.shape != (m, key_bytes):
            raise InvalidInput(f"cw must have shape {(m, key_bytes)}, got {cw.shape}")
        if self._party == 1:
            if not isinstance(corrections, np.ndarray) or corrections.dtype != np.uint64:
                raise InvalidType("party 1's corrections must be a uint64 numpy array")
            if corrections.shape != (3, m):
                raise InvalidInput(f"corrections must have shape {(3, m)}, got {corrections.shape}")
        elif corrections is not None:
            raise InvalidInput("party 0's key has no corrections (its shares come from the seed)")
        self._cw = cw
        self._corr = corrections
        self._used = False
        self._parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def party(self) -> int:
        """0 or 1."""
        return self._party

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the tensor of ReLUs."""
        return self._shape

    def _shares(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This party's shares of (r, m_r, m_r * r), flat."""
        if self._parts is None:
            m = math.prod(self._shape)
            if self._party == 0:
                words = prg.ring_vector(prg.derive_seed(self._seed, "fss/relu/shares"), 3 * m)
                rows = words.reshape(3, m)
            else:
                assert self._corr is not None
                rows = self._corr
            self._parts = (rows[0], rows[1], rows[2])
        return self._parts

    def _dcf(self) -> DcfKey:
        m = math.prod(self._shape)
        seeds = _seed_rows(self._seed, "fss/relu/dcf", m)
        return DcfKey(self._party, _RELU_BITS, 2, seeds, self._cw)

    def mask(self, y_share: np.ndarray) -> np.ndarray:
        """This party's share of ``y + r``, to send to the other party (once only)."""
        y = _u64(y_share, "y_share")
        if y.shape != self._shape:
            raise InvalidInput(f"y_share has shape {y.shape}, the key is for {self._shape}")
        if self._used:
            raise TripleReuse("this ReLU key has already masked a value; a key is single-use")
        self._used = True
        return (y.reshape(-1) + self._shares()[0]).reshape(self._shape)

    def _b_shares(self, y_hat: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._used:
            raise InvalidInput("call mask() first: y_hat is the opening of both parties' masks")
        x = _u64(y_hat, "y_hat")
        if x.shape != self._shape:
            raise InvalidInput(f"y_hat has shape {x.shape}, the key is for {self._shape}")
        x = x.reshape(-1)
        r, m_r, m_r_r = self._shares()
        out = dcf_eval(self._dcf(), x & _LOW, threads=threads)
        e = m_r + out[:, 0]
        er = m_r_r + out[:, 1]
        one = np.uint64(1 - self._party)  # party 0 adds public constants
        high = (x >> np.uint64(63)).astype(bool)
        b = np.where(high, e, one - e)
        br = np.where(high, er, r - er)
        return b, br

    def drelu(self, y_hat: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """This party's additive share of ``[y >= 0]`` (0 or 1), ``y`` signed."""
        b, _ = self._b_shares(y_hat, threads)
        return b.reshape(self._shape)

    def relu(self, y_hat: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """This party's additive share of ``max(y, 0)``, ``y`` read as a signed int64."""
        b, br = self._b_shares(y_hat, threads)
        x = _u64(y_hat, "y_hat").reshape(-1)
        return (x * b - br).reshape(self._shape)

    def to_wire(self) -> dict[str, Any]:
        """What the dealer sends this party: seed, correction words, and for party 1
        the share corrections (codec-encodable: bytes, ints, arrays)."""
        d: dict[str, Any] = {
            "party": self._party,
            "shape": list(self._shape),
            "seed": self._seed,
            "cw": self._cw,
        }
        if self._corr is not None:
            d["corr"] = self._corr
        return d

    @classmethod
    def from_wire(cls, d: Any, *, party: int) -> ReluKey:
        """Rebuild a key received from the dealer, checking it is for ``party``."""
        if not isinstance(d, dict):
            raise InvalidType(f"a ReLU key must be a dict, not {type(d).__name__}")
        got = d.get("party")
        if type(got) is not int or got != party:  # an array here: an ambiguous truth value
            raise InvalidInput(f"this ReLU key is for party {got!r:.40}, not {party}")
        shape = d.get("shape")
        if not isinstance(shape, list):
            raise InvalidInput("a ReLU key needs its shape")
        return cls(party, tuple(shape), d.get("seed"), d.get("cw"), d.get("corr"))


def deal_relu(shape: int | tuple[int, ...], *, threads: int = 1) -> tuple[ReluKey, ReluKey]:
    """The dealer's side: keys of party 0 and party 1 for a tensor of ReLUs."""
    shape_t = _shape(shape)
    m = math.prod(shape_t)
    r = prg.random_ring(m)
    m_r = r >> np.uint64(63)
    one_minus = np.uint64(1) - np.uint64(2) * m_r  # 1 - 2 m_r mod 2^64
    beta = np.stack([one_minus, one_minus * r], axis=1)
    seed0, seed1 = prg.new_seed(), prg.new_seed()
    s0 = _seed_rows(seed0, "fss/relu/dcf", m)
    s1 = _seed_rows(seed1, "fss/relu/dcf", m)
    cw = _bindings.dcf_gen(_RELU_BITS, r & _LOW, np.ascontiguousarray(beta), s0, s1, threads)
    own = prg.ring_vector(prg.derive_seed(seed0, "fss/relu/shares"), 3 * m).reshape(3, m)
    corr = np.stack([r, m_r, m_r * r]) - own
    return ReluKey(0, shape_t, seed0, cw, None), ReluKey(1, shape_t, seed1, cw, corr)
