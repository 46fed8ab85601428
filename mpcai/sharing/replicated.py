"""Three-party replicated secret sharing over Z_2^64 (ABY3-style, semi-honest, one corruption).

The primitive layer of Mohassel and Rindal's ABY3 (CCS 2018) and of Araki et al.'s
"High-throughput semi-honest secure three-party computation" (CCS 2016): pure local
functions, no network I/O.  An engine (:mod:`mpcai.protocols.inference`) moves the
messages named below between the rounds.

**Convention.**  A secret ``x`` (``uint64``) is ``x = x_0 + x_1 + x_2 mod 2^64``; party
``i`` holds the pair ``(x_i, x_{i+1 mod 3})`` as a :class:`RepShare` ``(party=i, a=x_i,
b=x_{i+1})``.  Any two parties together hold every component; any one party's pair is
uniformly random and independent of ``x``.  Component ``x_j`` is held by parties ``j``
(as ``a``) and ``j - 1`` (as ``b``).  :class:`BinShare` is the same for XOR sharing of
``uint64`` words (``x = x_0 ^ x_1 ^ x_2``, 64 bits per word, vectorised over elements).

**Pairwise seeds and zero sharing.**  Seed ``k_j`` is known to parties ``j`` and
``j - 1``: party ``i`` holds ``seed_own = k_i`` (shared with party ``i - 1``) and
``seed_next = k_{i+1}`` (shared with party ``i + 1``); the engine's setup has each party
draw its ``k_i`` and send it to party ``i - 1``.  Every draw from a seed is
``ring_vector(derive_seed(k, "rep3/prf", context || counter), n)`` with a per-seed counter
that both holders advance in the same order and that never repeats.  The zero share
``alpha_i = PRG(k_i) - PRG(k_{i+1})`` sums to 0 over the three parties
(:meth:`ZeroSharer.next`; XOR version :meth:`ZeroSharer.next_bits`);
:meth:`ZeroSharer.common_next` / :meth:`ZeroSharer.common_prev` give randomness known to
this party and the next / previous one.

**Multiplication** (one round, one ring element sent per party per product):
:func:`mul_local` gives the 3-out-of-3 additive share ``z_i = x_i y_i + x_i y_{i+1} +
x_{i+1} y_i + alpha_i``; party ``i`` sends ``z_i`` to party ``i - 1`` and
:func:`from_additive` rebuilds the pair ``(z_i, z_{i+1})``.  :func:`matmul_local` is the
same with two Z_2^64 GEMMs, :func:`and_local` / :func:`from_xor` the same over GF(2).

**Truncation** (ABY3's Pi_trunc1 built from SecureML's local share truncation, Mohassel
and Zhang, S&P 2017).  From the additive product ``z = z_0 + z_1 + z_2`` (scale ``2f``)
to a replicated ``y ~ z / 2^f`` in two rounds, one ring element sent per party:

- round 1: party 0 sends ``y_0 = z_0 >> f`` to party 2; party 2 sends ``z_2`` to party 1;
- round 2: party 1 sends ``y_1 = -((-(z_1 + z_2)) >> f) - r`` to party 0, where ``r``
  is common randomness of parties 1 and 2 (seed ``k_2``) and ``y_2 = r``.

Party 0 ends with ``(y_0, y_1)``, party 1 with ``(y_1, y_2)``, party 2 with ``(y_2, y_0)``
(:func:`trunc_p0_round1`, :func:`trunc_p1_round2`, :func:`trunc_p0_finish`,
:func:`trunc_p2_finish`).  ``(z_0, z_1 + z_2)`` is a 2-out-of-2 sharing with ``z_0``
uniform (it carries ``alpha_0``); both shifts are logical (unsigned), so for
``|z| < 2^l`` the result is within 1 ulp of ``z / 2^f`` unless ``z_0`` falls in a window
of ``|z|`` values: the failure rate is exactly ``|z| / 2^64 <= 2^(l - 64)``, within
SecureML's bound ``2^(l + 1 - 64)`` (:func:`truncation_failure_probability`); a failure
is off by about ``2^(64 - f)``.

**Comparison** (the most significant bit, ABY3 section 5.3): party 0 knows ``x_0`` and
``x_1``, so it boolean-shares ``v = x_0 + x_1`` (one word to party 1: ``v_1 = v ^ v_0``
with ``v_0`` common to parties 0 and 2, ``v_2 = 0``); ``x_2`` is known to parties 1 and 2
and is a trivial boolean sharing ``(0, 0, x_2)``.  The MSB of ``v + x_2`` is ``p_63 ^
c_63`` with ``g = v & x_2`` (one AND round), ``p = v ^ x_2`` and the carry ``c_63`` into
bit 63 computed by a Brent-Kung-style reduction tree of (G, P) pairs over bits 0..62
(6 AND rounds).  The AND layers run on a *bit-sliced* layout (:func:`bitslice`: row
``j`` holds bit ``j`` of 64 elements per word), so only the bits the tree needs are
sent: 63 + 61 + 31 + 15 + 7 + 3 + 1 = 181 bits per element and party
(:func:`msb_inputs`, :func:`carry_start`, :func:`carry_level_inputs`,
:func:`carry_level_combine`, :func:`msb_finish`).

**Bit to arithmetic** (:func:`b2a_p0_round1`, :func:`b2a_p2_round1`, :func:`b2a_p1_round1`,
:func:`b2a_p1_round2`, :func:`b2a_p2_finish`): ABY3's three-party OT.  Party 0 knows
``c = b_0 ^ b_1``, parties 1 and 2 know ``b_2``; party 0 draws ``d_0`` (with party 2)
and ``d_1`` (with party 1), masks ``m_t = (c ^ t ^ flip) - d_0 - d_1`` for ``t = 0, 1``
with two pads ``w_t`` common with party 2 and sends both to party 1; party 2 sends
``w_{b_2}``; party 1 unmasks ``d_2 = m_{b_2}`` and forwards it to party 2.  Two rounds;
party 0 sends 2 ring elements, parties 1 and 2 one each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mpcai import _bindings, prg
from mpcai.errors import InconsistentShares, InvalidInput, InvalidType, TripleReuse
from mpcai.sharing import additive
from mpcai.validation import check_bytes, check_int

__all__ = [
    "CARRY_LEVELS",
    "MSB_AND_BITS",
    "BinShare",
    "RepShare",
    "ZeroSharer",
    "add",
    "add_public",
    "and_local",
    "and_public",
    "b2a_p0_round1",
    "b2a_p1_round1",
    "b2a_p1_round2",
    "b2a_p2_finish",
    "b2a_p2_round1",
    "bitslice",
    "carry_and_inputs",
    "carry_level_combine",
    "carry_level_inputs",
    "carry_start",
    "from_additive",
    "from_xor",
    "matmul_local",
    "matmul_public",
    "msb_finish",
    "msb_inputs",
    "mul_local",
    "mul_public",
    "neg",
    "reconstruct",
    "reconstruct_bits",
    "share",
    "share_bits",
    "sub",
    "trivial",
    "trunc_high",
    "trunc_low",
    "trunc_p0_finish",
    "trunc_p0_round1",
    "trunc_p1_round2",
    "trunc_p2_finish",
    "truncation_failure_probability",
    "unbitslice",
    "xor",
    "xor_public",
]

_MAX_FRAC = 62
_MASK64 = (1 << 64) - 1

CARRY_LEVELS: int = 6
"""AND rounds of the carry tree over bits 0..62 (ceil(log2 63))."""

MSB_AND_BITS: int = 63 + 61 + 31 + 15 + 7 + 3 + 1
"""Bits each party sends per element in the AND layers of :func:`msb_inputs` .. :func:`msb_finish`
(181: the generate layer, then the six tree levels)."""


# --------------------------------------------------------------------------- share types


def _u64(x: object, name: str) -> np.ndarray:
    if isinstance(x, (np.uint64, np.int64)):  # what arithmetic on 0-d arrays returns
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise InvalidType(f"{name} must be a numpy array, not {type(x).__name__}")
    if x.dtype == np.int64:
        return x.view(np.uint64)
    if x.dtype != np.uint64:
        raise InvalidType(f"{name} must have dtype uint64 (or int64), not {x.dtype}")
    return x


def _check_party(party: object) -> int:
    return check_int(party, "party", lo=0, hi=2)


def _check_pair(share: RepShare | BinShare) -> None:
    """Check a share's party and components (uint64, same shape), in place."""
    object.__setattr__(share, "party", _check_party(share.party))
    a, b = _u64(share.a, "a"), _u64(share.b, "b")
    if a.shape != b.shape:
        raise InvalidInput(f"share components differ in shape: {a.shape} and {b.shape}")
    object.__setattr__(share, "a", a)
    object.__setattr__(share, "b", b)


