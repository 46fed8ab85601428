"""Additive secret sharing over the ring Z_2^64.

A secret array ``x`` (``uint64``, e.g. from :func:`mpcai.encoding.encode_fixed`)
is split into ``n`` shares that sum to ``x`` modulo 2^64; any ``n - 1`` of
them are uniformly random and independent of ``x``.  Shares are plain
``uint64`` arrays of the secret's shape, so linear operations are local:
each party adds its shares of two secrets, multiplies its share by a public
integer, and exactly one party (index 0) adds a public constant.

Fixed-point data: encode, share, add, reconstruct, decode.  Multiplying a
share by a public *integer* is exact; multiplying by a public fixed-point
value doubles the fractional bits (decode with ``2 * frac_bits``).

Seed-compressed sharing (:func:`share_seeded`): parties 0..n-2 receive a
32-byte seed instead of an array and expand it locally with
:func:`expand_seeded`; only the last party receives an array.  This cuts
the dealer's outgoing traffic by a factor of about ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mpcai import prg
from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_int

__all__ = [
    "add",
    "add_public",
    "expand_seeded",
    "mul_public",
    "neg",
    "reconstruct",
    "share",
    "share_seeded",
    "sub",
]

_MAX_PARTIES = 1 << 20


def _ring_array(x: object, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise InvalidType(f"{name} must be a numpy array, not {type(x).__name__}")
    if x.dtype == np.int64:
        return x.view(np.uint64)
    if x.dtype != np.uint64:
        raise InvalidType(
            f"{name} must have dtype uint64 (or int64, read as two's complement), not {x.dtype}; "
            "encode floats with mpcai.encoding.encode_fixed first"
        )
    return x


def _check_n(n: object) -> int:
    return check_int(n, "n", lo=2, hi=_MAX_PARTIES)


def share(x: np.ndarray, n: int) -> list[np.ndarray]:
    """Split ``x`` into ``n >= 2`` additive shares over Z_2^64 (fresh OS randomness)."""
    seeds, last = share_seeded(x, n)
    return [expand_seeded(s, last.shape) for s in seeds] + [last]


def share_seeded(x: np.ndarray, n: int) -> tuple[list[bytes], np.ndarray]:
    """Share ``x`` as ``n - 1`` fresh seeds and one correction array.

    Party ``i < n - 1`` holds ``expand_seeded(seeds[i], x.shape)``; the last
    party holds the returned array ``x - sum(expansions)``.
    """
    x = _ring_array(x, "x")
    n = _check_n(n)
    last = np.array(x, dtype=np.uint64, order="C", copy=True)
    seeds = [prg.new_seed() for _ in range(n - 1)]
    for seed in seeds:
        prg.ring_accumulate(last, seed, -1)
    return seeds, last


def _shape(shape: object) -> tuple[int, ...]:
    """``shape`` (an int or a tuple of ints, each >= 0) as a tuple of Python ints."""
    if isinstance(shape, tuple):
        return tuple(check_int(d, f"shape[{i}]", lo=0) for i, d in enumerate(shape))
    if isinstance(shape, (list, np.ndarray)):
        raise InvalidType(f"shape must be an int or a tuple of ints, not {type(shape).__name__}")
    return (check_int(shape, "shape", lo=0),)


def expand_seeded(seed: bytes, shape: int | tuple[int, ...]) -> np.ndarray:
    """The share of shape ``shape`` (an int or a tuple of ints >= 0) that a seed from
    :func:`share_seeded` stands for."""
    shape_t = _shape(shape)
    return prg.ring_vector(seed, math.prod(shape_t)).reshape(shape_t)


def reconstruct(shares: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of all shares modulo 2^64 (every share is needed)."""
    if isinstance(shares, np.ndarray) or len(shares) == 0:
        raise InvalidInput("reconstruct needs a non-empty sequence of shares")
    arrays = [_ring_array(s, f"shares[{i}]") for i, s in enumerate(shares)]
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise InvalidInput(f"shares[{i}] has shape {a.shape}, expected {shape}")
    out = arrays[0].copy()
    for a in arrays[1:]:
        np.add(out, a, out=out)
    return out


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of ``x + y`` from shares ``a`` of x and ``b`` of y (local, mod 2^64)."""
    a, b = _ring_array(a, "a"), _ring_array(b, "b")
    if a.shape != b.shape:
        raise InvalidInput(f"shapes differ: {a.shape} and {b.shape}")
    return np.add(a, b)


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of ``x - y`` from shares ``a`` of x and ``b`` of y (local, mod 2^64)."""
    a, b = _ring_array(a, "a"), _ring_array(b, "b")
    if a.shape != b.shape:
        raise InvalidInput(f"shapes differ: {a.shape} and {b.shape}")
    return np.subtract(a, b)


def neg(a: np.ndarray) -> np.ndarray:
    """Share of ``-x`` (local, mod 2^64)."""
    a = _ring_array(a, "a")
    return np.subtract(np.zeros_like(a), a)


def _public(c: object, shape: tuple[int, ...]) -> np.ndarray:
    """A public integer (or integer array) as uint64, wrapping negatives."""
    if isinstance(c, (bool, np.bool_)):
        raise InvalidType("public value must be an integer, not bool")
    if isinstance(c, (int, np.integer)):
        return np.full(shape, int(c) % (1 << 64), dtype=np.uint64)
    if isinstance(c, np.ndarray):
        return np.broadcast_to(_ring_array(c, "public value"), shape)
    raise InvalidType(
        f"public value must be an int or an int64/uint64 array, not {type(c).__name__}; "
        "encode floats with mpcai.encoding.encode_fixed first"
    )


def mul_public(a: np.ndarray, c: object) -> np.ndarray:
    """Share of ``c * x`` for a public integer (or integer array) ``c`` (mod 2^64)."""
    a = _ring_array(a, "a")
    return np.multiply(a, _public(c, a.shape))


def add_public(a: np.ndarray, c: object, party_index: int) -> np.ndarray:
    """Share of ``x + c``: party 0 adds the public ``c``, every other party keeps its share."""
    a = _ring_array(a, "a")
    if check_int(party_index, "party_index", lo=0) != 0:
        return a.copy()
    return np.add(a, _public(c, a.shape))
