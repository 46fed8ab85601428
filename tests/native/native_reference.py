"""Pure-Python references for the C kernels (slow, obviously correct)."""

from __future__ import annotations

import struct

import numpy as np

P61 = (1 << 61) - 1
_M32 = 0xFFFFFFFF


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & _M32


def _qr(x: list[int], a: int, b: int, c: int, d: int) -> None:
    x[a] = (x[a] + x[b]) & _M32
    x[d] = _rotl(x[d] ^ x[a], 16)
    x[c] = (x[c] + x[d]) & _M32
    x[b] = _rotl(x[b] ^ x[c], 12)
    x[a] = (x[a] + x[b]) & _M32
    x[d] = _rotl(x[d] ^ x[a], 8)
    x[c] = (x[c] + x[d]) & _M32
    x[b] = _rotl(x[b] ^ x[c], 7)


def chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3, written from the RFC."""
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += list(struct.unpack("<8I", key))
    state += [counter & _M32]
    state += list(struct.unpack("<3I", nonce))
    x = list(state)
    for _ in range(10):
        _qr(x, 0, 4, 8, 12)
        _qr(x, 1, 5, 9, 13)
        _qr(x, 2, 6, 10, 14)
        _qr(x, 3, 7, 11, 15)
        _qr(x, 0, 5, 10, 15)
        _qr(x, 1, 6, 11, 12)
        _qr(x, 2, 7, 8, 13)
        _qr(x, 3, 4, 9, 14)
    return struct.pack("<16I", *[(a + b) & _M32 for a, b in zip(x, state, strict=True)])


def chacha20_keystream(key: bytes, nonce: bytes, counter: int, length: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        out += chacha20_block(key, counter, nonce)
        counter += 1
    return bytes(out[:length])


def prg_words(seed: bytes, n_words: int) -> list[int]:
    stream = chacha20_keystream(seed, bytes(12), 0, 8 * n_words)
    return list(struct.unpack(f"<{n_words}Q", stream))


def prg_ring64(seed: bytes, n: int) -> np.ndarray:
    return np.array(prg_words(seed, n), dtype=np.uint64)


def prg_fieldp_from_words(words: list[int], n: int) -> list[int]:
    out: list[int] = []
    for w in words:
        if len(out) == n:
            break
        v = w & P61
        if v != P61:
            out.append(v)
    return out


def prg_fieldp(seed: bytes, n: int) -> np.ndarray:
    out = prg_fieldp_from_words(prg_words(seed, n + 8), n)
    return np.array(out, dtype=np.uint64)