@dataclass(frozen=True, slots=True)
class RepShare:
    """Party ``party``'s share of an arithmetic secret: ``a = x_party``, ``b = x_{party+1}``.

    Both are ``uint64`` arrays of the secret's shape (``int64`` is accepted and viewed
    as ``uint64``).
    """

    party: int
    a: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        _check_pair(self)

    @property
    def shape(self) -> tuple[int, ...]:
        """The secret's shape."""
        return self.a.shape


@dataclass(frozen=True, slots=True)
class BinShare:
    """Party ``party``'s share of an XOR-shared array of 64-bit words: ``a = x_party``,
    ``b = x_{party+1}`` (``x = x_0 ^ x_1 ^ x_2``)."""

    party: int
    a: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        _check_pair(self)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the shared array of words."""
        return self.a.shape


def _check_rep(x: object, name: str) -> RepShare:
    if not isinstance(x, RepShare):
        raise InvalidType(f"{name} must be a RepShare, not {type(x).__name__}")
    return x


def _check_bin(x: object, name: str) -> BinShare:
    if not isinstance(x, BinShare):
        raise InvalidType(f"{name} must be a BinShare, not {type(x).__name__}")
    return x


def _same_party(x: RepShare | BinShare, y: RepShare | BinShare) -> None:
    if x.party != y.party:
        raise InvalidInput(f"shares of different parties: {x.party} and {y.party}")


def _broadcast(x: RepShare | BinShare, y: RepShare | BinShare) -> None:
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError as exc:
        raise InvalidInput(f"shapes do not broadcast: {x.shape} and {y.shape}") from exc


# --------------------------------------------------------------------------- sharing


def share(x: np.ndarray) -> list[RepShare]:
    """The three parties' shares of ``x`` (fresh OS randomness for ``x_0``, ``x_1``)."""
    comps = additive.share(_u64(x, "x"), 3)
    return [RepShare(i, comps[i], comps[(i + 1) % 3]) for i in range(3)]


