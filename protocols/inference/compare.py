"""Two-party comparisons on XOR shares: AND gates from AND triples, the millionaires' tree.

Reusable by any two-party protocol of :mod:`mpcai.protocols` (the dealerless ReLU of
private inference, the norm check of robust aggregation).  Both parties hold one
:class:`XorGates` each, built on the same count of AND triples made by oblivious
transfer (:func:`mpcai.sharing.ot.and_triples`) and call the same functions in the same
order; every call is one round trip per AND layer.

:func:`sign_bits`: with ``y`` additively shared in Z_2^64 and ``|y| < 2^L`` as a signed
value (any ``y`` for ``L = 63``), ``[y >= 0]`` is bit ``L`` of ``y + 2^L`` modulo
``2^(L + 1)``.  Modulo ``2^(L+1)`` the shares reduce locally, and that bit is the XOR of
the shares' bit ``L`` and the carry out of their low ``L`` bits, ``[a > b]`` with ``a``
party 0's low bits and ``b = 2^L - 1 -`` party 1's: a millionaires' comparison, a tree
of AND gates on XOR shares (the leaves ``a_j & ~b_j``, then ``g = g_hi ^ (e_hi &
g_lo)``, ``e = e_hi & e_lo``): ``1 + ceil(log2 L)`` rounds and
``comparison_ands(L)[0]`` AND triples per element.  For ``L = 63`` the result is the
exact sign of the 64-bit two's complement value (no bound on ``y`` is assumed).

:func:`in_range_bits`: ``[-2^(l-1) <= y < 2^(l-1)]`` for any 64-bit ``y``, one
``l``-bit comparison and two ``(64 - l)``-bit equality tests (cheaper than two sign
tests when ``l`` is small).

:func:`and_reduce`: the AND of ``m`` XOR-shared bits per row, ``ceil(log2 m)`` rounds,
``m - 1`` AND triples per row.

Security: semi-honest two-party (each opening is a one-time pad of a triple's share);
a party that deviates can change the output bits, not learn the other's inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, InvalidType, MessageRejected, MisbehaviourDetected
from mpcai.runtime import Party
from mpcai.sharing import ot

__all__ = ["XorGates", "and_reduce", "and_reduce_ands", "comparison_ands", "greater_bits",
           "in_range_bits", "packed", "range_ands", "sign_bits", "unpacked"]


def comparison_ands(bits: int) -> tuple[int, int]:
    """AND gates and rounds of the ``bits``-bit comparison tree (per element)."""
    n, total, rounds = bits, bits, 1
    while n > 1:
        p = n // 2
        total += 2 * p - (1 if n % 2 == 0 else 0)
        n = p + n % 2
        rounds += 1
    return total, rounds


def and_reduce_ands(m: int) -> tuple[int, int]:
    """AND gates and rounds of :func:`and_reduce` over ``m`` bits (per row)."""
    rounds, n = 0, m
    while n > 1:
        n = (n + 1) // 2
        rounds += 1
    return max(m - 1, 0), rounds


def _u64(val: Any, what: str) -> np.ndarray:
    if not isinstance(val, np.ndarray) or val.dtype != np.uint64:
        raise InvalidType(f"{what} must be a uint64 array (shares in Z_2^64)")
    return val


def packed(bits: np.ndarray) -> np.ndarray:
    """0/1 uint8 bits packed 8 to a byte (little-endian bit order)."""
    return np.packbits(bits.reshape(-1), bitorder="little")


def unpacked(obj: Any, n: int, what: str) -> np.ndarray:
    """``n`` bits from a received packed array, checked (MisbehaviourDetected)."""
    want = (n + 7) // 8
    if not isinstance(obj, np.ndarray) or obj.dtype != np.uint8 or obj.shape != (want,):
        raise MisbehaviourDetected(f"{what}: {want} bytes of packed bits expected")
    return np.unpackbits(obj, bitorder="little", count=n)


_GATE_FRAMING = 4096
"""Bytes a gate opening's frame may take on top of its packed bits (header, tag, the
array's encoding)."""


