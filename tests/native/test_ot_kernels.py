"""The OT-extension kernels (csrc/ot.c) against independent references.

``chacha_many`` is checked against RFC 8439 ChaCha20 as implemented by OpenSSL
(``cryptography``'s ``ChaCha20``, whose 16-byte nonce is the little-endian block
counter followed by the 12-byte nonce), key by key, on every SIMD path and across
the 16-key group boundaries; ``bit_transpose`` against numpy's unpack / transpose /
pack.
"""

from __future__ import annotations

import secrets
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from mpcai import _bindings as nb
from mpcai.errors import InvalidInput, InvalidType


def _openssl_blocks(key16: bytes, tweak: int, blocks: int) -> bytes:
    key = key16 + struct.pack("<Q", tweak) + bytes(8)
    enc = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return enc.update(bytes(64 * blocks))


@pytest.mark.parametrize("n_keys", [0, 1, 15, 16, 17, 37])
@pytest.mark.parametrize("blocks", [0, 1, 3])
def test_chacha_many_equals_openssl(path: int, n_keys: int, blocks: int) -> None:
    keys = np.frombuffer(secrets.token_bytes(16 * n_keys), dtype=np.uint8).reshape(n_keys, 16)
    tweak = secrets.randbits(40)
    out = nb.chacha_many(keys, tweak, blocks)
    assert out.shape == (n_keys, 64 * blocks)
    for j in range(n_keys):
        assert out[j].tobytes() == _openssl_blocks(keys[j].tobytes(), tweak + j, blocks)


def test_chacha_many_tweak_carries_into_the_high_word(path: int) -> None:
    keys = np.zeros((3, 16), dtype=np.uint8)
    tweak = (1 << 32) - 2  # key j = 1, 2 cross the 32-bit boundary of the tweak
    out = nb.chacha_many(keys, tweak, 1)
    for j in range(3):
        assert out[j].tobytes() == _openssl_blocks(bytes(16), tweak + j, 1)


def test_chacha_many_refuses_bad_input() -> None:
    with pytest.raises(InvalidType):
        nb.chacha_many(np.zeros((2, 16), dtype=np.uint64), 0, 1)
    with pytest.raises(InvalidInput):
        nb.chacha_many(np.zeros((2, 8), dtype=np.uint8), 0, 1)
    with pytest.raises(InvalidInput):
        nb.chacha_many(np.zeros((2, 16), dtype=np.uint8), (1 << 64) - 2, 1)


@pytest.mark.parametrize(("rows", "row_bytes"), [(8, 1), (128, 1), (128, 37), (64, 300)])
def test_bit_transpose_equals_numpy(rows: int, row_bytes: int) -> None:
    x = np.frombuffer(secrets.token_bytes(rows * row_bytes), dtype=np.uint8).reshape(
        rows, row_bytes
    )
    want = np.packbits(np.unpackbits(x, axis=1, bitorder="little").T, axis=1, bitorder="little")
    got = nb.bit_transpose(x)
    assert got.shape == (8 * row_bytes, rows // 8)
    assert np.array_equal(got, want)
    assert np.array_equal(nb.bit_transpose(got), x)  # an involution


def test_bit_transpose_refuses_bad_input() -> None:
    with pytest.raises(InvalidInput):
        nb.bit_transpose(np.zeros((12, 2), dtype=np.uint8))
    with pytest.raises(InvalidType):
        nb.bit_transpose(np.zeros(16, dtype=np.uint8))