def share_bits(x: np.ndarray) -> list[BinShare]:
    """The three parties' XOR shares of the words ``x`` (fresh OS randomness)."""
    x = _u64(x, "x")
    c0 = prg.random_ring(x.size).reshape(x.shape)
    c1 = prg.random_ring(x.size).reshape(x.shape)
    comps = [c0, c1, x ^ c0 ^ c1]
    return [BinShare(i, comps[i], comps[(i + 1) % 3]) for i in range(3)]


def _components(shares: Sequence[object], cls: type) -> list[np.ndarray]:
    if isinstance(shares, np.ndarray) or not 2 <= len(shares) <= 3:
        raise InvalidInput("reconstruct needs two or three shares of distinct parties")
    comps: dict[int, np.ndarray] = {}
    seen: set[int] = set()
    for k, s in enumerate(shares):
        if not isinstance(s, cls):
            raise InvalidType(f"shares[{k}] must be a {cls.__name__}, not {type(s).__name__}")
        if s.party in seen:
            raise InvalidInput(f"two shares of party {s.party}")
        seen.add(s.party)
        for j, arr in ((s.party, s.a), ((s.party + 1) % 3, s.b)):
            if j in comps:
                if comps[j].shape != arr.shape or not np.array_equal(comps[j], arr):
                    raise InconsistentShares(f"the parties disagree on component {j}")
            else:
                comps[j] = arr
    shape = comps[0].shape
    if any(c.shape != shape for c in comps.values()):
        raise InvalidInput("the shares have different shapes")
    return [comps[j] for j in range(3)]


def reconstruct(shares: Sequence[RepShare]) -> np.ndarray:
    """``x = x_0 + x_1 + x_2 mod 2^64`` from any two (or all three) parties' shares.

    With three shares the duplicated components are compared:
    :class:`~mpcai.errors.InconsistentShares` if they differ.
    """
    c = _components(shares, RepShare)
    return c[0] + c[1] + c[2]


def reconstruct_bits(shares: Sequence[BinShare]) -> np.ndarray:
    """``x = x_0 ^ x_1 ^ x_2`` from any two (or all three) parties' XOR shares."""
    c = _components(shares, BinShare)
    return c[0] ^ c[1] ^ c[2]


def trivial(
    party: int,
    component: int,
    value: np.ndarray,
    *,
    boolean: bool = False,
) -> RepShare | BinShare:
    """Party ``party``'s share of the sharing whose only non-zero component is
    ``x_component = value`` (known to parties ``component`` and ``component - 1``, which
    must pass it; the third party passes anything of the right shape and gets zeros).

    Not hiding by itself: used for values two parties already know (a share component in
    a conversion), before a multiplication or AND re-randomises them.
    """
    party = _check_party(party)
    component = check_int(component, "component", lo=0, hi=2)
    value = _u64(value, "value")
    zero = np.zeros(value.shape, dtype=np.uint64)
    a = value if party == component else zero
    b = value if (party + 1) % 3 == component else zero
    return BinShare(party, a, b) if boolean else RepShare(party, a, b)


# --------------------------------------------------------------------------- linear operations


def add(x: RepShare, y: RepShare) -> RepShare:
    """Share of ``x + y`` (local; numpy broadcasting applies)."""
    x, y = _check_rep(x, "x"), _check_rep(y, "y")
    _same_party(x, y)
    _broadcast(x, y)
    return RepShare(x.party, x.a + y.a, x.b + y.b)