class XorGates:
    """AND gates on XOR shares between this party (index ``me``: 0 or 1) and ``other``.

    ``triples``: this party's shares of the AND triples, used in order, each once.
    Messages go under ``f"{tag}/{step}"``.
    """

    def __init__(self, party: Party, other: int, me: int, tag: str,
                 triples: ot.AndTriples) -> None:
        if me not in (0, 1):
            raise InvalidInput("me must be 0 or 1")
        self._party, self._other, self.me, self._tag = party, other, me, tag
        self._t, self.used = triples, 0

    @property
    def remaining(self) -> int:
        """AND triples not used yet."""
        return int(self._t.a.size) - self.used

    async def swap(self, step: str, obj: Any, max_bytes: int | None = None) -> Any:
        """Send ``obj`` to the other party and receive its message of the same step (at
        most ``max_bytes``, frame included, if given: a larger one is refused unread)."""
        tag = f"{self._tag}/{step}"
        if max_bytes is not None:  # an opening that comes before our receive is bounded too
            self._party.expect(tag, [self._other], max_bytes=max_bytes)
        await self._party.send(self._other, tag, obj)
        try:
            return await self._party.recv(self._other, tag, max_bytes=max_bytes)
        except MessageRejected as exc:
            if max_bytes is None:
                raise
            raise MisbehaviourDetected(f"the other party's {tag!r} message is refused: "
                                       f"{exc}") from exc

    async def and_(self, step: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """XOR shares of ``x & y`` (uint8 0/1 arrays of one shape), one round."""
        if x.shape != y.shape:
            raise InvalidInput(f"AND of shapes {x.shape} and {y.shape}")
        n = x.size
        lo, hi = self.used, self.used + n
        if hi > self._t.a.size:
            raise InvalidInput("the gates ran out of AND triples")
        self.used = hi
        a, b, c = (v[lo:hi].reshape(x.shape) for v in (self._t.a, self._t.b, self._t.c))
        d_mine, e_mine = x ^ a, y ^ b
        # the other party opens as many bits as we do: 2n, packed
        got = await self.swap(step, packed(np.concatenate([d_mine.reshape(-1),
                                                           e_mine.reshape(-1)])),
                              max_bytes=(2 * n + 7) // 8 + _GATE_FRAMING)
        both = unpacked(got, 2 * n, "AND gate opening")
        d = d_mine ^ both[:n].reshape(x.shape)
        e = e_mine ^ both[n:].reshape(x.shape)
        z = c ^ (d & b) ^ (e & a)
        if self.me == 0:
            z ^= d & e
        return z


async def greater_bits(gates: XorGates, val: np.ndarray, bits: int,
                       step: str = "") -> np.ndarray:
    """XOR shares (uint8 0/1) of ``[a > b]``: party 0 passes its private ``a`` and
    party 1 its private ``b`` as ``val`` (1-D uint64, each ``< 2^bits``, ``bits`` in
    1..63).  The millionaires' tree: ``comparison_ands(bits)`` triples per element."""
    if not 1 <= bits <= 63:
        raise InvalidInput("bits must be in 1..63")
    val = _u64(val, "val")
    if val.size and int(val.max()) >> bits:  # its high bits would be ignored silently
        raise InvalidInput(f"a value of val does not fit {bits} bits")
    L, me = bits, gates.me
    bit_cols = ((val.reshape(-1, 1) >> np.arange(L - 1, -1, -1, dtype=np.uint64))
                & np.uint64(1)).astype(np.uint8)  # column 0 = the most significant bit
    zero = np.zeros_like(bit_cols)
    # leaves: g_j = a_j & ~b_j, e_j = ~(a_j ^ b_j); party 1 holds ~b_j
    mine = bit_cols if me == 0 else 1 - bit_cols
    g = await gates.and_(f"{step}leaf", mine if me == 0 else zero, mine if me == 1 else zero)
    e = mine.copy()
    level = 0
    while g.shape[1] > 1:
        n = g.shape[1]
        p = n // 2
        g_hi, g_lo = g[:, 0 : 2 * p : 2], g[:, 1 : 2 * p : 2]
        e_hi, e_lo = e[:, 0 : 2 * p : 2], e[:, 1 : 2 * p : 2]
        # the lowest group's e is never used: skip its AND when it is a pair
        ne = p - 1 if n % 2 == 0 else p
        z = await gates.and_(
            f"{step}tree{level}",
            np.concatenate([e_hi, e_hi[:, :ne]], axis=1),
            np.concatenate([g_lo, e_lo[:, :ne]], axis=1),
        )
        g_new = g_hi ^ z[:, :p]
        e_new = np.concatenate([z[:, p:], e_hi[:, ne:] & 0], axis=1)
        if n % 2:
            g_new = np.concatenate([g_new, g[:, -1:]], axis=1)
            e_new = np.concatenate([e_new, e[:, -1:]], axis=1)
        g, e = g_new, e_new
        level += 1
    return g[:, 0].copy()


async def sign_bits(gates: XorGates, y: np.ndarray, bits: int, step: str = "") -> np.ndarray:
    """XOR shares (uint8 0/1) of ``[y >= 0]`` for this party's additive shares ``y``
    (1-D uint64) of values with ``|y| < 2^bits`` (``bits`` in 1..63; 63: any value, as
    signed 64-bit).  ``comparison_ands(bits)`` rounds and triples per element."""
    if not 1 <= bits <= 63:
        raise InvalidInput("bits must be in 1..63")
    y = _u64(y, "y")
    L, me = bits, gates.me
    low = np.uint64((1 << L) - 1)
    u = (y + np.uint64(1 << L)) if me == 0 else y.copy()
    top = ((u >> np.uint64(L)) & np.uint64(1)).astype(np.uint8)
    lo = u & low
    g = await greater_bits(gates, lo if me == 0 else low - lo, L, step)
    return (top.reshape(-1) ^ g).astype(np.uint8)


def range_ands(bits: int) -> int:
    """AND triples per element of :func:`in_range_bits` with ``bits``."""
    return comparison_ands(bits)[0] + 2 * (64 - bits - 1) + 1


async def in_range_bits(gates: XorGates, y: np.ndarray, bits: int,
                        step: str = "") -> np.ndarray:
    """XOR shares of ``[-2^(bits-1) <= y < 2^(bits-1)]`` (``y`` as a signed 64-bit value,
    any value; ``bits`` in 2..62) for this party's additive shares ``y`` (1-D uint64).

    With ``u = y + 2^(bits-1)``: in range iff the top ``h = 64 - bits`` bits of ``u``
    are zero.  They are ``t_0 + t_1 + c`` modulo ``2^h`` (``t_b`` the top bits of the
    shares, ``c`` the carry out of their low bits, :func:`greater_bits`), zero iff
    ``t_0 + c = -t_1``: two equality tests (``t_0`` and ``t_0 + 1`` against ``-t_1``,
    an AND of ``h`` XNOR bits each) and a multiplexer on ``c``.  :func:`range_ands`
    triples per element, against ``2 comparison_ands(63)`` for two sign tests.
    """
    if not 2 <= bits <= 62:
        raise InvalidInput("bits must be in 2..62")
    y = _u64(y, "y")
    L, h, me = bits, 64 - bits, gates.me
    low = np.uint64((1 << L) - 1)
    hmask = np.uint64((1 << h) - 1)
    u = (y + np.uint64(1 << (L - 1))) if me == 0 else y.copy()
    lo, top = u & low, u >> np.uint64(L)
    c = await greater_bits(gates, lo if me == 0 else low - lo, L, f"{step}c")
    if me == 0:  # the two candidates t_0 + c for c = 0, 1
        cand = np.stack([top & hmask, (top + np.uint64(1)) & hmask])
    else:
        neg = (np.uint64(0) - top) & hmask
        cand = np.stack([neg, neg])
    cols = ((cand.reshape(-1, 1) >> np.arange(h, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8)
    xnor = cols ^ np.uint8(1) if me == 0 else cols  # shares of 1 ^ a_j ^ b_j
    eq = (await and_reduce(gates, xnor, f"{step}eq")).reshape(2, -1)
    eq0, eq1 = eq[0], eq[1]
    return eq0 ^ await gates.and_(f"{step}mux", c, eq0 ^ eq1)


async def and_reduce(gates: XorGates, bits: np.ndarray, step: str = "") -> np.ndarray:
    """XOR shares of the AND of each row of ``bits`` (uint8 0/1, shape ``(rows, m)``;
    ``m = 0``: the empty AND, 1)."""
    if not isinstance(bits, np.ndarray) or bits.ndim != 2:
        raise InvalidInput("bits must be a 2-D array (rows, m)")
    if bits.shape[1] == 0:
        return np.full(bits.shape[0], 1 if gates.me == 0 else 0, dtype=np.uint8)
    level = 0
    while bits.shape[1] > 1:
        n = bits.shape[1]
        p = n // 2
        z = await gates.and_(f"{step}all{level}", bits[:, 0 : 2 * p : 2], bits[:, 1 : 2 * p : 2])
        bits = np.concatenate([z, bits[:, 2 * p :]], axis=1) if n % 2 else z
        level += 1
    return bits[:, 0].copy()
