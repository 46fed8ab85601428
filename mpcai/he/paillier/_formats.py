"""Byte-level helpers of :mod:`mpcai.he.paillier`'s formats: the binary form and JWK.

The binary form of every object is ``magic (3 bytes) | version (1 byte) |
fields``, integers as ``length (u16, big-endian) | big-endian bytes``
(:func:`big`) or at a fixed width (ciphertexts); :class:`Reader` checks every
length against what is left and against :data:`MAX_KEY_BITS`.  JWK (phe's
JSON key format) stores integers as unpadded base64url (:func:`b64`,
:func:`unb64`).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from gmpy2 import mpz

from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_bytes

VERSION = 1
"""Version byte of every binary form."""

MAX_KEY_BITS = 16384
"""Largest modulus accepted anywhere; bounds every integer a blob may hold."""

MAX_COUNT = 1 << 28
"""Largest number of ciphertexts in one serialised array or packed vector."""


def nbytes(x: int) -> int:
    """Bytes of the big-endian form of ``x >= 0`` (0 for 0)."""
    return (int(x).bit_length() + 7) // 8


def big(x: int) -> bytes:
    """``x >= 0`` as ``length (u16) | big-endian bytes``; read back by :meth:`Reader.big`."""
    k = nbytes(x)
    return struct.pack(">H", k) + int(x).to_bytes(k, "big")


class Reader:
    """Bounds-checked reader over a serialised blob; checks its magic and version."""

    def __init__(self, data: object, magic: bytes) -> None:
        self.data = check_bytes(data, "data")
        self.pos = 0
        if self.take(len(magic)) != magic:
            raise InvalidInput(f"not a serialised {magic.decode()} object (bad magic)")
        if self.unpack(">B")[0] != VERSION:
            raise InvalidInput("unsupported serialisation version")

    def take(self, k: int) -> bytes:
        """The next ``k`` bytes; raises if fewer are left."""
        if k < 0 or self.pos + k > len(self.data):
            raise InvalidInput("serialised data is truncated")
        out = self.data[self.pos:self.pos + k]
        self.pos += k
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        """The next fields in :mod:`struct` format ``fmt``."""
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def big(self) -> mpz:
        """An integer written by :func:`big`, of at most ``MAX_KEY_BITS / 4`` bytes."""
        (k,) = self.unpack(">H")
        if k > MAX_KEY_BITS // 4:
            raise InvalidInput(f"integer of {k} bytes exceeds the limit")
        return mpz(int.from_bytes(self.take(k), "big"))

    def end(self) -> None:
        """Raise unless every byte was read."""
        if self.pos != len(self.data):
            raise InvalidInput(f"{len(self.data) - self.pos} trailing bytes in serialised data")


def b64(x: int) -> str:
    """``x >= 0`` as unpadded base64url of its big-endian bytes (JWK)."""
    raw = x.to_bytes((x.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(s: object, name: str) -> mpz:
    """Inverse of :func:`b64` for the JWK member ``name``, of bounded length."""
    if not isinstance(s, str) or len(s) > 4 * MAX_KEY_BITS // 6 + 4:
        raise InvalidInput(f"JWK member {name!r} must be a base64url string of bounded length")
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except ValueError as exc:
        raise InvalidInput(f"JWK member {name!r} is not base64url") from exc
    return mpz(int.from_bytes(raw, "big"))


def json_obj(jwk: object) -> dict[str, Any]:
    """A JSON object given as a dict or as JSON text (at most 64 KiB)."""
    if isinstance(jwk, str):
        if len(jwk) > 64 * 1024:
            raise InvalidInput("JWK text too long")
        try:
            jwk = json.loads(jwk)
        except (ValueError, RecursionError):  # JSONDecodeError, a 5000-digit int, [[[...
            raise InvalidInput("JWK is not valid JSON (or nests or numbers too deep)") from None
    if not isinstance(jwk, dict):
        raise InvalidType("a JWK must be a dict or JSON text of an object")
    return jwk