def sub(x: RepShare, y: RepShare) -> RepShare:
    """Share of ``x - y`` (local; numpy broadcasting applies)."""
    x, y = _check_rep(x, "x"), _check_rep(y, "y")
    _same_party(x, y)
    _broadcast(x, y)
    return RepShare(x.party, x.a - y.a, x.b - y.b)


def neg(x: RepShare) -> RepShare:
    """Share of ``-x`` (local)."""
    x = _check_rep(x, "x")
    zero = np.zeros((), dtype=np.uint64)
    return RepShare(x.party, zero - x.a, zero - x.b)


def _public(c: object, name: str = "public value") -> np.ndarray:
    if isinstance(c, (bool, np.bool_)):
        raise InvalidType(f"{name} must be an integer, not bool")
    if isinstance(c, (int, np.integer)):
        return np.array(int(c) & _MASK64, dtype=np.uint64)
    if isinstance(c, np.ndarray):
        return _u64(c, name)
    raise InvalidType(f"{name} must be an int or an int64/uint64 array, not {type(c).__name__}")


def mul_public(x: RepShare, c: int | np.ndarray) -> RepShare:
    """Share of ``c * x`` for a public integer or integer array ``c`` (local, mod 2^64;
    a fixed-point ``c`` doubles the fractional bits)."""
    x = _check_rep(x, "x")
    cc = _public(c)
    try:
        return RepShare(x.party, x.a * cc, x.b * cc)
    except ValueError as exc:
        raise InvalidInput(f"public value of shape {cc.shape} for a share {x.shape}") from exc


def add_public(x: RepShare, c: int | np.ndarray) -> RepShare:
    """Share of ``x + c``: ``c`` is added to component ``x_0``, so party 0 changes ``a``
    and party 2 changes ``b``; party 1's share is unchanged (local)."""
    x = _check_rep(x, "x")
    cc = _public(c)
    a = x.a + cc if x.party == 0 else x.a + np.zeros_like(cc)
    b = x.b + cc if x.party == 2 else x.b + np.zeros_like(cc)
    return RepShare(x.party, a, b)


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim != 2 or b.ndim != 2:
        raise InvalidInput(f"matrix products need 2-d operands, got {a.shape} and {b.shape}")
    return _bindings.ring64_gemm(a, b)


def matmul_public(x: RepShare | np.ndarray, y: RepShare | np.ndarray) -> RepShare:
    """Share of ``x @ y`` where one operand is a share and the other a public uint64/int64
    matrix (local, two Z_2^64 GEMMs)."""
    if isinstance(x, RepShare) and not isinstance(y, RepShare):
        c = _public(y)
        return RepShare(x.party, _gemm(x.a, c), _gemm(x.b, c))
    if isinstance(y, RepShare) and not isinstance(x, RepShare):
        c = _public(x)
        return RepShare(y.party, _gemm(c, y.a), _gemm(c, y.b))
    raise InvalidType("matmul_public needs exactly one RepShare and one public array")


def xor(x: BinShare, y: BinShare) -> BinShare:
    """XOR share of ``x ^ y`` (local; broadcasting applies)."""
    x, y = _check_bin(x, "x"), _check_bin(y, "y")
    _same_party(x, y)
    _broadcast(x, y)
    return BinShare(x.party, x.a ^ y.a, x.b ^ y.b)


def xor_public(x: BinShare, c: int | np.ndarray) -> BinShare:
    """XOR share of ``x ^ c`` (``c`` goes into component ``x_0``: parties 0 and 2)."""
    x = _check_bin(x, "x")
    cc = _public(c)
    a = x.a ^ cc if x.party == 0 else x.a ^ np.zeros_like(cc)
    b = x.b ^ cc if x.party == 2 else x.b ^ np.zeros_like(cc)
    return BinShare(x.party, a, b)


def and_public(x: BinShare, c: int | np.ndarray) -> BinShare:
    """XOR share of ``x & c`` for public words ``c`` (local)."""
    x = _check_bin(x, "x")
    cc = _public(c)
    return BinShare(x.party, x.a & cc, x.b & cc)


# --------------------------------------------------------------------------- correlated randomness


