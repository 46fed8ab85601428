"""Seeds, key derivation and the ChaCha20 pseudo-random generator.

All randomness for keys, masks and shares in mpcai comes from here: fresh
32-byte seeds from the operating system (:func:`new_seed`), sub-seeds derived
with HKDF-SHA256 under explicit domain-separation labels
(:func:`derive_seed`), and expansion of a seed into long vectors by the
RFC 8439 ChaCha20 stream implemented in C (:func:`ring_vector`,
:func:`field_vector`).

The stream for a seed is ChaCha20 with ``key = seed``, an all-zero nonce and
the block counter starting at 0, read as little-endian 64-bit words.  Over
Z_2^64 each word is one element; over GF(p), p = 2^61 - 1, a word's low 61
bits are a candidate and the candidate equal to p is rejected, so elements
are exactly uniform.  Over Z_2^32 the same stream is read as 32-bit words,
over Z_2^24 as 3-byte little-endian values (:func:`ring_accumulate`'s
``bits``).  Two seeds derived under different labels give
independent streams; never expand the same seed for two purposes.

The accumulate forms (:func:`ring_accumulate`, :func:`field_accumulate`)
compute ``acc += sign * PRG(seed)`` in one pass, so a mask never exists as
an array in memory (secure aggregation adds and removes hundreds of them).
"""

from __future__ import annotations

import secrets

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpcai import _bindings
from mpcai.errors import InvalidInput
from mpcai.validation import check_bytes

__all__ = [
    "FIELD_P",
    "MAX_THREADS",
    "SEED_BYTES",
    "derive_seed",
    "field_accumulate",
    "field_vector",
    "new_seed",
    "random_ring",
    "ring_accumulate",
    "ring_vector",
    "ternary_sketch",
]

SEED_BYTES: int = _bindings.SEED_BYTES
"""Length of a PRG seed in bytes (a ChaCha20 key)."""

MAX_THREADS: int = _bindings.MAX_THREADS
"""The largest ``threads`` any kernel accepts (masking, Shamir sharing)."""

FIELD_P: int = _bindings.FIELD_P
"""The Mersenne prime 2^61 - 1 used for Shamir sharing and field masks."""

_LABEL_PREFIX = b"mpcai/v1/"
_MAX_LABEL = 255


def new_seed() -> bytes:
    """A fresh uniformly random 32-byte seed from the operating system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def derive_seed(key: bytes, label: bytes | str, context: bytes = b"") -> bytes:
    """Derive a 32-byte seed from ``key`` for one purpose (HKDF-SHA256, RFC 5869).

    ``label`` names the purpose (e.g. ``"secagg/self-mask"``); ``context``
    binds the seed to a session, round or party pair.  The HKDF ``info`` is
    ``b"mpcai/v1/" || len(label) || label || context``, so distinct
    (label, context) pairs can never collide.  ``key`` must carry at least
    16 bytes of entropy (a shared secret or a seed).
    """
    key = check_bytes(key, "key", allow_str=True)
    label_b = check_bytes(label, "label", allow_str=True)
    context = check_bytes(context, "context", allow_str=True)
    if len(key) < 16:
        raise InvalidInput(f"key must be at least 16 bytes, got {len(key)}")
    if not 0 < len(label_b) <= _MAX_LABEL:
        raise InvalidInput(f"label must be 1..{_MAX_LABEL} bytes, got {len(label_b)}")
    info = _LABEL_PREFIX + bytes([len(label_b)]) + label_b + context
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(key)


def ring_vector(seed: bytes, n: int) -> np.ndarray:
    """``n`` pseudo-random elements of Z_2^64 (``uint64``) expanded from ``seed``."""
    return _bindings.prg_ring64(seed, n)


def field_vector(seed: bytes, n: int) -> np.ndarray:
    """``n`` pseudo-random elements of GF(2^61 - 1) (``uint64``, each < p) from ``seed``."""
    return _bindings.prg_fieldp(seed, n)


def ring_accumulate(acc: np.ndarray, seed: bytes, sign: int = 1, *, threads: int = 1,
                    bits: int | None = None) -> None:
    """In place, ``acc = acc + sign * mask`` in the ring of ``acc``'s dtype.

    ``uint64``: the mask is ``ring_vector(seed, acc.size)``, modulo 2^64.
    ``uint32``: the same stream read as 32-bit little-endian words (half the
    keystream per element), modulo 2^32 — a different mask from the 64-bit
    one, so every party must use the same width.  ``bits=24`` (``uint32``
    only): the stream read as 3-byte little-endian values (three quarters
    of the 32-bit keystream), for the ring Z_2^24: the low 24 bits of each
    word are then the sum modulo 2^24, the top byte is meaningless.
    ``bits`` defaults to the dtype's width (64 or 32), which it must equal
    otherwise.  ``acc`` must be a writeable C-contiguous array (any shape);
    ``sign`` is +1 or -1.  The mask is added from registers or an L1 buffer,
    never stored whole.  ``threads > 1`` splits long vectors over that many
    OS threads (the result is identical); the GIL is released during the
    call either way.
    """
    is32 = isinstance(acc, np.ndarray) and acc.dtype == np.uint32
    if bits is not None:
        allowed = (24, 32) if is32 else (64,)
        if isinstance(bits, bool) or bits not in allowed:
            raise InvalidInput(f"bits must be one of {allowed} for this array, got {bits!r}")
    if bits == 24:
        _bindings.prg_ring24_acc(seed, acc, sign, threads)
    elif is32:
        _bindings.prg_ring32_acc(seed, acc, sign, threads)
    else:
        _bindings.prg_ring64_acc(seed, acc, sign, threads)


def field_accumulate(acc: np.ndarray, seed: bytes, sign: int = 1) -> None:
    """In place, ``acc = acc + sign * field_vector(seed, acc.size)`` modulo p.

    ``acc`` must be a writeable C-contiguous ``uint64`` array whose elements
    are all < p (checked before anything is written).
    """
    _bindings.prg_fieldp_acc(seed, acc, sign)


def random_ring(n: int) -> np.ndarray:
    """``n`` uniformly random ``uint64`` values from a fresh OS seed."""
    return ring_vector(new_seed(), n)


def ternary_sketch(vec: np.ndarray, seed: bytes, k: int, *, threads: int = 1) -> np.ndarray:
    """``R @ vec`` modulo 2^64 (``k`` uint64 values) for a pseudo-random ternary matrix.

    ``R`` is ``k x d`` (``d = vec.size``, ``vec`` a 1-D ``uint64`` array) with entries
    -1, 0, +1 of probabilities 1/4, 1/2, 1/4, expanded from the 32-byte ``seed`` and
    never stored: row ``i`` is the ChaCha20 stream of key ``seed``, nonce
    ``le32(i) || 0^8``, counter from 0; 64-byte block ``c`` holds entries ``256 c ..
    256 c + 255``, entry ``64 q + t`` being bit ``t`` of little-endian word ``q`` minus
    bit ``t`` of word ``4 + q``.  Linear: the sketches of additive shares are shares of
    the sketch.  ``threads > 1`` splits the rows over OS threads (identical output);
    the GIL is released during the call.
    """
    return _bindings.ternary_sketch(vec, seed, k, threads)