class ZeroSharer:
    """Party ``party``'s pairwise seeds and the randomness they give.

    ``seed_own = k_party`` is shared with party ``party - 1``, ``seed_next =
    k_{party+1}`` with party ``party + 1``.  Each seed has its own draw counter; both
    holders of a seed must make the same draws from it in the same order (the protocol's
    program order does this).  A draw is ``ring_vector(derive_seed(k, "rep3/prf",
    context || counter), n)``; counters only grow, so no draw is ever repeated.
    """

    __slots__ = ("_context", "_ctr", "_seeds", "party")

    def __init__(
        self, party: int, seed_own: bytes, seed_next: bytes, *, context: bytes = b""
    ) -> None:
        self.party = _check_party(party)
        own = check_bytes(seed_own, "seed_own", size=prg.SEED_BYTES)
        nxt = check_bytes(seed_next, "seed_next", size=prg.SEED_BYTES)
        if own == nxt:
            raise InvalidInput("seed_own and seed_next must be different seeds")
        self._seeds = (own, nxt)
        self._ctr = [0, 0]
        self._context = check_bytes(context, "context", max_size=128)

    def as_role(self, role: int) -> ZeroSharer:
        """This party's seeds and counters (shared, not copied) acting as replicated index
        ``role``, for a computation whose roles are rotated by ``party - role``: party
        ``i`` plays role ``i - s`` for every party at once, so the pair holding each seed
        is unchanged and a role's "own" and "next" seeds are this party's own and next.
        Engines rotate the asymmetric steps (MSB input, bit injection) to balance traffic.
        """
        role = _check_party(role)
        view = object.__new__(ZeroSharer)
        view.party = role
        view._seeds = self._seeds
        view._ctr = self._ctr  # the same list: draws through either advance both
        view._context = self._context
        return view

    @property
    def counters(self) -> tuple[int, int]:
        """Draws made so far from ``(seed_own, seed_next)``."""
        return self._ctr[0], self._ctr[1]

    def _draw(self, which: int, shape: int | tuple[int, ...]) -> np.ndarray:
        shape_t = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        shape_t = tuple(check_int(d, "shape", lo=0) for d in shape_t)
        ctr = self._ctr[which]
        if ctr >= 1 << 64:  # pragma: no cover - unreachable in practice
            raise TripleReuse("the seed's draw counter is exhausted")
        self._ctr[which] = ctr + 1
        n = math.prod(shape_t)
        if n == 0:
            return np.zeros(shape_t, dtype=np.uint64)
        seed = prg.derive_seed(
            self._seeds[which], "rep3/prf", self._context + ctr.to_bytes(8, "little")
        )
        return prg.ring_vector(seed, n).reshape(shape_t)

    def next(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """``alpha_i = PRG(k_i) - PRG(k_{i+1})``: the three parties' values sum to 0."""
        return self._draw(0, shape) - self._draw(1, shape)

    def next_bits(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """``beta_i = PRG(k_i) ^ PRG(k_{i+1})``: the three parties' words XOR to 0."""
        return self._draw(0, shape) ^ self._draw(1, shape)

    def common_next(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Randomness known to this party and party ``party + 1`` (from ``k_{party+1}``);
        party ``party + 1`` gets the same values from :meth:`common_prev`."""
        return self._draw(1, shape)

    def common_prev(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Randomness known to this party and party ``party - 1`` (from ``k_party``);
        party ``party - 1`` gets the same values from :meth:`common_next`."""
        return self._draw(0, shape)


def _check_zero(zero: object, party: int) -> ZeroSharer:
    if not isinstance(zero, ZeroSharer):
        raise InvalidType(f"zero must be a ZeroSharer, not {type(zero).__name__}")
    if zero.party != party:
        raise InvalidInput(f"ZeroSharer of party {zero.party} used for party {party}")
    return zero


# --------------------------------------------------------------------------- multiplication


def mul_local(x: RepShare, y: RepShare, zero: ZeroSharer) -> np.ndarray:
    """The 3-out-of-3 additive share ``z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i``
    of ``x * y`` (element-wise, broadcasting).  Send it to party ``i - 1``, then
    :func:`from_additive`."""
    x, y = _check_rep(x, "x"), _check_rep(y, "y")
    _same_party(x, y)
    _broadcast(x, y)
    z = x.a * (y.a + y.b) + x.b * y.a
    return z + _check_zero(zero, x.party).next(z.shape)


def matmul_local(x: RepShare, y: RepShare, zero: ZeroSharer) -> np.ndarray:
    """The 3-out-of-3 additive share ``x_i (y_i + y_{i+1}) + x_{i+1} y_i + alpha_i`` of the
    matrix product ``x @ y`` over Z_2^64 (two GEMMs)."""
    x, y = _check_rep(x, "x"), _check_rep(y, "y")
    _same_party(x, y)
    z = _gemm(x.a, y.a + y.b)
    z += _gemm(x.b, y.a)
    return z + _check_zero(zero, x.party).next(z.shape)


def and_local(x: BinShare, y: BinShare, zero: ZeroSharer) -> np.ndarray:
    """The 3-out-of-3 XOR share ``x_i&y_i ^ x_i&y_{i+1} ^ x_{i+1}&y_i ^ beta_i`` of
    ``x & y``.  Send it to party ``i - 1``, then :func:`from_xor`."""
    x, y = _check_bin(x, "x"), _check_bin(y, "y")
    _same_party(x, y)
    _broadcast(x, y)
    z = (x.a & (y.a ^ y.b)) ^ (x.b & y.a)
    return z ^ _check_zero(zero, x.party).next_bits(z.shape)


def from_additive(party: int, z_own: np.ndarray, z_next: np.ndarray) -> RepShare:
    """Party ``party``'s replicated share after the reshare round: its own additive share
    and the one received from party ``party + 1``."""
    return RepShare(party, z_own, z_next)


def from_xor(party: int, z_own: np.ndarray, z_next: np.ndarray) -> BinShare:
    """:func:`from_additive` for XOR shares (after :func:`and_local`)."""
    return BinShare(party, z_own, z_next)


# --------------------------------------------------------------------------- truncation


def _frac(frac_bits: object) -> int:
    return check_int(frac_bits, "frac_bits", lo=0, hi=_MAX_FRAC)


def trunc_low(z: np.ndarray, frac_bits: int) -> np.ndarray:
    """SecureML's first-party truncation: ``floor(z / 2^f)`` on ``z`` read as unsigned."""
    return _u64(z, "z") >> np.uint64(_frac(frac_bits))


def trunc_high(s: np.ndarray, frac_bits: int) -> np.ndarray:
    """SecureML's second-party truncation: ``-floor(-s / 2^f)`` (negations mod 2^64)."""
    zero = np.zeros((), dtype=np.uint64)
    return zero - ((zero - _u64(s, "s")) >> np.uint64(_frac(frac_bits)))


def trunc_p0_round1(z0: np.ndarray, frac_bits: int) -> np.ndarray:
    """Party 0, round 1: ``y_0 = z_0 >> f``; send it to party 2 (and keep it)."""
    return trunc_low(z0, frac_bits)


def trunc_p1_round2(
    z1: np.ndarray,
    z2: np.ndarray,
    r: np.ndarray,
    frac_bits: int,
) -> tuple[np.ndarray, RepShare]:
    """Party 1, after receiving ``z_2`` from party 2: ``y_1 = trunc_high(z_1 + z_2) - r``
    with ``r = zero.common_next(shape)`` (``y_2 = r``, shared with party 2).  Returns
    ``(y_1, share)``; send ``y_1`` to party 0 in round 2."""
    z1, z2, r = _u64(z1, "z1"), _u64(z2, "z2"), _u64(r, "r")
    y1 = trunc_high(z1 + z2, frac_bits) - r
    return y1, RepShare(1, y1, r)


def trunc_p0_finish(y0: np.ndarray, y1: np.ndarray) -> RepShare:
    """Party 0, after receiving ``y_1`` from party 1 in round 2: its share ``(y_0, y_1)``."""
    return RepShare(0, y0, y1)


def trunc_p2_finish(r: np.ndarray, y0: np.ndarray) -> RepShare:
    """Party 2 (which sent ``z_2`` to party 1 in round 1), after receiving ``y_0`` from
    party 0: its share ``(y_2, y_0)`` with ``y_2 = r = zero.common_prev(shape)``."""
    return RepShare(2, r, y0)


def truncation_failure_probability(value_bits: int, count: int = 1) -> float:
    """SecureML's bound on the chance that truncating ``count`` products with
    ``|z| < 2^value_bits`` leaves any of them off by more than 1 ulp (a union bound of
    ``2^(value_bits + 1 - 64)`` per element, capped at 1)."""
    value_bits = check_int(value_bits, "value_bits", lo=0, hi=64)
    count = check_int(count, "count", lo=0)
    return min(1.0, count * 2.0 ** (value_bits + 1 - 64))


# --------------------------------------------------------------------------- bit slicing


def bitslice(words: np.ndarray) -> np.ndarray:
    """The ``(64, ceil(n / 64))`` bit-sliced layout of ``n`` words (any shape, flattened):
    bit ``k`` of word ``m`` of row ``j`` is bit ``j`` of element ``64 m + k`` (zero
    padded).  Linear over XOR, so each share component is sliced locally."""
    w = np.ascontiguousarray(_u64(words, "words")).reshape(-1)
    n = w.size
    pad = -n % 64
    if pad:
        w = np.concatenate([w, np.zeros(pad, dtype=np.uint64)])
    bits = np.unpackbits(
        w.astype("<u8").view(np.uint8).reshape(-1, 64 // 8), axis=1, bitorder="little"
    )  # (n', 64): column j = bit j
    packed = np.packbits(bits.T, axis=1, bitorder="little")  # (64, n' / 8)
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def unbitslice(rows: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`bitslice` for ``k <= 64`` rows: ``n`` words whose bit ``j``
    comes from row ``j`` (higher bits zero)."""
    rows = _u64(rows, "rows")
    n = check_int(n, "n", lo=0)
    if rows.ndim != 2 or rows.shape[0] > 64 or rows.shape[1] * 64 < n:
        raise InvalidInput(f"rows of shape {rows.shape} cannot hold {n} elements")
    k = rows.shape[0]
    bits = np.unpackbits(
        np.ascontiguousarray(rows.astype("<u8")).view(np.uint8), axis=1, bitorder="little"
    )[:, :n]  # (k, n)
    full = np.zeros((n, 64), dtype=np.uint8)
    full[:, :k] = bits.T
    return (
        np.packbits(full, axis=1, bitorder="little")
        .view("<u8")
        .reshape(n)
        .astype(np.uint64, copy=False)
    )


# --------------------------------------------------------------------------- MSB extraction


def _bmap(x: BinShare, f: object) -> BinShare:
    return BinShare(x.party, f(x.a), f(x.b))  # type: ignore[operator]


def _bcat(parts: Sequence[BinShare]) -> BinShare:
    return BinShare(
        parts[0].party, np.concatenate([p.a for p in parts]), np.concatenate([p.b for p in parts])
    )


def msb_inputs(
    party: int,
    x: RepShare,
    zero: ZeroSharer,
    v1: np.ndarray | None = None,
) -> tuple[np.ndarray | None, BinShare, BinShare]:
    """Round 1 of the MSB: bit-sliced XOR shares of ``v = x_0 + x_1`` and of ``x_2``.

    Party 0 returns ``(v_1, V, Y)``: send ``v_1`` to party 1.  Party 1 passes the ``v_1``
    it received; party 2 needs nothing.  ``V`` and ``Y`` are ``(64, W)`` BinShares with
    ``v + x_2 = x`` (``x`` flattened, ``W = ceil(x.size / 64)``).
    """
    party = _check_party(party)
    x = _check_rep(x, "x")
    if x.party != party:
        raise InvalidInput(f"share of party {x.party} used as party {party}")
    zero = _check_zero(zero, party)
    width = -(-x.a.size // 64)
    zeros = np.zeros((64, width), dtype=np.uint64)
    if party == 0:
        v0 = zero.common_prev((64, width))
        v1_out = bitslice(x.a + x.b) ^ v0
        return v1_out, BinShare(0, v0, v1_out), BinShare(0, zeros, zeros)
    if party == 1:
        if v1 is None:
            raise InvalidInput("party 1 needs the v_1 it received from party 0")
        v1 = _u64(v1, "v1")
        if v1.shape != (64, width):
            raise InvalidInput(f"v_1 has shape {v1.shape}, expected {(64, width)}")
        return None, BinShare(1, v1, zeros), BinShare(1, zeros, bitslice(x.b))
    v0 = zero.common_next((64, width))
    return None, BinShare(2, zeros, v0), BinShare(2, bitslice(x.a), zeros)


def carry_and_inputs(v: BinShare, y: BinShare) -> tuple[BinShare, BinShare]:
    """The operands of the generate layer: bits 0..62 of ``v`` and ``y`` (AND them)."""
    v, y = _check_bin(v, "v"), _check_bin(y, "y")
    return _bmap(v, lambda c: c[:63]), _bmap(y, lambda c: c[:63])


def carry_start(v: BinShare, y: BinShare, g: BinShare) -> tuple[BinShare, BinShare, BinShare]:
    """After the generate AND ``g = v & y`` (bits 0..62): ``(G, P, p_63)`` with the group
    generate/propagate rows ``G = g``, ``P = v ^ y`` (bits 0..62) and ``p_63``."""
    p = xor(v, y)
    return g, _bmap(p, lambda c: c[:63]), _bmap(p, lambda c: c[63:64])


def carry_level_inputs(gg: BinShare, pp: BinShare) -> tuple[BinShare, BinShare]:
    """One tree level's AND operands: for pairs ``(lo, hi) = (2j, 2j + 1)`` of groups,
    ``P_hi & G_lo`` for every pair and ``P_hi & P_lo`` for every pair but the lowest
    (whose propagate is never used)."""
    m = gg.shape[0]
    pairs = m // 2
    p_hi = _bmap(pp, lambda c: c[1 : 2 * pairs : 2])
    left = _bcat([p_hi, _bmap(p_hi, lambda c: c[1:])])
    right = _bcat(
        [_bmap(gg, lambda c: c[0 : 2 * pairs : 2]), _bmap(pp, lambda c: c[2 : 2 * pairs : 2])]
    )
    return left, right


def carry_level_combine(gg: BinShare, pp: BinShare, t: BinShare) -> tuple[BinShare, BinShare]:
    """The next level's groups from the AND results ``t`` of :func:`carry_level_inputs`:
    ``G' = G_hi ^ (P_hi & G_lo)``, ``P' = P_hi & P_lo`` (the lowest group's ``P'`` is a
    placeholder); an unpaired top group passes through."""
    m = gg.shape[0]
    pairs = m // 2
    g_new = xor(_bmap(gg, lambda c: c[1 : 2 * pairs : 2]), _bmap(t, lambda c: c[:pairs]))
    p_new = _bcat([_bmap(t, lambda c: c[:1]), _bmap(t, lambda c: c[pairs:])])
    if m % 2:
        g_new = _bcat([g_new, _bmap(gg, lambda c: c[m - 1 :])])
        p_new = _bcat([p_new, _bmap(pp, lambda c: c[m - 1 :])])
    return g_new, p_new


def msb_finish(gg: BinShare, p63: BinShare) -> BinShare:
    """The MSB, bit-sliced ``(1, W)``: ``p_63 ^ c_63`` once the tree has one group left."""
    if gg.shape[0] != 1:
        raise InvalidInput(f"the carry tree still has {gg.shape[0]} groups")
    return xor(gg, p63)


# --------------------------------------------------------------------------- bit to arithmetic


def _bit(words: np.ndarray) -> np.ndarray:
    return _u64(words, "bit") & np.uint64(1)


def b2a_p0_round1(
    bit: BinShare,
    zero: ZeroSharer,
    flip: bool = False,
) -> tuple[np.ndarray, RepShare]:
    """Party 0, round 1 of bit-to-arithmetic for the bits in bit 0 of ``bit``'s words
    (``flip``: of their complement).  Returns ``(message, share)``: send the
    ``(2,) + shape`` message (the two masked choices) to party 1."""
    bit = _check_bin(bit, "bit")
    zero = _check_zero(zero, 0)
    c = _bit(bit.a ^ bit.b) ^ np.uint64(1 if flip else 0)
    shape = bit.shape
    d0 = zero.common_prev(shape)
    w0 = zero.common_prev(shape)
    w1 = zero.common_prev(shape)
    d1 = zero.common_next(shape)
    base = np.zeros((), dtype=np.uint64) - d0 - d1
    msg = np.stack([base + c + w0, base + (c ^ np.uint64(1)) + w1])
    return msg, RepShare(0, d0, d1)


def b2a_p2_round1(bit: BinShare, zero: ZeroSharer) -> tuple[np.ndarray, np.ndarray]:
    """Party 2, round 1: returns ``(w_{b_2}, d_0)``; send ``w_{b_2}`` to party 1 and keep
    ``d_0`` for :func:`b2a_p2_finish`."""
    bit = _check_bin(bit, "bit")
    zero = _check_zero(zero, 2)
    shape = bit.shape
    d0 = zero.common_next(shape)
    w0 = zero.common_next(shape)
    w1 = zero.common_next(shape)
    return np.where(_bit(bit.a) == 1, w1, w0), d0


def b2a_p1_round1(bit: BinShare, zero: ZeroSharer) -> np.ndarray:
    """Party 1, round 1 (nothing to send): draws ``d_1``, common with party 0.  Every
    party makes its draws of a round before waiting for that round's messages, so that
    engines rotating roles over chunks draw from each seed in the same order."""
    bit = _check_bin(bit, "bit")
    return _check_zero(zero, 1).common_prev(bit.shape)


def b2a_p1_round2(
    bit: BinShare,
    d1: np.ndarray,
    message: np.ndarray,
    pad: np.ndarray,
) -> tuple[np.ndarray, RepShare]:
    """Party 1, after round 1 (``message`` from party 0, ``pad`` from party 2, ``d1`` from
    :func:`b2a_p1_round1`): returns ``(d_2, share)``; send ``d_2`` to party 2 in round 2."""
    bit = _check_bin(bit, "bit")
    if bit.party != 1:
        raise InvalidInput(f"share of party {bit.party} used as party 1")
    message, pad, d1 = _u64(message, "message"), _u64(pad, "pad"), _u64(d1, "d1")
    shape = bit.shape
    if message.shape != (2, *shape) or pad.shape != shape or d1.shape != shape:
        raise InvalidInput(f"b2a messages of shapes {message.shape}, {pad.shape} for {shape}")
    d2 = np.where(_bit(bit.b) == 1, message[1], message[0]) - pad
    return d2, RepShare(1, d1, d2)


def b2a_p2_finish(d2: np.ndarray, d0: np.ndarray) -> RepShare:
    """Party 2, after receiving ``d_2`` from party 1: its share ``(d_2, d_0)``."""
    return RepShare(2, d2, d0)
